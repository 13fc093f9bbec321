"""Image and file I/O shared by every module.

In memory an image is a ``numpy.uint8`` array ``[H, W, 3]`` in RGB. Reading applies documented
conversions and raises :class:`~ugpnet.errors.DataError` (naming the file and the fix) for anything
else. Every write is atomic: data goes to a temporary file in the same folder which is then renamed,
so a killed job never leaves a half-written file that looks finished.

Conversions on read (documented in the README):
- grayscale (L, I;16, 1-bit) → replicated to 3 channels;
- 16-bit per channel → 8-bit by ``round(v / 257)``;
- RGBA/LA → alpha dropped **only** if the image is fully opaque; otherwise an error (compositing
  onto a background would invent pixel values);
- palette (P) → RGB via the palette (exact).

Pixel limit (decompression bombs): an image whose header claims more than :func:`max_pixels`
pixels (default :data:`DEFAULT_MAX_PIXELS` = 64 MP = 8192x8192 = 67,108,864; FFHQ is 1 MP) is refused with a
DataError naming the file *before* anything is decoded. Raise the limit with the environment
variable ``UGPNET_MAX_PIXELS`` (a pixel count, e.g. ``UGPNET_MAX_PIXELS=200000000``).

Pairing by file stem (:func:`pair_by_stem`): two folders are paired by file name without extension
(``a.png`` with ``a.jpg``); a folder holding two files with the same stem is an error, and so is a
name present in only one folder (the message lists the first :data:`LISTED` names of each side, then
``... (N more)``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
MAX_PIXELS_ENV = "UGPNET_MAX_PIXELS"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LISTED = 10  # names listed in error messages before "... (N more)"


_UMASK: int | None = None


def umask() -> int:
    """The process umask (read once; ``os.umask`` can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def respect_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file made by ``mkstemp`` (0600) or a folder made by ``mkdtemp`` (0700) the mode a
    plain ``open``/``mkdir`` would have given it (0666/0777 minus the umask), so results stay
    readable by a group on a shared server."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """``tempfile.mkdtemp`` in ``parent`` with the umask's mode (see :func:`respect_umask`)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    respect_umask(tmp, folder=True)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The file gets the mode of a plain ``open(path, "w")`` (0666 minus the umask), not mkstemp's
    0600; a file that fails half-way is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    respect_umask(tmp_path)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except OSError as e:
            if e.filename is None:  # a plain write() (full disk): say which file it was
                e.filename = str(path)
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def list_images(folder: str | os.PathLike, what: str = "image folder") -> list[Path]:
    """Sorted image files directly inside ``folder``; error if the folder is missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{what} '{folder}' does not exist. Check the path (or run the step that "
                        f"creates it).")
    if not folder.is_dir():
        raise DataError(f"{what} '{folder}' is not a folder.")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    if not files:
        raise DataError(f"{what} '{folder}' contains no images ({', '.join(IMAGE_EXTS)}). "
                        f"Put the images directly in this folder.")
    return files


def listing(names: Iterable[str], limit: int = LISTED) -> str:
    """``"a, b, c"``; after ``limit`` names ``", ... (N more)"``. Order is kept (sort before if needed)."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def index_by_stem(files: Sequence[Path], what: str, hint: str = "") -> dict[str, Path]:
    """``{stem: path}``; DataError naming ``what`` when two files share a stem (``a.png``, ``a.jpg``).

    ``hint`` (``{stem}`` is replaced by the stem) ends that message."""
    out: dict[str, Path] = {}
    for p in files:
        p = Path(p)
        if p.stem in out:
            fix = hint.replace("{stem}", p.stem) if hint else (
                "images are paired by file name without extension, keep one.")
            raise DataError(f"{what} holds two images named '{p.stem}' ('{out[p.stem].name}' and "
                            f"'{p.name}'); {fix}")
        out[p.stem] = p
    return out


def pair_by_stem(dir_a: str | os.PathLike, dir_b: str | os.PathLike, what_a: str = "first folder",
                 what_b: str = "second folder", hint: str = "") -> list[tuple[str, Path, Path]]:
    """``[(stem, path_a, path_b)]`` sorted by stem, for two image folders holding the same stems.

    ``dir_b`` is the reference: a stem only in ``dir_b`` is *missing* from ``dir_a``, a stem only in
    ``dir_a`` is *extra*. Otherwise (or on a duplicate stem, or a missing/empty folder) a DataError
    that names both folders, lists the missing and the extra names (first :data:`LISTED` of each)
    and ends with ``hint``."""
    a = index_by_stem(list_images(dir_a, what=what_a), f"{what_a} '{dir_a}'")
    b = index_by_stem(list_images(dir_b, what=what_b), f"{what_b} '{dir_b}'")
    missing = sorted(set(b) - set(a))
    extra = sorted(set(a) - set(b))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} name(s) only in {what_b} '{dir_b}' (missing from the "
                         f"{what_a}): {listing(missing)}")
        if extra:
            parts.append(f"{len(extra)} name(s) only in {what_a} '{dir_a}' (extra, not in the "
                         f"{what_b}): {listing(extra)}")
        raise DataError(f"{what_a} '{dir_a}' and {what_b} '{dir_b}' do not hold the same image names "
                        f"(images are paired by file name without extension); {'; '.join(parts)}."
                        + (f" {hint}" if hint else ""))
    return [(s, a[s], b[s]) for s in sorted(b)]


