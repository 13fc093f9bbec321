"""FID (Heusel et al. 2017) with pytorch-fid: ``InceptionV3([3])`` pool3 features (2048-d) of the TF
Inception 2015-12-05 network and the Fréchet distance of ``calculate_frechet_distance`` (its trace
term evaluated exactly by eigendecomposition; see :func:`frechet_distance`).

Protocol (same as the ``pytorch-fid`` command line): each 8-bit RGB image becomes a float tensor in
[0, 1], is resized bilinearly to 299x299 (``align_corners=False``) and scaled to [-1, 1] inside
``InceptionV3``; ``mu`` is the mean and ``sigma`` the ``np.cov(rowvar=False)`` of the float64 features.
Weights come from :mod:`ugpnet.pretrained` (offline). FID from fewer than 2,048 images is biased
upwards (the covariance is rank-deficient); result files carry a warning in that case. FID needs at
least 2 images per set.

Reference statistics of an image folder are cached under ``$UGPNET_CACHE/fid_stats/`` keyed by the
sha256 of the sorted file names and file contents (``ugpnet cache`` lists and prunes them;
``$UGPNET_FID_CACHE_MAX_MB`` caps the total size, least recently used entries go first); ``.npz`` files with ``mu``/``sigma`` (as
``pytorch-fid --save-stats`` writes them) are accepted as references too.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_path, list_images, read_image, sha256_file
from ..pretrained import build_fid_inception_skeleton, cache_dir, fid_inception_state, skipped_init

FID_DIMS = 2048
FID_MIN_IMAGES = 2
FID_UNBIASED_MIN = 2048
FID_STATS_TAG = "ugpnet-fid-stats/1 tf-inception-2015-12-05 pool3-2048 bilinear-299 [0,1]->[-1,1]"
FID_BIAS_WARNING = ("FID below 2,048 images is biased (the 2048x2048 feature covariance is "
                    "rank-deficient, so values are inflated and only comparable at equal image "
                    "counts)")

_build_lock = threading.Lock()
_models: dict = {}
_models_lock = threading.Lock()


def _torch_device(device: str):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available; use --device cpu.")
    return dev


def get_fid_model(device: str = "cpu"):
    """pytorch-fid ``InceptionV3([BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
    normalize_input=True, use_fid_inception=True)`` with offline weights, eval, frozen.

    Input: ``[N,3,H,W]`` float in [0, 1]; output: list with one ``[N,2048,1,1]`` tensor."""
    from unittest import mock

    import torch
    from pytorch_fid import inception as pfi

    dev = _torch_device(device)
    with skipped_init():  # every tensor is loaded below, fc (unused by pool3) zeroed
        net = build_fid_inception_skeleton()
    state, _ = fid_inception_state()
    with torch.no_grad():
        for t in net.state_dict().values():
            t.zero_()
    result = net.load_state_dict(state, strict=False)
    allowed = {"fc.weight", "fc.bias"} | {k for k in net.state_dict() if k.endswith("num_batches_tracked")}
    bad = [k for k in result.missing_keys if k not in allowed] + list(result.unexpected_keys)
    if bad:
        raise AssertionError(f"FID Inception state does not fit: {bad[:5]}")
    # InceptionV3 fetches its weights inside fid_inception_v3(); hand it ours instead (no download).
    with _build_lock, mock.patch.object(pfi, "fid_inception_v3", lambda: net):
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]], resize_input=True,
                                normalize_input=True, use_fid_inception=True)
    model.eval().requires_grad_(False)
    return model.to(dev)


def _shared_model(device: str):
    """One FID model per device per process (it is frozen and stateless)."""
    key = (str(device), str(cache_dir()))
    with _models_lock:
        if key not in _models:
            _models[key] = get_fid_model(device)
        return _models[key]


def fid_weights_info() -> dict:
    _, info = fid_inception_state()
    return info


class ActivationCollector:
    """Feeds uint8 images to the FID Inception in batches (consecutive images of equal size) and
    keeps the float64 pool3 features."""

    def __init__(self, model, device: str = "cpu", batch_size: int = 50):
        if batch_size < 1:
            raise ConfigError("FID batch size must be at least 1.")
        self.model, self.device, self.batch_size = model, device, batch_size
        self._pending: list = []
        self._chunks: list[np.ndarray] = []

    def add(self, img: np.ndarray) -> None:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"FID expects uint8 [H,W,3] images, got {img.dtype} {img.shape}")
        if self._pending and self._pending[0].shape != img.shape:
            self.flush()
        self._pending.append(img)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        import torch

        if not self._pending:
            return
        x = torch.from_numpy(np.stack(self._pending)).permute(0, 3, 1, 2).float().div_(255.0)
        self._pending = []
        with torch.no_grad():
            feat = self.model(x.to(self.device))[0]
        if feat.shape[1:] != (FID_DIMS, 1, 1):
            raise AssertionError(f"unexpected Inception output shape {tuple(feat.shape)}")
        self._chunks.append(feat.reshape(feat.shape[0], FID_DIMS).cpu().numpy().astype(np.float64))

    def activations(self) -> np.ndarray:
        self.flush()
        if not self._chunks:
            return np.zeros((0, FID_DIMS))
        return np.concatenate(self._chunks, axis=0)


def activation_statistics(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` as pytorch-fid: mean and ``np.cov(rowvar=False)`` of ``[N, 2048]`` features."""
    if act.ndim != 2 or act.shape[0] < FID_MIN_IMAGES:
        raise DataError(f"FID needs at least {FID_MIN_IMAGES} images per set (got {act.shape[0]}); "
                        f"it is undefined for fewer.")
    return np.mean(act, axis=0), np.cov(act, rowvar=False)


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """``B`` with ``B @ B.T == sigma`` for a symmetric PSD matrix (negative round-off clipped)."""
    lam, vec = np.linalg.eigh((sigma + sigma.T) * 0.5)
    keep = lam > 0
    return vec[:, keep] * np.sqrt(lam[keep])


def activation_factor(act: np.ndarray) -> np.ndarray | None:
    """``B`` with ``B @ B.T == np.cov(act, rowvar=False)`` straight from ``[N, 2048]`` features
    (``B = (act - mean).T / sqrt(N - 1)``, 2048 x N), or None when ``N > 2048`` (then the
    eigendecomposition of the covariance is not more expensive than this)."""
    n = act.shape[0]
    if n < FID_MIN_IMAGES or n > FID_DIMS:
        return None
    xc = act - np.mean(act, axis=0)
    return np.ascontiguousarray(xc.T / np.sqrt(n - 1.0))


def _sigma_key(sigma: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(sigma, dtype=np.float64).tobytes()).hexdigest()[:40]


def factor_cache_path(sigma: np.ndarray) -> Path:
    return stats_cache_dir() / f"factor-{_sigma_key(sigma)}.npy"


def store_factor(sigma: np.ndarray, factor: np.ndarray) -> None:
    """Cache ``factor`` (``B B^T == sigma``) under the sha256 of ``sigma``'s bytes."""
    path = factor_cache_path(sigma)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(factor, dtype=np.float64), allow_pickle=False)
    _apply_size_limit(path)


