"""Scoring benchmark rows on test records: seed-mean and fold-mean scores, percentile bootstrap intervals, paired
gaps (:func:`n2nas.metrics.paired_bootstrap`), a model's cost (params, FLOPs and CPU latency per record) and the one
Pareto table (and plot) that every dataset benchmark prints.

A *row* is ``{"kind", "preds", "ys", "folds", "scores", "seeds"}``: ``preds[f]`` holds the predictions on the
``f``-th test fold with the retrain seeds on axis 1 (records x seeds x ...), ``ys[f]`` its targets, ``scores[f]``
its per-seed test metric.
``score(pred, y)`` scores one seed on one fold; a row's score is the mean over seeds, then over folds.
"""
from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.measure.latency import LatencyConfig, measure_latency_ms  # noqa: E402
from n2nas.metrics import paired_bootstrap  # noqa: E402

# CPU latency per record: one forward pass of all of a record's multi-crop windows as one batch (how a deployed
# model diagnoses one record), median of up to 30 timed passes after 5 untimed, on 1 torch thread
LATENCY = LatencyConfig(warmup=5, repeats=30, max_seconds=10.0, cpu_threads=1)
LATENCY_HOW = ("CPU ms per record: median of up to 30 timed forward passes of one record's model inputs (its "
               "multi-crop windows, or one table row) as one batch, after 5 untimed, on 1 torch thread "
               "(n2nas.measure.latency.measure_latency_ms)")
KINDS = ("reference", "search", "pipeline", "inherited", "fine-tuned", "retrained")


def by_row(done: dict, metric: str, kinds: dict[str, str] | None = None) -> dict[str, dict]:
    """``{(name, seed) or (name, seed, fold): job result}`` -> ``{name: row}``: the seeds' predictions
    (``result["pred"]``) stacked on axis 1 per fold, in seed order, ``result["test"][metric]`` listed per fold;
    ``kinds`` names each row's kind (default ``"reference"``)."""
    grouped: dict[str, dict] = {}
    for key, result in done.items():
        name, seed, fold = (tuple(key) + (None,))[:3]
        grouped.setdefault(name, {}).setdefault(fold, []).append((seed, result))
    rows = {}
    for name, folds in grouped.items():
        ordered = {fold: sorted(runs, key=lambda sr: sr[0]) for fold, runs in folds.items()}
        rows[name] = {"kind": (kinds or {}).get(name, "reference"), "folds": list(ordered),
                      "preds": [np.stack([np.asarray(r["pred"]) for _, r in runs], axis=1)
                                for runs in ordered.values()],
                      "ys": [np.asarray(runs[0][1]["y"]) for runs in ordered.values()],
                      "scores": [[r["test"][metric] for _, r in runs] for runs in ordered.values()],
                      "seeds": [s for s, _ in next(iter(ordered.values()))]}
    return rows


def row_score(score: Callable, preds, ys) -> float:
    """Mean over folds of the mean over seeds of ``score(pred[:, k], y)``."""
    return float(np.mean([np.mean([score(p[:, k], y) for k in range(p.shape[1])]) for p, y in zip(preds, ys)]))


# resamples scored at once by a ``counted`` score: 100 x ~12,000 records of counts is ~10 MB
CHUNK = 100


def interval(score: Callable, preds, ys, n_resamples: int = 1000, confidence: float = 0.95,
             seed: int = 0, counted: Callable | None = None) -> tuple[float, float, float]:
    """``(score, low, high)``: :func:`row_score` and its percentile bootstrap interval, resampling the test records
    of each fold with replacement (every fold keeps its size; the same draw for all seeds of a record). With
    ``counted(pred, y, counts) -> per-resample scores`` (e.g. :func:`n2nas.metrics.macro_auroc_counts`), the same
    resamples are scored as draw counts, many at a time (:data:`CHUNK`)."""
    rng = np.random.default_rng(seed)
    draws = ([rng.integers(0, len(y), len(y)) for y in ys] for _ in range(n_resamples))  # per resample, per fold
    if counted is None:
        stats = [row_score(score, [p[i] for p, i in zip(preds, picks)], [y[i] for y, i in zip(ys, picks)])
                 for picks in draws]
    else:
        stats = []
        while chunk := list(itertools.islice(draws, CHUNK)):
            counts = [np.stack([np.bincount(picks[f], minlength=len(y)) for picks in chunk]) for f, y in enumerate(ys)]
            stats.extend(counted_score(counted, preds, ys, counts))
    return (row_score(score, preds, ys),) + _percentile(stats, confidence)


