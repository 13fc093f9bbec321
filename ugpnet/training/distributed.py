"""Data-parallel training across processes (``torchrun``): one process per device, the same
global batch as one process, the same weights in every process.

``ugpnet train`` started by ``torchrun --nproc-per-node N`` (the Snakemake ``train`` rule does
this when a stage's resources give it more than one GPU) joins a process group — NCCL on CUDA,
gloo on the CPU — and every stage then trains through :func:`~ugpnet.training.loop.run_stage`
as follows:

- **Data.** The global batch (``batch_size`` in params.yaml) is split over the ``N`` processes:
  rank ``r`` takes items ``r*b .. (r+1)*b - 1`` of each global batch (``b = batch_size / N``) of
  the same epoch order (:class:`~ugpnet.training.stream.EpochSampler`), and every item's crop,
  flip and degradation depend on (seed, epoch, item) alone: the processes together see exactly
  the batches one process would see. ``batch_size`` must divide by ``N``.
- **Gradients.** Before every optimiser step, the gradients of that optimiser's parameters are
  averaged over the processes (:func:`average_gradients`, one all-reduce per step and dtype):
  the mean of the per-process batch means is the global batch mean, so each step is the one
  process's step on the whole batch, up to float rounding.
- **Weights.** Built from the same seed in every process, then broadcast from rank 0 at the
  start (and after a resume) so they are identical.
- **Randomness.** Each rank draws its own stream (latents, noise) from (seed, rank); the
  per-rank RNG states are saved in ``last.pt`` so a resumed run continues each stream.
- **Files.** Only rank 0 writes: run folder, ``last.pt``, ``best.pt``, logs, curves, grids,
  ``model.pt``; only rank 0 validates (the others wait). Logged losses are averaged over ranks.

Why not :class:`torch.nn.parallel.DistributedDataParallel` itself: a stage here is any code
with ``step(batch, it)`` (GAN stages with several optimisers, R1 penalties through
``torch.autograd.grad``, frozen and EMA copies, VQFR's adaptive weights), and DDP only
averages gradients of the forward calls made through its wrapper and does not support
``torch.autograd.grad`` on its parameters. Averaging at the optimiser step is the scheme of
StyleGAN2-ADA's own multi-GPU loop (``training_loop.py``: an all-reduce of the flattened
gradients before each ``opt.step()``) and covers every kind with no change to its code. The
cost is no overlap of communication with the backward pass (DDP's bucketing); BatchNorm
running statistics stay per process (rank 0's are saved).
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..errors import ConfigError

TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 validates while the others wait


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str) -> str:
    """Join the process group of a torchrun launch; return the device this rank uses
    (``cuda:<LOCAL_RANK>`` for a CUDA ``device_name``). Without a launch: ``device_name``."""
    if not launched():
        return device_name
    if dist.is_initialized():
        return _rank_device(device_name)
    dev = _rank_device(device_name)
    cuda = dev.startswith("cuda") or (dev == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"torchrun started {os.environ['WORLD_SIZE']} processes for device "
                              f"'{device_name}' but CUDA is not available here")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', '?')} "
                              f"processes on this node but it has {torch.cuda.device_count()} "
                              f"visible GPUs: lower the train resources' gpus in params.yaml")
        torch.cuda.set_device(local)
        if "CUDA_VISIBLE_DEVICES" not in os.environ:  # a node shared with other local jobs
            from .common import hold_gpu

            hold_gpu(local)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return dev


def _rank_device(device_name: str) -> str:
    if device_name in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device_name


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch(batch_size: int) -> int:
    """The per-process share of a global ``batch_size`` (ConfigError unless it divides)."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(f"batch_size {batch_size} does not divide over {n} training "
                          f"processes: make batch_size a multiple of {n} (it is the global "
                          f"batch) or train on another number of devices")
    return batch_size // n


def batch_sizes(mcfg: Mapping, where: str = "") -> list[tuple[str, int]]:
    """Every ``batch_size`` in a method's configuration, by dotted path."""
    out = []
    for k, v in (mcfg or {}).items():
        if k == "batch_size" and isinstance(v, int):
            out.append((f"{where}{k}", v))
        elif isinstance(v, Mapping):
            out += batch_sizes(v, f"{where}{k}.")
    return out


def indivisible_batches(methods: Mapping, gpus: Mapping[str, int]) -> list[str]:
    """What the workflow refuses before it starts: a method trained on ``gpus[m]`` > 1 processes
    whose global ``batch_size`` somewhere does not divide over them."""
    bad = []
    for m, n in gpus.items():
        if n > 1:
            bad += [f"methods.{m}.{path} = {b} does not divide over its {n} GPUs "
                    f"(resources.methods.{m}.train.gpus)" for path, b in
                    batch_sizes(methods.get(m) or {}) if b % n]
    return bad


def rank_seed(seed: int, r: int) -> int:
    return int(np.random.SeedSequence([int(seed), 1 + int(r)]).generate_state(1)[0])


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj):
    """``obj`` of rank 0 in every process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` in every process."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def main_first(what: str):
    """Rank 0 runs the block first, the others after it succeeded (they stop with an error
    naming ``what`` when it failed, instead of waiting for a collective that never comes)."""
    if not active():
        yield
        return
    if is_main():
        error = None
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 - told to the others, then re-raised
            error = f"{type(exc).__name__}: {exc}"
            broadcast_object(error)
            raise
        broadcast_object(error)
    else:
        error = broadcast_object(None)
        if error is not None:
            raise RuntimeError(f"rank 0 failed while {what}: {error}")
        yield


def mean_values(values: Mapping[str, float]) -> dict:
    """``values`` averaged over the processes (same keys everywhere)."""
    if not active() or not values:
        return dict(values)
    keys = sorted(k for k, v in values.items() if isinstance(v, (int, float)) or
                  (torch.is_tensor(v) and v.numel() == 1))  # numbers: averaged; others kept
    if not keys:
        return dict(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = (t / world_size()).cpu()
    return {**values, **{k: float(v) for k, v in zip(keys, t.tolist())}}


def broadcast_modules(modules: Iterable[torch.nn.Module]) -> None:
    """Parameters and buffers of rank 0 in every process."""
    if not active():
        return
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average ``.grad`` over the processes. A parameter with no gradient in any process keeps
    none (an optimiser skips it, as one process would); one with a gradient somewhere gets the
    mean with zeros for the processes that had none."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    dev = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    dist.all_reduce(has)
    n = world_size()
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    by_dtype: dict = {}
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        flat.div_(n)
        offset = 0
        for p in group:
            k = p.grad.numel()
            p.grad.copy_(flat[offset:offset + k].view_as(p.grad))
            offset += k


def _pre_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    average_gradients(p for g in optimizer.param_groups for p in g["params"])


@contextmanager
def averaged_steps():
    """While active (and in a process group): every optimiser step averages its gradients
    over the processes first (a global optimiser step pre-hook)."""
    if not active():
        yield
        return
    handle = register_optimizer_step_pre_hook(_pre_step)
    try:
        yield
    finally:
        handle.remove()
