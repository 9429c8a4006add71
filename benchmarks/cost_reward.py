"""Does a FLOPs weight make the search find cheaper children? Two searches, same data, seed and budget: the bare
metric vs metric x (FLOPs/target)^w. Prints the median FLOPs of what each controller sampled, the chosen
pipelines and both Pareto fronts (metric vs FLOPs) side by side, and draws both fronts in one PNG.

    .venv/bin/python benchmarks/cost_reward.py --budget-epochs 4 --out runs/cost_reward

Not part of the test suite (minutes of CPU).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

import n2nas
from n2nas.errors import exit_on_error
from n2nas.measure.reward import RewardConfig
from n2nas.searching.loop import SearchConfig
from n2nas.searching.report import pareto_front


def run(name: str, reward: RewardConfig, args) -> dict:
    """One search; returns its summary."""
    out = Path(args.out) / name
    if out.exists():
        shutil.rmtree(out)
    fixed = dict(kv.split("=", 1) for kv in args.fix)
    fixed = {k: json.loads(v) if v[:1].isdigit() else v for k, v in fixed.items()}
    budget = ({"budget_minutes": args.budget_minutes, "budget_epochs": None} if args.budget_minutes else
              {"budget_epochs": args.budget_epochs, "budget_minutes": None})
    config = dataclasses.replace(SearchConfig.demo(), seed=args.seed, device="cpu", reward=reward, fixed=fixed,
                                 **budget)
    start = time.monotonic()
    result = n2nas.search(args.data, config, out=out)
    seconds = time.monotonic() - start
    ok = [t for t in result.trials if t["status"] == "ok"]
    ctrl = [t for t in ok if t["phase"] == "controller"]
    late = ctrl[len(ctrl) // 2:]
    front = pareto_front(out)
    best = result.best(1)[0].scores
    order = np.argsort(front.flops)
    points = [(front.flops[i] / 1e6, front.metric[i]) for i in order
              if pareto_mask_2d(front.metric, front.flops)[i]]
    return {"name": name, "seconds": seconds, "trials": len(result.trials), "ok": len(ok),
            "median_mflops_all": statistics.median(t["flops"] for t in ok) / 1e6,
            "median_mflops_late": statistics.median(t["flops"] for t in late) / 1e6,
            "median_metric_late": statistics.median(t["reward_terms"]["metric"] for t in late),
            "chosen_mflops": best["flops"] / 1e6, "chosen_params": best["params"],
            "chosen_metric": front.metric[[t["step"] for t in front.trials].index(best["step"])],
            "best_metric": float(front.metric.max()), "front": points, "run_dir": str(out)}


def pareto_mask_2d(metric: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Front on metric (higher) vs FLOPs (lower) only."""
    from n2nas.searching.report import pareto_mask

    return pareto_mask(metric, flops[:, None])


def main() -> None:
    """Run both searches and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-epochs", type=int, default=4)
    p.add_argument("--budget-minutes", type=float, default=None, help="instead of epochs (then load-dependent)")
    p.add_argument("--flops-weight", type=float, default=-0.07)
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE")
    p.add_argument("--out", default="runs/cost_reward")
    args = p.parse_args()
    runs = [run("accuracy_only", RewardConfig.accuracy_only(), args),
            run(f"flops_w{args.flops_weight:g}", RewardConfig(flops_weight=args.flops_weight), args)]
    rows = [("search wall time (s)", "seconds", ".0f"), ("trials logged", "trials", "d"),
            ("median MFLOPs, all scored", "median_mflops_all", ".3f"),
            ("median MFLOPs, last half of controller samples", "median_mflops_late", ".3f"),
            ("median metric, last half of controller samples", "median_metric_late", ".3f"),
            ("chosen pipeline MFLOPs", "chosen_mflops", ".3f"), ("chosen pipeline params", "chosen_params", "d"),
            ("chosen pipeline metric (full validation)", "chosen_metric", ".3f"),
            ("best metric seen", "best_metric", ".3f")]
    print(f"data={args.data} seed={args.seed} budget="
          f"{f'{args.budget_minutes} min' if args.budget_minutes else f'{args.budget_epochs} epochs'}")
    print(f"{'':50s}{runs[0]['name']:>18s}{runs[1]['name']:>18s}")
    for label, key, fmt in rows:
        print(f"{label:50s}{format(runs[0][key], fmt):>18s}{format(runs[1][key], fmt):>18s}")
    print("\nPareto fronts (MFLOPs per input window -> metric), cheapest first:")
    for r in runs:
        print(f"  {r['name']:16s} " + "  ".join(f"({f:.2f}, {m:.3f})" for f, m in r["front"]))
    _plot(runs, Path(args.out) / "fronts.png")
    print(f"\nboth fronts: {Path(args.out) / 'fronts.png'}; run folders: {runs[0]['run_dir']}, {runs[1]['run_dir']}")


def _plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r, colour in zip(runs, ("tab:blue", "tab:orange")):
        front = pareto_front(r["run_dir"])
        ax.scatter(front.flops / 1e6, front.metric, s=10, alpha=0.35, c=colour)
        f, m = zip(*r["front"])
        ax.step(f, m, where="post", c=colour, lw=1.5, marker="o", ms=4,
                label=f"{r['name']} (median {r['median_mflops_late']:.2f} MFLOPs late)")
        ax.scatter([r["chosen_mflops"]], [r["chosen_metric"]], marker="*", s=200, c=colour, edgecolors="k", zorder=5)
    ax.set_xscale("log")
    ax.set(xlabel="MFLOPs per input window", ylabel="metric",
           title="Same seed and budget: with vs without FLOPs weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    exit_on_error(main, "cost_reward.py")
