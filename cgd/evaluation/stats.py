"""Statistics for evaluation: bootstrap CIs, paired differences against the base model, pass@k.

Accuracies are in percent, as the paper's tables report them. CIs are percentile bootstrap
intervals over problems (scipy.stats.bootstrap) with a fixed seed, so a rerun on the same
outputs reports the same interval.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def mean_ci(values: Sequence[float], resamples: int, seed: int, confidence: float = 0.95,
            scale: float = 100.0) -> dict:
    """Mean of per-problem scores (0..1) in percent, with its bootstrap CI; `scale` 1 for a mean of
    counts (words per response).

    With fewer than two problems there is no interval to report: ci_low and ci_high are None.
    """
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    out = {"n": int(x.size), "mean": round(scale * float(x.mean()), 2), "ci_low": None, "ci_high": None}
    if x.size >= 2:
        if np.all(x == x[0]):  # every resample has the same mean
            lo = hi = float(x[0])
        else:
            res = bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=confidence,
                            method="percentile", rng=_rng(seed))
            lo, hi = res.confidence_interval
        out["ci_low"], out["ci_high"] = round(scale * float(lo), 2), round(scale * float(hi), 2)
    return out


def paired_difference(a: Sequence[float], b: Sequence[float], resamples: int, seed: int,
                      confidence: float = 0.95) -> dict:
    """Mean of a - b over the same problems, in points, with a paired bootstrap CI; for 0/1
    scores also the exact McNemar p-value (a binomial test on the discordant pairs)."""
    from scipy.stats import binomtest, bootstrap

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        return {"n": 0, "diff": None, "ci_low": None, "ci_high": None, "p_value": None}
    d = a - b
    out = {"n": int(a.size), "diff": round(100 * float(d.mean()), 2), "ci_low": None, "ci_high": None,
           "p_value": None}
    if a.size >= 2:
        if np.all(d == d[0]):
            lo = hi = float(d[0])
        else:
            res = bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                            paired=True, n_resamples=resamples, confidence_level=confidence,
                            method="percentile", rng=_rng(seed))
            lo, hi = res.confidence_interval
        out["ci_low"], out["ci_high"] = round(100 * float(lo), 2), round(100 * float(hi), 2)
    if set(np.unique(a)) <= {0.0, 1.0} and set(np.unique(b)) <= {0.0, 1.0}:
        wins, losses = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        out["wins"], out["losses"] = wins, losses
        out["p_value"] = 1.0 if wins + losses == 0 else round(float(binomtest(wins, wins + losses).pvalue), 4)
    return out


def paired_t(a: Sequence[float], b: Sequence[float], resamples: int, seed: int,
             confidence: float = 0.95) -> dict:
    """A continuous paired comparison in the measure's own units (entropy, gradient norm): means,
    mean(a - b) with a bootstrap CI, the paired t-test's t and p, and the paper's significance
    stars (* p < 0.05, ** < 0.01, *** < 0.001)."""
    from scipy.stats import bootstrap, ttest_rel

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    out = {"n": int(a.size), "mean_a": None, "mean_b": None, "diff": None, "ci_low": None,
           "ci_high": None, "t": None, "p_value": None, "stars": ""}
    if a.size == 0:
        return out
    d = a - b
    out.update(mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(d.mean()))
    if a.size >= 2 and not np.all(d == d[0]):
        res = bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=confidence,
                        method="percentile", rng=_rng(seed))
        out["ci_low"], out["ci_high"] = (float(x) for x in res.confidence_interval)
        test = ttest_rel(a, b)
        out["t"], out["p_value"] = float(test.statistic), float(test.pvalue)
        p = out["p_value"]
        out["stars"] = "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
    return out


def paired_group_difference(pairs: dict[str, tuple[Sequence[float], Sequence[float]]], resamples: int,
                            seed: int, confidence: float = 0.95) -> dict:
    """A group average's paired difference: the plain mean over benchmarks of mean(a - b) (the
    paper's Avg. weighs benchmarks equally), a bootstrap CI resampling problems within each
    benchmark, and the exact McNemar p-value over all the group's discordant pairs."""
    from scipy.stats import binomtest

    diffs = {k: np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for k, (a, b) in pairs.items()}
    diffs = {k: d for k, d in diffs.items() if d.size}
    if not diffs:
        return {"n": 0, "benchmarks": [], "diff": None, "ci_low": None, "ci_high": None, "p_value": None}
    rng = _rng(seed)
    point = float(np.mean([d.mean() for d in diffs.values()]))
    boot = np.mean([d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
                    for d in diffs.values()], axis=0)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    out = {"n": int(sum(d.size for d in diffs.values())), "benchmarks": sorted(diffs),
           "diff": round(100 * point, 2), "ci_low": round(100 * float(lo), 2),
           "ci_high": round(100 * float(hi), 2), "p_value": None}
    every = np.concatenate(list(diffs.values()))
    if set(np.unique(every)) <= {-1.0, 0.0, 1.0}:
        wins, losses = int((every == 1).sum()), int((every == -1).sum())
        out["wins"], out["losses"] = wins, losses
        out["p_value"] = 1.0 if wins + losses == 0 else round(float(binomtest(wins, wins + losses).pvalue), 4)
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), for n samples with c correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))