def reference_factor(sigma: np.ndarray) -> np.ndarray:
    """The PSD factor of a reference covariance, computed once per covariance and cached on disk
    (``$UGPNET_CACHE/fid_stats/factor-<sha256 of sigma>.npy``): the eigendecomposition of a
    2048x2048 matrix takes 5-15 s on a 2-core CPU, and the reference (the test set) is the same
    for every method scored against it."""
    sigma = np.ascontiguousarray(sigma, dtype=np.float64)
    path = factor_cache_path(sigma)
    if path.is_file():
        try:
            b = np.load(path, allow_pickle=False)
            if b.ndim == 2 and b.shape[0] == sigma.shape[0]:
                _touch(path)
                return b
        except (ValueError, OSError):
            pass  # damaged entry: recompute and overwrite
    b = _psd_factor(sigma)
    try:
        store_factor(sigma, b)
    except OSError:
        pass  # read-only cache: still correct, just not faster next time
    return b


def frechet_distance(mu1, sigma1, mu2, sigma2, factor1=None, factor2=None
                     ) -> tuple[float, str | None]:
    """pytorch-fid's Fréchet distance ``|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``.

    Why not call ``pytorch_fid.fid_score.calculate_frechet_distance`` directly: its
    ``scipy.linalg.sqrtm`` of the 2048x2048 product takes 13-44 s per call on a 2-core CPU (scipy
    1.17), which dominated the whole offline run. ``tr sqrt(S1 S2)`` is evaluated exactly instead:
    with ``S = B B^T``, the eigenvalues of ``S1 S2`` are the squared singular values of
    ``B1^T B2``, so ``tr sqrt(S1 S2) = ||B1^T B2||_*`` for any such factors. ``factor1``/``factor2``
    are optional precomputed ``B`` (:func:`activation_factor` of the features, or
    :func:`reference_factor`); otherwise ``B`` comes from an eigendecomposition. Tests check
    equality with ``calculate_frechet_distance`` (the same formula); returns ``(fid, note)``.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise DataError(f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma "
                        f"{s1.shape} vs {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise DataError("FID could not be computed: non-finite statistics (too few or identical "
                        "images); use more images.")
    diff = mu1 - mu2
    b1 = _psd_factor(s1) if factor1 is None else np.asarray(factor1, dtype=np.float64)
    b2 = _psd_factor(s2) if factor2 is None else np.asarray(factor2, dtype=np.float64)
    tr_covmean = float(np.linalg.svd(b1.T @ b2, compute_uv=False).sum()) if b1.size and b2.size \
        else 0.0
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return value, None


def _features_fid(a: np.ndarray, b: np.ndarray | None = None, ref_mu=None, ref_factor=None
                  ) -> float:
    """FID of the feature rows ``a`` against the rows ``b`` (or a fixed reference ``ref_mu`` with
    ``ref_factor``, ``B B^T == sigma``), the same formula as :func:`frechet_distance` computed
    from centred features: ``tr(S) = ||B||_F^2`` and ``tr sqrt(S1 S2) = ||B1^T B2||_*``, so no
    2048x2048 matrix is formed (an ``n x n`` SVD per call)."""
    n = a.shape[0]
    ba = (a - a.mean(axis=0)) / np.sqrt(n - 1.0)  # n x d: B^T
    if b is not None:
        bb = (b - b.mean(axis=0)) / np.sqrt(b.shape[0] - 1.0)
        mu2, tr2, cross = b.mean(axis=0), float(np.sum(bb * bb)), ba @ bb.T
    else:
        rf = np.asarray(ref_factor, dtype=np.float64)
        mu2, tr2, cross = np.asarray(ref_mu, dtype=np.float64), float(np.sum(rf * rf)), ba @ rf
    diff = a.mean(axis=0) - mu2
    nuclear = float(np.linalg.svd(cross, compute_uv=False).sum()) if cross.size else 0.0
    return float(diff @ diff + np.sum(ba * ba) + tr2 - 2.0 * nuclear)


def bootstrap_fid(pred_acts: np.ndarray, gt_acts: np.ndarray | None = None, *, ref_mu=None,
                  ref_factor=None, confidence: float = 0.95, n_resamples: int = 999,
                  max_images: int = 500, seed: int = 0) -> dict:
    """The percentile-bootstrap interval of FID over the test images (``scipy.stats.bootstrap``
    over image indices, ``n_resamples``, fixed ``seed``).

    With ``gt_acts`` (the paired ground truth, row ``i`` of both is image ``i``) every resample
    draws image ids with replacement and takes BOTH sets' rows for those ids: the interval is the
    spread of FID over resampled test sets. With a fixed reference (``ref_mu``, ``ref_factor``)
    only the restored set is resampled. A resample repeats images, which lowers both covariances'
    rank, so the bootstrap FIDs can be biased against the full-set value: read the interval as
    the sampling spread, as the table notes say.

    Returns ``{ci_low, ci_high, n_resamples, confidence, method, n_images, paired}`` or, when it
    is not affordable here (more than ``max_images`` images: an ``n x n`` SVD per resample) or
    undefined (fewer than 3 images), ``{skipped: <reason>, n_images}``."""
    from scipy import stats

    a = np.asarray(pred_acts, dtype=np.float64)
    n = a.shape[0]
    if n < 3:
        return {"skipped": f"fewer than 3 images ({n})", "n_images": n}
    if n > max_images:
        return {"skipped": (f"{n} images: above metrics.fid_bootstrap.max_images ({max_images}); "
                            f"each of {n_resamples} resamples takes an {n}x{n} SVD, hours on a "
                            f"CPU: raise the limit where it is affordable (a GPU machine)"),
                "n_images": n}
    b = None if gt_acts is None else np.asarray(gt_acts, dtype=np.float64)
    if b is not None and b.shape[0] != n:
        raise DataError(f"bootstrap_fid: {n} restored and {b.shape[0]} ground-truth feature rows; "
                        f"the paired bootstrap needs one of each per image")

    def statistic(idx):
        idx = np.asarray(idx, dtype=np.int64)
        if b is not None:
            return _features_fid(a[idx], b[idx])
        return _features_fid(a[idx], ref_mu=ref_mu, ref_factor=ref_factor)

    res = stats.bootstrap((np.arange(n),), statistic, vectorized=False, paired=False,
                          confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return {"ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high), "n_resamples": int(n_resamples),
            "confidence": confidence, "method": "percentile bootstrap over test images "
            "(scipy.stats.bootstrap)" + (", paired with the ground truth" if b is not None
                                          else ", reference fixed"),
            "seed": seed, "n_images": n, "paired": b is not None}


def load_stats_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` [2048] and ``sigma`` [2048,2048] from an ``.npz`` as pytorch-fid saves it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FID reference statistics '{path}' do not exist. Give an .npz with 'mu' "
                        f"and 'sigma' (pytorch-fid --save-stats) or use --fid-ref gt.")
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = np.asarray(f["mu"], dtype=np.float64), np.asarray(f["sigma"], dtype=np.float64)
    except KeyError:
        raise DataError(f"FID reference statistics '{path}' need arrays 'mu' and 'sigma'.") from None
    except (ValueError, OSError) as e:
        raise DataError(f"FID reference statistics '{path}' cannot be read ({e}).") from None
    if mu.shape != (FID_DIMS,) or sigma.shape != (FID_DIMS, FID_DIMS):
        raise DataError(f"FID reference statistics '{path}' have mu {mu.shape} and sigma "
                        f"{sigma.shape}; expected ({FID_DIMS},) and ({FID_DIMS}, {FID_DIMS}) "
                        f"(Inception pool3 features).")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DataError(f"FID reference statistics '{path}' contain non-finite values.")
    return mu, sigma


def folder_stats_key(files: Sequence[os.PathLike]) -> str:
    """sha256 of the protocol tag, sorted file names and file sha256s (content-addressed cache key)."""
    h = hashlib.sha256(FID_STATS_TAG.encode() + b"\n")
    for p in sorted(files, key=lambda q: Path(q).name):
        h.update(Path(p).name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def stats_cache_path(key: str) -> Path:
    return stats_cache_dir() / f"{key}.npz"


def _save_stats(path: Path, mu, sigma, n: int, features=None) -> None:
    """``features``: the ``[n, 2048]`` activations themselves, kept (float32) for the FID
    bootstrap of later evaluations against the same set (:func:`cached_folder_features`)."""
    extra = {} if features is None else {"features": np.asarray(features, dtype=np.float32)}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, n=np.int64(n), tag=np.array(FID_STATS_TAG), **extra)
    _apply_size_limit(path)


def cached_folder_features(path: Path) -> np.ndarray | None:
    """The per-image activations a stats cache entry keeps (float64), None when it has none."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["tag"]) == FID_STATS_TAG and "features" in f.files:
                return f["features"].astype(np.float64)
    except (KeyError, ValueError, OSError):
        pass
    return None


