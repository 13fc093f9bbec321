"""Where ground-truth images come from, and the documented rules that split them.

Two sources (``ugpnet prepare --source ...``):

``bundled`` (offline default)
    Real colour photographs that ship inside the scikit-image wheel (``skimage/data/``; read
    straight from disk, never through pooch, so no network is needed). Only RGB photographs are
    used (no synthetic charts, no grayscale). The split is **by source photograph**, so crops of one
    photo never appear in two splits; the two views of the Middlebury stereo pair count as one
    photo. :data:`BUNDLED_PHOTOS` is the fixed, documented assignment:

    ======  ============================================================
    train   chelsea (cat), rocket (launch), hubble_deep_field, ihc
            (immunohistochemistry micrograph), retina (fundus photo)
    val     motorcycle_left + motorcycle_right (one stereo pair)
    test    astronaut (portrait of Eileen Collins), coffee
    ======  ============================================================

    A photo whose short side is below the target resolution cannot give a full-resolution crop
    without upsampling; it is left out of its split and the manifest says so (every split keeps at
    least one photo up to 500 px, the motorcycle pair's short side).

``folder`` (the paper protocol)
    * **FFHQ** (``images1024x1024/`` of the official release: ``00000.png`` … ``69999.png``, flat or
      in the official 1000-image subfolders ``00000/``, ``01000/``, …; searched recursively).
      The image id is the number in the file name. **val** = the last ``val_count`` ids in sorted
      order (default 1,000: ids 69000…69999), **train** = every other id (00000…68999). Checkpoints
      are selected on val, never on test.
    * **CelebA-HQ** (``CelebA-HQ-img/`` of CelebAMask-HQ: ``0.jpg`` … ``29999.jpg``; zero-padded
      names such as ``27000.png`` are read as the same ids). **test** = the last ``test_count``
      ids of 0…29999 by numeric id (default 3,000: ids 27000…29999). The paper says only "3,000
      CelebA-HQ images" and the official UGPNet code does not fix the choice (its scripts take
      whatever ``--test_gt_dir`` holds; the image names its training scripts log, 3000…3077, hint
      at another contiguous range), so ``test_first_id`` selects ``test_count`` ids starting
      elsewhere if needed.

    With ``allow_partial`` a subset is accepted (recorded in the manifest): val/test are then the
    last ``val_count``/``test_count`` ids present (or those from ``test_first_id`` on).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import DataError
from ..io import IMAGE_EXTS

SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------------------------
# bundled: scikit-image photographs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundledPhoto:
    """One source photograph (possibly several files, e.g. a stereo pair) of the bundled set."""

    name: str
    files: tuple[str, ...]      # paths relative to skimage/data/
    split: str                  # default assignment
    credit: str


BUNDLED_PHOTOS: tuple[BundledPhoto, ...] = (
    BundledPhoto("chelsea", ("chelsea.png",), "train",
                 "cat Chelsea, Stefan van der Walt, CC0"),
    BundledPhoto("rocket", ("rocket.jpg",), "train",
                 "Falcon 9 / DSCOVR launch, SpaceX, public domain"),
    BundledPhoto("hubble_deep_field", ("hubble_deep_field.jpg",), "train",
                 "Hubble eXtreme Deep Field, NASA, public domain"),
    BundledPhoto("ihc", ("ihc.png",), "train",
                 "immunohistochemistry micrograph (skimage.data.immunohistochemistry), no known "
                 "copyright restrictions"),
    BundledPhoto("retina", ("retina.jpg",), "train",
                 "fundus photograph of a normal left eye (Wikimedia), public domain"),
    BundledPhoto("motorcycle", ("motorcycle_left.png", "motorcycle_right.png"), "val",
                 "Middlebury 2014 stereo pair 'motorcycle' (both views = one source)"),
    BundledPhoto("astronaut", ("astronaut.png",), "test",
                 "Eileen Collins, NASA, public domain"),
    BundledPhoto("coffee", ("coffee.png",), "test",
                 "cup of coffee, Rachel Michetti, CC0"),
)


def skimage_data_dir() -> Path:
    """Folder of the sample images shipped in the installed scikit-image wheel."""
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise DataError(f"the bundled source needs scikit-image ({e}); pip install scikit-image") \
            from None
    return Path(skimage.data.__file__).resolve().parent


def skimage_registry_hash(relpath: str) -> str | None:
    """sha256 that scikit-image's own registry lists for ``data/<relpath>`` (None if unknown)."""
    try:
        from skimage.data._registry import registry
    except ImportError:  # pragma: no cover
        return None
    return registry.get(f"data/{relpath}")


