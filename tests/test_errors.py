"""User-facing errors survive the trip out of a worker process (process pools and Ray pickle them)."""
from __future__ import annotations

import pickle

import pytest

from n2nas.errors import ConfigError, DataError


@pytest.mark.parametrize("error", [ConfigError("--budget-minutes", "too small"),
                                   DataError("/data/A0001.hea", "corrupt header")])
def test_an_error_pickles_as_itself_with_its_file_and_problem(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.where, back.problem, str(back)) == (error.where, error.problem, str(error))
