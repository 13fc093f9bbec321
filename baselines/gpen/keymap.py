"""Official GPEN checkpoints onto our modules, strictly (official name -> ours).

``GPEN-BFR-512.pth``: a flat state dict of ``FullGenerator(512, 512, 8, channel_multiplier=2,
narrow=1)`` (yangxy/GPEN face_model/gpen_model.py), rosinality names under ``generator.``::

    official (GPEN-BFR-512.pth)                      ours (baselines.gpen.arch.GPEN)
    generator.style.{i+1}.weight / .bias             generator.mapping.fc{i}.weight / .bias
    generator.input.input                            generator.const
    generator.conv1.conv.weight [1,O,I,3,3]          generator.conv1.conv.weight [O,I,3,3]
    generator.conv1.conv.modulation.weight / .bias   generator.conv1.conv.affine.weight / .bias
    generator.conv1.noise.weight [1]                 generator.conv1.feature_strength [1]
    generator.conv1.activate.bias [2C]               generator.conv1.bias [2C]
    generator.convs.{j}.* (as conv1)                 generator.convs.{j}.*
    generator.to_rgb1.conv.weight / .modulation.*    generator.to_rgb1.conv.weight / .affine.*
    generator.to_rgb1.bias [1,3,1,1]                 generator.to_rgb1.bias [3]
    generator.to_rgbs.{k}.*                          generator.to_rgbs.{k}.*
    ecd0.0.0.weight / ecd0.0.1.bias                  encoder.0.weight / .bias (1x1, lrelu)
    ecd{i}.0.1.weight / ecd{i}.0.2.bias (i >= 1)     encoder.{i}.weight / .bias (blur, stride 2)
    final_linear.0.weight / .bias                    final_linear.weight / .bias
    ignored buffers: generator.convs.{j}.conv.blur.kernel, generator.to_rgbs.{k}.upsample.kernel,
                     ecd{i}.0.0.kernel (the [1,3,3,1] FIR kernels, rebuilt by our layers)

``GPEN-BFR-512-D.pth``: a flat ``Discriminator(512, channel_multiplier=2, narrow=1)`` state
dict, rosinality names (:func:`ugpnet.models.synthesis.keymaps_stylegan2.rosinality_discriminator_key_map`:
``convs.0.*`` -> ``from_rgb``, ``convs.{k+1}.*`` -> ``blocks.{k}``, ``final_conv``,
``final_linear.0/1`` -> ``final_fc``/``final_out``; blur ``kernel`` buffers ignored).

``model_ir_se50.pth`` (ArcFace IR-SE50, TreB1eN InsightFace_Pytorch names)::

    input_layer.0.weight / .1.* (BN) / .2.weight     stem.0.weight / stem.1.* / stem.2.weight
    body.{u}.shortcut_layer.0.weight / .1.* (BN)     units.{u}.shortcut.0.weight / .1.*
    body.{u}.res_layer.0.* (BN)                      units.{u}.bn1.*
    body.{u}.res_layer.1.weight / .2.weight (PReLU)  units.{u}.conv1.weight / .prelu.weight
    body.{u}.res_layer.3.weight / .4.* (BN)          units.{u}.conv2.weight / .bn2.*
    body.{u}.res_layer.5.fc1.weight / .fc2.weight    units.{u}.se.fc1.weight / .fc2.weight
    output_layer.0.* (BN2d) / .3.* (Linear) / .4.*   head_bn.* / head_fc.* / head_bn1d.*

Every load is strict: a missing, unexpected or misshapen tensor stops it with one message
naming the official keys (:func:`ugpnet.models.synthesis.loading.apply_key_map`).
"""
from __future__ import annotations

import os
from typing import Mapping

import torch

from ugpnet.checkpoints import read_checkpoint
from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis.keymaps_stylegan2 import (ROSINALITY_DISCRIMINATOR_IGNORED,
                                                       rosinality_discriminator_key_map)
from ugpnet.models.synthesis.loading import apply_key_map

__all__ = ["gpen_generator_key_map", "gpen_discriminator_key_map", "irse50_key_map",
           "load_gpen_generator", "load_gpen_discriminator", "load_irse50", "GPEN_IGNORED"]

_STYLE = {"conv.weight": "conv.weight", "conv.modulation.weight": "conv.affine.weight",
          "conv.modulation.bias": "conv.affine.bias", "noise.weight": "feature_strength",
          "activate.bias": "bias"}
_RGB = {"conv.weight": "conv.weight", "conv.modulation.weight": "conv.affine.weight",
        "conv.modulation.bias": "conv.affine.bias", "bias": "bias"}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

GPEN_IGNORED = (r"generator\.convs\.\d+\.conv\.blur\.kernel",
                r"generator\.to_rgbs\.\d+\.upsample\.kernel", r"ecd\d+\.0\.0\.kernel")

G_HINT = ("GPEN-BFR-512.pth is the flat generator state dict of the official release "
          "(yangxy/GPEN, weights/GPEN-BFR-512.pth); methods.<gpen>.architecture must be the "
          "paper one (style_dim 512, n_mlp 8, channel_multiplier 2, narrow 1) at 512 px.")
D_HINT = ("GPEN-BFR-512-D.pth is the official discriminator (yangxy/GPEN, "
          "weights/GPEN-BFR-512-D.pth), a flat state dict; the architecture must be the paper one.")
IRSE_HINT = ("model_ir_se50.pth is the ArcFace IR-SE50 of TreB1eN/InsightFace_Pytorch that "
             "GPEN's train_simple.py reads from weights/ (flat state dict).")


