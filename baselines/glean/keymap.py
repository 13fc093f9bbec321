"""Official mmagic GLEAN checkpoints onto :class:`~baselines.glean.arch.GLEANStyleGANv2`, strictly.

An mmagic/mmedit checkpoint (e.g. ``glean_ffhq_16x_20210527-61a3afad.pth``, 64 -> 1024) is
``{"meta", "state_dict", ("optimizer")}``; ``state_dict`` holds the SRGAN model's entries with
prefixes ``generator.`` (GLEAN) and ``discriminator.`` (StyleGAN2 D). A bare GLEAN state dict
(no prefixes) is accepted too. Names (the mmagic StyleGAN2 modules add ``weight_orig`` by their
equalized-lr hook; the stored tensor is the unscaled weight, as ours):

==========================================================  =====================================
official (``generator.`` + ...)                              ours
==========================================================  =====================================
encoder.* / fusion_out.* / fusion_skip.* / decoder.*         the same names (identity)
generator.style_mapping.{i+1}.linear.weight_orig / .bias     generator.mapping.fc{i}.weight / .bias
generator.constant_input.input                               generator.const
generator.conv1.conv.weight_orig [1,O,I,3,3]                 generator.conv1.conv.weight [O,I,3,3]
generator.conv1.conv.style_modulation.linear.weight_orig     generator.conv1.conv.affine.weight
generator.conv1.conv.style_modulation.bias                   generator.conv1.conv.affine.bias
generator.conv1.noise_injector.weight                        generator.conv1.noise_strength
generator.conv1.activate.bias                                generator.conv1.bias
generator.convs.{j}.* (as conv1)                             generator.convs.{j}.*
generator.to_rgb1 / to_rgbs.{k}: .conv.* (as above),         generator.to_rgb1 / to_rgbs.{k}:
  .bias [1,3,1,1]                                              .conv.*, .bias [3]
generator.injected_noise_{j} [1,1,r,r]                       generator.noises.noise_{j}
ignored: generator.convs.*.conv.blur.kernel,                 (FIR buffers we rebuild)
  generator.to_rgbs.*.upsample.kernel
==========================================================  =====================================

Discriminator (``StyleGAN2Discriminator``, block k reads size / 2^k):

==========================================================  =====================================
convs.0.0.conv.weight_orig / convs.0.1.bias                  from_rgb.weight / .bias
convs.{k+1}.conv1.0.conv.weight_orig / conv1.1.bias          blocks.{k}.conv1.weight / .bias
convs.{k+1}.conv2.1.conv.weight_orig / conv2.2.bias          blocks.{k}.conv2.weight / .bias
convs.{k+1}.skip.1.conv.weight_orig                          blocks.{k}.skip.weight
final_conv.0.conv.weight_orig / final_conv.1.bias            final_conv.weight / .bias
final_linear.0.linear.weight_orig / final_linear.0.bias      final_fc.weight / .bias
final_linear.1.linear.weight_orig / final_linear.1.bias      final_out.weight / .bias
ignored: convs.*.{conv2,skip}.0.kernel                       (FIR buffers)
==========================================================  =====================================

The names were read from the official modules built at a small size (bench/_mmagic_shim.py);
bench/official_glean.py checks that the same weights give the same outputs. Anything missing,
extra or of another shape is one :class:`~ugpnet.errors.CheckpointError` naming the official keys
and the file.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import read_checkpoint
from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis.loading import apply_key_map

G_IGNORED = (r"generator\.convs\.\d+\.conv\.blur\.kernel", r"generator\.to_rgbs\.\d+\.upsample\.kernel")
D_IGNORED = (r"convs\.\d+\.(conv2|skip)\.0\.kernel",)
HINT = ("mmagic GLEAN checkpoints (glean_ffhq_16x: in 64, out 1024) load into a GLEAN of the same "
        "sizes: the prior's architecture (size, style_dim, n_mlp, channel_multiplier) and "
        "methods.<m>.arch (in_size = size / 8 here; rrdb_channels, num_rrdbs) must match the file.")

_STYLE = {"conv.weight_orig": "conv.weight",
          "conv.style_modulation.linear.weight_orig": "conv.affine.weight",
          "conv.style_modulation.bias": "conv.affine.bias",
          "noise_injector.weight": "noise_strength",
          "activate.bias": "bias"}
_RGB = {"conv.weight_orig": "conv.weight",
        "conv.style_modulation.linear.weight_orig": "conv.affine.weight",
        "conv.style_modulation.bias": "conv.affine.bias",
        "bias": "bias"}


def latent_bank_key_map(g) -> dict[str, str]:
    """mmagic ``StyleGANv2Generator`` names -> our :class:`~ugpnet.models.synthesis.Generator`."""
    m = {}
    for i in range(g.n_mlp):
        m[f"style_mapping.{i + 1}.linear.weight_orig"] = f"mapping.fc{i}.weight"
        m[f"style_mapping.{i + 1}.bias"] = f"mapping.fc{i}.bias"
    m["constant_input.input"] = "const"
    m.update({f"conv1.{a}": f"conv1.{b}" for a, b in _STYLE.items()})
    m.update({f"to_rgb1.{a}": f"to_rgb1.{b}" for a, b in _RGB.items()})
    for j in range(len(g.convs)):
        m.update({f"convs.{j}.{a}": f"convs.{j}.{b}" for a, b in _STYLE.items()})
    for k in range(len(g.to_rgbs)):
        m.update({f"to_rgbs.{k}.{a}": f"to_rgbs.{k}.{b}" for a, b in _RGB.items()})
    for j in range(g.num_layers):
        m[f"injected_noise_{j}"] = f"noises.noise_{j}"
    return m


def glean_key_map(net) -> dict[str, str]:
    """``{official GLEANStyleGANv2 name: our name}`` for ``net``."""
    m = {k: k for k in net.state_dict() if not k.startswith("generator.")}
    m.update({f"generator.{a}": f"generator.{b}"
              for a, b in latent_bank_key_map(net.generator).items()})
    return m


def discriminator_key_map(D) -> dict[str, str]:
    """mmagic ``StyleGAN2Discriminator`` names -> our :class:`~ugpnet.models.synthesis.Discriminator`."""
    m = {"convs.0.0.conv.weight_orig": "from_rgb.weight", "convs.0.1.bias": "from_rgb.bias"}
    for k in range(len(D.blocks)):
        p, q = f"convs.{k + 1}", f"blocks.{k}"
        m.update({f"{p}.conv1.0.conv.weight_orig": f"{q}.conv1.weight",
                  f"{p}.conv1.1.bias": f"{q}.conv1.bias",
                  f"{p}.conv2.1.conv.weight_orig": f"{q}.conv2.weight",
                  f"{p}.conv2.2.bias": f"{q}.conv2.bias",
                  f"{p}.skip.1.conv.weight_orig": f"{q}.skip.weight"})
    m.update({"final_conv.0.conv.weight_orig": "final_conv.weight",
              "final_conv.1.bias": "final_conv.bias",
              "final_linear.0.linear.weight_orig": "final_fc.weight",
              "final_linear.0.bias": "final_fc.bias",
              "final_linear.1.linear.weight_orig": "final_out.weight",
              "final_linear.1.bias": "final_out.bias"})
    return m


def load_glean_state(net, state: dict, source: str = "GLEAN state dict") -> list[str]:
    """Load an official-layout GLEAN state dict (no ``generator.`` model prefix) strictly."""
    return apply_key_map(state, glean_key_map(net), net, ignore=G_IGNORED, what="GLEAN",
                         source=source, layout="mmagic GLEANStyleGANv2", hint=HINT)


def load_discriminator_state(D, state: dict, source: str = "StyleGAN2 D state dict") -> list[str]:
    return apply_key_map(state, discriminator_key_map(D), D, ignore=D_IGNORED,
                         what="discriminator", source=source,
                         layout="mmagic StyleGAN2Discriminator", hint=HINT)


def _split(ckpt, path) -> tuple[dict, dict | None]:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected an mmagic checkpoint (a dict with 'state_dict')")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' is not a state dict")
    if any(k.startswith("generator.encoder.") for k in state):
        g = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
        d = {k[len("discriminator."):]: v for k, v in state.items()
             if k.startswith("discriminator.")}
        other = sorted(k for k in state if not k.startswith(("generator.", "discriminator.")))
        if other:
            raise CheckpointError(f"{path}: unexpected entries outside generator./discriminator.: "
                                  f"{other[:8]}")
        return g, (d or None)
    if any(k.startswith("encoder.") for k in state):
        return state, None
    raise CheckpointError(f"{path}: no GLEAN entries ('generator.encoder.*' or 'encoder.*'; "
                          f"first keys: {sorted(map(str, state))[:6]}). {HINT}")


def load_official(net, path: str | Path, D=None) -> list[str]:
    """Load an mmagic GLEAN file into ``net`` (and its discriminator into ``D`` when given and
    present); returns the ignored keys."""
    ckpt = read_checkpoint(path, "official mmagic GLEAN checkpoint")
    g, d = _split(ckpt, path)
    ignored = load_glean_state(net, g, source=f"{path} (generator)")
    if D is not None:
        if d is None:
            raise CheckpointError(f"{path}: no 'discriminator.*' entries to initialise D from")
        ignored += load_discriminator_state(D, d, source=f"{path} (discriminator)")
    return ignored
