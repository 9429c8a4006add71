"""The ENAS claim on our data: same wall-clock budget, ENAS (weight sharing) vs random search that trains every
child from scratch.

Usage: python benchmarks/weight_sharing.py [--data sample] [--minutes 10] [--child-epochs 4] [--seed 0]

Protocol: the data is split once (seeded, stratified, by record) into dev (80%) and test (20%). Both methods see
only dev. Random search draws children from the same space and trains each from scratch (``retrain`` with
``--child-epochs`` epochs, its own validation split inside dev), keeping the best validation score. ENAS searches
for the same budget, then its best pipeline is trained from scratch by the same procedure (time reported
separately). Both winners are scored on the untouched test split. Prints best score over time, children
evaluated per minute, and the final test scores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import n2nas  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.errors import N2NASError, exit_on_error  # noqa: E402
from n2nas.models.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.models.evaluate import evaluate  # noqa: E402
from n2nas.searching.loop import SearchConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from search_spaces import get_space  # noqa: E402


def best_over_time(events: list[tuple[float, float]], marks: list[float]) -> list[float]:
    """Best score reached by each time mark (NaN before the first event)."""
    out = []
    for m in marks:
        seen = [s for t, s in events if t <= m and s is not None]
        out.append(max(seen) if seen else float("nan"))
    return out


def main() -> None:
    """Run both searches and print the comparison tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="sample")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--child-epochs", type=int, default=4)
    ap.add_argument("--space", default="ecg-small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fix", default='{"window": "crop:10"}', help="JSON of labels pinned for both methods")
    args = ap.parse_args()
    fixed = json.loads(args.fix)
    data = load_dataset(args.data)
    split = stratified_split(data, val=0.2, seed=args.seed)
    dev, test = data.subset(list(split.train)), data.subset(list(split.val))
    child_cfg = dataclasses.replace(RetrainConfig(), epochs=args.child_epochs, patience=args.child_epochs,
                                    seed=args.seed, device="auto")
    work = Path(tempfile.mkdtemp(prefix="n2nas-ws-"))
    space_def = get_space(args.space)
    space = space_def.space.pinned(fixed)
    budget = 60 * args.minutes

    # Random search, every child trained from scratch.
    rng = np.random.default_rng(args.seed)
    random_events, random_best = [], (-1.0, None)
    start = time.monotonic()
    while time.monotonic() - start < budget:
        sample = space.random_sample(rng)
        out = work / f"random{len(random_events)}"
        try:
            summary = retrain(Pipeline(args.space, sample), dev, out, child_cfg, log=lambda _m: None)
            score = summary["validation"].get(summary["metric"])
        except N2NASError:
            score = None
        random_events.append((time.monotonic() - start, score))
        if score is not None and score > random_best[0]:
            random_best = (score, out)
    random_time = time.monotonic() - start

    # ENAS with weight sharing, same budget; then its winner trained from scratch like a random child.
    cfg = dataclasses.replace(SearchConfig(), space=args.space, seed=args.seed, budget_minutes=args.minutes,
                              budget_epochs=None, fixed=fixed)
    start = time.monotonic()
    result = n2nas.search(dev, cfg, out=work / "enas")
    enas_time = time.monotonic() - start
    enas_events = [(t["elapsed_s"], t["reward"]) for t in result.trials if t["phase"] == "derive"]
    start = time.monotonic()
    best = result.best(1)[0]
    enas_summary = retrain(Pipeline(args.space, best.sample), dev, work / "enas-best", child_cfg, log=lambda _m: None)
    enas_retrain_time = time.monotonic() - start

    metric = enas_summary["metric"]
    test_random = evaluate(random_best[1], test)[metric] if random_best[1] else float("nan")
    test_enas = evaluate(work / "enas-best", test)[metric]
    marks = [budget * f for f in (0.25, 0.5, 0.75, 1.0)]
    print(f"data {args.data}: dev {len(dev)} records, test {len(test)}; metric {metric}; budget {args.minutes} min")
    print(f"{'time':>8} {'random best val':>16} {'ENAS best derive (shared w.)':>29}")
    for m, r, e in zip(marks, best_over_time(random_events, marks), best_over_time(enas_events, marks)):
        print(f"{m / 60:>7.1f}m {r:>16.3f} {e:>29.3f}")
    n_enas = len(result.trials)
    print(f"children scored: random {len(random_events)} in {random_time / 60:.1f} min "
          f"({len(random_events) / random_time * 60:.2f}/min); ENAS {n_enas} in {enas_time / 60:.1f} min "
          f"({n_enas / enas_time * 60:.2f}/min); ratio {n_enas / enas_time / (len(random_events) / random_time):.1f}x")
    print(f"from-scratch validation of the winners: random {random_best[0]:.3f}, ENAS "
          f"{enas_summary['validation'][metric]:.3f} (ENAS winner retrain took {enas_retrain_time / 60:.1f} min)")
    print(f"held-out test {metric}: random-search winner {test_random:.3f}, ENAS winner {test_enas:.3f}")


if __name__ == "__main__":
    exit_on_error(main, "weight_sharing.py")