def counted_score(counted: Callable, preds, ys, counts) -> np.ndarray:
    """Per-resample :func:`row_score` from draw counts (``counts[f]``: resamples x records of fold ``f``): the mean
    over folds (those drawn at all) of the mean over seeds of ``counted(pred[:, k], y, counts[f])``."""
    per_fold = np.stack([np.mean([counted(p[:, k], y, c) for k in range(p.shape[1])], axis=0)
                         for p, y, c in zip(preds, ys, counts)])
    drawn = np.stack([c.sum(axis=1) > 0 for c in counts])
    per_fold[~drawn] = np.nan
    return np.nanmean(per_fold, axis=0)


def _percentile(stats, confidence: float) -> tuple[float, float]:
    stats = np.asarray(stats, dtype=float)
    stats = stats[np.isfinite(stats)]  # a resample without a class's positives has no AUROC
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail]) if len(stats) else (math.nan, math.nan)
    return float(low), float(high)


def paired_gap(score: Callable, a: dict, b: dict, n_resamples: int = 2000, method: str = "BCa",
               counted: Callable | None = None, seed: int = 0) -> dict:
    """Row ``a``'s score minus row ``b``'s on the same test records (same folds), with
    :func:`n2nas.metrics.paired_bootstrap`'s interval (``method``). The bootstrap resamples record *indices* over
    all folds together; the score looks up each fold's predictions of the row the indices stand for. With
    ``counted`` (see :func:`interval`), a percentile interval from resamples scored as draw counts, many at a time:
    the one method this supports."""
    sizes = [len(y) for y in b["ys"]]
    starts, total = np.cumsum([0] + sizes[:-1]), sum(sizes)
    if counted is not None:
        if method != "percentile":
            raise ValueError(f"a counted score gives a percentile interval, not {method!r}")
        rng, gaps = np.random.default_rng(seed), []
        for start in range(0, n_resamples, CHUNK):
            drawn = np.stack([np.bincount(rng.integers(0, total, total), minlength=total)
                              for _ in range(min(CHUNK, n_resamples - start))])
            counts = [drawn[:, s:s + n] for s, n in zip(starts, sizes)]
            gaps.extend(counted_score(counted, a["preds"], a["ys"], counts)
                        - counted_score(counted, b["preds"], b["ys"], counts))
        low, high = _percentile(gaps, 0.95)
        return {"difference": row_score(score, a["preds"], a["ys"]) - row_score(score, b["preds"], b["ys"]),
                "low": low, "high": high, "confidence": 0.95}

    def indexed(ix, _):
        row = a if ix[0] < total else b  # a's records are 0..N-1, b's N..2N-1
        ix = ix % total
        preds, ys = [], []
        for p, y, start, size in zip(row["preds"], row["ys"], starts, sizes):
            sel = ix[(ix >= start) & (ix < start + size)] - start
            if len(sel):
                preds.append(p[sel])
                ys.append(y[sel])
        return row_score(score, preds, ys)

    records = np.arange(total)
    return paired_bootstrap(indexed, records, records + total, records, n_resamples=n_resamples, method=method)


