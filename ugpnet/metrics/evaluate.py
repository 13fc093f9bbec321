"""Paired evaluation of a prediction folder against a ground-truth folder: PSNR, SSIM, LPIPS, FID.

PSNR and SSIM are scikit-image on 8-bit RGB, full image, no crop, no colour conversion:
``peak_signal_noise_ratio(gt, pred, data_range=255)`` and ``structural_similarity(gt, pred,
channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
Means are plain means of the per-image values. LPIPS: :mod:`ugpnet.metrics.lpips_metric`. FID:
:mod:`ugpnet.metrics.fid` (reference: the paired ground truth by default).

Result schema (``ugpnet-evaluation/1``, kept stable)::

    {"mean": {"psnr": .., "ssim": .., "lpips": .., "fid": ..},      # requested metrics only
     "per_image": {"<stem>": {"psnr": .., "ssim": .., "lpips": ..}},
     "protocol": {...}}

JSON has no Infinity/NaN, so non-finite floats (PSNR of identical images is +inf) are written as the
strings ``"inf"``, ``"-inf"``, ``"nan"``; ``float(value)`` turns them back, and
:func:`read_evaluation` does that for a whole file. A metric that is undefined (FID with fewer than
2 images) is ``null`` with a note in ``protocol["notes"]``.

The evaluations of one (method, task) of a run (``ugpnet evaluate --method M --task T``: every
output folder of the method, per split) go into one file (``ugpnet-evaluations/1``)::

    {"schema": "ugpnet-evaluations/1", "method": .., "task": ..,
     "splits": {"test": {"<output>": <ugpnet-evaluation/1 record>, ..}, "val": {..}}}

:func:`read_bundle_record` reads one record back.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_json, listing, pair_by_stem, read_image

SCHEMA = "ugpnet-evaluation/1"
BUNDLE_SCHEMA = "ugpnet-evaluations/1"
ALL_METRICS = ("psnr", "ssim", "lpips", "fid")
PER_IMAGE_METRICS = ("psnr", "ssim", "lpips")
SSIM_KWARGS = dict(channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                   use_sample_covariance=False)
NONFINITE_NOTE = ('non-finite floats are written as the strings "inf", "-inf", "nan" (JSON has no '
                  'Infinity); float(value) reads them back')


# ------------------------------------------------------------------------------- PSNR / SSIM
def _check_pair(gt: np.ndarray, pred: np.ndarray, what: str = "") -> None:
    for a, n in ((gt, "gt"), (pred, "pred")):
        if not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3):
            raise ValueError(f"{n} must be uint8 [H,W,3] RGB, got {getattr(a, 'dtype', type(a))} "
                             f"{getattr(a, 'shape', '')}")
    if gt.shape != pred.shape:
        raise DataError(f"{what or 'image pair'}: prediction is {pred.shape[1]}x{pred.shape[0]} but "
                        f"ground truth is {gt.shape[1]}x{gt.shape[0]}; metrics need equal sizes "
                        f"(no resizing or cropping is done).")


def psnr(gt_u8: np.ndarray, pred_u8: np.ndarray) -> float:
    """skimage ``peak_signal_noise_ratio(gt, pred, data_range=255)`` on 8-bit RGB; ``inf`` if equal."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(gt_u8, pred_u8)
    if np.array_equal(gt_u8, pred_u8):
        return math.inf  # what skimage returns, without its divide-by-zero warning
    return float(peak_signal_noise_ratio(gt_u8, pred_u8, data_range=255))


def ssim(gt_u8: np.ndarray, pred_u8: np.ndarray) -> float:
    """skimage ``structural_similarity`` with Gaussian 11x11 window, sigma 1.5 (Wang et al. 2004)."""
    from skimage.metrics import structural_similarity

    _check_pair(gt_u8, pred_u8)
    if min(gt_u8.shape[:2]) < 11:
        raise DataError(f"SSIM needs images of at least 11x11 pixels (Gaussian window), got "
                        f"{gt_u8.shape[1]}x{gt_u8.shape[0]}.")
    return float(structural_similarity(gt_u8, pred_u8, **SSIM_KWARGS))


# ------------------------------------------------------------------------------- helpers
def _json_float(v):
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def to_json_safe(obj):
    """Recursively turn numpy scalars into plain floats/ints and non-finite floats into strings."""
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(obj)
    return obj


def _from_json_float(v):
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    return v