def gpen_generator_key_map(model) -> dict[str, str]:
    """GPEN-BFR-*.pth names -> our :class:`~baselines.gpen.arch.GPEN` names (module doc)."""
    g = model.generator
    m = {f"generator.style.{i + 1}.{p}": f"generator.mapping.fc{i}.{p}"
         for i in range(g.mapping.n_mlp) for p in ("weight", "bias")}
    m["generator.input.input"] = "generator.const"
    m.update({f"generator.conv1.{a}": f"generator.conv1.{b}" for a, b in _STYLE.items()})
    m.update({f"generator.to_rgb1.{a}": f"generator.to_rgb1.{b}" for a, b in _RGB.items()})
    for j in range(len(g.convs)):
        m.update({f"generator.convs.{j}.{a}": f"generator.convs.{j}.{b}" for a, b in _STYLE.items()})
    for k in range(len(g.to_rgbs)):
        m.update({f"generator.to_rgbs.{k}.{a}": f"generator.to_rgbs.{k}.{b}" for a, b in _RGB.items()})
    m["ecd0.0.0.weight"], m["ecd0.0.1.bias"] = "encoder.0.weight", "encoder.0.bias"
    for i in range(1, len(model.encoder)):
        m[f"ecd{i}.0.1.weight"], m[f"ecd{i}.0.2.bias"] = f"encoder.{i}.weight", f"encoder.{i}.bias"
    m["final_linear.0.weight"], m["final_linear.0.bias"] = "final_linear.weight", "final_linear.bias"
    return m


def gpen_discriminator_key_map(discriminator) -> dict[str, str]:
    """GPEN-BFR-*-D.pth names -> ours: rosinality's discriminator names."""
    return rosinality_discriminator_key_map(discriminator)


def irse50_key_map(net) -> dict[str, str]:
    """model_ir_se50.pth names -> our :class:`~baselines.gpen.irse.IRSE50` names (module doc)."""
    m = {"input_layer.0.weight": "stem.0.weight", "input_layer.2.weight": "stem.2.weight"}
    m.update({f"input_layer.1.{p}": f"stem.1.{p}" for p in _BN})
    for u, unit in enumerate(net.units):
        src, dst = f"body.{u}", f"units.{u}"
        if unit.shortcut is not None:
            m[f"{src}.shortcut_layer.0.weight"] = f"{dst}.shortcut.0.weight"
            m.update({f"{src}.shortcut_layer.1.{p}": f"{dst}.shortcut.1.{p}" for p in _BN})
        m.update({f"{src}.res_layer.0.{p}": f"{dst}.bn1.{p}" for p in _BN})
        m[f"{src}.res_layer.1.weight"] = f"{dst}.conv1.weight"
        m[f"{src}.res_layer.2.weight"] = f"{dst}.prelu.weight"
        m[f"{src}.res_layer.3.weight"] = f"{dst}.conv2.weight"
        m.update({f"{src}.res_layer.4.{p}": f"{dst}.bn2.{p}" for p in _BN})
        m[f"{src}.res_layer.5.fc1.weight"] = f"{dst}.se.fc1.weight"
        m[f"{src}.res_layer.5.fc2.weight"] = f"{dst}.se.fc2.weight"
    m.update({f"output_layer.0.{p}": f"head_bn.{p}" for p in _BN})
    m.update({f"output_layer.3.{p}": f"head_fc.{p}" for p in ("weight", "bias")})
    m.update({f"output_layer.4.{p}": f"head_bn1d.{p}" for p in _BN})
    return m


def _flat_state(obj, path, what: str, hint: str) -> dict:
    """The flat state dict of an official file (a bare dict of tensors; a training checkpoint
    ``{g, d, g_ema, ...}`` is refused with the entry to extract)."""
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    keys = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{path}: not the flat {what} state dict of the official release "
                          f"(top level: {keys}). {hint}")


def _read(path, what, hint, state=None) -> dict:
    if state is None:
        state = read_checkpoint(path, what, hint=hint)
    return _flat_state(state, path, what, hint)


def load_gpen_generator(path: str | os.PathLike, model, state: Mapping | None = None) -> list[str]:
    """Load GPEN-BFR-512.pth (or ``state`` read from it) into ``model`` strictly; returns the
    ignored buffer keys."""
    sd = _read(path, "GPEN generator", G_HINT, state)
    return apply_key_map(sd, gpen_generator_key_map(model), model, ignore=GPEN_IGNORED,
                         what="GPEN generator", source=str(path), layout="GPEN-BFR-512",
                         hint=G_HINT)


def load_gpen_discriminator(path: str | os.PathLike, discriminator,
                            state: Mapping | None = None) -> list[str]:
    sd = _read(path, "GPEN discriminator", D_HINT, state)
    return apply_key_map(sd, gpen_discriminator_key_map(discriminator), discriminator,
                         ignore=ROSINALITY_DISCRIMINATOR_IGNORED, what="GPEN discriminator",
                         source=str(path), layout="GPEN-BFR-512-D", hint=D_HINT)


def load_irse50(path: str | os.PathLike, net, state: Mapping | None = None) -> list[str]:
    """Load model_ir_se50.pth strictly; batch-norm ``num_batches_tracked`` counters (absent from
    files saved by old PyTorch versions, unused at inference) are the only keys it may lack."""
    sd = _read(path, "ArcFace IR-SE50", IRSE_HINT, state)
    for key in irse50_key_map(net):
        if key.endswith(".num_batches_tracked") and key not in sd:
            sd[key] = torch.tensor(0, dtype=torch.long)
    return apply_key_map(sd, irse50_key_map(net), net, what="ArcFace IR-SE50", source=str(path),
                         layout="model_ir_se50", hint=IRSE_HINT)
