"""Rank statistics of benchmarks/ranking.py: how well one list of scores orders children against another, and
the best a ranker can do against noisy standalone trainings; and the file of standalone trainings it keeps, one
JSON line per training, appended atomically."""
from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr


def ranks(values):
    """1 = best, ties share the better rank; NaN stays unranked."""
    ok = [i for i, v in enumerate(values) if math.isfinite(v)]
    out = [None] * len(values)
    for i, r in zip(ok, rankdata([-values[i] for i in ok], method="min")):
        out[i] = int(r)
    return out


def correlations(x, y) -> tuple[float, float]:
    """Kendall tau-b and Spearman rho. When either side scores every child alike it ranks nothing: both are
    0 (no concordance), not scipy's NaN. Fewer than two children: NaN."""
    if len(x) < 2:
        return math.nan, math.nan
    if len(set(x)) == 1 or len(set(y)) == 1:
        return 0.0, 0.0
    return float(kendalltau(x, y)[0]), float(spearmanr(x, y)[0])


def seed_agreement(per_seed: list[list[float]]) -> tuple[float, float]:
    """Mean Kendall tau and mean Pearson r over every pair of seeds' standalone scores (children as rows)."""
    taus, rs = [], []
    for a in range(len(per_seed)):
        for b in range(a + 1, len(per_seed)):
            x, y = np.asarray(per_seed[a]), np.asarray(per_seed[b])
            taus.append(correlations(list(x), list(y))[0])
            rs.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0)
    return float(np.mean(taus)), float(np.mean(rs))


def ceiling_tau(seed_r: float, seeds: int) -> float:
    """The Kendall tau a ranker that knows every child's true quality can expect against the mean of ``seeds``
    standalone trainings, when one training is that quality plus independent noise (Gaussian).

    Two seeds correlate at r = var(true) / var(one run), so the mean of K correlates with the truth at
    sqrt(1 / (1 + (1/r - 1) / K)) (Spearman-Brown), and tau = 2/pi * arcsin(correlation) for Gaussians. A
    supernet's tau is bounded by this, whatever it does."""
    if not seed_r > 0:
        return 0.0
    corr = math.sqrt(1.0 / (1.0 + (1.0 / min(seed_r, 1.0) - 1.0) / seeds))
    return 2.0 / math.pi * math.asin(corr)


def ceilings(per_seed: list[list[float]], ok: list[int]) -> dict:
    """Over the children ``ok``: the seed-against-seed Kendall tau and Pearson r, and the Spearman-Brown tau an
    oracle can expect against the seeds' mean; NaN with one seed or child."""
    if len(per_seed) < 2 or len(ok) < 2:
        return {"ceiling_tau": math.nan, "ceiling_tau_mean": math.nan}
    seed_tau, seed_r = seed_agreement([[column[i] for i in ok] for column in per_seed])
    return {"ceiling_tau": seed_tau, "seed_r": seed_r, "ceiling_tau_mean": ceiling_tau(seed_r, len(per_seed))}


def child_key(sample: dict) -> str:
    """A child's identity: its sample as canonical JSON (sorted keys, tuples as lists)."""
    return json.dumps(sample, sort_keys=True, separators=(",", ":"))


def load_trainings(path: str | Path) -> list[dict]:
    """Every line of a standalone-trainings file; none when it does not exist. A line that does not parse (one
    torn by a kill during its write) is skipped with a note, so the training it held runs again."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"{path}:{n}: not a JSON line, skipped")
    return out


def append_training(path: str | Path, line: dict) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor, fsynced: lines of runs killed
    or running side by side stay whole. NaN, which JSON lacks, is written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in line.items()}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":")) + "\n"
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        text = "\n" + text  # a torn last line must not swallow this one
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def matching_children(lines: list[dict], key: dict) -> tuple[list[dict], list[tuple[dict, float, int]]]:
    """The lines whose every field of ``key`` matches, and their distinct children (sample, GFLOPs, params), first
    seen first."""
    mine = [line for line in lines if all(line.get(field) == value for field, value in key.items())]
    children = {}
    for line in mine:
        children.setdefault(child_key(line["child"]), (line["child"], line["gflops"], line["params"]))
    return mine, list(children.values())


def git_commit(root: str | Path) -> str:
    """The commit the code ran at, with ``+dirty`` when tracked files outside ``benchmarks/results`` differ from
    it; ``unknown`` outside a git checkout."""
    def git(*argv):
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=True).stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def utc_now() -> str:
    """The time of a line, UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
