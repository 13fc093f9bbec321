"""Per-image conversion shared by both sources: header inspection, square crop + resize, reporting.

Geometry (:func:`square_resize`): a non-square image is centre-cropped to a square of its short
side (offset ``(long - short) // 2``), then resized with PIL's Lanczos filter (a = 3, antialiased
when shrinking, 8-bit) to ``resolution``; an image already at that size is copied without
resampling. An image smaller than ``resolution`` is an error naming the file and the minimum size,
unless ``upscale=True`` (then Lanczos upsampling, recorded per file in the manifest).

Colour: images are read by :func:`ugpnet.io.read_image` (grayscale → replicated RGB, 16-bit → 8-bit,
fully opaque alpha dropped, palette → RGB; transparent images, CMYK and corrupt files are errors).
:func:`inspect_conversions` predicts those conversions from the header; each is printed and
recorded in the manifest (``conversions``, :func:`summarise_conversions`); nothing is skipped.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

from ..errors import DataError
from ..io import inspect_conversions  # noqa: F401 - re-exported (it lives with the reader)

RESAMPLE = "PIL Lanczos (a=3, antialiased), 8-bit"
GEOMETRY = ("centre crop to a square of the short side (offset (long-short)//2), then resize to "
            "resolution x resolution with " + RESAMPLE + "; no resampling when already that size")


def progress_bar(it, total=None, desc="", progress=True):
    """tqdm on stderr (hidden when ``progress`` is False or stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, disable=None if progress else True, leave=False,
                file=sys.stderr)


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


def summarise_conversions(entries: Iterable[tuple[str, str, list[str]]]) -> dict[str, dict]:
    """{conversion: {"count": n, "files": [first 20 source files]}} from (split, source, notes)."""
    out: dict[str, dict] = {}
    for _split, src, notes in entries:
        for n in notes:
            d = out.setdefault(n, {"count": 0, "files": []})
            d["count"] += 1
            if len(d["files"]) < 20:
                d["files"].append(src)
    return out


def report_conversions(conv: Mapping[str, dict]) -> None:
    """Print one line per conversion kind (count and examples) to stderr."""
    for what, d in conv.items():
        eg = ", ".join(d["files"][:3])
        print(f"ugpnet prepare: {what}: {d['count']} image(s), e.g. {eg}", file=sys.stderr)