def read_evaluation(path: str | os.PathLike) -> dict:
    """Load a result file and turn ``"inf"``/``"-inf"``/``"nan"`` metric values back into floats."""
    import json

    p = Path(path)
    if not p.is_file():
        raise DataError(f"evaluation file '{p}' does not exist; run `ugpnet evaluate` first.")
    try:
        res = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"evaluation file '{p}' is not valid JSON ({e}); rerun `ugpnet evaluate`.") \
            from None
    res["mean"] = {k: _from_json_float(v) for k, v in res.get("mean", {}).items()}
    res["per_image"] = {n: {k: _from_json_float(v) for k, v in d.items()}
                        for n, d in res.get("per_image", {}).items()}
    return res


def write_evaluation(path: str | os.PathLike, result: dict) -> None:
    """Atomically write ``result`` (a record or a bundle) as strict JSON (no Infinity/NaN
    tokens)."""
    import json

    safe = to_json_safe(result)
    json.dumps(safe, allow_nan=False)  # raises if anything non-finite slipped through
    atomic_write_json(path, safe)


def evaluation_bundle(method: str, task: str, splits: Mapping[str, Mapping[str, dict]]) -> dict:
    """The ``ugpnet-evaluations/1`` file of one (method, task): ``splits[split][output]`` is the
    ``ugpnet-evaluation/1`` record of that output folder."""
    return {"schema": BUNDLE_SCHEMA, "method": method, "task": task,
            "splits": {split: dict(records) for split, records in splits.items()}}


def read_bundle_record(path: str | os.PathLike, split: str, output: str) -> dict:
    """The record of ``output`` on ``split`` in an ``ugpnet-evaluations/1`` file, as stored
    (non-finite values stay strings); DataError naming the file and the fix otherwise."""
    import json

    p = Path(path)
    fix = "rerun `ugpnet evaluate --method M --task T` (the workflow does)"
    try:
        bundle = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"metric file '{p}' is missing or not JSON ({e}); {fix}.") from None
    if not isinstance(bundle, dict) or bundle.get("schema") != BUNDLE_SCHEMA:
        found = bundle.get("schema") if isinstance(bundle, dict) else type(bundle).__name__
        raise DataError(f"metric file '{p}' is not a {BUNDLE_SCHEMA} file (schema: {found}); "
                        f"{fix}.")
    records = bundle.get("splits", {}).get(split, {})
    if not isinstance(records.get(output), dict) or "mean" not in records[output]:
        raise DataError(f"metric file '{p}' has no record of output '{output}' on the {split} "
                        f"split (it has {sorted(records)}); {fix}.")
    return records[output]


