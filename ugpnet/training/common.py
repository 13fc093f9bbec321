"""Shared training helpers: device, threads, seeds, optimisers, schedules, parameter utilities.

Run folders (identity, resume, selection) live in :mod:`.run`, the data position in
:mod:`.stream`, the loop in :mod:`.loop`.
"""
from __future__ import annotations

import math
import random
from typing import Mapping

import numpy as np
import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available here; set "
                          f"device: cpu (or auto) in params.yaml or --set device=cpu")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    if threads and threads > 0:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_optimizer(params, train: Mapping, lr: float | None = None) -> torch.optim.Optimizer:
    betas = tuple(train.get("betas", (0.9, 0.999)))
    return torch.optim.AdamW(params, lr=lr if lr is not None else train["lr"], betas=betas,
                             weight_decay=train.get("weight_decay", 0.0))


def make_scheduler(opt: torch.optim.Optimizer, train: Mapping) -> torch.optim.lr_scheduler.LRScheduler:
    kind = train.get("lr_schedule", "constant")
    total = max(1, int(train["total_iters"]))
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    if kind == "cosine":
        floor = 1e-7 / train["lr"]
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda it: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(it, total) / total)))
    if kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(train.get("lr_steps", [])),
                                                    gamma=train.get("lr_gamma", 0.1))
    raise ConfigError(f"unknown lr_schedule '{kind}'")


def lr_of(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
