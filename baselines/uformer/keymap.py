"""Official Uformer checkpoints onto our :class:`~baselines.uformer.arch.Uformer`, strictly.

The authors' training scripts (ZhendongWang6/Uformer train/train_denoise.py:234-238,
train_motiondeblur.py) save ``{'epoch', 'state_dict', 'optimizer'}`` with the model wrapped in
``torch.nn.DataParallel``, so every ``state_dict`` key starts with ``module.``; the released
Uformer_B GoPro / SIDD models are such files (``utils/model_utils.py`` ``load_checkpoint`` strips
the prefix). We read the ``state_dict`` entry (or a bare state dict), with or without the prefix::

    official (model.py names)                        ours (baselines.uformer.arch)
    input_proj.proj.0.weight / .bias                 input_proj.0.weight / .bias
    output_proj.proj.0.weight / .bias                output_proj.0.weight / .bias
    dowsample_{k}.conv.0.*                           downsample_{k}.conv.0.*
    conv.blocks.{i}.*   (the bottleneck)             bottleneck.blocks.{i}.*
    encoderlayer_{k}.blocks.{i}.*, upsample_{k}.deconv.0.*, decoderlayer_{k}.blocks.{i}.*
                                                     the same names
      block: norm1.*, attn.relative_position_bias_table, attn.qkv.to_q.*, attn.qkv.to_kv.*,
             attn.proj.*, norm2.*, mlp.linear1.0.*, mlp.dwconv.0.*, mlp.linear2.0.*,
             modulator.weight (decoder levels)
    ignored buffers: *.attn.relative_position_index (an index rebuilt from the window size;
                     a wrong window shows in the bias table's shape)

Every load is strict: a missing, unexpected or misshapen tensor stops it with one message
naming the official keys and the file (:func:`ugpnet.models.synthesis.loading.apply_key_map`).
"""
from __future__ import annotations

import os
import re
from typing import Mapping

import torch

from ugpnet.checkpoints import read_checkpoint, strip_prefix
from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis.loading import apply_key_map

__all__ = ["uformer_key_map", "official_name", "load_uformer", "official_state",
           "UFORMER_IGNORED", "HINT"]

UFORMER_IGNORED = (r".*\.attn\.relative_position_index",)

HINT = ("an official Uformer checkpoint is the {'epoch', 'state_dict', 'optimizer'} file of "
        "ZhendongWang6/Uformer's train_denoise.py / train_motiondeblur.py (e.g. the released "
        "Uformer_B.pth for SIDD or GoPro), state_dict keys with or without 'module.'; "
        "methods.<uformer>.architecture must be Uformer-B's (get_arch('Uformer_B')).")

# ours -> official, the only renames (module doc)
_RENAMES = ((r"input_proj\.0\.", "input_proj.proj.0."),
            (r"output_proj\.0\.", "output_proj.proj.0."),
            (r"downsample_(\d)\.", r"dowsample_\1."),
            (r"bottleneck\.", "conv."))


def official_name(ours: str) -> str:
    """The official ``model.py`` name of one of our state-dict keys."""
    for pat, rep in _RENAMES:
        new, n = re.subn("^" + pat, rep, ours)
        if n:
            return new
    return ours


def uformer_key_map(model) -> dict[str, str]:
    """Official name -> our name, for every tensor of ``model``'s state dict."""
    return {official_name(k): k for k in model.state_dict()}


def official_state(obj, path) -> dict[str, torch.Tensor]:
    """The official model tensors of a loaded file: its ``state_dict`` entry (a training
    checkpoint) or the file itself (a bare state dict), ``module.`` prefixes removed."""
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not (isinstance(obj, Mapping) and obj
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: not an official Uformer checkpoint (no 'state_dict' of "
                              f"tensors; top level: {keys}). {HINT}")
    return strip_prefix(dict(obj), "module.")


def load_uformer(path: str | os.PathLike, model, state: Mapping | None = None) -> list[str]:
    """Load an official Uformer checkpoint (or ``state``, the object read from it) into
    ``model`` strictly; returns the ignored buffer keys."""
    if state is None:
        state = read_checkpoint(path, "official Uformer checkpoint", hint=HINT)
    sd = official_state(state, path)
    return apply_key_map(sd, uformer_key_map(model), model, ignore=UFORMER_IGNORED,
                         what="Uformer", source=str(path), layout="official Uformer", hint=HINT)
