"""Official GCFSR checkpoints onto our modules, strictly (official name -> ours).

Layouts (hejingwenhejingwen/GCFSR @ ea9a28e, ``basicsr/archs/gcfsr_arch.py``):

- ``gcfsr_blind_512.pth``: a **flat** state dict of ``GCFSR_blind(512)``
  (``inference/inference_gcfsr_blind.py:45-46``, ``load_state_dict(torch.load(path),
  strict=True)``) -> :class:`~baselines.gcfsr.arch.GCFSRBlind`.
- BasicSR training outputs of ``GCFSR_Model`` (``gcfsr_model.py`` ``save``): ``net_g_*.pth`` =
  ``{"params": G, "params_ema": G_ema}`` -> :class:`~baselines.gcfsr.arch.GCFSR` (``params_ema``,
  the evaluated model, by default; the released gcfsr-1024 model is read the same way by
  ``inference/inference_gcfsr.py:49``), ``net_d_*.pth`` = ``{"params": D}`` ->
  :class:`~baselines.gcfsr.arch.GCFSRDiscriminator`.

Generator names (ConvLayer = ``[UpFirDnSmooth,] EqualConv2d, FusedLeakyReLU``, so a
downsampling layer's weight is ``.1`` and its activation bias ``.2``)::

    official                                         ours
    conv_body_first.0.weight / .1.bias               conv_body_first.weight / .bias
    conv_body_down.{i}.1.weight / .2.bias            conv_body_down.{i}.weight / .bias
    final_conv.0.weight / .1.bias                    final_conv.weight / .bias
    final_down{1,2}.1.weight / .2.bias               final_down{1,2}.weight / .bias
    final_linear.weight / .bias                      final_linear.weight / .bias
    condition_scale{1,2}.{i}.weight / .bias          condition_scale{1,2}.{i}.weight / .bias
    condition_shift.{i}.0.weight / .0.bias           condition_shift.{i}.weight / .bias
    style_conv1.modulated_conv.weight [1,O,I,3,3]    style_conv1.conv.weight [O,I,3,3]
    style_conv1.modulated_conv.modulation.*          style_conv1.conv.affine.*
    style_conv1.weight [1] (noise strength)          style_conv1.noise_strength
    style_conv1.activate.bias                        style_conv1.bias
    style_convs.{j}.* (as style_conv1)               style_convs.{j}.*
    to_rgb1.modulated_conv.weight [1,3,I,1,1]        to_rgb1.conv.weight [3,I,1,1]
    to_rgb1.modulated_conv.modulation.*              to_rgb1.conv.affine.*
    to_rgb1.bias [1,3,1,1]                           to_rgb1.bias [3]
    to_rgbs.{k}.*                                    to_rgbs.{k}.*
    ignored buffers: noises.noise{0..10}  (the official stored noise: 4 .. 128 px, shapes the
                     16-px-start decoder cannot use; both run random noise per call)

Discriminator names: BasicSR's StyleGAN2 discriminator
(:func:`ugpnet.models.synthesis.keymaps_stylegan2.basicsr_discriminator_key_map`:
``conv_body.0`` -> ``from_rgb``, ``conv_body.{k+1}`` -> ``blocks.{k}``, ``final_conv``,
``final_linear.0/1`` -> ``final_fc``/``final_out``); the no-std D has no extra keys.

Every load is strict: a missing, unexpected or misshapen tensor stops it with one message naming
the official keys and the file (:func:`ugpnet.models.synthesis.loading.apply_key_map`).
"""
from __future__ import annotations

import os
from typing import Mapping

import torch

from ugpnet.checkpoints import read_checkpoint
from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis.keymaps_stylegan2 import basicsr_discriminator_key_map
from ugpnet.models.synthesis.loading import apply_key_map

__all__ = ["gcfsr_key_map", "gcfsr_discriminator_key_map", "load_gcfsr_blind",
           "load_gcfsr_training", "load_gcfsr_discriminator", "load_gcfsr_state",
           "GCFSR_IGNORED"]

GCFSR_IGNORED = (r"noises\.noise\d+",)

_STYLE = {"modulated_conv.weight": "conv.weight",
          "modulated_conv.modulation.weight": "conv.affine.weight",
          "modulated_conv.modulation.bias": "conv.affine.bias",
          "weight": "noise_strength", "activate.bias": "bias"}
_RGB = {"modulated_conv.weight": "conv.weight",
        "modulated_conv.modulation.weight": "conv.affine.weight",
        "modulated_conv.modulation.bias": "conv.affine.bias", "bias": "bias"}

BLIND_HINT = ("gcfsr_blind_512.pth is the flat GCFSR_blind(512) state dict of the official "
              "release (hejingwenhejingwen/GCFSR README, 'blind' pretrained model); it loads "
              "into the 512-px paper network only.")
TRAIN_HINT = ("a GCFSR training output is BasicSR's net_g_<iter>.pth ({'params', "
              "'params_ema'}) of GCFSR(out_size, 512, channel_multiplier 2, narrow 1): "
              "methods.<gcfsr>.architecture and the resolution must be the ones it was "
              "trained with.")
