"""Reading NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles without running their code.

The pickle is read by :class:`ugpnet.checkpoints.RestrictedUnpickler` with the
:data:`~ugpnet.checkpoints.NVIDIA_NETWORK` policy: NVIDIA's persistent classes become inert
:class:`~ugpnet.checkpoints.PersistentPlaceholder` objects (the embedded network source is kept as
text, never executed), and any other global (``os.system``, ``builtins.eval``) is refused. The
placeholders' pickled module trees (``_parameters``, ``_buffers``, ``_modules``) are flattened into
plain state dicts named as in NVIDIA's ``state_dict()`` (``mapping.fc0.weight``,
``synthesis.b4.conv1.weight``, ...), one per network ``G_ema``, ``G``, ``D`` found in the pickle.
TensorFlow (``dnnlib.tflib``) pickles are refused with a conversion hint.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ...checkpoints import NVIDIA_NETWORK, PersistentPlaceholder, RestrictedUnpickler, read_checkpoint
from ...errors import CheckpointError

__all__ = ["NvidiaPickle", "read_nvidia_pickle"]


def _module_tensors(obj, prefix: str = "", out: dict | None = None, depth: int = 0) -> dict[str, torch.Tensor]:
    """Flatten a placeholder module tree into a state dict (parameters and buffers)."""
    out = {} if out is None else out
    if depth > 64:
        raise CheckpointError("module tree in pickle is too deep")
    state = obj.state if isinstance(obj, PersistentPlaceholder) else getattr(obj, "pickled_state", None)
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        return out
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _module_tensors(child, f"{prefix}{name}.", out, depth + 1)
    return out


@dataclass
class NvidiaPickle:
    """Tensors of the networks in an NVIDIA pickle (inert; nothing was executed)."""

    networks: dict[str, dict[str, torch.Tensor]]
    class_names: dict[str, str]
    init_kwargs: dict[str, Any]
    placeholders: set[str]


def _plain(obj, depth: int = 0):
    """Placeholder/EasyDict trees -> plain dicts (for readable init kwargs)."""
    if depth > 16:
        return "..."
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def read_nvidia_pickle(path: str | os.PathLike) -> NvidiaPickle:
    """Read an NVIDIA stylegan2-ada / stylegan3 network pickle safely (see module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        read_checkpoint(path, "network pickle")  # raises: not found / not a file / empty (0 bytes)
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f, NVIDIA_NETWORK, source=path)
            obj = data.load()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable network pickle ({type(exc).__name__}: {exc})") from exc
    if any(p.startswith("dnnlib.tflib") for p in data.placeholders):
        raise CheckpointError(
            f"{path}: this is a TensorFlow StyleGAN2 pickle; convert it first with stylegan2-ada-pytorch "
            "(legacy.py) or rosinality's convert_weight.py, then load the PyTorch file."
        )
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict with G_ema/D in the pickle, got {type(obj).__name__}")
    networks, classes, kwargs = {}, {}, {}
    for key in ("G_ema", "G", "D"):
        net = obj.get(key)
        if isinstance(net, PersistentPlaceholder):
            networks[key] = _module_tensors(net)
            classes[key] = net.class_name
            st = net.state if isinstance(net.state, dict) else {}
            kwargs[key] = _plain(st.get("_init_kwargs", {}))
    if not networks:
        raise CheckpointError(f"{path}: pickle holds no G_ema/G/D networks (keys: {sorted(map(str, obj))})")
    return NvidiaPickle(networks, classes, kwargs, data.placeholders)
