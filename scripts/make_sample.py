"""Rebuild the bundled PhysioNet 2017 sample (n2nas/data/sample) from a full development folder.

Usage: python scripts/make_sample.py ../shared/data/physionet2017

The sample is 300 records chosen with a fixed seed, per class: 140 N, 60 A, 75 O, 25 ~. Minority classes are
over-represented on purpose so that a few-minute demo search sees enough AF and noise to learn from; the
class shares therefore differ from the challenge's, which the sample README states.
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np

PER_CLASS = {"N": 140, "A": 60, "O": 75, "~": 25}
SEED = 2017


def main(src: Path, dst: Path) -> None:
    """Copy the seeded per-class selection and write REFERENCE.csv and RECORDS."""
    with open(src / "REFERENCE.csv", newline="") as fh:
        rows = [(r[0], r[1]) for r in csv.reader(fh) if r]
    rng = np.random.default_rng(SEED)
    chosen: list[tuple[str, str]] = []
    for label, n in PER_CLASS.items():
        ids = sorted(i for i, lab in rows if lab == label)
        chosen += [(i, label) for i in rng.choice(ids, size=n, replace=False)]
    chosen.sort()
    for f in dst.glob("A*.*"):
        f.unlink()
    for rid, _ in chosen:
        for ext in (".hea", ".mat"):
            shutil.copy2(src / f"{rid}{ext}", dst / f"{rid}{ext}")
    with open(dst / "REFERENCE.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(chosen)
    (dst / "RECORDS").write_text("".join(f"{rid}\n" for rid, _ in chosen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parents[1] / "n2nas" / "data" / "sample")
