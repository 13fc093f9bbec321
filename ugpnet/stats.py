"""Uncertainty of a table cell, from its per-image values (the evaluation files keep them).

- :func:`bootstrap_ci`: the 95 % confidence interval of a mean over test images, by
  ``scipy.stats.bootstrap`` (percentile method; a fixed seed, so a table is reproducible). The
  percentile method, not BCa: BCa's jackknife acceleration is undefined for the tiny, often tied
  samples of the offline profiles (8 images), where it returns NaN.
- :func:`paired_wilcoxon`: the two-sided Wilcoxon signed-rank test of two methods on the SAME
  images (``scipy.stats.wilcoxon``; exact distribution for small samples), pairing by image id.

Both are thin on purpose: scipy does the statistics; this module pairs the images, handles the
degenerate cases (one image, all differences zero) with a reason instead of an exception, and
fixes the settings every table uses (:data:`CONFIDENCE`, :data:`RESAMPLES`, :data:`SEED`).
FID is a statistic of a whole set, not a mean of per-image values: it has no interval here.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0


def bootstrap_ci(values, confidence: float = CONFIDENCE, n_resamples: int = RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """``(low, high)`` of the ``confidence`` percentile-bootstrap interval of the mean of
    ``values`` (finite numbers); ``(mean, mean)`` for a constant sample, NaNs for fewer than
    two values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError("bootstrap_ci: a 1-D array of finite values is needed")
    if x.size < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True,
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_wilcoxon(a: Mapping[str, float], b: Mapping[str, float]) -> dict:
    """The two-sided Wilcoxon signed-rank test of ``a`` against ``b`` (image id -> value), on
    the images both have: ``{n, statistic, p, median_diff, note}``. ``p`` is NaN, with the
    ``note`` saying why, when there are fewer than two pairs or every difference is zero."""
    from scipy import stats

    ids = sorted(set(a) & set(b))
    x = np.array([float(a[i]) for i in ids])
    y = np.array([float(b[i]) for i in ids])
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"n": int(x.size), "statistic": math.nan, "p": math.nan,
           "median_diff": float(np.median(x - y)) if x.size else math.nan, "note": ""}
    if x.size < 2:
        out["note"] = "fewer than two paired images"
    elif np.all(x == y):
        out["note"] = "identical on every image"
    else:
        res = stats.wilcoxon(x, y, alternative="two-sided")
        out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out
