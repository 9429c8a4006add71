"""Grid tables: aligned text (what ``n2nas grid`` prints), CSV, and a two-panel plot (DiagnoseNET Fig. 4 style)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from n2nas.metrics import SCORE_COLUMNS as SCORES

TAIL = ("best_epoch", "epochs_run", "time_s", "energy_j", "energy_source")


def table_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Score columns present in ``rows`` (in display order) and the main one (the first)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    scores = [k for k in SCORES if k in keys] + [k for k in keys if k.startswith("auroc_")]
    return {"scores": scores, "main": scores[0] if scores else "macro_f1"}


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unmeasured" if key == "energy_j" else "-"
    if key == "params":
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} k"
    if key == "time_s":
        return f"{value:.1f}"
    if key == "energy_j":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4f}" if key in SCORES or key.startswith("auroc_") else f"{value:g}"
    return str(value)


def format_table(rows: list[dict[str, Any]], labels: list[str]) -> str:
    """One aligned line per cell: axis values, parameters, scores, epochs to converge / run, seconds, joules."""
    cols = ["cell", *labels, "status", "params", *table_columns(rows)["scores"], *TAIL[:4]]
    if any(r.get("energy_source") not in (None, "unmeasured") for r in rows):
        cols.append("energy_source")
    names = {"best_epoch": "epochs", "epochs_run": "ran", "time_s": "time_s", "energy_j": "energy_J"}
    cells = [[names.get(c, c) for c in cols]] + [[_fmt(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Every key of every row as a column (empty where a row has none)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows([{k: ("" if r.get(k) is None else r.get(k)) for k in keys} for r in rows])
    return path


def write_plot(rows: list[dict[str, Any]], labels: list[str], path: Path, title: str) -> Path:
    """Left: the main score over the grid (heatmap for two axes, bars otherwise). Right: score against
    parameters (log scale), marker colour = wall time: the accuracy / size / time trade-off of DiagnoseNET Fig. 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    main = table_columns(rows)["main"]
    score = np.array([_num(r.get(main)) for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    if len(labels) == 2:
        ys = list(dict.fromkeys(r[labels[0]] for r in rows))
        xs = list(dict.fromkeys(r[labels[1]] for r in rows))
        grid = np.full((len(ys), len(xs)), np.nan)
        for r, s in zip(rows, score):
            grid[ys.index(r[labels[0]]), xs.index(r[labels[1]])] = s
        im = left.imshow(grid, cmap="viridis", aspect="auto")
        left.set_xticks(range(len(xs)), [str(x) for x in xs])
        left.set_yticks(range(len(ys)), [str(y) for y in ys])
        left.set_xlabel(labels[1])
        left.set_ylabel(labels[0])
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not np.isnan(grid[i, j]):
                    bright = im.norm(grid[i, j]) > 0.6  # viridis turns yellow: dark text stays legible there
                    left.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                              color="k" if bright else "w")
        fig.colorbar(im, ax=left, label=main)
    else:
        names = [" ".join(f"{r[k]}" for k in labels) for r in rows]
        left.bar(range(len(rows)), np.nan_to_num(score))
        left.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=7)
        left.set_ylabel(main)
    left.set_title(f"{main} per cell")
    params = np.array([_num(r.get("params")) for r in rows])
    times = np.array([_num(r.get("time_s")) for r in rows])
    sc = right.scatter(params, score, c=times, cmap="plasma")
    for r, x, y in zip(rows, params, score):
        if np.isfinite(x) and np.isfinite(y):
            right.annotate(" x ".join(str(r[k]) for k in labels), (x, y), xytext=(4, 4), textcoords="offset points",
                           fontsize=7)
    if np.nanmin(params) > 0:
        right.set_xscale("log")
    right.set_xlabel("parameters")
    right.set_ylabel(main)
    right.set_title(f"{main} vs model size (points: {' x '.join(labels)}; colour: wall time, s)")
    fig.colorbar(sc, ax=right, label="time_s")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else float("nan")