def cached_folder_stats(files: Sequence[os.PathLike]):
    """``(mu, sigma, n, cache_path)`` if cached for exactly these files, else ``(None, None, 0, path)``."""
    path = stats_cache_path(folder_stats_key(files))
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["tag"]) == FID_STATS_TAG:
                    _touch(path)
                    return f["mu"].astype(np.float64), f["sigma"].astype(np.float64), int(f["n"]), path
        except (KeyError, ValueError, OSError):
            pass  # damaged cache entry: recompute and overwrite
    return None, None, 0, path


def folder_statistics(folder: str | os.PathLike, device: str = "cpu", batch_size: int = 50,
                      progress: bool = True, what: str = "FID reference folder"):
    """``(mu, sigma, info)`` for an image folder, cached by content (see module docstring)."""
    from tqdm import tqdm

    files = list_images(folder, what=what)
    mu, sigma, n, path = cached_folder_stats(files)
    if mu is not None:
        return mu, sigma, {"stats_cache": str(path), "num_images": n, "cache_hit": True}
    col = ActivationCollector(_shared_model(device), device, batch_size)
    for p in tqdm(files, desc=f"FID stats {Path(folder).name}", unit="img",
                  disable=None if progress else True):
        col.add(read_image(p))
    mu, sigma = activation_statistics(col.activations())
    _save_stats(path, mu, sigma, len(files))
    return mu, sigma, {"stats_cache": str(path), "num_images": len(files), "cache_hit": False}


