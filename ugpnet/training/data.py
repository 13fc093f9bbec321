"""Datasets for a (method, task): on-the-fly degraded training crops, fixed val/test pairs.

Training degradations are drawn afresh per item and epoch (deterministic from the seed), with the
*training* kernel bank for deblur; the val/test splits use the fixed degraded folders made by
``ugpnet degrade`` (a separate kernel bank, so no test kernel is seen in training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from ..data.datasets import OnTheFlyDegradationDataset, PairedFolderDataset
from ..degradations import degrade_image, load_kernel_bank, sr_input
from .stream import EpochSampler


def make_input_fn(mode: str, scale: int) -> Callable[[np.ndarray], np.ndarray]:
    if mode in ("lq", "lr"):
        return lambda img: img
    return lambda img: sr_input(img, mode, scale)


def make_degrade_fn(task: str, deg: Mapping, kernel_bank: str | Path | None,
                    mode: str) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """``deg``: the task's own settings (``degradations.<task>``), nothing else is read."""
    kernels = load_kernel_bank(kernel_bank) if task == "deblur" else None
    if task == "deblur" and kernels is None:
        raise ValueError("deblur training needs a kernel bank")
    scale = deg["scale"] if task == "sr" else None
    to_input = make_input_fn(mode, scale)
    noise = {"sigma": deg["sigma"], "k": deg["k"]} if task == "denoise" else {}

    def fn(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lq = degrade_image(task, img, rng, kernels=kernels, scale=scale, **noise)
        return to_input(lq)

    return fn


class MapLQ(torch.utils.data.Dataset):
    """Apply an input transform (uint8 → uint8) to the 'lq' of a paired dataset."""

    def __init__(self, base: torch.utils.data.Dataset, fn: Callable[[np.ndarray], np.ndarray]):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        lq = (item["lq"].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        item["lq"] = torch.from_numpy(self.fn(lq)).permute(2, 0, 1).float() / 255.0
        return item


def train_dataset(gt_dir, task: str, deg: Mapping, kernel_bank, mode: str, seed: int,
                  crop_size: int | None, hflip: bool = True,
                  decoded_cache=None) -> torch.utils.data.Dataset:
    """Training crops of ``gt_dir`` degraded on the fly; ``deg`` = ``degradations.<task>``;
    ``decoded_cache``: a folder for the decoded images (:mod:`ugpnet.data.decoded`) or None."""
    crop = crop_size
    return OnTheFlyDegradationDataset(gt_dir, make_degrade_fn(task, deg, kernel_bank, mode),
                                      seed=seed, crop=crop, flip=hflip,
                                      scale=deg["scale"] if task == "sr" else 1,
                                      decoded_cache=decoded_cache)


def clean_dataset(gt_dir, seed: int, crop_size: int | None, hflip: bool = True,
                  decoded_cache=None) -> torch.utils.data.Dataset:
    """Training crops of ``gt_dir`` with ``lq = gt`` (a shared stage: clean faces only)."""
    return OnTheFlyDegradationDataset(gt_dir, lambda img, rng: img, seed=seed, crop=crop_size,
                                      flip=hflip, decoded_cache=decoded_cache)


def clean_pairs(gt_dir) -> torch.utils.data.Dataset:
    """The val ground truth paired with itself (a shared stage validates reconstruction)."""
    return PairedFolderDataset(gt_dir, gt_dir)


def paired_dataset(lq_dir, gt_dir, task: str, mode: str, scale: int) -> torch.utils.data.Dataset:
    ds = PairedFolderDataset(lq_dir, gt_dir)
    if mode == "bicubic_up":
        return MapLQ(ds, make_input_fn(mode, scale))
    return ds


def loader(ds, batch_size: int, shuffle: bool, num_workers: int, seed: int = 0,
           pin_memory: bool = False):
    """A DataLoader whose order is an :class:`~ugpnet.training.stream.EpochSampler` (a function
    of seed and epoch alone, so resuming is exact and the worker count changes nothing). The
    generator only seeds worker processes (our datasets draw from their own seeded streams) and
    keeps the loader from consuming the global torch RNG.

    A training loader (``shuffle``) in data-parallel training (:mod:`.distributed`) loads this
    process's share of the global ``batch_size``; a validation loader loads everything (rank 0
    validates). ``pin_memory``: page-locked batches for asynchronous copies to a GPU."""
    from . import distributed

    g = torch.Generator()
    g.manual_seed(seed)
    if shuffle and distributed.active():
        batch_size = distributed.local_batch(batch_size)
        sampler = EpochSampler(len(ds), seed, shuffle, rank=distributed.rank(),
                               world=distributed.world_size(), batch=batch_size)
    else:
        sampler = EpochSampler(len(ds), seed, shuffle)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler,
                                       num_workers=num_workers, drop_last=shuffle,
                                       generator=g, persistent_workers=num_workers > 0,
                                       pin_memory=pin_memory)
