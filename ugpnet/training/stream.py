"""The training data position, so that a resumed run sees exactly the batches it would have seen.

- :class:`EpochSampler`: the order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone
  (no generator state carried between epochs) and can start at any item.
- :class:`DataStream`: endless batches over epochs; ``state()`` is ``{epoch, batch}`` (batches
  taken in the current epoch) and ``load_state()`` continues from there, with the dataset's
  per-item degradation streams (a function of seed, epoch and item) set to the same epoch.

Together with the model/optimiser/scheduler states and the torch RNG state saved in ``last.pt``,
a run killed at any iteration and resumed ends with bit-identical weights on the CPU (tested).
Nothing here depends on the number of DataLoader workers.

**Data-parallel training** (:mod:`.distributed`): the sampler of rank ``r`` of ``world``
processes, each loading ``batch`` items per step, yields slice ``r`` of every global batch
(``batch * world`` items) of the same order, and only whole global batches, so every rank takes
the same number of steps; the position stays counted in global batches.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..errors import ConfigError


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler):
    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1,
                 batch: int = 1):
        """``rank``, ``world``, ``batch``: this process's share of data-parallel training
        (``world`` 1: every item from the position on)."""
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.rank, self.world, self.batch = int(rank), int(world), int(batch)
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        rest = self.order(self.epoch)[self.start:]
        if self.world == 1:
            return iter(rest)
        size, b = self.batch * self.world, self.batch
        return iter([i for g in range(len(rest) // size)
                     for i in rest[g * size + self.rank * b:g * size + (self.rank + 1) * b]])

    def __len__(self) -> int:
        rest = max(0, self.n - self.start)
        if self.world == 1:
            return rest
        return rest // (self.batch * self.world) * self.batch


class DataStream:
    """Endless batches of a DataLoader whose sampler is an :class:`EpochSampler`."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        if not isinstance(loader.sampler, EpochSampler):
            raise TypeError("DataStream needs a DataLoader with an EpochSampler")
        self.loader = loader
        self.epoch, self.batch = 0, 0
        self._it = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._it = None

    def __iter__(self) -> "DataStream":
        return self

    def __next__(self):
        for _ in range(2):
            if self._it is None:
                per_step = self.loader.batch_size * self.loader.sampler.world  # the global batch
                self.loader.sampler.set_position(self.epoch, self.batch * per_step)
                ds = self.loader.dataset
                if hasattr(ds, "set_epoch"):
                    ds.set_epoch(self.epoch)
                self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                if self.batch == 0:
                    n = len(self.loader.dataset)
                    size = self.loader.batch_size * self.loader.sampler.world
                    raise ConfigError(f"the training set ({n} images) is smaller than one batch "
                                      f"({size}); lower batch_size in params.yaml") from None
                self.epoch, self.batch = self.epoch + 1, 0
                continue
            self.batch += 1
            return batch
        raise ConfigError("the training loader yields no batch")  # pragma: no cover
