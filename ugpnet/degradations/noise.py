"""Poisson-Gaussian noise of the denoising task.

On ``x = img / 255`` in [0, 1], per pixel and channel independently::

    y = Poisson(k * x) / k + N(0, sigma^2)        (Poisson drawn first, then the Gaussian)

then clipped to [0, 1] and quantised to 8 bit by rounding ``255 * y``. Before clipping,
``E[y] = x`` and ``Var[y] = x / k + sigma^2`` (signal-dependent shot noise plus read noise).
"""
from __future__ import annotations

import numpy as np


def _check(sigma: float, k: float) -> None:
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"Poisson scale k must be > 0, got {k}")


def poisson_gaussian(x: np.ndarray, rng: np.random.Generator, *, sigma: float, k: float
                     ) -> np.ndarray:
    """Unclipped ``Poisson(k x)/k + N(0, sigma²)`` for ``x`` in [0, 1] (float64, same shape)."""
    _check(sigma, k)
    x = np.asarray(x, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("poisson_gaussian expects x in [0, 1]")
    y = rng.poisson(k * x).astype(np.float64)
    y /= k  # in place: the same float64 operations as ``poisson(..) / k``, one buffer less
    if sigma > 0:
        y += rng.normal(0.0, sigma, size=x.shape)
    return y


def add_noise(img_u8: np.ndarray, rng: np.random.Generator, *, sigma: float, k: float
              ) -> np.ndarray:
    """Noisy uint8 image: :func:`poisson_gaussian` on ``img/255``, clip to [0, 1], round."""
    y = poisson_gaussian(img_u8.astype(np.float64) / 255.0, rng, sigma=sigma, k=k)
    return quantise(y)


def quantise(y: np.ndarray) -> np.ndarray:
    """``round(clip(y, 0, 1) * 255)`` as uint8, in place on the float64 buffer ``y`` (bit-identical
    to the expression, without its three temporary arrays)."""
    np.clip(y, 0.0, 1.0, out=y)
    y *= 255.0
    np.round(y, out=y)
    return y.astype(np.uint8)
