"""``ugpnet prepare``: ground-truth splits ``OUT/{train,val,test}/*.png`` + ``OUT/manifest.json``.

Every output image is uint8 RGB PNG, ``resolution`` × ``resolution``. Sources and split rules are
documented in :mod:`ugpnet.data.sources`.

Geometry (folder source): a non-square image is centre-cropped to a square of its short side
(offset ``(long - short) // 2``), then resized with PIL's Lanczos filter (a = 3, antialiased when
shrinking, 8-bit) to ``resolution``; an image already at that size is copied without resampling.
An image smaller than ``resolution`` is an error naming the file and the minimum size, unless
``upscale=True`` (then Lanczos upsampling, recorded per file in the manifest).

Colour: images are read by :func:`ugpnet.io.read_image` (grayscale → replicated RGB, 16-bit → 8-bit,
fully opaque alpha dropped, palette → RGB; transparent images, CMYK and corrupt files are errors).
Each conversion is printed and recorded in the manifest (``conversions``); nothing is skipped.

Atomicity: the old ``manifest.json`` is deleted first (an interrupted rewrite never looks done);
each split is written into a hidden temporary folder inside ``OUT`` and renamed into place only
after **all** splits succeeded; ``manifest.json`` (file names and sha256 of every image) is written
last, atomically. It is the done-marker (the Snakemake target).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError
from ..io import atomic_write_json, read_image, sha256_file, write_png
from . import sources as S

SPLITS = S.SPLITS
MANIFEST = "manifest.json"
FORMAT = "ugpnet-gt/1"
RESAMPLE = "PIL Lanczos (a=3, antialiased), 8-bit"
GEOMETRY = ("centre crop to a square of the short side (offset (long-short)//2), then resize to "
            "resolution x resolution with " + RESAMPLE + "; no resampling when already that size")

# bundled: crops come from the photo resized so that its short side is ZOOMS[k] * resolution
# (only zooms that do not upsample), so at 64-128 px a crop shows a recognisable part of the photo.
BUNDLED_ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0)
BUNDLED_MIN_STD = 6.0      # a crop whose gray-level std is below this (flat sky, black border) ...
BUNDLED_TRIES = 20         # ... is redrawn up to this many times (then the most textured is kept)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _version() -> str:
    try:
        from .. import __version__
        return str(__version__)
    except Exception:  # pragma: no cover
        return "unknown"


def _tqdm(it, total=None, desc="", progress=True):
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, disable=None if progress else True, leave=False,
                file=sys.stderr)


def inspect_conversions(path: str | os.PathLike) -> tuple[tuple[int, int], list[str]]:
    """((width, height), conversions read_image will apply) from the file header only."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            info = dict(im.info)
            args = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else ""
            if isinstance(args, tuple):
                args = args[0] if args else ""
            rawmode = args if isinstance(args, str) else ""
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image '{path}' cannot be read ({e}). The file is corrupt or truncated: "
                        f"re-download or re-export it, or remove it from the folder.") from None
    notes: list[str] = []
    if mode in ("L", "1"):
        notes.append("grayscale replicated to RGB")
    elif mode.startswith("I"):
        notes.append("16-bit grayscale converted to 8-bit and replicated to RGB")
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in info):
        notes.append("fully opaque alpha channel dropped")
        if mode == "LA":
            notes.append("grayscale replicated to RGB")
    elif mode == "P":
        notes.append("palette converted to RGB")
    elif mode == "RGB" and ";16" in rawmode:
        notes.append("16-bit per channel converted to 8-bit")
    elif mode not in ("RGB",):
        notes.append(f"mode {mode} converted to RGB")
    return size, notes