# ------------------------------------------------------------------ output folders swapped in whole
MANIFEST = "manifest.json"


def check_separate(out: str | os.PathLike, protected: dict[str, str | os.PathLike],
                   flag: str = "--out") -> None:
    """DataError unless the output folder ``out`` is apart from every ``protected`` folder
    (``{what: folder}``): not the same folder, not inside one, not containing one. Real paths
    are compared (symlinks resolved), so a link to the input folder is caught too."""
    real = Path(out).resolve()
    for what, folder in protected.items():
        other = Path(folder).resolve()
        if real == other:
            how = "is"
        elif other in real.parents:
            how = "lies inside"
        elif real in other.parents:
            how = "contains"
        else:
            continue
        linked = f" (both resolve to '{other}')" if how == "is" and Path(out) != Path(folder) \
            else ""
        raise DataError(f"{flag} '{out}' {how} the {what} '{folder}'{linked}: writing there would "
                        f"overwrite or mix with it. Choose an output folder outside it.")


def visible_images(folder: str | os.PathLike, subdirs: Iterable[str] = ()) -> list[str]:
    """Names (relative to ``folder``, sorted) of the image files directly in ``folder`` and in
    its sub-folders ``subdirs``; hidden files (temporary files of atomic writes) are left out."""
    folder = Path(folder)
    out = []
    for sub in ("", *subdirs):
        d = folder / sub
        if d.is_dir():
            out += [str(Path(sub) / p.name) for p in d.iterdir() if p.is_file()
                    and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(out)


def read_json_or_none(path: str | os.PathLike):
    """The JSON content of ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_staging(out_dir: str | os.PathLike, planned: set[str], *, tool: str, marker: str,
                    prefix: str, owns, subdirs: Sequence[str] = ()) -> tuple[Path, list[Path]]:
    """Check ``out_dir`` before a run of ``tool`` writes ``planned`` (names relative to it),
    remove the leftovers of killed runs, and make the hidden staging folder the new outputs are
    written into → ``(staging, stale images)``.

    The folder is ``tool``'s when it holds ``marker`` or a manifest that ``owns(manifest)``
    accepts; images of another origin are refused, never deleted. Nothing of a finished earlier
    run is touched: it stays valid until :func:`commit_staging` swaps the complete new set in."""
    import glob
    import shutil

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output '{out_dir}' exists and is not a folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    ours = (out_dir / marker).exists() or (manifest.exists()
                                           and bool(owns(read_json_or_none(manifest) or {})))
    if manifest.exists() and not ours:
        raise DataError(f"'{manifest}' was not written by {tool}; choose an empty output folder.")
    stale = [out_dir / n for n in visible_images(out_dir, subdirs) if n not in planned]
    if stale and not ours:
        raise DataError(f"output folder '{out_dir}' already holds images not written by {tool} "
                        f"(e.g. '{stale[0].relative_to(out_dir)}'); choose an empty folder or "
                        f"remove them.")
    # leftovers of a killed run: staging folders and hidden temp files of atomic writes
    for p in out_dir.glob(glob.escape(prefix) + "*"):
        shutil.rmtree(p, ignore_errors=True)
    for name in planned | {MANIFEST, marker}:
        target = out_dir / name
        if target.parent.is_dir():
            for p in target.parent.glob(f".{glob.escape(target.name)}.*"):
                if p.is_file():
                    p.unlink(missing_ok=True)
    return make_temp_dir(out_dir, prefix), stale


def commit_staging(out_dir: str | os.PathLike, staging: Path, names: Iterable[str],
                   stale: Iterable[Path], manifest: dict, *, marker: str, marker_text: str,
                   keep_marker: bool = False, subdirs: Sequence[str] = ()) -> None:
    """Swap the complete new outputs in: write ``marker`` (the folder is unfinished), drop the
    old manifest, rename every new file from ``staging`` into place (fast renames on one disk),
    remove stale images and emptied ``subdirs``, write the manifest last. ``keep_marker``
    leaves the marker as a lasting sign of whose folder this is."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / marker, marker_text)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for name in names:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    for p in stale:
        p.unlink(missing_ok=True)
    for sub in subdirs:
        with contextlib.suppress(OSError):  # only an emptied folder goes
            (out_dir / sub).rmdir()
    atomic_write_json(out_dir / MANIFEST, manifest)
    if not keep_marker:
        (out_dir / marker).unlink(missing_ok=True)


def max_pixels() -> int:
    """The pixel limit of :func:`read_image` (``$UGPNET_MAX_PIXELS``, default 64 MP)."""
    from .errors import ConfigError

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive pixel count; set it to e.g. "
                          f"{DEFAULT_MAX_PIXELS} (the default, 64 MP) or unset it.")
    return value