def resolve_reference(ref, device: str = "cpu", batch_size: int = 50, progress: bool = True):
    """``ref`` is an image folder, an ``.npz`` path, or a ``(mu, sigma)`` tuple → ``(mu, sigma, info)``."""
    if isinstance(ref, tuple) and len(ref) == 2:
        mu, sigma = (np.asarray(a, dtype=np.float64) for a in ref)
        return mu, sigma, {"reference": "in-memory statistics"}
    p = Path(ref)
    if p.suffix.lower() == ".npz":
        mu, sigma = load_stats_npz(p)
        return mu, sigma, {"reference": str(p), "stats_cache": None, "num_images": None}
    if p.is_dir():
        mu, sigma, info = folder_statistics(p, device, batch_size, progress)
        return mu, sigma, {"reference": str(p), **info}
    raise DataError(f"FID reference '{ref}' is neither an image folder nor an .npz statistics file.")


def fid_from_arrays(images: Iterable[np.ndarray], ref, device: str = "cpu", batch_size: int = 50,
                    progress: bool = False) -> float:
    """FID of in-memory uint8 images against ``ref`` (folder, ``.npz``, ``(mu, sigma)`` or a list of
    uint8 reference images)."""
    col = ActivationCollector(_shared_model(device), device, batch_size)
    for img in images:
        col.add(img)
    acts = col.activations()
    mu1, s1 = activation_statistics(acts)
    if isinstance(ref, (list, tuple)) and ref and isinstance(ref[0], np.ndarray) and ref[0].ndim == 3:
        rc = ActivationCollector(_shared_model(device), device, batch_size)
        for img in ref:
            rc.add(img)
        ref_acts = rc.activations()
        mu2, s2 = activation_statistics(ref_acts)
        f2 = activation_factor(ref_acts)
    else:
        mu2, s2, _ = resolve_reference(ref, device, batch_size, progress)
        f2 = reference_factor(s2)
    return frechet_distance(mu1, s1, mu2, s2, activation_factor(acts), f2)[0]


