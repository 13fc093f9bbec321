"""Shared training machinery: runs, checkpoints, schedules, logs, validation, resume.

A run directory holds (EDM idea: options next to the checkpoint):

- ``options.json``  the resolved options of the run (written first; a resume checks it)
- ``last.pt``       the full state for resuming (model(s), optimiser(s), iteration, RNG), atomic
- ``best.pt``       the weights selected on the VALIDATION split so far (never the test split)
- ``log.jsonl``     one JSON line per ``log_every`` iterations (losses, lr, seconds)
- ``val.jsonl``     one JSON line per validation (metrics on the val split)
- ``model.pt``      the final selected weights + summary; written LAST: its presence means done
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch

from ..checkpoints import read_checkpoint, save_checkpoint
from ..errors import ConfigError
from ..io import atomic_path, atomic_write_json


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


def options_hash(options: Mapping) -> str:
    blob = json.dumps(options, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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


def infinite(loader) -> Iterator:
    epoch = 0
    while True:
        ds = loader.dataset
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise ConfigError(f"the training set ({len(ds)} images) is smaller than one batch "
                              f"({loader.batch_size}); lower batch_size in params.yaml")
        epoch += 1


class JsonlLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def write(self, record: Mapping) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, it: int) -> None:
        """Drop records beyond iteration ``it`` (after a resume from an older checkpoint)."""
        keep = [r for r in self.read() if r.get("iter", 0) <= it]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


class Run:
    """A run directory: options, resume, logs, checkpoint selection on the validation split."""

    def __init__(self, out_dir: str | os.PathLike, options: Mapping, select_metric: str = "psnr"):
        """``select_metric``: psnr/ssim (highest on val), lpips (lowest) or final (last)."""
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.options = dict(options)
        self.hash = options_hash(self.options)
        self.select_metric = select_metric
        self.higher_is_better = select_metric in ("psnr", "ssim")
        self.log = JsonlLog(self.dir / "log.jsonl")
        self.val_log = JsonlLog(self.dir / "val.jsonl")
        self.best_value: float | None = None
        self.best_iter: int | None = None
        self.t0 = time.time()

    @property
    def final_path(self) -> Path:
        return self.dir / "model.pt"

    def start(self) -> dict | None:
        """Write options; return the resume state from ``last.pt`` if it matches, else None."""
        opts_path = self.dir / "options.json"
        last = self.dir / "last.pt"
        resume = None
        if last.exists() and opts_path.exists():
            old = json.loads(opts_path.read_text())
            if old.get("options_hash") == self.hash:
                resume = read_checkpoint(last, "resume state (last.pt)")
                self.best_value = resume.get("best_value")
                self.best_iter = resume.get("best_iter")
                self.log.truncate_after(resume["iter"])
                self.val_log.truncate_after(resume["iter"])
                print(f"[{self.dir}] resuming from iteration {resume['iter']}")
            else:
                print(f"[{self.dir}] options changed since last.pt was written: starting afresh")
        if resume is None:
            for name in ("last.pt", "best.pt", "log.jsonl", "val.jsonl"):
                (self.dir / name).unlink(missing_ok=True)
        atomic_write_json(opts_path, {"options_hash": self.hash, "options": self.options,
                                      "torch": torch.__version__})
        return resume

    def is_better(self, value: float) -> bool:
        if self.best_value is None or not math.isfinite(self.best_value):
            return True
        return value > self.best_value if self.higher_is_better else value < self.best_value

    def validated(self, it: int, metrics: Mapping[str, float], weights: Mapping) -> bool:
        """Record val metrics; keep ``best.pt`` if the selection metric improved."""
        if self.select_metric == "final":  # the last validated iteration is the selection
            value, better = float(it), True
        else:
            value = float(metrics[self.select_metric])
            better = self.is_better(value)
        if better:
            self.best_value, self.best_iter = value, it
            save_checkpoint(self.dir / "best.pt", {"iter": it, "weights": dict(weights),
                                                    "val": dict(metrics)})
        self.val_log.write({"iter": it, **metrics, "selected": better})
        return better

    def save_last(self, it: int, state: Mapping) -> None:
        save_checkpoint(self.dir / "last.pt", {"iter": it, "best_value": self.best_value,
                                                "best_iter": self.best_iter, **state})

    def finish(self, extra: Mapping | None = None) -> dict:
        """Write ``model.pt`` from ``best.pt`` (selected on val) and a summary; return summary."""
        best = read_checkpoint(self.dir / "best.pt", "selected weights (best.pt)")
        summary = {"selected_iter": best["iter"], "select_metric": self.select_metric,
                   "val": best["val"], "options_hash": self.hash,
                   "seconds": round(time.time() - self.t0, 1), **(extra or {})}
        save_checkpoint(self.final_path, {"weights": best["weights"], "summary": summary,
                                          "options": json.dumps(self.options)})
        atomic_write_json(self.dir / "summary.json", summary)
        return summary


def lr_of(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
