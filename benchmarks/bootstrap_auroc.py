"""Macro-AUROC bootstrap intervals at diabetes130's test size: each resample's records ranked again
(``macro_auroc_ranks``) against all resamples scored at once from draw counts (``macro_auroc_counts``); seconds per
1000 resamples, their ratio, and how far the two paths' results lie apart.

Usage: python benchmarks/bootstrap_auroc.py [--records 12203] [--classes 17] [--resamples 200] [--repeats 3]

Two rows of synthetic class probabilities (a better and a worse one, single-label, as in ``ehr_real.py``) on
``--records`` test records of ``--classes`` classes. Timed, median of ``--repeats``: the Pareto table's interval of
one row (:func:`benchmarks.scoring.interval`) and the paired gap of the two rows (:func:`benchmarks.scoring.paired_gap`,
percentile method; scipy draws the ranks path's resamples, from the same seeded generator in the same order as the
counts path with scipy 1.x, so the bounds should agree to rounding: the last column says how far apart they are).
``--resamples`` of each are timed and reported per 1000; the load average is printed with every wall-clock figure.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load_avg  # noqa: E402
from benchmarks.ehr_real import auroc_counts, auroc_of  # noqa: E402
from benchmarks.scoring import interval, paired_gap  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402


def synthetic_rows(records: int, classes: int, seed: int = 0) -> tuple[dict, dict]:
    """Two benchmark rows (one seed, one fold) whose probabilities carry the label with different strength."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, records)

    def row(signal: float) -> dict:
        probs = np.eye(classes)[y] * signal + rng.random((records, classes))
        return {"preds": [(probs / probs.sum(1, keepdims=True))[:, None, :]], "ys": [y]}

    return row(0.3), row(0.2)


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall seconds of ``repeats`` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    """Time both paths side by side and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=12203, help="test records (default: diabetes130's 12,203)")
    ap.add_argument("--classes", type=int, default=17, help="classes (default: the chapter target's 17)")
    ap.add_argument("--resamples", type=int, default=200, help="bootstrap resamples timed per call (default 200)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per path, median reported (default 3)")
    args = ap.parse_args()
    a, b = synthetic_rows(args.records, args.classes)
    per_1000 = 1000 / args.resamples
    print(f"{args.records} records x {args.classes} classes, {args.resamples} resamples a call, median of "
          f"{args.repeats}; load average at start {load_avg():.2f}")
    print(f"  {'what':<34} {'ranks s/1000':>13} {'counts s/1000':>14} {'ratio':>7}  results")
    jobs = {
        "Pareto interval of one row": (
            lambda: interval(auroc_of, a["preds"], a["ys"], args.resamples),
            lambda: interval(auroc_of, a["preds"], a["ys"], args.resamples, counted=auroc_counts)),
        "paired gap of two rows": (
            lambda: paired_gap(auroc_of, a, b, args.resamples, method="percentile"),
            lambda: paired_gap(auroc_of, a, b, args.resamples, method="percentile", counted=auroc_counts)),
    }
    for what, (ranks, counts) in jobs.items():
        slow_s, slow = timed(ranks, args.repeats)
        fast_s, fast = timed(counts, args.repeats)
        if isinstance(slow, dict):
            slow, fast = ((found["difference"], found["low"], found["high"]) for found in (slow, fast))
        apart = max(abs(x - y) for x, y in zip(slow, fast))
        print(f"  {what:<34} {slow_s * per_1000:>13.2f} {fast_s * per_1000:>14.2f} {slow_s / fast_s:>6.1f}x  "
              f"ranks {tuple(round(v, 4) for v in slow)}, counts {tuple(round(v, 4) for v in fast)}, "
              f"largest difference {apart:.1e}")
    print(f"load average at end {load_avg():.2f}")


if __name__ == "__main__":
    exit_on_error(main, "bootstrap_auroc.py")
