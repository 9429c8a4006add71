"""``report.png`` and ``n2nas report``: reward over the search and the Pareto front of every scored trial
(metric vs FLOPs vs energy or latency), with the chosen pipeline marked.

The third objective is energy per record when every scored trial has it from one source (measured, or the
FLOPs estimate, labelled ``estimate:flops``), else latency; trials from two energy sources are never put on
one axis.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def trial_metric(trial: dict[str, Any]) -> float | None:
    """The bare metric of a trial (its reward before cost terms; older logs only have the reward)."""
    terms = trial.get("reward_terms") or {}
    return terms.get("metric", trial.get("reward"))


@dataclass
class Front:
    """Scored trials, the objectives compared and who is on the front."""

    trials: list[dict[str, Any]]
    metric: np.ndarray
    flops: np.ndarray
    third: np.ndarray | None          # energy per record (J) or latency (ms), lower is better
    third_label: str | None
    on_front: np.ndarray              # Pareto over every objective used
    chosen_step: int | None
    note: str = ""
    counts: dict[str, int] | None = None


def load_trials(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every line of ``trials.jsonl`` in a run folder."""
    from n2nas.errors import DataError

    path = Path(run_dir) / "trials.jsonl"
    if not path.is_file():
        raise DataError(path, "no trials log here (is this a run folder written by `n2nas search`?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pareto_front(run_dir: str | Path) -> Front:
    """The Pareto front of a run folder's scored trials."""
    run_dir = Path(run_dir)
    trials = load_trials(run_dir)
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None and trial_metric(t) is not None]
    counts = {s: sum(t["status"] == s for t in trials) for s in ("ok", "failed", "infeasible")}
    chosen = None
    best_path = run_dir / "best_pipeline.json"
    if best_path.exists():
        chosen = json.loads(best_path.read_text()).get("scores", {}).get("step")
    metric = np.array([trial_metric(t) for t in ok], dtype=float)
    flops = np.array([t["flops"] for t in ok], dtype=float)
    third, label, note = _third_objective(ok)
    costs = flops[:, None] if third is None else np.stack([flops, third], axis=1)
    on_front = pareto_mask(metric, costs) if ok else np.zeros(0, dtype=bool)
    return Front(ok, metric, flops, third, label, on_front, chosen, note, counts)


def _third_objective(ok: list[dict[str, Any]]) -> tuple[np.ndarray | None, str | None, str]:
    sources = {t.get("energy_source", "unmeasured") for t in ok}
    energy = [t.get("energy_per_record_j") for t in ok]
    if ok and len(sources) == 1 and "unmeasured" not in sources and all(e is not None for e in energy):
        return np.array(energy, dtype=float), f"energy per record (J, {sources.pop()})", ""
    note = ("energy: unmeasured" if sources <= {"unmeasured"} else
            f"energy: {len(sources)} sources ({', '.join(sorted(sources))}), never compared on one axis")
    latency = [t.get("latency_ms") for t in ok]
    if ok and all(v is not None for v in latency):
        return np.array(latency, dtype=float), "latency per record (ms)", note
    return None, None, note


def format_table(front: Front, show_all: bool = False) -> str:
    """Plain-text table of the front (or every scored trial), cheapest first; ``*`` marks the chosen one."""
    c = front.counts or {}
    head = [f"trials: {c.get('ok', 0)} scored, {c.get('failed', 0)} failed, {c.get('infeasible', 0)} infeasible; "
            f"front over metric, FLOPs{', ' + front.third_label if front.third_label else ''}"
            f"{'; ' + front.note if front.note else ''}"]
    cols = ["", "step", "phase", "metric", "reward", "MFLOPs", "params", "latency_ms", "energy_J/rec", "front"]
    rows = []
    for i in np.argsort(front.flops, kind="stable"):
        t = front.trials[i]
        if not (show_all or front.on_front[i] or t["step"] == front.chosen_step):
            continue
        rows.append(["*" if t["step"] == front.chosen_step else "", str(t["step"]), t["phase"],
                     f"{front.metric[i]:.4f}", f"{t['reward']:.4f}", f"{front.flops[i] / 1e6:.3f}",
                     str(t["params"]), _num(t.get("latency_ms"), ".3f"), _num(t.get("energy_per_record_j"), ".4g"),
                     "yes" if front.on_front[i] else ""])
    widths = [max(len(r[k]) for r in rows + [cols]) for k in range(len(cols))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in [cols] + rows]
    foot = "* chosen pipeline (best_pipeline.json)" if front.chosen_step is not None else "no best_pipeline.json"
    return "\n".join(head + lines + [foot])