def fid_from_dirs(pred_dir: str | os.PathLike, ref, device: str = "cpu", batch_size: int = 50,
                  progress: bool = True) -> float:
    """FID between the images in ``pred_dir`` and ``ref`` (ground-truth folder, ``.npz`` statistics
    or a ``(mu, sigma)`` tuple). Raises DataError with fewer than 2 images."""
    from tqdm import tqdm

    files = list_images(pred_dir, what="prediction folder")
    if len(files) < FID_MIN_IMAGES:
        raise DataError(f"FID needs at least {FID_MIN_IMAGES} images; '{pred_dir}' has {len(files)}.")
    mu2, s2, _ = resolve_reference(ref, device, batch_size, progress)
    col = ActivationCollector(_shared_model(device), device, batch_size)
    for p in tqdm(files, desc="FID", unit="img", disable=None if progress else True):
        col.add(read_image(p))
    acts = col.activations()
    mu1, s1 = activation_statistics(acts)
    return frechet_distance(mu1, s1, mu2, s2, activation_factor(acts), reference_factor(s2))[0]


# ------------------------------------------------------------------------- the statistics cache
CACHE_MAX_ENV = "UGPNET_FID_CACHE_MAX_MB"


def stats_cache_dir() -> Path:
    """``$UGPNET_CACHE/fid_stats``: reference statistics (``<key>.npz``, ~33 MB each: a 2048x2048
    float64 covariance) and covariance factors (``factor-<sha>.npy``). Everything in it can be
    recomputed from the images; nothing else under ``$UGPNET_CACHE`` (e.g. ``weights/``) is
    ever pruned."""
    return cache_dir() / "fid_stats"