def check_pixels(path: str | os.PathLike, width: int, height: int) -> None:
    """DataError naming ``path`` if ``width x height`` exceeds :func:`max_pixels`."""
    limit = max_pixels()
    if int(width) * int(height) > limit:
        raise DataError(
            f"image '{path}' claims {width}x{height} pixels ({width * height / 1e6:.0f} MP), more "
            f"than the limit of {limit:,} pixels; it was not decoded (a damaged file or a "
            f"decompression bomb). Remove it, or if it is a genuine photo raise the limit: "
            f"{MAX_PIXELS_ENV}={int(width) * int(height)}.")


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24],
            head[25])


def _png_bit_depth(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None if not a PNG."""
    h = _png_header(path)
    return None if h is None else (h[2], h[3])


@contextlib.contextmanager
def open_image(path: str | os.PathLike):
    """``PIL.Image.open`` with our pixel limit checked from the header, before any decoding.

    Pillow's own bomb check (a warning above 89 MP, an error above 179 MP) is replaced by ours:
    one DataError naming the file and the fix (see the module docstring)."""
    import warnings

    path = Path(path)
    head = _png_header(path)
    if head is not None:
        check_pixels(path, head[0], head[1])
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # ours is checked below; Pillow's must not fire first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise DataError(f"image '{path}' claims more pixels than the limit of "
                            f"{limit:,}; it was not decoded (a damaged file or a "
                            f"decompression bomb). Remove it, or raise {MAX_PIXELS_ENV}.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            raise DataError(f"image '{path}' cannot be read ({e}). The file is corrupt or "
                            f"truncated: re-download or re-export it, or remove it from the "
                            f"folder.") from None
    with im:
        check_pixels(path, *im.size)
        yield im


def _read_png16_rgb(path: Path) -> np.ndarray:
    """16-bit RGB/RGBA PNG → uint8 RGB by round(v/257). Pillow cannot decode these without
    truncating to the high byte, so the pure-Python ``pypng`` decoder reads them."""
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = info["planes"]
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width,
                                                                                  planes)
    except png.Error as e:
        raise DataError(f"image '{path}' cannot be read ({e}). The file is corrupt or truncated: "
                        f"re-download or re-export it, or remove it from the folder.") from None
    if planes == 4:
        if (arr[..., 3] != 65535).any():
            raise DataError(f"image '{path}' has a transparent alpha channel; UGPNet needs opaque "
                            f"RGB. Flatten it onto a background of your choice and save it as RGB.")
        arr = arr[..., :3]
    return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as uint8 RGB ``[H, W, 3]`` (see module docstring for conversions)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image '{path}' does not exist.")
    try:
        head = _png_header(path)
        if head is not None:
            check_pixels(path, head[0], head[1])
        if head is not None and head[2] == 16 and head[3] in (2, 6):
            return _read_png16_rgb(path)
        with open_image(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.float64)
                if arr.max() > 255:  # 16-bit grayscale
                    arr = np.round(arr / 257.0)
                arr = np.clip(arr, 0, 255).astype(np.uint8)
                return np.repeat(arr[..., None], 3, axis=2)
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"))
                if (rgba[..., 3] != 255).any():
                    raise DataError(
                        f"image '{path}' has a transparent alpha channel; UGPNet needs opaque RGB. "
                        f"Flatten it onto a background of your choice and save it as RGB.")
                return np.ascontiguousarray(rgba[..., :3])
            if mode in ("RGB;16", "I;16N") or (mode == "RGB" and np.asarray(im).dtype != np.uint8):
                arr = np.round(np.asarray(im).astype(np.float64) / 257.0)
                return np.clip(arr, 0, 255).astype(np.uint8)
            if mode == "CMYK":
                raise DataError(f"image '{path}' is CMYK; convert it to RGB first.")
            if mode == "F":
                raise DataError(f"image '{path}' is floating point; save it as 8-bit RGB.")
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"image '{path}' cannot be read ({e}). The file is corrupt or truncated: "
                        f"re-download or re-export it, or remove it from the folder.") from None


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a uint8 RGB array as PNG, atomically. Deterministic bytes for the same array."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"write_png expects uint8 [H,W,3], got {img.dtype} {img.shape}")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(img, mode="RGB").save(tmp, format="PNG", compress_level=6)


def to_tensor(img: np.ndarray):
    """uint8 [H,W,3] → float32 torch tensor [1,3,H,W] in [0,1]."""
    import torch

    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)


def to_uint8(t) -> np.ndarray:
    """torch tensor [1,3,H,W] or [3,H,W] in [0,1] → uint8 [H,W,3] (clamp, round)."""
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError("to_uint8 expects a batch of one")
        t = t[0]
    arr = t.detach().clamp(0, 1).mul(255.0).round().to("cpu").permute(1, 2, 0).numpy()
    return arr.astype(np.uint8)


def inspect_conversions(path: str | os.PathLike) -> tuple[tuple[int, int], list[str]]:
    """((width, height), conversions read_image will apply) from the file header only."""
    path = Path(path)

    try:
        with open_image(path) as im:
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
