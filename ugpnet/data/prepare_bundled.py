"""Bundled source: crops of the scikit-image photographs, offline (split rules in :mod:`.sources`).

Each crop: a zoom drawn from :data:`BUNDLED_ZOOMS` (only zooms that do not upsample), the whole
photo resized (Lanczos) so its short side is ``zoom * resolution``, then a random
``resolution``² crop, so at 64-128 px a crop shows a recognisable part of the photo. A crop whose
gray-level std is below :data:`BUNDLED_MIN_STD` (flat sky, black border) is redrawn up to
:data:`BUNDLED_TRIES` times (then the most textured one is kept).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from ..errors import DataError
from ..io import read_image, sha256_file, write_png
from . import sources as S
from .convert import RESAMPLE, progress_bar
from .manifest import FORMAT, invalidate_manifest, tool_version, write_dataset

SPLITS = S.SPLITS
BUNDLED_ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0)
BUNDLED_MIN_STD = 6.0      # a crop whose gray-level std is below this (flat sky, black border) ...
BUNDLED_TRIES = 20         # ... is redrawn up to this many times (then the most textured is kept)


def _content_std(img: np.ndarray) -> float:
    return float((img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).std())


def prepare_bundled(out_dir: str | os.PathLike, *, resolution: int, counts: Mapping[str, int],
                    seed: int = 0, progress: bool = True,
                    assignment: Mapping[str, str | None] | None = None) -> dict:
    """Crop the scikit-image photographs into train/val/test at ``resolution`` (offline).

    ``counts`` = ``{"train": n, "val": n, "test": n}`` crops per split. A split's crops are dealt
    round-robin over its source files (in :data:`~ugpnet.data.sources.BUNDLED_PHOTOS` order). Each
    crop: a zoom ``z`` drawn from :data:`BUNDLED_ZOOMS` (those with ``z * resolution`` ≤ the photo's
    short side), the whole photo resized (Lanczos) so its short side is ``round(z * resolution)``,
    then a uniformly random ``resolution``² crop; near-flat crops (gray std < 6) are redrawn.
    Randomness: ``numpy.random.default_rng([seed, split index])``, so a split does not change when
    another split's count does. Returns the manifest.
    """
    invalidate_manifest(Path(out_dir))
    resolution = int(resolution)
    if resolution < 8:
        raise DataError(f"resolution must be at least 8, got {resolution}")
    for split in SPLITS:
        n = counts.get(split) if isinstance(counts, Mapping) else None
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise DataError(f"bundled counts need a positive integer for '{split}' "
                            f"(data.bundled.{split}), got {n!r}")
    assign = S.bundled_assignment(assignment)
    data_dir = S.skimage_data_dir()

    # load sources, split by photo
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    excluded: list[dict] = []
    photos_info: dict[str, dict] = {}
    for photo in S.BUNDLED_PHOTOS:
        split = assign[photo.name]
        photos_info[photo.name] = {"split": split, "files": list(photo.files),
                                   "credit": photo.credit}
        if split is None:
            continue
        for rel in photo.files:
            path = data_dir / rel
            if not path.is_file():
                raise DataError(f"scikit-image sample '{path}' is missing from the installed "
                                f"wheel; reinstall scikit-image (pip install --force-reinstall "
                                f"scikit-image) or use --source folder.")
            digest = sha256_file(path)
            expected = S.skimage_registry_hash(rel)
            if expected is not None and digest != expected:
                raise DataError(f"scikit-image sample '{path}' does not match scikit-image's own "
                                f"registry hash (modified file?); reinstall scikit-image.")
            img = read_image(path)
            h, w = img.shape[:2]
            rec = {"photo": photo.name, "file": rel, "sha256": digest, "size": [w, h]}
            if min(h, w) < resolution:
                excluded.append({**rec, "split": split,
                                 "reason": f"short side {min(h, w)} < resolution {resolution}"})
                continue
            per_split[split].append({**rec, "img": img})
    for split in SPLITS:
        if not per_split[split]:
            raise DataError(
                f"bundled source: no photograph assigned to '{split}' is at least {resolution} px "
                f"on its short side, so the '{split}' split would be empty. The bundled set "
                f"supports resolutions up to 500; use a smaller data.resolution or --source "
                f"folder.")
    for e in excluded:
        print(f"ugpnet prepare: bundled photo {e['file']} ({e['split']}) left out: {e['reason']}",
              file=sys.stderr)

    def produce(split: str, folder: Path) -> list[dict]:
        srcs = per_split[split]
        rng = np.random.default_rng([int(seed), SPLITS.index(split)])
        cache: dict[tuple[int, float], np.ndarray] = {}
        counters = [0] * len(srcs)
        files = []
        for i in progress_bar(range(int(counts[split])), desc=f"bundled {split}", progress=progress):
            si = i % len(srcs)
            src = srcs[si]
            h, w = src["img"].shape[:2]
            short = min(h, w)
            zooms = [z for z in BUNDLED_ZOOMS if round(z * resolution) <= short]
            best = None
            for _ in range(BUNDLED_TRIES):
                z = zooms[int(rng.integers(len(zooms)))]
                key = (si, z)
                if key not in cache:
                    target = round(z * resolution)
                    if target == short:
                        cache[key] = src["img"]
                    else:
                        f = target / short
                        size = (max(resolution, round(w * f)), max(resolution, round(h * f)))
                        cache[key] = np.asarray(Image.fromarray(src["img"]).resize(
                            size, Image.Resampling.LANCZOS))
                big = cache[key]
                y = int(rng.integers(big.shape[0] - resolution + 1))
                x = int(rng.integers(big.shape[1] - resolution + 1))
                crop = big[y:y + resolution, x:x + resolution]
                std = _content_std(crop)
                if best is None or std > best[0]:
                    best = (std, z, x, y, crop, big.shape)
                if std >= BUNDLED_MIN_STD:
                    break
            std, z, x, y, crop, bshape = best
            name = f"{Path(src['file']).stem}_{counters[si]:03d}.png"
            counters[si] += 1
            write_png(folder / name, np.ascontiguousarray(crop))
            sx, sy = w / bshape[1], h / bshape[0]
            files.append({
                "name": name, "sha256": sha256_file(folder / name), "photo": src["photo"],
                "source_file": src["file"], "zoom": z, "resized_size": [bshape[1], bshape[0]],
                "crop_xy": [x, y],
                "source_box_xywh": [round(x * sx, 2), round(y * sy, 2), round(resolution * sx, 2),
                                    round(resolution * sy, 2)],
                "gray_std": round(std, 3)})
        return files

    import skimage

    manifest = {
        "format": FORMAT,
        "source": "bundled",
        "resolution": resolution,
        "parameters": {"counts": {s: int(counts[s]) for s in SPLITS}, "seed": int(seed),
                       "zooms": list(BUNDLED_ZOOMS), "min_gray_std": BUNDLED_MIN_STD,
                       "tries": BUNDLED_TRIES},
        "geometry": ("whole photo resized (" + RESAMPLE + ") so its short side is zoom*resolution, "
                     "then a random resolution x resolution crop"),
        "partial": False,
        "bundled": {
            "skimage_version": skimage.__version__,
            "photos": photos_info,
            "assignment": {s: [f"{d['photo']}:{d['file']}" for d in per_split[s]] for s in SPLITS},
            "excluded": excluded,
            "rule": "split by source photograph (a photo's crops go to exactly one split)",
        },
        "conversions": {},
        "created_by": f"ugpnet-bench {tool_version()}",
    }
    return write_dataset(out_dir, produce, manifest)