D_HINT = ("a GCFSR discriminator is BasicSR's net_d_<iter>.pth ({'params'}) of "
          "StyleGAN2Discriminator_no_std(out_size, channel_multiplier 2).")


def _conv(src: str, dst: str, down: bool, bias: bool = True) -> dict[str, str]:
    """A ConvLayer: [blur,] conv, FusedLeakyReLU (activation bias) -> our EqualConv2d."""
    w = 1 if down else 0
    return {f"{src}.{w}.weight": f"{dst}.weight", f"{src}.{w + 1}.bias": f"{dst}.bias"}


def gcfsr_key_map(model) -> dict[str, str]:
    """Official GCFSR / GCFSR_blind names -> ours (module doc), for a sized ``model``."""
    m = _conv("conv_body_first", "conv_body_first", down=False)
    for i in range(len(model.conv_body_down)):
        m.update(_conv(f"conv_body_down.{i}", f"conv_body_down.{i}", down=True))
    m.update(_conv("final_conv", "final_conv", down=False))
    m.update(_conv("final_down1", "final_down1", down=True))
    m.update(_conv("final_down2", "final_down2", down=True))
    m.update({f"final_linear.{p}": f"final_linear.{p}" for p in ("weight", "bias")})
    for i in range(len(model.condition_shift)):
        for name in ("condition_scale1", "condition_scale2"):
            m.update({f"{name}.{i}.{p}": f"{name}.{i}.{p}" for p in ("weight", "bias")})
        m.update({f"condition_shift.{i}.0.{p}": f"condition_shift.{i}.{p}"
                  for p in ("weight", "bias")})
    m.update({f"style_conv1.{a}": f"style_conv1.{b}" for a, b in _STYLE.items()})
    m.update({f"to_rgb1.{a}": f"to_rgb1.{b}" for a, b in _RGB.items()})
    for j in range(len(model.style_convs)):
        m.update({f"style_convs.{j}.{a}": f"style_convs.{j}.{b}" for a, b in _STYLE.items()})
    for k in range(len(model.to_rgbs)):
        m.update({f"to_rgbs.{k}.{a}": f"to_rgbs.{k}.{b}" for a, b in _RGB.items()})
    return m


def gcfsr_discriminator_key_map(discriminator) -> dict[str, str]:
    """BasicSR ``StyleGAN2Discriminator_no_std`` names -> ours."""
    return basicsr_discriminator_key_map(discriminator)


def _is_flat(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor)
                                                           for v in obj.values())


def load_gcfsr_state(model, state: Mapping, source: str, layout: str, hint: str) -> list[str]:
    """Load an official flat generator ``state`` into ``model`` strictly; returns the ignored
    keys (the stored noise buffers)."""
    return apply_key_map(dict(state), gcfsr_key_map(model), model, ignore=GCFSR_IGNORED,
                         what="GCFSR generator", source=source, layout=layout, hint=hint)


def load_gcfsr_blind(path: str | os.PathLike, model, state: Mapping | None = None) -> list[str]:
    """``gcfsr_blind_512.pth`` (a flat dict) -> :class:`GCFSRBlind` ``model``, strictly."""
    if state is None:
        state = read_checkpoint(path, "GCFSR_blind generator", hint=BLIND_HINT)
    if not _is_flat(state):
        keys = sorted(state)[:8] if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"{path}: not the flat GCFSR_blind state dict of the official "
                              f"release (top level: {keys}). {BLIND_HINT}")
    return load_gcfsr_state(model, state, str(path), "gcfsr_blind_512", BLIND_HINT)


def _entry(path, obj, key: str, hint: str) -> Mapping:
    if not isinstance(obj, Mapping) or key not in obj or not _is_flat(obj[key]):
        keys = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: no '{key}' state dict (top level: {keys}). {hint}")
    return obj[key]


def load_gcfsr_training(path: str | os.PathLike, model, param_key: str = "params_ema",
                        state: Mapping | None = None) -> list[str]:
    """A BasicSR ``net_g_*.pth`` of GCFSR (its ``param_key`` entry: ``params_ema`` or
    ``params``) -> :class:`GCFSR` ``model``, strictly."""
    if param_key not in ("params", "params_ema"):
        raise ValueError(f"param_key must be params or params_ema, got {param_key!r}")
    if state is None:
        state = read_checkpoint(path, "GCFSR generator (BasicSR training output)",
                                hint=TRAIN_HINT)
    sd = _entry(path, state, param_key, TRAIN_HINT)
    return load_gcfsr_state(model, sd, str(path), f"BasicSR GCFSR ({param_key})", TRAIN_HINT)


def load_gcfsr_discriminator(path: str | os.PathLike, discriminator,
                             state: Mapping | None = None) -> list[str]:
    """A BasicSR ``net_d_*.pth`` (``params``) -> :class:`GCFSRDiscriminator`, strictly."""
    if state is None:
        state = read_checkpoint(path, "GCFSR discriminator (BasicSR training output)",
                                hint=D_HINT)
    sd = _entry(path, state, "params", D_HINT)
    return apply_key_map(dict(sd), gcfsr_discriminator_key_map(discriminator), discriminator,
                         what="GCFSR discriminator", source=str(path),
                         layout="BasicSR StyleGAN2Discriminator_no_std", hint=D_HINT)