def print_seed_spread(rows: dict, what: str, width: int = 24) -> None:
    """Each row's mean, standard deviation, min and max over its retrain seeds (each seed's score the mean over
    folds); rows with one seed are left out."""
    print(f"{what} over the retrain seeds:")
    for name, row in rows.items():
        scores = np.mean(np.asarray(row["scores"], dtype=float), axis=0)
        if len(scores) > 1:
            print(f"  {name:<{width}} mean {np.mean(scores):.3f}  sd {np.std(scores, ddof=1):.3f}  "
                  f"min {min(scores):.3f}  max {max(scores):.3f}")


# --------------------------------------------------------------------------- cost


def cpu_latency_ms(model, input_shape: tuple[int, ...], windows: int = 1) -> float:
    """CPU milliseconds per record of a module taking inputs of ``input_shape`` (no batch), ``windows`` of them per
    record, as :data:`LATENCY_HOW` says."""
    return measure_latency_ms(model.cpu(), (windows,) + tuple(input_shape), "cpu", LATENCY)


def function_latency_ms(fn: Callable, n_features: int) -> float:
    """:func:`cpu_latency_ms` of a NumPy function of one row (e.g. a scikit-learn model's ``predict_proba``), timed
    through a module that calls it."""
    import torch

    class Calls(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.asarray(fn(x.numpy())))

    return cpu_latency_ms(Calls(), (n_features,))


def module_cost(model, input_shape: tuple[int, ...], windows: int = 1) -> dict[str, Any]:
    """``params``, ``flops_per_record`` (FLOPs of one input times ``windows`` inputs per record) and
    ``latency_ms`` (:func:`cpu_latency_ms`) of an ``nn.Module`` taking inputs of ``input_shape`` (no batch)."""
    from n2nas.measure.flops import count_flops, count_params

    return {"params": count_params(model), "flops_per_record": count_flops(model, (1,) + tuple(input_shape)) * windows,
            "latency_ms": cpu_latency_ms(model, input_shape, windows)}


def folder_cost(model_dir, record_seconds: float) -> dict[str, Any]:
    """:func:`module_cost` of a model folder's network, with its own input shape and the multi-crop windows of a
    ``record_seconds`` record (one for tabular rows), as ``n2nas flops`` counts them."""
    from n2nas.models.folder import load_model_dir
    from n2nas.measure.cost import model_input_shape, windows_per_record
    from search_spaces import get_space

    pipeline, model = load_model_dir(model_dir)
    space_def = get_space(pipeline.space)
    n_in = int(pipeline.data.get("n_leads") or pipeline.data.get("n_inputs"))
    shape = model_input_shape(space_def, pipeline.sample, n_in)
    return module_cost(model, shape, windows_per_record(space_def, pipeline.sample, record_seconds, n_in))


# --------------------------------------------------------------------------- Pareto table


def pareto_flags(points: list[tuple[float, float | None]]) -> list[bool | None]:
    """For ``(score, flops)`` points: whether each is Pareto-optimal (no other point scores at least as high for at
    most as many FLOPs, and strictly better in one); None for a point without FLOPs (it cannot be placed)."""
    flags: list[bool | None] = []
    for s, f in points:
        if f is None or not math.isfinite(s):
            flags.append(None)
            continue
        flags.append(not any(g is not None and t >= s and g <= f and (t > s or g < f) for t, g in points))
    return flags


def pareto_table(rows: dict[str, dict], score: Callable, costs: dict[str, dict],
                 n_resamples: int = 1000, counted: Callable | None = None) -> list[dict]:
    """The Pareto table of one dataset: per row its ``kind``, test ``score`` with a 95% percentile bootstrap
    interval (``low``, ``high``; :func:`interval`, with ``counted`` when given), ``flops_per_record``, ``params``,
    ``latency_ms`` (from ``costs[name]``, missing values None) and ``pareto`` (:func:`pareto_flags`: score up,
    FLOPs down)."""
    table = []
    for name, row in rows.items():
        point, low, high = interval(score, row["preds"], row["ys"], n_resamples, counted=counted)
        cost = costs.get(name) or {}
        table.append({"name": name, "kind": row["kind"], "score": point, "low": low, "high": high,
                      "seeds": row["preds"][0].shape[1],
                      "folds": row["folds"], **{k: cost.get(k) for k in ("flops_per_record", "params", "latency_ms")}})
    for line, flag in zip(table, pareto_flags([(t["score"], t["flops_per_record"]) for t in table])):
        line["pareto"] = flag
    return table