def cache_entries() -> list[dict]:
    """``[{"path", "bytes", "mtime"}]`` of the statistics cache, least recently used first (a
    cache hit refreshes an entry's mtime)."""
    root = stats_cache_dir()
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.is_file() and p.suffix in (".npz", ".npy"):
            st = p.stat()
            out.append({"path": p, "bytes": st.st_size, "mtime": st.st_mtime})
    return sorted(out, key=lambda e: (e["mtime"], e["path"].name))


def prune_cache(*, older_than_s: float | None = None, max_bytes: int | None = None,
                everything: bool = False, keep: Iterable[Path] = (), now: float | None = None
                ) -> list[dict]:
    """Delete statistics-cache entries → the removed ones. ``everything``; or entries not used
    for ``older_than_s`` seconds; then the least recently used until the rest fits ``max_bytes``.
    Paths in ``keep`` are never removed. Hidden temp files of interrupted writes are removed too."""
    import time

    now = time.time() if now is None else now
    keep = {Path(k).resolve() for k in keep}
    entries = [e for e in cache_entries() if e["path"].resolve() not in keep]
    removed = []
    if everything:
        removed = entries
    else:
        if older_than_s is not None:
            removed = [e for e in entries if now - e["mtime"] > older_than_s]
        if max_bytes is not None:
            left = [e for e in entries if e not in removed]
            total = sum(e["bytes"] for e in cache_entries())
            total -= sum(e["bytes"] for e in removed)
            for e in left:  # least recently used first
                if total <= max_bytes:
                    break
                removed.append(e)
                total -= e["bytes"]
    for e in removed:
        e["path"].unlink(missing_ok=True)
    root = stats_cache_dir()
    if root.is_dir():
        for p in root.glob(".*"):  # atomic_path temp files of killed writes
            if p.is_file() and now - p.stat().st_mtime > 3600:
                p.unlink(missing_ok=True)
    return removed


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # read-only cache: fine


def _apply_size_limit(just_written: Path) -> None:
    """Prune to ``$UGPNET_FID_CACHE_MAX_MB`` (if set) after a write, keeping the new entry."""
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    if not raw:
        return
    try:
        limit = float(raw)
    except ValueError:
        raise ConfigError(f"{CACHE_MAX_ENV}={raw!r} is not a number of megabytes.") from None
    prune_cache(max_bytes=int(limit * 1e6), keep=[just_written])
