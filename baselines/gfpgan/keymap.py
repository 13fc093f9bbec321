"""Official GFP-GAN v1 checkpoints onto :class:`~baselines.gfpgan.arch.GFPGANv1`, strictly.

``GFPGANv1.pth`` (release v0.1.0, the paper's model) is ``{"params_ema": state}`` (a training
checkpoint ``net_g_<iter>.pth`` has ``params`` and ``params_ema``; the EMA one is loaded, as the
authors evaluate it). Its names are BasicSR's (k: block index; U-Net down blocks from S to 8 px,
up blocks and SFT from 8 to S px):

=================================================  ============================================
official (BasicSR ``ConvLayer`` = Sequential)      ours
=================================================  ============================================
conv_body_first.0.weight / .1.bias                 conv_body_first.weight / .bias
conv_body_down.{k}.conv1.0.weight / .conv1.1.bias  conv_body_down.{k}.conv1.weight / .bias
conv_body_down.{k}.conv2.1.weight / .conv2.2.bias  conv_body_down.{k}.conv2.weight / .bias
conv_body_down.{k}.skip.1.weight                   conv_body_down.{k}.skip.weight
final_conv.0.weight / .1.bias                      final_conv.weight / .bias
conv_body_up.{k}.conv1.0.weight / .conv1.1.bias    conv_body_up.{k}.conv1.weight / .bias
conv_body_up.{k}.conv2.weight                      conv_body_up.{k}.conv2.weight
conv_body_up.{k}.conv2.activation.bias             conv_body_up.{k}.conv2.bias
conv_body_up.{k}.skip.weight                       conv_body_up.{k}.skip.weight
toRGB.{k}.weight / .bias                           toRGB.{k}.weight / .bias
final_linear.weight / .bias                        final_linear.weight / .bias
condition_{scale,shift}.{k}.0.weight / .0.bias     condition_{scale,shift}.{k}.0.weight / .bias
condition_{scale,shift}.{k}.2.weight / .2.bias     condition_{scale,shift}.{k}.1.weight / .bias
stylegan_decoder.<BasicSR StyleGAN2Generator>      stylegan_decoder.<ours> (the BasicSR generator
  (style_mlp.{i}, constant_input.weight,             map of ugpnet.models.synthesis.keymaps_stylegan2:
  style_conv1.*, style_convs.{j}.modulated_conv.*,   mapping.fc{i-1}, const, conv1, convs.{j},
  to_rgb1.*, to_rgbs.{k}.*, noises.noise{j})         to_rgb1, to_rgbs.{k}, noises.noise_{j})
=================================================  ============================================

(index 1 of ``condition_*`` is the parameter-free ScaledLeakyReLU, index 0 of a downsampling
``ConvLayer`` its blur.) Blur-kernel buffers (``*.kernel``, e.g. ``*.smooth.kernel``) are
rebuilt by us and ignored if a file carries them; BasicSR at 8d56e3a keeps them as plain
attributes, so they are not in its state dicts. Anything else missing, extra or of another shape
is one :class:`~ugpnet.errors.CheckpointError` naming the official keys.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import read_checkpoint
from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis.keymaps_stylegan2 import basicsr_generator_key_map
from ugpnet.models.synthesis.loading import apply_key_map

IGNORED = (r"(.+\.)?kernel",)  # FIR blur buffers (we rebuild them)
HINT = ("GFPGANv1.pth (release v0.1.0) is the channel-multiplier-1 model of the paper; the "
        "v1.2/1.3/1.4 'clean' files are another architecture. Check methods.gfpgan and the "
        "prior's architecture (priors.<methods.gfpgan.prior>: 512, channel_multiplier 1).")


def _conv_layer(src: str, dst: str, down: bool = False, bias: bool = True) -> dict:
    i = 1 if down else 0
    m = {f"{src}.{i}.weight": f"{dst}.weight"}
    if bias:
        m[f"{src}.{i + 1}.bias"] = f"{dst}.bias"
    return m


def official_key_map(model) -> dict[str, str]:
    """``{official GFPGANv1 name: our name}`` for ``model`` (a :class:`GFPGANv1`)."""
    m = _conv_layer("conv_body_first", "conv_body_first")
    for k in range(len(model.conv_body_down)):
        p = f"conv_body_down.{k}"
        m.update(_conv_layer(f"{p}.conv1", f"{p}.conv1"))
        m.update(_conv_layer(f"{p}.conv2", f"{p}.conv2", down=True))
        m.update(_conv_layer(f"{p}.skip", f"{p}.skip", down=True, bias=False))
    m.update(_conv_layer("final_conv", "final_conv"))
    for k in range(len(model.conv_body_up)):
        p = f"conv_body_up.{k}"
        m.update(_conv_layer(f"{p}.conv1", f"{p}.conv1"))
        m[f"{p}.conv2.weight"] = f"{p}.conv2.weight"
        m[f"{p}.conv2.activation.bias"] = f"{p}.conv2.bias"
        m[f"{p}.skip.weight"] = f"{p}.skip.weight"
        for t in ("weight", "bias"):
            m[f"toRGB.{k}.{t}"] = f"toRGB.{k}.{t}"
            for c in ("condition_scale", "condition_shift"):
                m[f"{c}.{k}.0.{t}"] = f"{c}.{k}.0.{t}"
                m[f"{c}.{k}.2.{t}"] = f"{c}.{k}.1.{t}"
    m["final_linear.weight"] = "final_linear.weight"
    m["final_linear.bias"] = "final_linear.bias"
    for a, b in basicsr_generator_key_map(model.stylegan_decoder).items():
        m[f"stylegan_decoder.{a}"] = f"stylegan_decoder.{b}"
    return m


def load_official_state(model, state: dict, source: str = "GFPGANv1 state dict") -> list[str]:
    """Load an official-layout state dict into ``model`` strictly; returns the ignored keys."""
    return apply_key_map(state, official_key_map(model), model, ignore=IGNORED,
                         what="GFP-GAN v1", source=source, layout="official GFPGANv1",
                         hint=HINT)


def load_official(model, path: str | Path) -> str:
    """Load ``GFPGANv1.pth`` (``params_ema``, else ``params``) into ``model``; returns the key."""
    ckpt = read_checkpoint(path, "official GFP-GAN v1 checkpoint (GFPGANv1.pth)")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict with 'params_ema' (GFPGANv1.pth)")
    key = next((k for k in ("params_ema", "params") if isinstance(ckpt.get(k), dict)), None)
    if key is None:
        raise CheckpointError(f"{path}: no 'params_ema' or 'params' entry (top-level keys: "
                              f"{sorted(map(str, ckpt))[:10]}); {HINT}")
    load_official_state(model, ckpt[key], source=f"{path} ({key})")
    return key