def best_by_choice(trials: list[dict[str, Any]], label: str = "leads") -> dict[Any, dict[str, Any]]:
    """The best scored trial (by bare metric) for each value of decision ``label`` (e.g. the lead set), in the
    order the values first appear; empty when no trial's sample has ``label``. Trials of every phase compete, so
    each result carries its phase (a screen probe trained on its own weights, a child scored with shared ones)."""
    best: dict[Any, dict[str, Any]] = {}
    for t in trials:
        value, metric = (t.get("sample") or {}).get(label), trial_metric(t)
        if t.get("status") != "ok" or value is None or metric is None or "limits_waived" in t:
            continue
        if value not in best or metric > trial_metric(best[value]):
            best[value] = t
    return best


def format_by_choice(trials: list[dict[str, Any]], label: str = "leads") -> str:
    """One line per value of ``label`` with its best trial's metric, FLOPs per record, params and step; "" when the
    search had no such decision."""
    best = best_by_choice(trials, label)
    if not best:
        return ""
    lines = [f"best pipeline per {label} value (every phase; metric before cost terms):"]
    for value in sorted(best, key=lambda v: (-v, str(v)) if isinstance(v, (int, float)) else (0, str(v))):
        t = best[value]
        flops = t.get("flops_per_record")
        lines.append(f"  {label} {value}: metric {trial_metric(t):.4f}  {_num(flops and flops / 1e6, '.2f')} "
                     f"MFLOPs per 30 s record  {t.get('params')} params  {t.get('phase')} step {t.get('step')}")
    return "\n".join(lines)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def write_report(run_dir: str | Path) -> Path:
    """Draw ``report.png`` from ``trials.jsonl`` and ``best_pipeline.json`` in a run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    front = pareto_front(run_dir)
    trials = load_trials(run_dir)
    fig, (ax_time, ax_flops, ax_third) = plt.subplots(1, 3, figsize=(17, 5))
    _reward_panel(ax_time, trials, front)
    sc = _front_panel(ax_flops, front.flops / 1e6, front, "MFLOPs per input window", log=True, colour=front.third)
    if front.third is not None:
        _front_panel(ax_third, front.third, front, front.third_label, log=False)
    else:
        ax_third.text(0.5, 0.5, f"no third objective\n({front.note or 'latency not recorded'})",
                      ha="center", va="center", transform=ax_third.transAxes)
        ax_third.set_axis_off()
    if front.third is not None and len(front.trials):
        fig.colorbar(sc, ax=ax_flops, label=front.third_label)
    fig.suptitle(f"{run_dir.name}: ringed points are the Pareto front over metric, FLOPs"
                 f"{' and ' + front.third_label if front.third_label else ''}"
                 f"{'  |  ' + front.note if front.note else ''}", fontsize=10)
    fig.tight_layout()
    out = run_dir / "report.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _reward_panel(ax, trials: list[dict[str, Any]], front: Front) -> None:
    ok = front.trials
    steps = np.array([t["step"] for t in ok])
    rewards = np.array([t["reward"] for t in ok], dtype=float)
    phase = np.array([t["phase"] for t in ok])
    for name, colour in (("controller", "tab:blue"), ("derive", "tab:orange")):
        m = phase == name
        ax.scatter(steps[m], rewards[m], s=12, c=colour, label=f"{name} phase", alpha=0.7)
    if len(rewards):
        ax.plot(steps, np.maximum.accumulate(rewards), c="k", lw=1, label="best so far")
    for status, marker, colour in (("failed", "x", "tab:red"), ("infeasible", "v", "tab:purple")):
        bad = [t for t in trials if t["status"] == status]
        if bad:
            ax.scatter([t["step"] for t in bad], [t["reward"] or 0.0 for t in bad], marker=marker, c=colour,
                       label=f"{status} child")
    ax.set(xlabel="trial", ylabel="reward", title="Reward over the search")
    ax.legend(fontsize=8)


def _front_panel(ax, x: np.ndarray, front: Front, xlabel: str, log: bool, colour: np.ndarray | None = None):
    y = front.metric
    sc = ax.scatter(x, y, s=14, c="tab:gray" if colour is None else colour, cmap=None if colour is None else "viridis",
                    alpha=0.7, label="scored children")
    if len(y):
        ring = front.on_front
        ax.scatter(x[ring], y[ring], s=60, facecolors="none", edgecolors="k", label="Pareto front (all objectives)")
        two = pareto_mask(y, x[:, None])
        order = np.argsort(x[two])
        ax.step(x[two][order], y[two][order], where="post", c="tab:green", lw=1.2, label="front on this plane")
        chosen = [i for i, t in enumerate(front.trials) if t["step"] == front.chosen_step]
        if chosen:
            ax.scatter(x[chosen], y[chosen], s=220, marker="*", c="tab:red", label="chosen pipeline", zorder=5)
        if log and np.all(x > 0):
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a narrow decade
    ax.set(xlabel=xlabel, ylabel="metric", title=f"Metric vs {xlabel.split(' (')[0]}")
    ax.legend(fontsize=8)
    return sc
