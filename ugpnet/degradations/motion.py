"""Camera-shake motion-blur kernels (Boracchi & Foi 2012 trajectory model) and FFT blurring.

Trajectory model (our implementation of the random-motion model of G. Boracchi and A. Foi,
"Modeling the performance of image restoration from motion blur", IEEE TIP 21(8), 2012; the
synthetic-blur model the paper follows via Rim et al. 2020). A particle moves in the continuous
image plane for ``num_samples`` steps of constant length ``L / (num_samples - 1)`` so that every
trajectory with the full exposure has path length ``L``. At each step its velocity ``v`` receives

* an **impulsive shake** with probability ``p_big * anxiety``: ``2 v`` rotated by
  ``pi + U(-0.5, 0.5)`` rad (a likely reversal, e.g. pressing the shutter button),
* a **Gaussian jitter** ``anxiety * gaussian * (n_x + i n_y) * step`` (``n ~ N(0, 1)``),
* an **inertial (centripetal) pull** ``-anxiety * centripetal * x_t * step`` towards the start,

after which ``v`` is renormalised to the step length. Per kernel the model parameters are drawn as
in Boracchi's reference code: ``centripetal ~ U(0, 0.7)``, ``gaussian ~ U(0, 10)``,
``p_big ~ U(0, 0.2)``, initial direction ``~ U(0, 360)`` deg. Our documented choices:

* ``anxiety ~ U(0.003, 0.01)``, the range of the widely used DeblurGAN setting of the same model.
  Boracchi's own default ``U(0, 0.1)`` with 2000 samples mostly gives compact blobs (measured at
  K=71: mean extent 8 px for a mean path length of 49 px), not the long shake paths of a 71x71 bank;
* the exposure is ``U(exposure_min=0.5, 1)`` of the trajectory (Boracchi evaluates exposures
  1/1000 .. 1; we keep blurs long);
* ``L = length_per_size * (K - 1)`` with Boracchi's ratio 60/64, so the kernel size and the blur
  length scale together with the image resolution (:func:`kernel_size_for`).

Rasterisation: each exposed sample (sub-pixel position) is splatted bilinearly into the 4 nearest
kernel pixels with equal weight (equal time per sample), then the kernel is divided by its sum.
The trajectory is shifted so that its centre of mass sits on the kernel centre ``(K-1)/2`` (a blur
then does not translate the image on average), clamped so the support stays inside ``K x K``
(always possible because the extent never exceeds ``L < K - 1``).

Determinism: kernel ``i`` of a bank uses its own stream
``default_rng(SeedSequence([seed, i]))``, so a bank of N kernels is a prefix of a larger bank with
the same seed and size, and results do not depend on batching.

Bank files: ``FILE.npy`` (float32 ``[N, K, K]``) and a sidecar ``FILE.json`` (seed, N, size,
generator parameters, statistics, sha256 of the .npy). Both are written atomically, the .json last.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import DataError

#: Generator parameters (recorded in every bank manifest).
DEFAULT_GENERATOR: dict = {
    "model": "boracchi_foi_2012",
    "num_samples": 2000,           # trajectory samples (sub-pixel positions)
    "length_per_size": 60.0 / 64.0,  # full-exposure path length L = this * (K - 1) pixels
    "anxiety_min": 0.003,          # anxiety ~ U(anxiety_min, anxiety_max): amount of shake
    "anxiety_max": 0.01,
    "centripetal_max": 0.7,        # inertial pull towards the start ~ U(0, centripetal_max)
    "gaussian_max": 10.0,          # Gaussian jitter strength ~ U(0, gaussian_max)
    "big_shake_prob_max": 0.2,     # impulsive shake probability p_big ~ U(0, this), times anxiety
    "exposure_min": 0.5,           # exposed fraction of the trajectory ~ U(exposure_min, 1)
    "centering": "center_of_mass",
    "rasterisation": "bilinear_splat",
}

_CHUNK = 128  # kernels generated together (vectorised recurrence); results do not depend on it


def kernel_size_for(resolution: int, base_size: int = 71, base_resolution: int = 512) -> int:
    """Odd kernel size nearest to ``base_size * resolution / base_resolution``, at least 7.

    512 px → 71, 256 → 35, 128 → 17, 64 → 9, 32 → 7 (ties go to the larger odd size).
    """
    if resolution <= 0 or base_size <= 0 or base_resolution <= 0:
        raise ValueError("kernel_size_for: resolution, base_size and base_resolution must be > 0")
    x = base_size * resolution / base_resolution
    k = int(math.floor((x - 1.0) / 2.0 + 0.5)) * 2 + 1
    return max(7, k)


def _generator_params(overrides: Mapping | None) -> dict:
    params = dict(DEFAULT_GENERATOR)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_GENERATOR:
            raise ValueError(f"unknown motion-kernel generator parameter '{key}'; known: "
                             f"{sorted(DEFAULT_GENERATOR)}")
        params[key] = value
    if int(params["num_samples"]) < 2:
        raise ValueError("num_samples must be at least 2")
    if not 0.0 <= float(params["anxiety_min"]) <= float(params["anxiety_max"]):
        raise ValueError("need 0 <= anxiety_min <= anxiety_max")
    if not 0.0 < float(params["exposure_min"]) <= 1.0:
        raise ValueError("exposure_min must be in (0, 1]")
    if not 0.0 < float(params["length_per_size"]) <= 1.0:
        raise ValueError("length_per_size must be in (0, 1] so the trajectory fits the kernel")
    return params


def _draw(seed: int, index: int, n_steps: int, p: Mapping) -> dict:
    """All random numbers of kernel ``index`` from its own stream (fixed draw order)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    d = {
        "anxiety": rng.uniform(p["anxiety_min"], p["anxiety_max"]),
        "centripetal": rng.uniform(0.0, p["centripetal_max"]),
        "gaussian": rng.uniform(0.0, p["gaussian_max"]),
        "big_shake_prob": rng.uniform(0.0, p["big_shake_prob_max"]),
        "init_angle_deg": rng.uniform(0.0, 360.0),
        "exposure": rng.uniform(p["exposure_min"], 1.0),
    }
    d["shake_u"] = rng.random(n_steps)
    shake_angle = np.pi + (rng.random(n_steps) - 0.5)
    d["shake_cos"], d["shake_sin"] = np.cos(shake_angle), np.sin(shake_angle)
    d["jitter"] = rng.standard_normal((n_steps, 2))
    return d


