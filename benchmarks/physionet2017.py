"""Search on the PhysioNet 2017 development folder, retrain the winner, score it on a held-out part of the folder
next to the Hannun-style residual network trained the same way.

Usage: python benchmarks/physionet2017.py [DIR] [--search-minutes 60] [--retrain-minutes 60] [--space ecg]
       [--preset thorough|default]

Protocol: the folder is split once (seeded, stratified, by record) into dev (85%) and held-out test (15%).
The search and both retrainings see only dev (each with its own validation split inside dev); the test records
are touched once, at the end. Scores above ~0.85 CinC 2017 F1 would suggest leakage (best challenge entries:
0.83 on the hidden test set).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import n2nas  # noqa: E402
from n2nas.cli import _parse_fixed  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.measure.flops import count_flops, count_params  # noqa: E402
from n2nas.retrain import RetrainConfig, evaluate, retrain  # noqa: E402
from n2nas.search_loop import SearchConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.ecg import fixed_pipelines  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"


def cost(pipeline: Pipeline, n_leads: int) -> tuple[int, float]:
    """Parameters and GFLOPs for one 30 s record at the pipeline's sampling rate (as one window)."""
    space_def = get_space(pipeline.space)
    model = space_def.build_child(pipeline.sample, n_leads, 4)
    fs = space_def.preprocess_config(pipeline.sample).fs
    return count_params(model), count_flops(model, (1, n_leads, int(30 * fs))) / 1e9


def main() -> None:
    """Search, retrain both pipelines, print the comparison table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--space", default="ecg")
    ap.add_argument("--preset", default="thorough", choices=["default", "thorough"],
                    help="search sizes per epoch (default: small epochs, many of them; thorough: GPU-sized)")
    ap.add_argument("--search-minutes", type=float, default=60)
    ap.add_argument("--retrain-minutes", type=float, default=60)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                    help="pin a decision (as `n2nas search --fix`), e.g. to spare a small machine cold preprocessing")
    ap.add_argument("--out", default=None, help="keep run and model folders here")
    args = ap.parse_args()
    data = load_dataset(f"physionet2017:{args.folder}")
    split = stratified_split(data, val=0.15, seed=args.seed)
    dev, test = data.subset(list(split.train)), data.subset(list(split.val))
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-pn17-"))
    base = SearchConfig.thorough() if args.preset == "thorough" else SearchConfig()
    cfg = dataclasses.replace(base, space=args.space, seed=args.seed,
                              budget_minutes=args.search_minutes, budget_epochs=None,
                              fixed=_parse_fixed(args.fix))
    t0 = time.monotonic()
    result = n2nas.search(dev, cfg, out=work / "search", progress=True)
    search_min = (time.monotonic() - t0) / 60
    retrain_cfg = dataclasses.replace(RetrainConfig(), epochs=args.epochs, max_minutes=args.retrain_minutes,
                                      seed=args.seed)
    hannun = get_space("ecg-hannun")
    contenders = {"n2nas search": Pipeline(args.space, result.best(1)[0].sample),
                  "hannun residual": Pipeline.from_json(fixed_pipelines()["hannun"], hannun.space)}
    rows = []
    for name, pipeline in contenders.items():
        t0 = time.monotonic()
        summary = retrain(pipeline, dev, work / name.replace(" ", "-"), retrain_cfg,
                          log=lambda m: print(m, file=sys.stderr))
        minutes = (time.monotonic() - t0) / 60
        scores = evaluate(work / name.replace(" ", "-"), test)
        params, gflops = cost(pipeline, 1)
        rows.append((name, params, gflops, minutes, summary["validation"]["cinc2017_f1"], scores))
    print(f"dev {len(dev)} records, held-out test {len(test)}; search {search_min:.1f} min on {args.space} "
          f"({len(result.trials)} children scored)")
    print(f"{'pipeline':<16} {'params':>9} {'GFLOP/30s':>9} {'train min':>9} {'val F1':>7} {'test F1':>8} "
          f"{'F1 N':>5} {'F1 A':>5} {'F1 O':>5} {'F1 ~':>5} {'AUROC':>6} {'AUROC N/A/O/~':>24}")
    for name, params, gflops, minutes, val, s in rows:
        f1 = s["f1"]
        auc = "/".join(f"{s['per_class_auroc'][c]:.3f}" for c in "NAO~")
        print(f"{name:<16} {params:>9} {gflops:>9.3f} {minutes:>9.1f} {val:>7.3f} {s['cinc2017_f1']:>8.3f} "
              f"{f1['N']:>5.3f} {f1['A']:>5.3f} {f1['O']:>5.3f} {f1['~']:>5.3f} {s['macro_auroc']:>6.3f} {auc:>24}")
    print(json.dumps({"best_pipeline": contenders["n2nas search"].sample}))


if __name__ == "__main__":
    main()
