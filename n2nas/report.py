"""``report.png``: reward over time and the metric-vs-cost front of every trial, chosen pipeline marked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def pareto_mask(metric: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """True for trials no other trial beats on the metric (higher) and every cost (lower) at once."""
    n = len(metric)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        better_or_equal = (metric >= metric[i]) & np.all(costs <= costs[i], axis=1)
        strictly = (metric > metric[i]) | np.any(costs < costs[i], axis=1)
        keep[i] = not np.any(better_or_equal & strictly)
    return keep


def write_report(run_dir: str | Path) -> Path:
    """Draw ``report.png`` from ``trials.jsonl`` and ``best_pipeline.json`` in a run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines() if line.strip()]
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None]
    best_step = None
    best_path = run_dir / "best_pipeline.json"
    if best_path.exists():
        best_step = json.loads(best_path.read_text())["scores"].get("step")
    fig, (ax_time, ax_front) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = np.array([t["step"] for t in ok])
    rewards = np.array([t["reward"] for t in ok])
    phase = np.array([t["phase"] for t in ok])
    for name, colour in (("controller", "tab:blue"), ("derive", "tab:orange")):
        m = phase == name
        ax_time.scatter(steps[m], rewards[m], s=12, c=colour, label=f"{name} phase", alpha=0.7)
    if len(rewards):
        ax_time.plot(steps, np.maximum.accumulate(rewards), c="k", lw=1, label="best so far")
    failed = [t["step"] for t in trials if t["status"] != "ok"]
    if failed:
        ax_time.scatter(failed, np.zeros(len(failed)), marker="x", c="tab:red", label="failed child")
    ax_time.set(xlabel="trial", ylabel="reward", title="Reward over the search")
    ax_time.legend(fontsize=8)
    flops = np.array([t["flops"] for t in ok], dtype=float) / 1e6
    if len(ok):
        front = pareto_mask(rewards, flops[:, None])
        ax_front.scatter(flops, rewards, s=12, c="tab:gray", alpha=0.6, label="children")
        order = np.argsort(flops[front])
        ax_front.plot(flops[front][order], rewards[front][order], "o-", c="tab:green", ms=4, label="Pareto front")
        chosen = [i for i, t in enumerate(ok) if t["step"] == best_step]
        if chosen:
            ax_front.scatter(flops[chosen], rewards[chosen], s=160, marker="*", c="tab:red", label="chosen pipeline",
                             zorder=5)
        ax_front.set_xscale("log")
    ax_front.set(xlabel="MFLOPs per input window", ylabel="reward", title="Reward vs FLOPs")
    ax_front.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / "report.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
