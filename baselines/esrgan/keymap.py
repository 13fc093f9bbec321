"""Official ESRGAN / RRDBNet and VGG-style discriminator files onto our modules, strictly.

Generator (our :class:`ugpnet.models.backbones.rrdbnet.RRDBNet`, BasicSR names), through the
project's one RRDBNet key map (:func:`ugpnet.models.keymaps.rrdbnet_keymap`)::

    BasicSR (ESRGAN_SRx4_DF2KOST_official-ff704c30.pth;     ours
      top level params / params_ema, params_ema preferred)
    conv_first.*                                            conv_first.*
    body.N.rdbK.convJ.*                                     body.N.rdbK.convJ.*
    conv_body.*                                             conv_body.*
    conv_up1.*, conv_up2.* (x4), conv_up3.* (UGPNet x8)     conv_up1.* .. conv_up3.*
    conv_hr.*, conv_last.*                                  conv_hr.*, conv_last.*

    original ESRGAN (RRDB_ESRGAN_x4.pth, a flat dict)
    RRDB_trunk.N.RDBk.convJ.*                               body.N.rdbk.convJ.*
    trunk_conv.*                                            conv_body.*
    upconv1.*, upconv2.*                                    conv_up1.*, conv_up2.*
    HRconv.*                                                conv_hr.*
    conv_first.*, conv_last.*                               (same)

UGPNet's x8 (``rrdbnet_x8_bicubic.pth``, ``params_ema``) has BasicSR names plus ``conv_up3``. An
x4 release has no ``conv_up3``: loading it into the x8 network stops with one message saying so
(set ``backbones.rrdbnet.sr.scale: 4`` to load it into a x4 network).

Discriminator (:class:`.arch.VGGStyleDiscriminator`): BasicSR ``net_d_*.pth`` (``params``) uses
our names (``conv0_0``, ``conv{k}_{0,1}``, ``bn{k}_{0,1}`` incl. BatchNorm running statistics and
``num_batches_tracked``, ``linear1``, ``linear2``): identity map, every key and shape checked.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch

from ugpnet.checkpoints import load_state_dict_strict, read_checkpoint, unwrap_state_dict
from ugpnet.errors import CheckpointError
from ugpnet.models.keymaps import rrdbnet_keymap

__all__ = ["esrgan_generator_state", "load_esrgan_generator", "load_vgg_discriminator"]

G_HINT = ("an ESRGAN/RRDBNet generator: BasicSR layout (params / params_ema; e.g. "
          "ESRGAN_SRx4_DF2KOST_official-ff704c30.pth, UGPNet's rrdbnet_x8_bicubic.pth) or the "
          "original flat RRDB_ESRGAN_x4.pth; backbones.rrdbnet.sr must match it (num_feat, "
          "num_block, num_grow_ch, scale)")
D_HINT = ("a BasicSR VGGStyleDiscriminator file (net_d_*.pth, params) whose num_feat and "
          "input_size equal methods.<esrgan>.discriminator")


def esrgan_generator_state(sd: Mapping[str, torch.Tensor], net, source: str) -> dict:
    """A generator state dict in any official layout (module doc) -> our names; the x4/x8
    mismatch is refused here with its own message (the strict load reports everything else)."""
    mapped = rrdbnet_keymap(sd)
    ups = sorted({k.split(".")[0] for k in mapped if k.startswith("conv_up")})
    ours = sorted({k.split(".")[0] for k in net.state_dict() if k.startswith("conv_up")})
    if ups and ups != ours:
        raise CheckpointError(
            f"{source} is a x{2 ** len(ups)} RRDBNet ({', '.join(ups)}) but the network is "
            f"x{2 ** len(ours)} ({', '.join(ours)}): an official ESRGAN x4 release cannot be "
            f"the x8 generator. Use an x8 file (UGPNet's rrdbnet_x8_bicubic.pth or a finished "
            f"rrdbnet run), or set backbones.rrdbnet.sr.scale: {2 ** len(ups)} to load it into "
            f"a x{2 ** len(ups)} network.")
    return mapped


def load_esrgan_generator(path: str | os.PathLike, net, state: Mapping | None = None) -> None:
    """Load an official generator file (or ``state`` read from it) into ``net`` strictly."""
    if state is None:
        state = read_checkpoint(path, "ESRGAN/RRDBNet generator", hint=G_HINT)
    sd = unwrap_state_dict(state, str(path))
    load_state_dict_strict(net, esrgan_generator_state(sd, net, str(path)),
                           f"{path} (ESRGAN/RRDBNet generator)", hint=G_HINT)


def load_vgg_discriminator(path: str | os.PathLike, D, state: Mapping | None = None) -> None:
    """Load a BasicSR VGGStyleDiscriminator file (``params``) into ``D`` strictly."""
    if state is None:
        state = read_checkpoint(path, "VGG-style discriminator", hint=D_HINT)
    sd = unwrap_state_dict(state, str(path), prefer=("params", "params_ema", "state_dict"))
    load_state_dict_strict(D, sd, f"{path} (VGGStyleDiscriminator)", hint=D_HINT)
