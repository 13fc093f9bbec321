"""torch Datasets for training and validation.

Items are dicts ``{"lq": float32 [3,h,w] in [0,1], "gt": float32 [3,H,W] in [0,1], "name": stem}``
(default collation stacks them into NCHW batches). Images are read with
:func:`ugpnet.io.read_image`.

* :class:`PairedFolderDataset` — fixed pairs (val/test made by ``ugpnet degrade``), matched by file
  stem (:func:`ugpnet.io.pair_by_stem`); the two folders must hold the same set of stems.
* :class:`OnTheFlyDegradationDataset` — training: a fresh degradation per item and epoch from a
  caller-supplied ``degrade_fn(img_u8, rng) -> lq_u8`` (this module never imports the degradations).
  The randomness of item ``i`` in epoch ``e`` comes only from ``(seed, e, i)``, so a run is
  reproducible whatever the number of DataLoader workers or the order items are drawn in. The epoch
  lives in shared memory, so :meth:`~OnTheFlyDegradationDataset.set_epoch` called in the main
  process also reaches (persistent) worker processes; call it before iterating the loader.
* :class:`ImageFolderDataset` — ground truth only (e.g. for a GAN prior), same crop/flip options.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..io import list_images, pair_by_stem, read_image


def _chw(img: np.ndarray) -> torch.Tensor:
    img = np.ascontiguousarray(img)
    if not img.flags.writeable:
        img = img.copy()
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


def _check_u8(arr, name: str, who: str) -> np.ndarray:
    ok = isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3
    if not ok or arr.shape[2] != 3:
        desc = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{who} must return uint8 [H,W,3] for '{name}', got {desc}")
    return arr


class PairedFolderDataset(torch.utils.data.Dataset):
    """Pairs ``lq_dir/<stem>.*`` with ``gt_dir/<stem>.*`` (sorted by stem).

    The GT size must be the LQ size times an integer factor (1 for denoise/deblur and bicubic-
    upsampled SR input, the SR scale for low-resolution input), the same factor for both axes.
    """

    def __init__(self, lq_dir: str | os.PathLike, gt_dir: str | os.PathLike):
        self.lq_dir, self.gt_dir = Path(lq_dir), Path(gt_dir)
        self.pairs = pair_by_stem(lq_dir, gt_dir, "degraded (lq) folder", "ground-truth folder",
                                  hint="Re-run `ugpnet degrade` for this split.")
        self.names = [n for n, _, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        name, lq_path, gt_path = self.pairs[i]
        lq, gt = read_image(lq_path), read_image(gt_path)
        (h, w), (H, W) = lq.shape[:2], gt.shape[:2]
        if H % h or W % w or H // h != W // w:
            raise DataError(f"'{lq_path}' is {w}x{h} but its ground truth '{gt_path}' is {W}x{H}; "
                            f"the ground truth must be the same size or an integer multiple. "
                            f"Re-run `ugpnet degrade` for this split.")
        return {"lq": _chw(lq), "gt": _chw(gt), "name": name}


class _Augment:
    """Shared crop/flip logic and shared-memory epoch for the GT-based datasets."""

    def __init__(self, gt_dir, seed: int, crop: int | None, flip: bool, scale: int,
                 decoded_cache: str | os.PathLike | None = None):
        self.gt_dir = Path(gt_dir)
        self.files = list_images(gt_dir, what="ground-truth folder")
        self.decoded = None  # ugpnet.data.decoded: the images decoded once, shared by processes
        if decoded_cache:
            from .decoded import DecodedImages

            self.decoded = DecodedImages(self.files, decoded_cache, progress=True)
        self.seed = int(seed)
        self.crop = None if crop is None else int(crop)
        self.flip = bool(flip)
        self.scale = int(scale)
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if self.crop is not None and (self.crop < 1 or self.crop % self.scale):
            raise ValueError(f"crop={crop} must be a positive multiple of scale={scale}")
        # shared memory: workers (fork or spawn, persistent or not) see set_epoch from the trainer
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def _rngs(self, i: int) -> tuple[np.random.Generator, np.random.Generator]:
        ss = np.random.SeedSequence([self.seed, self.epoch, int(i)])
        aug, deg = ss.spawn(2)
        return np.random.default_rng(aug), np.random.default_rng(deg)

    def _gt(self, i: int, rng: np.random.Generator) -> np.ndarray:
        path = self.files[i]
        img = read_image(path) if self.decoded is None else self.decoded[i]
        h, w = img.shape[:2]
        if self.crop is not None:
            c = self.crop
            if h < c or w < c:
                raise DataError(f"training image '{path}' is {w}x{h}, smaller than the crop size "
                                f"{c}; lower crop_size or prepare the data at a larger resolution.")
            y = int(rng.integers(h - c + 1))
            x = int(rng.integers(w - c + 1))
            img = img[y:y + c, x:x + c]
        elif h % self.scale or w % self.scale:
            # whole image: keep the top-left part that is a multiple of the scale
            img = img[:h - h % self.scale, :w - w % self.scale]
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)


class OnTheFlyDegradationDataset(_Augment, torch.utils.data.Dataset):
    """GT images from ``gt_dir`` degraded on the fly by ``degrade_fn(gt_u8, rng) -> lq_u8``.

    Per item: random ``crop`` × ``crop`` window (``None``: whole image; for SR ``crop`` must be a
    multiple of ``scale`` and a whole image is trimmed to one), horizontal flip with probability 0.5
    (``flip=True``), then ``degrade_fn`` on the augmented GT. ``degrade_fn`` gets its own generator,
    independent of the crop/flip draws. Its output must be the GT size or the GT size / ``scale``.
    """

    def __init__(self, gt_dir: str | os.PathLike,
                 degrade_fn: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                 seed: int, crop: int | None = None, flip: bool = True, scale: int = 1,
                 decoded_cache: str | os.PathLike | None = None):
        if not callable(degrade_fn):
            raise TypeError("degrade_fn must be callable: degrade_fn(img_u8, rng) -> lq_u8")
        super().__init__(gt_dir, seed, crop, flip, scale, decoded_cache)
        self.degrade_fn = degrade_fn

    def __getitem__(self, i: int) -> dict:
        aug_rng, deg_rng = self._rngs(i)
        gt = self._gt(i, aug_rng)
        name = self.files[i].stem
        lq = _check_u8(self.degrade_fn(gt.copy(), deg_rng), name, "degrade_fn")
        (h, w), (H, W) = lq.shape[:2], gt.shape[:2]
        if (h, w) != (H, W) and (h * self.scale, w * self.scale) != (H, W):
            raise ValueError(f"degrade_fn returned {w}x{h} for a {W}x{H} ground truth '{name}'; "
                             f"expected {W}x{H} or {W // self.scale}x{H // self.scale} "
                             f"(scale={self.scale})")
        return {"lq": _chw(lq), "gt": _chw(gt), "name": name}


class ImageFolderDataset(_Augment, torch.utils.data.Dataset):
    """Ground-truth images only: ``{"gt": [3,H,W], "name": stem}`` with optional crop/flip."""

    def __init__(self, gt_dir: str | os.PathLike, seed: int = 0, crop: int | None = None,
                 flip: bool = False):
        super().__init__(gt_dir, seed, crop, flip, 1)

    def __getitem__(self, i: int) -> dict:
        aug_rng, _ = self._rngs(i)
        return {"gt": _chw(self._gt(i, aug_rng)), "name": self.files[i].stem}