def square_resize(img: np.ndarray, resolution: int, *, upscale: bool = False,
                  name: str = "image") -> tuple[np.ndarray, str]:
    """Centre-crop to a square, resize to ``resolution`` (see module docstring) → (img, what)."""
    h, w = img.shape[:2]
    s = min(h, w)
    if s < resolution and not upscale:
        raise DataError(f"image '{name}' is {w}x{h}, smaller than the target resolution "
                        f"{resolution}x{resolution}: every image must be at least {resolution} px "
                        f"on its short side. Remove it, lower data.resolution, or pass --upscale "
                        f"(Lanczos upsampling, recorded in the manifest).")
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = img[y0:y0 + s, x0:x0 + s]
    what = "none" if (h, w) == (s, s) else f"centre crop {w}x{h} -> {s}x{s} at ({x0},{y0})"
    if s == resolution:
        return np.ascontiguousarray(sq), what
    out = np.asarray(Image.fromarray(np.ascontiguousarray(sq)).resize(
        (resolution, resolution), Image.Resampling.LANCZOS))
    verb = "upscale" if s < resolution else "downscale"
    what = ("" if what == "none" else what + "; ") + f"{verb} {s} -> {resolution} (Lanczos)"
    return np.ascontiguousarray(out), what


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The manifest of a prepared dataset; DataError if preparation has not finished."""
    import json

    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"'{path}' not found: the dataset in '{out_dir}' is not prepared (or its "
                        f"preparation did not finish). Run `ugpnet prepare --out {out_dir}`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"'{path}' is not valid JSON ({e}); re-run `ugpnet prepare`.") from None


def verify_manifest(out_dir: str | os.PathLike, check_hashes: bool = True) -> dict:
    """Check that every file listed in the manifest exists (and matches its sha256)."""
    out = Path(out_dir)
    man = read_manifest(out)
    for split, info in man["splits"].items():
        listed = {f["name"] for f in info["files"]}
        on_disk = {p.name for p in (out / split).glob("*.png")} if (out / split).is_dir() else set()
        if listed != on_disk:
            diff = sorted(listed ^ on_disk)[:5]
            raise DataError(f"'{out / split}' does not match its manifest (e.g. {diff}); re-run "
                            f"`ugpnet prepare --out {out}`.")
        if check_hashes:
            for f in info["files"]:
                if sha256_file(out / split / f["name"]) != f["sha256"]:
                    raise DataError(f"'{out / split / f['name']}' changed after preparation "
                                    f"(sha256 mismatch); re-run `ugpnet prepare --out {out}`.")
    return man


# ---------------------------------------------------------------------------------------------
# the atomic writer shared by both sources
# ---------------------------------------------------------------------------------------------

def _clean_leftovers(out: Path) -> None:
    for split in SPLITS:
        for p in out.glob(f".{split}.partial-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in out.glob(f".{split}.old-*"):
            shutil.rmtree(p, ignore_errors=True)


def _invalidate(out: Path) -> None:
    """Delete OUT/manifest.json (our own only) so an unfinished rewrite never looks done."""
    import json

    man_path = out / MANIFEST
    if not (man_path.exists() or man_path.is_symlink()):
        return
    try:
        fmt = json.loads(man_path.read_text(encoding="utf-8")).get("format", "")
    except (OSError, ValueError, AttributeError):
        fmt = FORMAT  # unreadable: a broken manifest of ours, or garbage; either way not "done"
    if not str(fmt).startswith(FORMAT.split("/")[0] + "/"):
        raise DataError(f"'{man_path}' exists but is not a `ugpnet prepare` manifest; choose an "
                        f"empty or dedicated --out folder (prepare replaces its train/, val/ and "
                        f"test/ subfolders).")
    man_path.unlink()


def _write_dataset(out_dir: str | os.PathLike,
                   produce: Callable[[str, Path], list[dict]],
                   manifest: dict, finish: Callable[[dict], None] | None = None) -> dict:
    """Run ``produce(split, tmp_folder) -> entries`` per split, swap folders, write manifest."""
    out = Path(out_dir)
    _invalidate(out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / MANIFEST
    _clean_leftovers(out)
    tmp: dict[str, Path] = {}
    try:
        entries: dict[str, list[dict]] = {}
        for split in SPLITS:
            tmp[split] = Path(tempfile.mkdtemp(prefix=f".{split}.partial-", dir=out))
            entries[split] = produce(split, tmp[split])
            if not entries[split]:
                raise DataError(f"split '{split}' would be empty; nothing was written.")
        for split in SPLITS:
            final = out / split
            if final.exists() or final.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".{split}.old-", dir=out))
                os.replace(final, old / split)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp[split], final)
        manifest["splits"] = {
            split: {"count": len(entries[split]), "files": entries[split]} for split in SPLITS}
        manifest["created_unix"] = int(time.time())
        if finish is not None:
            finish(manifest)
        atomic_write_json(man_path, manifest)
    finally:
        for p in tmp.values():
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
    return manifest


def _summarise_conversions(entries: Iterable[tuple[str, str, list[str]]]) -> dict[str, dict]:
    """{conversion: {"count": n, "files": [first 20 source files]}} from (split, source, notes)."""
    out: dict[str, dict] = {}
    for _split, src, notes in entries:
        for n in notes:
            d = out.setdefault(n, {"count": 0, "files": []})
            d["count"] += 1
            if len(d["files"]) < 20:
                d["files"].append(src)
    return out


def _report_conversions(conv: Mapping[str, dict]) -> None:
    for what, d in conv.items():
        eg = ", ".join(d["files"][:3])
        print(f"ugpnet prepare: {what}: {d['count']} image(s), e.g. {eg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# bundled source
# ---------------------------------------------------------------------------------------------

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
    _invalidate(Path(out_dir))
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
        for i in _tqdm(range(int(counts[split])), desc=f"bundled {split}", progress=progress):
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
        "created_by": f"ugpnet-bench {_version()}",
    }
    return _write_dataset(out_dir, produce, manifest)


# ---------------------------------------------------------------------------------------------
# folder source
# ---------------------------------------------------------------------------------------------

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
    for p in _tqdm(paths, total=len(paths), desc=desc, progress=progress):
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
    _invalidate(Path(out_dir))
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
                                       _tqdm(it, total=len(jobs), desc=split, progress=progress)):
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
        "created_by": f"ugpnet-bench {_version()}",
    }
    def finish(m: dict) -> None:
        m["conversions"] = _summarise_conversions(conv_rows)
        _report_conversions(m["conversions"])

    try:
        return _write_dataset(out_dir, produce, manifest, finish)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
