"""``ugpnet prepare``: ground-truth splits ``OUT/{train,val,test}/*.png`` + ``OUT/manifest.json``.

Every output image is uint8 RGB PNG, ``resolution`` × ``resolution``. Sources and split rules are
documented in :mod:`ugpnet.data.sources`.

Geometry (folder source, :mod:`.convert`): a non-square image is centre-cropped to a square of its
short side (offset ``(long - short) // 2``), then resized with PIL's Lanczos filter (a = 3,
antialiased when shrinking, 8-bit) to ``resolution``; an image already at that size is copied
without resampling. An image smaller than ``resolution`` is an error naming the file and the
minimum size, unless ``upscale=True`` (then Lanczos upsampling, recorded per file in the manifest).

Colour (:mod:`.convert`): images are read by :func:`ugpnet.io.read_image` (grayscale → replicated
RGB, 16-bit → 8-bit, fully opaque alpha dropped, palette → RGB; transparent images, CMYK and
corrupt files are errors). Each conversion is printed and recorded in the manifest
(``conversions``); nothing is skipped.

Atomicity (:mod:`.manifest`): the old ``manifest.json`` is deleted first (an interrupted rewrite
never looks done); each split is written into a hidden temporary folder inside ``OUT`` and renamed
into place only after **all** splits succeeded; ``manifest.json`` (file names and sha256 of every
image) is written last, atomically. It is the done-marker (the Snakemake target).

By job: :mod:`.prepare_bundled` (scikit-image photographs), :mod:`.prepare_folder` (FFHQ +
CelebA-HQ), :mod:`.convert` (per-image geometry and colour), :mod:`.manifest` (manifest and the
atomic split writer). This module is the public entry::

    prepare_bundled(out_dir, *, resolution, counts, seed=0, progress=True, assignment=None) -> dict
    prepare_folder(out_dir, *, ffhq_dir, celebahq_dir, resolution, val_count=1000,
                   test_count=3000, allow_partial=False, workers=1, progress=True, upscale=False,
                   test_first_id=None) -> dict
    read_manifest(out_dir) -> dict          verify_manifest(out_dir, check_hashes=True) -> dict
"""
from .manifest import read_manifest, verify_manifest
from .prepare_bundled import prepare_bundled
from .prepare_folder import prepare_folder

__all__ = ["prepare_bundled", "prepare_folder", "read_manifest", "verify_manifest"]