def random_trajectories(seed: int, indices, size: int, generator: Mapping | None = None
                        ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Trajectories of kernels ``indices`` of the bank ``(seed, size)``.

    Returns ``(xy [n, num_samples, 2] float64 in pixels, start at 0), exposure [n], info list)``.
    """
    p = _generator_params(generator)
    T = int(p["num_samples"])
    step = p["length_per_size"] * (size - 1) / (T - 1)
    draws = [_draw(seed, i, T - 1, p) for i in indices]
    n = len(draws)
    col = lambda key: np.array([d[key] for d in draws], dtype=np.float64)  # noqa: E731
    anxiety, centripetal, gaussian = col("anxiety"), col("centripetal"), col("gaussian")
    p_big = col("big_shake_prob") * anxiety
    angle = np.deg2rad(col("init_angle_deg"))
    shake_u = np.stack([d["shake_u"] for d in draws])
    shake_c = np.stack([d["shake_cos"] for d in draws])
    shake_s = np.stack([d["shake_sin"] for d in draws])
    jitter = np.stack([d["jitter"] for d in draws])

    v0x, v0y = np.cos(angle), np.sin(angle)
    speed0 = np.where(anxiety > 0, anxiety, step)
    vx, vy = v0x * speed0, v0y * speed0
    x = np.zeros((n, T))
    y = np.zeros((n, T))
    shakes = np.zeros(n, dtype=np.int64)
    for t in range(T - 1):
        big = shake_u[:, t] < p_big
        shakes += big
        # impulsive shake: 2 v rotated by (pi + U(-0.5, 0.5))
        nx = np.where(big, 2.0 * (vx * shake_c[:, t] - vy * shake_s[:, t]), 0.0)
        ny = np.where(big, 2.0 * (vx * shake_s[:, t] + vy * shake_c[:, t]), 0.0)
        dvx = nx + anxiety * (gaussian * jitter[:, t, 0] - centripetal * x[:, t]) * step
        dvy = ny + anxiety * (gaussian * jitter[:, t, 1] - centripetal * y[:, t]) * step
        wx, wy = vx + dvx, vy + dvy
        norm = np.sqrt(wx * wx + wy * wy)
        ok = norm > 0
        safe = np.where(ok, norm, 1.0)
        # renormalise to the step length (keep the previous direction if v vanished)
        pnorm = np.sqrt(vx * vx + vy * vy)
        vx = np.where(ok, wx / safe, vx / pnorm) * step
        vy = np.where(ok, wy / safe, vy / pnorm) * step
        x[:, t + 1] = x[:, t] + vx
        y[:, t + 1] = y[:, t] + vy
    info = [{"anxiety": float(a), "centripetal": float(c), "gaussian": float(g),
             "big_shake_prob": float(b), "n_big_shakes": int(s)}
            for a, c, g, b, s in zip(anxiety, centripetal, gaussian, col("big_shake_prob"),
                                     shakes)]
    return np.stack([x, y], axis=-1), col("exposure"), info


def rasterize(xy: np.ndarray, size: int) -> np.ndarray:
    """Splat points ``xy [n, 2]`` (x = column, y = row, pixels) bilinearly into a ``size²`` kernel.

    The points are first moved so their mean is the kernel centre (clamped to keep all of them
    inside ``[0, size-1]``). Returns float64, sum 1.
    """
    xy = np.asarray(xy, dtype=np.float64)
    c = (size - 1) / 2.0
    shift = c - xy.mean(axis=0)
    lo, hi = xy.min(axis=0) + shift, xy.max(axis=0) + shift
    if np.any(hi - lo > size - 1):
        raise ValueError(f"trajectory extent {hi - lo} does not fit a {size}x{size} kernel")
    shift = shift + np.maximum(0.0, -lo) - np.maximum(0.0, hi - (size - 1))
    pts = xy + shift
    f = np.clip(np.floor(pts), 0, size - 2).astype(np.int64)
    w = np.clip(pts - f, 0.0, 1.0)
    k = np.zeros(size * size, dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            wt = (w[:, 0] if dx else 1.0 - w[:, 0]) * (w[:, 1] if dy else 1.0 - w[:, 1])
            np.add.at(k, (f[:, 1] + dy) * size + (f[:, 0] + dx), wt)
    k = k.reshape(size, size)
    return k / k.sum()


def generate_kernel_bank(n: int, size: int, seed: int, generator: Mapping | None = None,
                         progress: bool = False) -> tuple[np.ndarray, dict]:
    """``n`` motion kernels ``float32 [n, size, size]`` (non-negative, each sums to 1) + statistics.

    ``size`` must be odd (the kernel has a centre pixel). Deterministic in
    ``(seed, size, generator)``.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    if n < 1:
        raise ValueError(f"number of kernels must be >= 1, got {n}")
    p = _generator_params(generator)
    T = int(p["num_samples"])
    L = p["length_per_size"] * (size - 1)
    bank = np.zeros((n, size, size), dtype=np.float32)
    lengths, extents, supports, shakes = [], [], [], []
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="kernels", disable=not progress, dynamic_ncols=True)
    for start in range(0, n, _CHUNK):
        idx = list(range(start, min(n, start + _CHUNK)))
        xy, exposure, info = random_trajectories(seed, idx, size, p)
        for j, i in enumerate(idx):
            n_exp = max(2, int(round(exposure[j] * T)))
            pts = xy[j, :n_exp]
            k = rasterize(pts, size)
            k32 = k.astype(np.float32)
            bank[i] = k32 / k32.sum(dtype=np.float64)
            lengths.append(L * (n_exp - 1) / (T - 1))
            extents.append(float((pts.max(axis=0) - pts.min(axis=0)).max()))
            supports.append(int(np.count_nonzero(bank[i])))
            shakes.append(info[j]["n_big_shakes"])
        bar.update(len(idx))
    bar.close()
    stats = {
        "mean_trajectory_length_px": float(np.mean(lengths)),
        "min_trajectory_length_px": float(np.min(lengths)),
        "max_trajectory_length_px": float(np.max(lengths)),
        "mean_extent_px": float(np.mean(extents)),
        "mean_support_px": float(np.mean(supports)),
        "min_support_px": int(np.min(supports)),
        "mean_big_shakes": float(np.mean(shakes)),
    }
    return bank, stats