def bundled_assignment(assignment: Mapping[str, str] | None = None) -> dict[str, str]:
    """photo name → split; ``assignment`` overrides the default for the photos it names."""
    names = {p.name for p in BUNDLED_PHOTOS}
    result = {p.name: p.split for p in BUNDLED_PHOTOS}
    for name, split in (assignment or {}).items():
        if name not in names:
            raise DataError(f"unknown bundled photo '{name}'; known: {sorted(names)}")
        if split not in SPLITS and split is not None:
            raise DataError(f"bundled photo '{name}': split must be one of {SPLITS} (or None to "
                            f"leave it out), got '{split}'")
        result[name] = split
    return result


# ---------------------------------------------------------------------------------------------
# folder: FFHQ / CelebA-HQ as downloaded
# ---------------------------------------------------------------------------------------------

FFHQ_TOTAL = 70_000
CELEBAHQ_TOTAL = 30_000

FFHQ_LAYOUT = ("the 70,000 FFHQ images (images1024x1024/ from the official release) as PNG files "
               "named 00000.png … 69999.png, flat or in the official 1000-image subfolders "
               "(00000/, 01000/, …)")
FFHQ_FIX = "Set data.folder.ffhq in params.yaml or pass --ffhq DIR."
CELEBAHQ_LAYOUT = ("the 30,000 CelebA-HQ images (CelebA-HQ-img/ from CelebAMask-HQ) named "
                   "0.jpg … 29999.jpg (zero-padded names and .png are accepted); the test split "
                   "uses ids 27000 … 29999")
CELEBAHQ_FIX = "Set data.folder.celebahq in params.yaml or pass --celebahq DIR."


def _fmt_ids(ids: Iterable[int], limit: int = 8) -> str:
    ids = list(ids)
    shown = ", ".join(f"{i:05d}" for i in ids[:limit])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def scan_numbered_images(folder: str | os.PathLike | None, what: str, layout: str,
                         fix: str) -> dict[int, Path]:
    """Image files under ``folder`` (recursively) keyed by the number in their name.

    Hidden files and folders are ignored; any other image whose name is not a number, and two files
    with the same number, are errors (they would make the id rule ambiguous).
    """
    if folder is None or str(folder) == "":
        raise DataError(f"{what} folder is not set. Expected {layout}. {fix}")
    root = Path(folder).expanduser()
    if not root.exists():
        raise DataError(f"{what} folder '{root}' not found. Expected {layout}. {fix}")
    if not root.is_dir():
        raise DataError(f"{what} path '{root}' is not a folder. Expected {layout}. {fix}")
    found: dict[int, Path] = {}
    bad: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.suffix.lower() not in IMAGE_EXTS:
                continue
            if not p.stem.isdigit() or not p.stem.isascii():
                bad.append(p)
                continue
            i = int(p.stem)
            if i in found:
                raise DataError(f"{what} folder '{root}' holds two files for id {i}: "
                                f"'{found[i]}' and '{p}'. Point it at one image set (e.g. "
                                f"images1024x1024/, not the dataset root with thumbnails) and "
                                f"keep one copy of each image (flat or in subfolders).")
            found[i] = p
    if bad:
        raise DataError(f"{what} folder '{root}' holds images whose names are not numbers, e.g. "
                        f"'{bad[0]}' ({len(bad)} in all). Expected {layout}. Move other images out "
                        f"of the folder.")
    if not found:
        raise DataError(f"{what} folder '{root}' contains no images ({', '.join(IMAGE_EXTS)}). "
                        f"Expected {layout}. {fix}")
    return found


