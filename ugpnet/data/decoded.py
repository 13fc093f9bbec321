"""A decoded-image cache for training sets whose decoding or reading dominates a step.

Each training item decodes a PNG (~10 ms for 512² on one core); on a fast GPU with few loader
workers, or on network storage, that can starve the GPU. With ``train.decoded_cache: <folder>``
(operational: it changes no number), the training images are decoded once into one uint8 array
``<folder>/decoded-<key>.npy`` (N × H × W × 3 bytes: 55 GB for FFHQ's 70,000 images at 512², so
put it on a node's local scratch disk) and read back through a memory map: DataLoader workers
and the training processes of one node share it through the page cache, and nothing is decoded
again. The key is a digest of the files' paths, sizes and modification times, so changed data
makes a new cache. The array is written under another name and renamed when complete, holding a
lock, so a killed build leaves nothing that looks finished and concurrent jobs build it once.

Not a library's job: torchvision and numpy decode, but none caches a folder of decoded images
across processes; this is ``numpy.lib.format.open_memmap`` plus a lock and an atomic rename.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..io import read_image


def cache_key(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{Path(f).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cache_path(files: Sequence[Path], folder: str | os.PathLike) -> Path:
    return Path(folder) / f"decoded-{cache_key(files)}.npy"


def build(files: Sequence[Path], folder: str | os.PathLike, progress: bool = False) -> Path:
    """The cache file of ``files`` in ``folder``, decoded now unless it exists."""
    path = cache_path(files, folder)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job may be building it: wait, then reuse
        if path.exists():
            return path
        first = read_image(files[0])
        shape = (len(files),) + first.shape
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            for i, f in enumerate(tqdm(files, desc=f"decoding into {path.name}",
                                       disable=not progress)):
                img = first if i == 0 else read_image(f)
                if img.shape != first.shape:
                    raise ConfigError(
                        f"train.decoded_cache needs training images of one size: '{f}' is "
                        f"{img.shape[1]}x{img.shape[0]}, '{files[0]}' is "
                        f"{first.shape[1]}x{first.shape[0]}. Prepare the data at one resolution "
                        f"or set decoded_cache: null.")
                arr[i] = img
            arr.flush()
            del arr
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


class DecodedImages:
    """``images[i]``: the decoded ``files[i]`` from the cache (opened lazily in each process, so a
    dataset holding it pickles small for spawned workers)."""

    def __init__(self, files: Sequence[Path], folder: str | os.PathLike, progress: bool = False):
        self.path = build(files, folder, progress)
        self._arr = None

    def __getitem__(self, i: int) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return np.array(self._arr[i])

    def __getstate__(self):
        return {"path": self.path, "_arr": None}
