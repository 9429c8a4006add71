"""Search-space declarations: flattening, encode/decode, JSON round trip, validation messages."""
from __future__ import annotations

import json

import numpy as np
import pytest

from n2nas.errors import ConfigError
from n2nas.space import Choice, Pipeline, Repeat, SearchSpace, Skips


@pytest.fixture
def space():
    return SearchSpace("toy", (
        Choice("fs", (150, 300), "preprocessing", default=300),
        Choice("band", (None, (0.5, 40.0)), "preprocessing"),
        Repeat("layer", 3, (Choice("op", ("conv3", "conv5")), Skips("skip"))),
        Choice("flag", (False, True), "training"),
    ))


def test_flattening_labels_kinds_and_size(space):
    tokens = space.tokens
    assert [t.label for t in tokens] == ["fs", "band", "layer0/op", "layer0/skip", "layer1/op", "layer1/skip",
                                         "layer2/op", "layer2/skip", "flag"]
    assert [t.n_inputs for t in tokens if t.is_skip] == [0, 1, 2]
    assert [t.kind for t in tokens][:2] == ["preprocessing"] * 2 and tokens[-1].kind == "training"
    assert space.size() == 2 * 2 * 2 ** 3 * 2 ** (0 + 1 + 2) * 2


def test_encode_decode_and_json_round_trip(space):
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = space.random_sample(rng)
        assert space.decode(space.encode(sample)) == sample
        back = Pipeline.from_json(json.loads(json.dumps(Pipeline("toy", sample).to_json())), space)
        assert back.sample == sample  # tuples (band, skips) survive JSON's lists


def test_true_is_not_option_one():
    s = SearchSpace("b", (Choice("x", (0, 1)),))
    with pytest.raises(ConfigError, match="True is not one of 0, 1"):
        s.validate({"x": True})


def test_validation_names_the_label(space):
    good = space.default_sample()
    assert good["fs"] == 300 and good["layer2/skip"] == (0, 0)
    with pytest.raises(ConfigError, match="^layer1/op: 'conv9' is not one of"):
        space.validate({**good, "layer1/op": "conv9"})
    with pytest.raises(ConfigError, match="^layer2/skip: expected 2 flags"):
        space.validate({**good, "layer2/skip": (1,)})
    with pytest.raises(ConfigError, match="^extra: not a decision"):
        space.validate({**good, "extra": 1})
    missing = dict(good)
    del missing["flag"]
    with pytest.raises(ConfigError, match="^flag: missing"):
        space.validate(missing)


def test_pinned_labels_leave_the_token_list(space):
    pinned = space.pinned({"fs": 150, "layer0/op": "conv5"})
    assert "fs" not in [t.label for t in pinned.tokens]
    assert pinned.size() == space.size() // 4
    sample = pinned.random_sample(np.random.default_rng(1))
    assert sample["fs"] == 150 and sample["layer0/op"] == "conv5"
    with pytest.raises(ConfigError):
        space.pinned({"fs": 999})


def test_grid_enumerates_the_product_of_named_labels(space):
    combos = list(space.grid(["fs", "flag"]))
    assert len(combos) == 4
    assert {(c["fs"], c["flag"]) for c in combos} == {(150, False), (150, True), (300, False), (300, True)}
    assert all(c["layer0/op"] == "conv3" for c in combos)


def test_duplicate_labels_rejected():
    with pytest.raises(ConfigError, match="label used twice"):
        SearchSpace("d", (Choice("a", (1,)), Choice("a", (2,)))).tokens


def test_describe_lists_every_decision(space):
    text = space.describe()
    assert "size 5.120e+02" in text
    assert all(t.label in text for t in space.tokens)
