"""Rank statistics of benchmarks/ranking.py: how well one list of scores orders children against another, and
the best a ranker can do against noisy standalone trainings."""
from __future__ import annotations

import math

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
