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
    """``device`` of params.yaml as this process uses it. ``auto``/``cuda`` on a node with
    several visible GPUs and no launcher's choice (SLURM and torchrun choose): the first GPU no
    other ugpnet process of this node holds (:func:`claim_gpu`), so concurrent Snakemake jobs
    (``--resources gpu=N``) spread over the GPUs instead of sharing ``cuda:0``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available here; set "
                          f"device: cpu (or auto) in params.yaml or --set device=cpu")
    if name == "cuda" and torch.cuda.device_count() > 1:
        return torch.device(f"cuda:{claim_gpu(torch.cuda.device_count())}")
    return torch.device(name)


_CLAIMED: list = []  # open lock files: held for the life of the process


def _gpu_lock(i: int, lock_dir: str | None, wait: bool):
    import fcntl
    import os
    import tempfile

    folder = lock_dir or os.environ.get("UGPNET_GPU_LOCKS") or tempfile.gettempdir()
    f = open(os.path.join(folder, f"ugpnet-gpu-{i}.lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        f.close()
        return None
    _CLAIMED.append(f)
    return f


def claim_gpu(count: int, lock_dir: str | None = None) -> int:
    """The index of the first of ``count`` GPUs whose lock (``<lock_dir>/ugpnet-gpu-<i>.lock``,
    default ``$UGPNET_GPU_LOCKS`` or the system's temp folder) no other process holds, now held
    by this one until it exits (the kernel drops the lock of a killed process). All held: GPU 0,
    shared."""
    for i in range(count):
        if _gpu_lock(i, lock_dir, wait=False) is not None:
            return i
    return 0


def hold_gpu(i: int, lock_dir: str | None = None) -> None:
    """Take GPU ``i``'s lock (see :func:`claim_gpu`), waiting while another process holds it:
    a torchrun rank on its fixed GPU never shares it with a job that claimed it first."""
    _gpu_lock(i, lock_dir, wait=True)


# What the GPU computes (cuda: of params.yaml; nothing changes on the CPU):
# - tf32 (default false): TF32 matmuls and cuDNN convolutions on Ampere and later. Off, fp32
#   runs compute in full fp32, so GPU numbers agree with the CPU's to float rounding; the fast
#   path is train_precision: bf16. Both PyTorch switches are set explicitly (PyTorch's own
#   defaults differ between matmul and cuDNN and have changed across versions).
# - deterministic (default true): cudnn.deterministic on and cudnn.benchmark off (benchmark picks
#   algorithms by timing, so results vary run to run), deterministic algorithms where PyTorch has
#   them (warn_only: an op without one warns instead of stopping the run), and cuBLAS's
#   CUBLAS_WORKSPACE_CONFIG=:4096:8. false: cudnn.benchmark on, for speed.
CUDA_DEFAULTS = {"tf32": False, "deterministic": True}


def configure_backends(settings, device) -> dict:
    """Apply the GPU policy ``settings`` (``cuda:`` of params.yaml, see CUDA_DEFAULTS) for a run
    on ``device``; return the policy in force (recorded with each run). Nothing on the CPU."""
    import os

    policy = {**CUDA_DEFAULTS, **dict(settings or {})}
    unknown = sorted(set(policy) - set(CUDA_DEFAULTS))
    if unknown:
        raise ConfigError(f"cuda: unknown setting(s) {unknown}; known: {sorted(CUDA_DEFAULTS)}")
    if torch.device(device).type != "cuda":
        return {}
    tf32, det = bool(policy["tf32"]), bool(policy["deterministic"])
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = det
    torch.backends.cudnn.benchmark = not det
    if det:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(det, warn_only=True)
    return {"tf32": tf32, "deterministic": det, "cudnn_benchmark": not det}


PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a CPU
    with AVX512-BF16 or AMX (elsewhere oneDNN emulates bf16, slower than fp32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported",
                                                        "_is_amx_tile_supported")]
        return any(bool(f()) for f in probes if f is not None)
    return False


def resolve_precision(name: str, device) -> str:
    """``train_precision`` as it runs on ``device``: ``fp32``; ``bf16`` (mixed precision: bf16
    autocast of the forward passes, fp32 weights, optimiser and loss statistics); ``auto``:
    bf16 where :func:`native_bf16`, else fp32."""
    if name not in PRECISIONS:
        raise ConfigError(f"train_precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def autocast(precision: str, device):
    """The autocast context of a resolved ``precision`` on ``device`` (disabled for fp32)."""
    dev = torch.device(device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


def reg_scaled_optimizer(params, lr: float, betas, reg_every: int) -> torch.optim.Adam:
    """Adam with StyleGAN2's lazy-regularisation scaling (GPEN train_simple.py:352-365; GCFSR
    gcfsr_model.py setup_optimizers), for a net regularised every ``reg_every`` steps:
    ``lr * c``, ``betas ** c`` with ``c = every / (every + 1)``."""
    c = reg_every / (reg_every + 1) if reg_every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


def lr_of(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
