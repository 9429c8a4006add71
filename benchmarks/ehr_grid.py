"""DiagnoseNET's grid vs an ENAS search over the same EHR MLP space, on SYNTHETIC EHR data.

Grid: every layers x units cell of ``ehr-mlp-small`` trained from scratch (Adam 0.001, relu, dropout 0.2,
batch 768, early stopping). ENAS: a weight-shared search over the whole space (layers, units, activation,
dropout, lr, batch size) on the same training rows, then its best pipeline retrained from scratch by the same
trainer. Both are scored on the same held-out test rows, which the search never sees. Prints best test macro F1,
accuracy and total cost (wall seconds, models trained from scratch, energy where a counter exists).

    .venv/bin/python benchmarks/ehr_grid.py --patients 6000 --features 2000 --search-minutes 4
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.data.ehr_matrix import EHRDataset  # noqa: E402
from n2nas.data.synthetic_ehr import SyntheticEHRConfig, synthetic_ehr  # noqa: E402
from n2nas.grid.cells import GridConfig, diagnosenet_cell, run_grid  # noqa: E402
from n2nas.searching.loop import SearchConfig, search  # noqa: E402
from n2nas.train.rows import split_indices  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from search_spaces import get_space  # noqa: E402

SPACE = "ehr-mlp-small"
BASE = {"lr": 0.001, "activation": "relu", "dropout": 0.2, "batch_size": 768}


def rows_of(ds: EHRDataset, idx: np.ndarray, tag: str) -> EHRDataset:
    """The same patients' rows as a dataset of their own (what the search may see)."""
    return dataclasses.replace(ds, X=ds.X[idx], y=ds.y[idx], source=f"{ds.source}[{tag}]",
                               fingerprint=f"{ds.fingerprint}-{tag}")


def main() -> None:
    """Run the grid, then the search, and print both side by side."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=6000)
    ap.add_argument("--features", type=int, default=2000)
    ap.add_argument("--units", default="16,64,256")
    ap.add_argument("--layers", default="2,4,8")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--search-minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/bench-ehr-grid")
    args = ap.parse_args()
    out = Path(args.out)
    ds = synthetic_ehr(SyntheticEHRConfig(n_patients=args.patients, n_features=args.features, seed=args.seed))
    cell_cfg = GridConfig(epochs=args.epochs, patience=5, seed=args.seed, device=args.device, protocol="diagnosenet")
    train_idx, val_idx, test_idx = split_indices(ds, 0.05, 0.15, args.seed)  # diagnosenet_cell's split
    print(f"SYNTHETIC EHR: {args.patients} patients x {args.features} features; test rows {len(test_idx)}",
          file=sys.stderr)

    start = time.monotonic()
    axes = [("layers", tuple(int(v) for v in args.layers.split(","))),
            ("units", tuple(int(v) for v in args.units.split(",")))]
    grid = run_grid(SPACE, axes, ds, out / "grid", cell_cfg, BASE)
    grid_s = time.monotonic() - start
    print(grid.table, file=sys.stderr)
    best_cell = grid.best("macro_f1")

    start = time.monotonic()
    seen = rows_of(ds, np.sort(np.concatenate([train_idx, val_idx])), "search")
    config = dataclasses.replace(SearchConfig(), space=SPACE, budget_minutes=args.search_minutes,
                                 budget_epochs=None, shared_steps=20, controller_steps=4, children_per_step=4,
                                 reward_records=256, derive_children=12, device=args.device, seed=args.seed)
    result = search(seen, config, out=out / f"search-{int(time.time())}")
    search_s = time.monotonic() - start
    best = result.best(1)[0]
    # Retrain on the full set with the grid's split and trainer: the test rows stay unseen by the search.
    start = time.monotonic()
    (out / "final").mkdir(parents=True, exist_ok=True)
    final = diagnosenet_cell(get_space(SPACE), best.sample, ds, out / "final", cell_cfg, log=lambda m: None)
    retrain_s = time.monotonic() - start

    def energy(rows):
        values = [r.get("energy_j") for r in rows]
        return None if any(v is None for v in values) else round(sum(values), 1)

    table = [
        ("grid (DiagnoseNET protocol)", len(grid.rows), best_cell["macro_f1"], best_cell["accuracy"],
         best_cell["params"], f"{best_cell['layers']} x {best_cell['units']}", grid_s, energy(grid.rows)),
        ("ENAS search + retrain", 1, final["metrics"].get("macro_f1"), final["metrics"].get("accuracy"),
         final["params"], f"{best.sample['layers']} x {best.sample['units']} {best.sample['activation']} "
                          f"lr={best.sample['lr']} bs={best.sample['batch_size']}", search_s + retrain_s, None),
    ]
    print(f"{'method':30s} {'trained':>7s} {'test macro F1':>13s} {'accuracy':>8s} {'params':>9s} "
          f"{'wall s':>7s} {'energy J':>10s}  best")
    for name, n, f1, acc, params, arch, secs, joules in table:
        print(f"{name:30s} {n:7d} {f1:13.4f} {acc:8.4f} {params / 1e6:8.2f}M {secs:7.0f} "
              f"{'unmeasured' if joules is None else joules:>10}  {arch}")
    print(json.dumps({"grid_best": best_cell, "grid_seconds": round(grid_s, 1), "search_seconds": round(search_s, 1),
                      "search_trials": len(result.trials), "retrain_seconds": round(retrain_s, 1),
                      "enas_best_sample": best.sample, "enas_test": final["metrics"].get("macro_f1")}, default=str))


if __name__ == "__main__":
    exit_on_error(main, "ehr_grid.py")
