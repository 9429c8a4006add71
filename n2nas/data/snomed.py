"""The CinC 2020/2021 scoring table: scored SNOMED-CT classes, equivalent codes and the reward matrix."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from n2nas.errors import DataError

SINUS_RHYTHM = "426783006"


@dataclass(frozen=True, eq=False)
class ScoringTable:
    """Scored classes (``'733534002|164909002'`` joins equivalent codes into one class) and their weights.

    ``weights[i, j]`` is the reward for predicting class ``j`` when class ``i`` is true.
    """

    classes: tuple[str, ...]
    weights: np.ndarray
    abbreviations: dict[str, str]

    def class_of(self, code: str) -> str | None:
        """The scored class a single SNOMED-CT code belongs to, or None when it is not scored."""
        return self._code_to_class.get(code)

    @property
    def _code_to_class(self) -> dict[str, str]:
        return {code: cls for cls in self.classes for code in cls.split("|")}

    def normal_class(self) -> str:
        """The class that holds sinus rhythm (the challenge's inactive baseline)."""
        cls = self.class_of(SINUS_RHYTHM)
        if cls is None:
            raise DataError("weights.csv", f"sinus rhythm ({SINUS_RHYTHM}) is not a scored class")
        return cls


def read_scoring_table(weights_csv: str | Path, mapping_csv: str | Path | None = None) -> ScoringTable:
    """Read a challenge ``weights.csv`` (and optionally ``dx_mapping_scored.csv`` for abbreviations)."""
    path = Path(weights_csv)
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except OSError as err:
        raise DataError(path, f"cannot read scoring table ({err.strerror})") from None
    header = [c.strip() for c in rows[0][1:]]
    try:
        body = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    except ValueError:
        raise DataError(path, "weights must be numbers") from None
    if body.shape != (len(header), len(header)) or [r[0].strip() for r in rows[1:]] != header:
        raise DataError(path, "weights table must be square with matching row and column classes")
    abbreviations: dict[str, str] = {}
    if mapping_csv is not None:
        with open(mapping_csv, newline="") as fh:
            for row in csv.DictReader(fh):
                abbreviations[row["SNOMEDCTCode"].strip()] = row["Abbreviation"].strip()
    return ScoringTable(tuple(header), body, abbreviations)


@lru_cache(maxsize=1)
def default_scoring_table() -> ScoringTable:
    """The 2021 challenge table bundled with n2nas (BSD-2, see ``n2nas/data/tables/README.md``)."""
    tables = resources.files("n2nas.data") / "tables"
    with resources.as_file(tables) as folder:
        return read_scoring_table(folder / "weights.csv", folder / "dx_mapping_scored.csv")