def bank_manifest_path(path: str | os.PathLike) -> Path:
    """Sidecar manifest of a bank: ``FILE.npy`` → ``FILE.json``."""
    return Path(path).with_suffix(".json")


def write_kernel_bank(path: str | os.PathLike, n: int, size: int, seed: int, *,
                      resolution: int | None = None, generator: Mapping | None = None,
                      progress: bool = False) -> dict:
    """Generate and store a bank: ``path`` (.npy), then its manifest ``FILE.json`` (last)."""
    from ..io import atomic_path, atomic_write_json, sha256_file

    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"kernel bank file must end with .npy, got '{path}'")
    manifest_path = bank_manifest_path(path)
    manifest_path.unlink(missing_ok=True)  # the manifest is the "done" marker: invalidate first
    bank, stats = generate_kernel_bank(n, size, seed, generator, progress=progress)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, bank, allow_pickle=False)
    manifest = {
        "tool": "ugpnet kernels",
        "file": path.name,
        "seed": int(seed),
        "n": int(n),
        "size": int(size),
        "resolution": None if resolution is None else int(resolution),
        "dtype": "float32",
        "shape": list(bank.shape),
        "generator": _generator_params(generator),
        "stats": stats,
        "rng": "kernel i: numpy.random.default_rng(SeedSequence([seed, i]))",
        "numpy_version": np.__version__,
        "sha256": sha256_file(path),
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def load_kernel_bank_with_manifest(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Load a bank and check it against its manifest (sha256, shape, sum 1, non-negative)."""
    import json

    from ..io import sha256_file

    path = Path(path)
    fix = (f"Regenerate it with: ugpnet kernels --out {path} --n N --resolution R --seed S")
    if not path.is_file():
        raise DataError(f"kernel bank '{path}' does not exist. {fix}")
    mpath = bank_manifest_path(path)
    if not mpath.is_file():
        raise DataError(f"kernel bank '{path}' has no manifest '{mpath}' (it was not written by "
                        f"ugpnet kernels, or the run was interrupted). {fix}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"kernel bank manifest '{mpath}' cannot be read ({e}). {fix}") from None
    sha = sha256_file(path)
    if manifest.get("sha256") != sha:
        raise DataError(f"kernel bank '{path}' does not match its manifest '{mpath}' (sha256 "
                        f"{sha[:12]}… vs {str(manifest.get('sha256'))[:12]}…). {fix}")
    try:
        bank = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"kernel bank '{path}' cannot be read ({e}). {fix}") from None
    check_kernels(bank, str(path))
    if list(bank.shape) != list(manifest.get("shape", [])):
        raise DataError(f"kernel bank '{path}' has shape {bank.shape}, its manifest says "
                        f"{manifest.get('shape')}. {fix}")
    return bank, manifest


def load_kernel_bank(path: str | os.PathLike) -> np.ndarray:
    """Kernel bank ``float32 [N, K, K]`` from ``path`` (verified against ``path.json``)."""
    return load_kernel_bank_with_manifest(path)[0]


def check_kernels(bank: np.ndarray, what: str = "kernel bank") -> None:
    """Raise DataError unless ``bank`` is ``[N, K, K]`` (K odd), finite, >= 0, each summing to 1."""
    if bank.ndim != 3 or bank.shape[1] != bank.shape[2] or bank.shape[1] % 2 == 0:
        raise DataError(f"{what}: expected kernels [N, K, K] with K odd, got shape {bank.shape}")
    if not np.all(np.isfinite(bank)) or (bank < 0).any():
        raise DataError(f"{what}: kernels must be finite and non-negative")
    sums = bank.reshape(len(bank), -1).sum(axis=1, dtype=np.float64)
    if np.abs(sums - 1.0).max() > 1e-4:
        worst = sums[np.argmax(np.abs(sums - 1))]
        raise DataError(f"{what}: every kernel must sum to 1 (worst: {worst})")


def blur_float(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve float ``x [H, W, C]`` with ``kernel [K, K]`` (K odd); float64 ``[H, W, C]``.

    True convolution (not correlation): an impulse at ``(r, c)`` becomes the kernel itself,
    unflipped, centred on ``(r, c)``. Boundary: the image is reflect-padded (``numpy.pad`` mode
    'reflect', mirror without repeating the edge pixel) by the kernel radius and the FFT
    convolution keeps the 'valid' part, so the output has the input's size, a constant image stays
    constant, and no dark frame (zero padding) or wrapped-around content (circular FFT) appears
    at the borders: artefacts a network could learn as a shortcut and that real photographs do
    not have.
    """
    from scipy.signal import fftconvolve

    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd size, got {k.shape}")
    k = k / k.sum()
    r = k.shape[0] // 2
    x = np.asarray(x, dtype=np.float64)
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    out = fftconvolve(padded, k[:, :, None], mode="valid", axes=(0, 1))
    assert out.shape == x.shape, (out.shape, x.shape)
    return out


def blur(img_u8: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur a uint8 RGB image with ``kernel`` (see :func:`blur_float`); clip, round → uint8."""
    from .noise import quantise

    return quantise(blur_float(img_u8.astype(np.float64) / 255.0, kernel))
