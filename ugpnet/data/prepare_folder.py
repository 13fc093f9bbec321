"""Folder source: FFHQ → train/val, CelebA-HQ → test (paper protocol; split rules in :mod:`.sources`).

Every header is read once before anything is written (unreadable or too-small files fail fast);
then each image is read, squared and resized (:func:`ugpnet.data.convert.square_resize`) and written
as ``<5-digit id>.png``, optionally in several processes.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..io import read_image, sha256_file, write_png
from . import sources as S
from .convert import (
    GEOMETRY,
    inspect_conversions,
    progress_bar,
    report_conversions,
    square_resize,
    summarise_conversions,
)
from .manifest import FORMAT, invalidate_manifest, tool_version, write_dataset

SPLITS = S.SPLITS


def _convert_one(job: tuple[str, str, int, bool]) -> dict:
    """Worker: read, square, resize, write one image → file entry (picklable for processes)."""
    src, dst, resolution, upscale = job
    (w, h), notes = inspect_conversions(src)
    img = read_image(src)
    out, what = square_resize(img, resolution, upscale=upscale, name=src)
    write_png(dst, out)
    entry = {"name": Path(dst).name, "sha256": sha256_file(dst), "original_size": [w, h]}
    if what != "none":
        entry["geometry"] = what
    if notes:
        entry["conversions"] = notes
    return entry


def _precheck(paths: Sequence[Path], resolution: int, upscale: bool, progress: bool,
              desc: str) -> None:
    """Read every header once before writing anything: unreadable or too-small files fail fast."""
    for p in progress_bar(paths, total=len(paths), desc=desc, progress=progress):
        (w, h), _ = inspect_conversions(p)
        if min(w, h) < resolution and not upscale:
            raise DataError(f"image '{p}' is {w}x{h}, smaller than the target resolution "
                            f"{resolution}x{resolution}: every image must be at least {resolution} "
                            f"px on its short side. Remove it, lower data.resolution, or pass "
                            f"--upscale (Lanczos upsampling, recorded in the manifest).")


def prepare_folder(out_dir: str | os.PathLike, *, ffhq_dir, celebahq_dir, resolution: int,
                   val_count: int = 1000, test_count: int = 3000, allow_partial: bool = False,
                   workers: int = 1, progress: bool = True, upscale: bool = False,
                   test_first_id: int | None = None) -> dict:
    """FFHQ → train/val, CelebA-HQ → test, at ``resolution`` (paper protocol; see ``sources``).

    Output names are the 5-digit ids (``00000.png``; test ``27000.png`` …). ``workers`` > 1 converts
    in that many processes. Returns the manifest.
    """
    invalidate_manifest(Path(out_dir))
    resolution = int(resolution)
    if resolution < 8:
        raise DataError(f"resolution must be at least 8, got {resolution}")
    ffhq = S.scan_numbered_images(ffhq_dir, "FFHQ", S.FFHQ_LAYOUT, S.FFHQ_FIX)
    celeb = S.scan_numbered_images(celebahq_dir, "CelebA-HQ", S.CELEBAHQ_LAYOUT, S.CELEBAHQ_FIX)
    ffhq_root, celeb_root = Path(ffhq_dir).expanduser(), Path(celebahq_dir).expanduser()
    train_ids, val_ids, notes = S.ffhq_split(ffhq, val_count, allow_partial, ffhq_root)
    test_ids, test_rule, notes2 = S.celebahq_test_ids(celeb, test_count, allow_partial,
                                                      test_first_id, celeb_root)
    notes += notes2
    for n in notes:
        print(f"ugpnet prepare: {n} (allow_partial)", file=sys.stderr)
    plan = {
        "train": [(i, ffhq[i], ffhq_root) for i in train_ids],
        "val": [(i, ffhq[i], ffhq_root) for i in val_ids],
        "test": [(i, celeb[i], celeb_root) for i in test_ids],
    }
    _precheck([p for s in SPLITS for _, p, _ in plan[s]], resolution, upscale, progress,
              "checking headers")

    conv_rows: list[tuple[str, str, list[str]]] = []
    pool = ProcessPoolExecutor(max_workers=int(workers)) if int(workers) > 1 else None

    def produce(split: str, folder: Path) -> list[dict]:
        jobs = [(str(p), str(folder / f"{i:05d}.png"), resolution, bool(upscale))
                for i, p, _ in plan[split]]
        it = pool.map(_convert_one, jobs, chunksize=16) if pool else map(_convert_one, jobs)
        files = []
        for (i, p, root), entry in zip(plan[split],
                                       progress_bar(it, total=len(jobs), desc=split, progress=progress)):
            rel = os.path.relpath(p, root)
            files.append({**entry, "id": i, "source": rel})
            if entry.get("conversions"):
                conv_rows.append((split, str(p), entry["conversions"]))
        return files

    manifest = {
        "format": FORMAT,
        "source": "folder",
        "resolution": resolution,
        "parameters": {"val_count": int(val_count), "test_count": int(test_count),
                       "allow_partial": bool(allow_partial), "upscale": bool(upscale),
                       "test_first_id": test_first_id},
        "geometry": GEOMETRY,
        "partial": bool(notes),
        "folder": {
            "ffhq": str(ffhq_root.resolve()), "celebahq": str(celeb_root.resolve()),
            "ffhq_found": len(ffhq), "celebahq_found": len(celeb),
            "rules": {
                "train": (f"FFHQ: every id except the last val_count={val_count} by sorted id "
                          f"(here {train_ids[0]:05d}…{train_ids[-1]:05d}, "
                          f"{len(train_ids)} images)"),
                "val": (f"FFHQ: the last val_count={val_count} ids by sorted id (here "
                        f"{val_ids[0]:05d}…{val_ids[-1]:05d}); used for checkpoint selection"),
                "test": f"{test_rule} ({len(test_ids)} images); never used for selection",
            },
            "notes": notes,
        },
        "conversions": {},
        "created_by": f"ugpnet-bench {tool_version()}",
    }
    def finish(m: dict) -> None:
        m["conversions"] = summarise_conversions(conv_rows)
        report_conversions(m["conversions"])

    try:
        return write_dataset(out_dir, produce, manifest, finish)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