def format_pareto(table: list[dict], metric: str, record: str, how: str) -> str:
    """The table as fixed-width text: ``metric`` names the score, ``record`` the record FLOPs and latency are per
    (e.g. ``30 s``), ``how`` says how scores were pooled; ``*`` marks a Pareto-optimal row."""
    width = max([24] + [len(t["name"]) for t in table])
    lines = [f"Pareto table: test {metric}, {how}; 95% interval: percentile bootstrap over test records; "
             f"* = Pareto-optimal (score up, FLOPs down)",
             f"  {LATENCY_HOW}",
             f"  {'row':<{width}} {'kind':<10} {metric:>8} {'95% interval':>15} {'FLOPs/' + record:>11} "
             f"{'params':>9} {'CPU ms':>7} {'seeds':>5}  pareto"]
    for t in sorted(table, key=lambda t: (t["flops_per_record"] is None, t["flops_per_record"] or 0)):
        flops = f"{t['flops_per_record']:>11.4g}" if t["flops_per_record"] is not None else f"{'-':>11}"
        params = f"{t['params']:>9}" if t["params"] is not None else f"{'-':>9}"
        latency = f"{t['latency_ms']:>7.3g}" if t["latency_ms"] is not None else f"{'-':>7}"
        mark = {True: "yes *", False: "no", None: "n/a (no FLOPs)"}[t["pareto"]]
        lines.append(f"  {t['name']:<{width}} {t['kind']:<10} {t['score']:>8.3f} [{t['low']:.3f}, {t['high']:.3f}] "
                     f"{flops} {params} {latency} {t['seeds']:>5}  {mark}")
    return "\n".join(lines)


def plot_pareto(tables: dict[str, list[dict]], path, metric: str, record: str) -> Path:
    """One panel per table (``{title: table}``): score with its interval against FLOPs per record (log scale), one
    marker per kind, the Pareto front as a step line; written to ``path`` (PNG, matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = dict(zip(KINDS, "sDPovX"))
    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 4.8), squeeze=False)
    for ax, (title, table) in zip(axes[0], tables.items()):
        placed = [t for t in table if t["flops_per_record"] is not None]
        names: dict[tuple, list[str]] = {}  # rows on one point (e.g. a member inherited and retrained) share a label
        for t in placed:
            x, err = t["flops_per_record"], [[t["score"] - t["low"]], [t["high"] - t["score"]]]
            ax.errorbar(x, t["score"], yerr=np.clip(err, 0, None), marker=markers.get(t["kind"], "o"), capsize=3,
                        color="C3" if t["pareto"] else "C0", alpha=1.0 if t["pareto"] else 0.6, linestyle="none")
            names.setdefault((x, round(t["score"], 4)), []).append(t["name"])
        for point, group in names.items():
            ax.annotate("\n".join(group), point, fontsize=7, xytext=(4, 3), textcoords="offset points")
        front = sorted((t["flops_per_record"], t["score"]) for t in placed if t["pareto"])
        if front:
            ax.step(*zip(*front), where="post", color="C3", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(f"FLOPs per {record} record")
        ax.set_ylabel(f"test {metric} (95% bootstrap interval)")
        unplaced = [t["name"] for t in table if t["flops_per_record"] is None]
        ax.set_title(title + (f"\n(no FLOPs, not drawn: {', '.join(unplaced)})" if unplaced else ""), fontsize=9)
        for kind in sorted({t["kind"] for t in placed}):
            ax.plot([], [], marker=markers.get(kind, "o"), linestyle="none", color="gray", label=kind)
        ax.plot([], [], color="C3", label="Pareto-optimal (front)")
        ax.plot([], [], marker="o", linestyle="none", color="C0", alpha=0.6, label="dominated")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