def ffhq_split(ids: Iterable[int], val_count: int, allow_partial: bool,
               folder: str | os.PathLike = "") -> tuple[list[int], list[int], list[str]]:
    """(train ids, val ids, notes): val = the last ``val_count`` sorted ids, train = the rest."""
    ids = sorted(ids)
    notes: list[str] = []
    expected = set(range(FFHQ_TOTAL))
    if set(ids) != expected:
        missing = sorted(expected - set(ids))
        extra = [i for i in ids if i >= FFHQ_TOTAL]
        detail = (f"holds {len(ids):,} images (ids {ids[0]:05d}…{ids[-1]:05d})"
                  + (f"; missing {_fmt_ids(missing)}" if missing else "")
                  + (f"; ids beyond 69999: {_fmt_ids(extra)}" if extra else ""))
        if not allow_partial:
            raise DataError(f"FFHQ folder '{folder}' {detail}, but the paper protocol expects "
                            f"{FFHQ_LAYOUT}. Complete the download, or pass --allow-partial "
                            f"(data.folder.allow_partial: true) to use the images present; the "
                            f"manifest then records the run as partial.")
        notes.append(f"partial FFHQ: {detail}")
    if val_count < 1:
        raise DataError(f"val_count must be at least 1, got {val_count}")
    if val_count >= len(ids):
        raise DataError(f"FFHQ folder '{folder}' has {len(ids)} images, not enough for "
                        f"{val_count} validation images plus at least one training image. Lower "
                        f"data.folder.val_count or add images.")
    return ids[:-val_count], ids[-val_count:], notes


def celebahq_test_ids(ids: Iterable[int], test_count: int, allow_partial: bool,
                      test_first_id: int | None = None,
                      folder: str | os.PathLike = "") -> tuple[list[int], str, list[str]]:
    """(test ids, rule text, notes) for CelebA-HQ (see module docstring)."""
    ids = sorted(ids)
    present = set(ids)
    notes: list[str] = []
    if test_count < 1:
        raise DataError(f"test_count must be at least 1, got {test_count}")
    first = CELEBAHQ_TOTAL - test_count if test_first_id is None else int(test_first_id)
    wanted = list(range(first, first + test_count))
    if test_first_id is None:
        rule = (f"CelebA-HQ ids {first}…{first + test_count - 1}: the last {test_count} of the "
                f"{CELEBAHQ_TOTAL:,} ids 0…{CELEBAHQ_TOTAL - 1}")
    else:
        rule = f"CelebA-HQ ids {first}…{first + test_count - 1} (test_first_id={first})"
    if first < 0 or first + test_count > CELEBAHQ_TOTAL:
        raise DataError(f"CelebA-HQ test ids {first}…{first + test_count - 1} fall outside "
                        f"0…{CELEBAHQ_TOTAL - 1}; lower test_count or change test_first_id.")
    missing = [i for i in wanted if i not in present]
    beyond = [i for i in ids if i >= CELEBAHQ_TOTAL]
    if not missing and not beyond:
        return wanted, rule, notes
    detail = (f"holds {len(ids):,} images (ids {ids[0]}…{ids[-1]})"
              + (f"; missing test ids {_fmt_ids(missing)}" if missing else "")
              + (f"; ids beyond {CELEBAHQ_TOTAL - 1}: {_fmt_ids(beyond)}" if beyond else ""))
    if not allow_partial:
        raise DataError(f"CelebA-HQ folder '{folder}' {detail}, but the paper protocol expects "
                        f"{CELEBAHQ_LAYOUT}. Complete the download, or pass --allow-partial "
                        f"(data.folder.allow_partial: true) to use the images present; the "
                        f"manifest then records the run as partial.")
    if test_first_id is None:
        chosen = ids[-test_count:]
        rule = f"partial CelebA-HQ: the last {len(chosen)} ids present (wanted {test_count})"
    else:
        chosen = [i for i in ids if i >= first][:test_count]
        rule = (f"partial CelebA-HQ: the first {len(chosen)} ids present from {first} on "
                f"(wanted {test_count})")
    if not chosen:
        raise DataError(f"CelebA-HQ folder '{folder}' has no image with id >= {first}.")
    notes.append(f"partial CelebA-HQ: {detail}")
    return chosen, rule, notes