def parse_metrics(metrics) -> tuple[str, ...]:
    """``"psnr,ssim"`` or a sequence → validated tuple in canonical order."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",")]
    names = [m.strip().lower() for m in metrics if m and m.strip()]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown or empty metrics {unknown or names}; choose from "
                          f"{', '.join(ALL_METRICS)} (comma separated).")
    return tuple(m for m in ALL_METRICS if m in names)


def pair_files(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``[(stem, pred_path, gt_path)]`` sorted by stem; DataError unless both folders hold the same
    names (:func:`ugpnet.io.pair_by_stem`: the message lists missing and extra names)."""
    return pair_by_stem(pred_dir, gt_dir, "prediction folder", "ground-truth folder",
                        hint="Restore the missing images or remove the extra ones.")


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist, key in (("scikit-image", "skimage"), ("lpips", "lpips"), ("pytorch-fid", "pytorch_fid"),
                      ("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
                      ("scipy", "scipy")):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = None
    from .. import __version__

    out["ugpnet"] = __version__
    return out


def _base_protocol(metrics, n: int, device: str) -> dict:
    proto = {"schema": SCHEMA, "metrics": list(metrics), "num_images": n, "device": str(device),
             "versions": library_versions(), "json_nonfinite": NONFINITE_NOTE,
             "pairing": "by file name without extension; all images must be present in both folders",
             "notes": [], "warnings": []}
    if "psnr" in metrics:
        proto["psnr"] = {"function": "skimage.metrics.peak_signal_noise_ratio", "data_range": 255,
                         "color": "RGB, 8-bit, all channels", "crop_border": 0,
                         "mean": "arithmetic mean of per-image PSNR (inf if any pair is identical)"}
    if "ssim" in metrics:
        proto["ssim"] = {"function": "skimage.metrics.structural_similarity", "color": "RGB, 8-bit",
                         "crop_border": 0, **SSIM_KWARGS,
                         "mean": "arithmetic mean of per-image SSIM"}
    return proto


_lpips_cache: dict = {}


def _lpips_metric(net: str, device: str):
    from .lpips_metric import LPIPSMetric

    key = (net, str(device))
    if key not in _lpips_cache:
        _lpips_cache[key] = LPIPSMetric(net, device)
    return _lpips_cache[key]


# ---------------------------------------------------------------------------- core evaluation
def _evaluate(items, n: int, metrics, lpips_net, fid_ref, device, progress, fid_batch_size,
              gt_dir_for_fid=None, gt_files=None, gt_label=None, fid_bootstrap=None):
    """``fid_bootstrap``: ``{resamples, max_images}`` (params ``metrics.fid_bootstrap``) adds the
    percentile-bootstrap interval of FID over the images (:func:`ugpnet.metrics.fid.bootstrap_fid`)
    as ``result["fid_bootstrap"]``; None: no interval."""
    from tqdm import tqdm

    from . import fid as fidm

    metrics = parse_metrics(metrics)
    proto = _base_protocol(metrics, n, device)
    if "fid" in metrics or "lpips" in metrics:
        fidm._torch_device(device)
    lp = None
    if "lpips" in metrics:
        lp = _lpips_metric(lpips_net, device)
        proto["lpips"] = lp.protocol()

    # ---- FID reference: decide before the loop whether GT features are needed
    fid_on = "fid" in metrics and n >= fidm.FID_MIN_IMAGES
    ref_mu = ref_sigma = gt_cache_path = gt_acts_cached = None
    need_gt_acts = False
    fid_proto: dict = {}
    if "fid" in metrics:
        fid_proto = {"model": "pytorch-fid InceptionV3, block 3 (pool3, 2048-d), use_fid_inception",
                     "weights": fidm.fid_weights_info(),
                     "preprocessing": "uint8 RGB / 255, bilinear resize to 299x299 "
                                      "(align_corners=False), scaled to [-1, 1]",
                     "distance": "Frechet distance of pytorch_fid.fid_score.calculate_frechet_distance, "
                                 "tr sqrt(S1 S2) evaluated exactly as the nuclear norm of B1^T B2 "
                                 "(S = B B^T: centred features for <= 2048 images, else "
                                 "eigendecomposition; the reference factor is cached per test "
                                 "set; equal to it; scipy's sqrtm is 10x slower)",
                     "num_pred_images": n}
        if not fid_on:
            proto["notes"].append(f"FID is undefined for fewer than {fidm.FID_MIN_IMAGES} images "
                                  f"({n} given); it was skipped and written as null.")
        elif fid_ref is None or (isinstance(fid_ref, str) and fid_ref == "gt"):
            fid_proto["reference"] = f"paired ground truth {gt_label}"
            if gt_files is not None:
                ref_mu, ref_sigma, _, gt_cache_path = fidm.cached_folder_stats(gt_files)
                fid_proto["reference_stats_cache"] = str(gt_cache_path)
                fid_proto["reference_stats_cache_hit"] = ref_mu is not None
                need_gt_acts = ref_mu is None
                if ref_mu is not None and fid_bootstrap:
                    # the paired bootstrap needs the GT features: from the cache, or recomputed
                    gt_acts_cached = fidm.cached_folder_features(gt_cache_path)
                    need_gt_acts = gt_acts_cached is None or gt_acts_cached.shape[0] != n
            else:
                fid_proto["reference_stats_cache"] = None
                need_gt_acts = True
            fid_proto["num_ref_images"] = n
        else:
            ref_mu, ref_sigma, info = fidm.resolve_reference(fid_ref, device, fid_batch_size, progress)
            fid_proto["reference"] = info.get("reference")
            fid_proto["reference_stats_cache"] = info.get("stats_cache")
            fid_proto["num_ref_images"] = info.get("num_images")
        if fid_on and n < fidm.FID_UNBIASED_MIN:
            msg = f"{fidm.FID_BIAS_WARNING}; this evaluation uses {n} images"
            fid_proto["warning"] = msg
            proto["warnings"].append(msg)
        proto["fid"] = fid_proto

    pred_col = gt_col = None
    if fid_on:
        model = fidm._shared_model(device)
        pred_col = fidm.ActivationCollector(model, device, fid_batch_size)
        if need_gt_acts:
            gt_col = fidm.ActivationCollector(model, device, fid_batch_size)

    per_image: dict = {}
    non_png = []
    for name, gt, pred, src in tqdm(items, total=n, desc="evaluate", unit="img",
                                    disable=None if progress else True):
        _check_pair(gt, pred, what=src or f"image '{name}'")
        row = {}
        if "psnr" in metrics:
            row["psnr"] = psnr(gt, pred)
        if "ssim" in metrics:
            row["ssim"] = ssim(gt, pred)
        if lp is not None:
            row["lpips"] = lp(gt, pred)
        if row:
            per_image[name] = row
        if pred_col is not None:
            pred_col.add(pred)
        if gt_col is not None:
            gt_col.add(gt)
        if src and not str(src).lower().endswith(".png"):
            non_png.append(str(src))

    mean: dict = {}
    fid_boot = None
    for m in PER_IMAGE_METRICS:
        if m in metrics:
            vals = [r[m] for r in per_image.values()]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf etc. cannot occur; be safe
                mean[m] = float(np.mean(vals)) if vals else None
    if "fid" in metrics:
        mean["fid"] = None
        if fid_on:
            pred_acts = pred_col.activations()
            mu1, s1 = fidm.activation_statistics(pred_acts)
            gt_acts = gt_acts_cached
            if gt_col is not None:
                gt_acts = gt_col.activations()
                ref_mu, ref_sigma = fidm.activation_statistics(gt_acts)
                ref_factor = fidm.activation_factor(gt_acts)
                if gt_cache_path is not None:
                    fidm._save_stats(gt_cache_path, ref_mu, ref_sigma, n, features=gt_acts)
                    if ref_factor is not None:
                        fidm.store_factor(ref_sigma, ref_factor)
                if ref_factor is None:
                    ref_factor = fidm.reference_factor(ref_sigma)
            else:
                ref_factor = fidm.reference_factor(ref_sigma)  # once per test set, then cached
            value, note = fidm.frechet_distance(mu1, s1, ref_mu, ref_sigma,
                                                factor1=fidm.activation_factor(pred_acts),
                                                factor2=ref_factor)
            mean["fid"] = value
            if note:
                fid_proto["note"] = note
            if fid_bootstrap:
                boot = fidm.bootstrap_fid(pred_acts, gt_acts, ref_mu=ref_mu,
                                          ref_factor=ref_factor,
                                          n_resamples=int(fid_bootstrap["resamples"]),
                                          max_images=int(fid_bootstrap["max_images"]))
                fid_boot = boot
    if non_png:
        proto["notes"].append(f"{len(non_png)} file(s) are not PNG (lossy formats change the "
                              f"scores): {listing(sorted(Path(p).name for p in non_png))}")
    out = {"mean": mean, "per_image": per_image, "protocol": proto}
    if fid_boot is not None:
        out["fid_bootstrap"] = fid_boot
    return out


EXT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF", ".webp": "WEBP"}


def file_notes(path: Path) -> tuple[list[str], str | None]:
    """(conversions :func:`~ugpnet.io.read_image` applies, ``"JPEG data"`` etc. when the content's
    format (Pillow's) differs from the extension, else None), from the header only."""
    from ..io import inspect_conversions
    from ..io import open_image

    _, notes = inspect_conversions(path)
    with open_image(path) as im:
        fmt = {"MPO": "JPEG"}.get(im.format, im.format)  # MPO: a JPEG with extra frames
    want = EXT_FORMATS.get(path.suffix.lower())
    actual = f"{fmt} data" if fmt and want and fmt != want else None
    return notes, actual


@dataclass(frozen=True)
class FolderPairs:
    """A prediction folder paired with its ground truth by file name, every header read
    (:func:`inspect_dirs`); :func:`score_dirs` computes the metrics."""
    pred_dir: Path
    gt_dir: Path
    pairs: list  # [(stem, pred_path, gt_path)], sorted by stem
    converted: dict  # {"prediction": [...], "ground-truth": [...]}: conversions on reading
    mismatched: list  # files whose content is another format than their extension says


def inspect_dirs(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> FolderPairs:
    """Pair ``pred_dir`` with ``gt_dir`` and read every header, computing nothing: a missing or
    empty folder, unpaired names or a bad file fail here (DataError naming it), before any
    metric."""
    pairs = pair_files(pred_dir, gt_dir)
    converted: dict[str, list[str]] = {"prediction": [], "ground-truth": []}
    mismatched: list[str] = []

    def inspect(path: Path, side: str) -> None:
        notes, actual = file_notes(path)
        if notes:
            converted[side].append(f"{path.name} ({', '.join(notes)})")
        if actual:
            mismatched.append(f"{side} {path.name} is {actual}")

    for _, pp, gp in pairs:
        inspect(pp, "prediction")
        inspect(gp, "ground-truth")
    return FolderPairs(Path(pred_dir), Path(gt_dir), pairs, converted, mismatched)


def score_dirs(folders: FolderPairs, metrics: Sequence[str] | str = ALL_METRICS,
               lpips_net: str = "alex", fid_ref=None, device: str = "cpu", progress: bool = True,
               fid_batch_size: int = 50, fid_bootstrap: Mapping | None = None) -> dict:
    """The metrics of an inspected folder pair → result dict (schema above). The LPIPS and FID
    networks are loaded once per process (shared by every call). ``fid_bootstrap``
    (``{resamples, max_images}``): also the bootstrap interval of FID (``"fid_bootstrap"``)."""
    pairs = folders.pairs

    def items():
        for name, pp, gp in pairs:
            yield name, read_image(gp), read_image(pp), pp

    res = _evaluate(items(), len(pairs), metrics, lpips_net, fid_ref, device, progress,
                    fid_batch_size, gt_files=[g for _, _, g in pairs],
                    gt_label=str(folders.gt_dir), fid_bootstrap=fid_bootstrap)
    for side, rows in folders.converted.items():
        if rows:
            res["protocol"]["notes"].append(
                f"{len(rows)} {side} file(s) were converted to 8-bit RGB on reading (scored after "
                f"conversion; see ugpnet.io): {listing(sorted(rows))}")
    if folders.mismatched:
        res["protocol"]["notes"].append(
            f"{len(folders.mismatched)} file(s) hold another format than their extension says (a "
            f"lossy JPEG named .png changes the scores; re-export them as real PNG): "
            f"{listing(sorted(folders.mismatched))}")
    res["protocol"]["pred_dir"] = str(folders.pred_dir)
    res["protocol"]["gt_dir"] = str(folders.gt_dir)
    return res


def evaluate_dirs(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                  metrics: Sequence[str] | str = ALL_METRICS, lpips_net: str = "alex", fid_ref=None,
                  device: str = "cpu", progress: bool = True, fid_batch_size: int = 50) -> dict:
    """Evaluate ``pred_dir`` against ``gt_dir`` (paired by name) → result dict (schema above).

    ``fid_ref``: ``None``/``"gt"`` (paired ground truth, stats cached per GT content), an ``.npz``
    with ``mu``/``sigma``, or another image folder."""
    return score_dirs(inspect_dirs(pred_dir, gt_dir), metrics, lpips_net, fid_ref, device,
                      progress, fid_batch_size)


def evaluate_arrays(items: Iterable[tuple[str, np.ndarray, np.ndarray]],
                    metrics: Sequence[str] | str = PER_IMAGE_METRICS, lpips_net: str = "alex",
                    fid_ref=None, device: str = "cpu", progress: bool = False,
                    fid_batch_size: int = 50) -> dict:
    """Same as :func:`evaluate_dirs` for in-memory ``(name, gt_u8, pred_u8)`` triples (training-time
    validation). FID (if requested) uses the given ground truths unless ``fid_ref`` is set; nothing
    is cached."""
    items = list(items)
    names = [n for n, _, _ in items]
    if len(set(names)) != len(names):
        raise DataError("evaluate_arrays: image names must be unique.")
    res = _evaluate(((n, g, p, None) for n, g, p in items), len(items), metrics, lpips_net, fid_ref,
                    device, progress, fid_batch_size, gt_label="(in-memory images)")
    return res


def print_summary(result: dict, file=None) -> None:
    file = file or sys.stdout
    parts = []
    for k, v in result["mean"].items():
        parts.append(f"{k}={'n/a' if v is None else (f'{v:.4f}' if isinstance(v, float) else v)}")
    print(f"{result['protocol']['num_images']} images: " + "  ".join(parts), file=file)
    for w in result["protocol"].get("warnings", []):
        print(f"warning: {w}", file=file)
    for n in result["protocol"].get("notes", []):
        print(f"note: {n}", file=file)
