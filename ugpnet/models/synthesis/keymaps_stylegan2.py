"""Key maps of pretrained StyleGAN2 / UGPNet synthesis checkpoints onto our modules.

Each ``*_key_map(module)`` returns ``{official name: our name}`` for the given (sized) module;
:func:`ugpnet.models.synthesis.loading.apply_key_map` renames and loads a state dict with it.
``*_IGNORED`` are regexes of official buffers we rebuild ourselves (blur kernels, ...).

Generator key maps (official name -> ours; k = block index from 8 px, j = style-conv index):

=====================================  ======================================  ===============================
rosinality                             BasicSR (``StyleGAN2Generator``)        ours
=====================================  ======================================  ===============================
style.{i+1}.weight/bias                style_mlp.{i+1}.weight/bias             mapping.fc{i}.weight/bias
input.input                            constant_input.weight                   const
conv1.conv.weight [1,O,I,3,3]          style_conv1.modulated_conv.weight       conv1.conv.weight [O,I,3,3]
conv1.conv.modulation.weight/bias      style_conv1.modulated_conv.modulation.  conv1.conv.affine.weight/bias
conv1.noise.weight                     style_conv1.weight                      conv1.noise_strength
conv1.activate.bias                    style_conv1.activate.bias               conv1.bias
to_rgb1.conv.weight/modulation.*       to_rgb1.modulated_conv.weight/modul.*   to_rgb1.conv.weight/affine.*
to_rgb1.bias [1,3,1,1]                 to_rgb1.bias                            to_rgb1.bias [3]
convs.{j}.* (as conv1)                 style_convs.{j}.* (as style_conv1)      convs.{j}.*
to_rgbs.{k}.*                          to_rgbs.{k}.*                           to_rgbs.{k}.*
noises.noise_{j}                       noises.noise{j}                         noises.noise_{j}
latent_avg (top level)                 -                                       LoadReport.w_avg
ignored: convs.*.conv.blur.kernel,     -
  to_rgbs.*.upsample.kernel
=====================================  ======================================  ===============================

NVIDIA generator (r = 2^(k+3); j0 = 2k + 1, j1 = 2k + 2):

=====================================================  ===========================================
mapping.fc{i}.weight/bias                              mapping.fc{i}.weight/bias
mapping.w_avg                                          LoadReport.w_avg
synthesis.b4.const [C,4,4]                             const [1,C,4,4]
synthesis.b4.conv1.{weight,affine.*,noise_strength,    conv1.{conv.weight,conv.affine.*,noise_strength,
  bias,noise_const [4,4]}                                bias}, noises.noise_0 [1,1,4,4]
synthesis.b4.torgb.{weight,affine.*,bias}              to_rgb1.{conv.weight,conv.affine.*,bias}
synthesis.b{r}.conv0.* / .conv0.noise_const           convs.{2k}.* / noises.noise_{j0}
synthesis.b{r}.conv1.* / .conv1.noise_const           convs.{2k+1}.* / noises.noise_{j1}
synthesis.b{r}.torgb.*                                 to_rgbs.{k}.*
ignored: *.resample_filter                             -
=====================================================  ===========================================

Discriminator key maps (block k reads resolution size / 2^k):

==================================  ==================================  ===================  ======================
rosinality                          BasicSR                             NVIDIA               ours
==================================  ==================================  ===================  ======================
convs.0.0.weight / convs.0.1.bias   conv_body.0.0.weight / .0.1.bias    b{size}.fromrgb.*    from_rgb.weight/bias
convs.{k+1}.conv1.0.weight/1.bias   conv_body.{k+1}.conv1.0.w/.1.b      b{r}.conv0.*         blocks.{k}.conv1.*
convs.{k+1}.conv2.1.weight/2.bias   conv_body.{k+1}.conv2.1.w/.2.b      b{r}.conv1.*         blocks.{k}.conv2.*
convs.{k+1}.skip.1.weight           conv_body.{k+1}.skip.1.weight       b{r}.skip.weight     blocks.{k}.skip.weight
final_conv.0.weight / .1.bias       final_conv.0.weight / .1.bias       b4.conv.*            final_conv.*
final_linear.0.*                    final_linear.0.*                    b4.fc.*              final_fc.*
final_linear.1.*                    final_linear.1.*                    b4.out.*             final_out.*
ignored: *.kernel (blur buffers)    -                                   *.resample_filter
==================================  ==================================  ===================  ======================

UGPNet release synmodule checkpoint (``generator`` / ``discriminator`` use the BasicSR maps):

==========================================  ========================================
fencoder: downblocks.{i}.conv.{j}.*         encoder.f_encoder.blocks.{i}.convs.{j}.*
fencoder: downblocks.{i}.bn.{j}.* (+stats)  encoder.f_encoder.blocks.{i}.norms.{j}.*
fencoder: conv1x1.*                         encoder.f_encoder.out_conv.*
wmodule: convs.{2c}.* (Sequential, lrelu)   encoder.map2style.convs.{c}.*
wmodule: linear.{h}.*                       encoder.map2style.heads.{h}.*
==========================================  ========================================

Tensors are reshaped only where the shapes agree after dropping size-1 dimensions
(e.g. [1, O, I, 3, 3] -> [O, I, 3, 3]); anything else is reported as a shape mismatch.
"""
from __future__ import annotations

from typing import Callable

__all__ = [
    "rosinality_generator_key_map",
    "rosinality_discriminator_key_map",
    "basicsr_generator_key_map",
    "basicsr_discriminator_key_map",
    "nvidia_generator_key_map",
    "nvidia_discriminator_key_map",
    "official_fencoder_key_map",
    "official_map2style_key_map",
    "ROSINALITY_GENERATOR_IGNORED",
    "ROSINALITY_DISCRIMINATOR_IGNORED",
    "NVIDIA_IGNORED",
]


def _n_mlp(generator) -> int:
    return generator.mapping.n_mlp


def _num_blocks(generator) -> int:
    return len(generator.to_rgbs)


def _style_layer_map(src: str, dst: str, names: dict[str, str]) -> dict[str, str]:
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in names.items()}


_ROSI_STYLE = {
    "conv.weight": "conv.weight",
    "conv.modulation.weight": "conv.affine.weight",
    "conv.modulation.bias": "conv.affine.bias",
    "noise.weight": "noise_strength",
    "activate.bias": "bias",
}
_ROSI_RGB = {
    "conv.weight": "conv.weight",
    "conv.modulation.weight": "conv.affine.weight",
    "conv.modulation.bias": "conv.affine.bias",
    "bias": "bias",
}
_BASICSR_STYLE = {
    "modulated_conv.weight": "conv.weight",
    "modulated_conv.modulation.weight": "conv.affine.weight",
    "modulated_conv.modulation.bias": "conv.affine.bias",
    "weight": "noise_strength",
    "activate.bias": "bias",
}
_BASICSR_RGB = {
    "modulated_conv.weight": "conv.weight",
    "modulated_conv.modulation.weight": "conv.affine.weight",
    "modulated_conv.modulation.bias": "conv.affine.bias",
    "bias": "bias",
}
_NV_STYLE = {
    "weight": "conv.weight",
    "affine.weight": "conv.affine.weight",
    "affine.bias": "conv.affine.bias",
    "noise_strength": "noise_strength",
    "bias": "bias",
}
_NV_RGB = {"weight": "conv.weight", "affine.weight": "conv.affine.weight", "affine.bias": "conv.affine.bias", "bias": "bias"}


def rosinality_generator_key_map(generator) -> dict[str, str]:
    """rosinality ``Generator`` state-dict names -> ours (table in the module docstring)."""
    m: dict[str, str] = {}
    for i in range(_n_mlp(generator)):
        m[f"style.{i + 1}.weight"] = f"mapping.fc{i}.weight"
        m[f"style.{i + 1}.bias"] = f"mapping.fc{i}.bias"
    m["input.input"] = "const"
    m.update(_style_layer_map("conv1", "conv1", _ROSI_STYLE))
    m.update(_style_layer_map("to_rgb1", "to_rgb1", _ROSI_RGB))
    for j in range(2 * _num_blocks(generator)):
        m.update(_style_layer_map(f"convs.{j}", f"convs.{j}", _ROSI_STYLE))
    for k in range(_num_blocks(generator)):
        m.update(_style_layer_map(f"to_rgbs.{k}", f"to_rgbs.{k}", _ROSI_RGB))
    for j in range(generator.num_layers):
        m[f"noises.noise_{j}"] = f"noises.noise_{j}"
    return m


ROSINALITY_GENERATOR_IGNORED = (r"convs\.\d+\.conv\.blur\.kernel", r"to_rgbs\.\d+\.upsample\.kernel")


def basicsr_generator_key_map(generator) -> dict[str, str]:
    """BasicSR ``StyleGAN2Generator`` (and UGPNet ``StyleGAN2GeneratorF``) names -> ours."""
    m: dict[str, str] = {}
    for i in range(_n_mlp(generator)):
        m[f"style_mlp.{i + 1}.weight"] = f"mapping.fc{i}.weight"
        m[f"style_mlp.{i + 1}.bias"] = f"mapping.fc{i}.bias"
    m["constant_input.weight"] = "const"
    m.update(_style_layer_map("style_conv1", "conv1", _BASICSR_STYLE))
    m.update(_style_layer_map("to_rgb1", "to_rgb1", _BASICSR_RGB))
    for j in range(2 * _num_blocks(generator)):
        m.update(_style_layer_map(f"style_convs.{j}", f"convs.{j}", _BASICSR_STYLE))
    for k in range(_num_blocks(generator)):
        m.update(_style_layer_map(f"to_rgbs.{k}", f"to_rgbs.{k}", _BASICSR_RGB))
    for j in range(generator.num_layers):
        m[f"noises.noise{j}"] = f"noises.noise_{j}"
    return m


def nvidia_generator_key_map(generator) -> dict[str, str]:
    """NVIDIA stylegan2-ada-pytorch ``Generator`` names -> ours (w_avg handled separately)."""
    m: dict[str, str] = {}
    for i in range(_n_mlp(generator)):
        m[f"mapping.fc{i}.weight"] = f"mapping.fc{i}.weight"
        m[f"mapping.fc{i}.bias"] = f"mapping.fc{i}.bias"
    m["synthesis.b4.const"] = "const"
    m.update(_style_layer_map("synthesis.b4.conv1", "conv1", _NV_STYLE))
    m["synthesis.b4.conv1.noise_const"] = "noises.noise_0"
    m.update(_style_layer_map("synthesis.b4.torgb", "to_rgb1", _NV_RGB))
    for k in range(_num_blocks(generator)):
        r = 2 ** (k + 3)
        m.update(_style_layer_map(f"synthesis.b{r}.conv0", f"convs.{2 * k}", _NV_STYLE))
        m.update(_style_layer_map(f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}", _NV_STYLE))
        m[f"synthesis.b{r}.conv0.noise_const"] = f"noises.noise_{2 * k + 1}"
        m[f"synthesis.b{r}.conv1.noise_const"] = f"noises.noise_{2 * k + 2}"
        m.update(_style_layer_map(f"synthesis.b{r}.torgb", f"to_rgbs.{k}", _NV_RGB))
    return m


NVIDIA_IGNORED = (r"(.+\.)?resample_filter", r"mapping\.w_avg")


def _disc_map(discriminator, from_rgb: tuple[str, str], block: Callable[[int], dict[str, str]], final: dict[str, str]):
    m = {from_rgb[0]: "from_rgb.weight", from_rgb[1]: "from_rgb.bias"}
    for k in range(len(discriminator.blocks)):
        for src, dst in block(k).items():
            m[src] = f"blocks.{k}.{dst}"
    m.update(final)
    return m


_D_FINAL_SEQ = {
    "final_conv.0.weight": "final_conv.weight",
    "final_conv.1.bias": "final_conv.bias",
    "final_linear.0.weight": "final_fc.weight",
    "final_linear.0.bias": "final_fc.bias",
    "final_linear.1.weight": "final_out.weight",
    "final_linear.1.bias": "final_out.bias",
}


def _seq_block(prefix: str) -> Callable[[int], dict[str, str]]:
    def block(k: int) -> dict[str, str]:
        p = f"{prefix}.{k + 1}"
        return {
            f"{p}.conv1.0.weight": "conv1.weight",
            f"{p}.conv1.1.bias": "conv1.bias",
            f"{p}.conv2.1.weight": "conv2.weight",
            f"{p}.conv2.2.bias": "conv2.bias",
            f"{p}.skip.1.weight": "skip.weight",
        }

    return block


def rosinality_discriminator_key_map(discriminator) -> dict[str, str]:
    """rosinality ``Discriminator`` names -> ours."""
    return _disc_map(discriminator, ("convs.0.0.weight", "convs.0.1.bias"), _seq_block("convs"), _D_FINAL_SEQ)


ROSINALITY_DISCRIMINATOR_IGNORED = (r"convs\.\d+\.(conv2|skip)\.0\.kernel",)


def basicsr_discriminator_key_map(discriminator) -> dict[str, str]:
    """BasicSR ``StyleGAN2Discriminator`` names -> ours."""
    return _disc_map(
        discriminator, ("conv_body.0.0.weight", "conv_body.0.1.bias"), _seq_block("conv_body"), _D_FINAL_SEQ
    )


def nvidia_discriminator_key_map(discriminator) -> dict[str, str]:
    """NVIDIA stylegan2-ada-pytorch ``Discriminator`` (resnet, unconditional) names -> ours."""
    size = discriminator.size

    def block(k: int) -> dict[str, str]:
        r = size // 2**k
        return {
            f"b{r}.conv0.weight": "conv1.weight",
            f"b{r}.conv0.bias": "conv1.bias",
            f"b{r}.conv1.weight": "conv2.weight",
            f"b{r}.conv1.bias": "conv2.bias",
            f"b{r}.skip.weight": "skip.weight",
        }

    final = {
        "b4.conv.weight": "final_conv.weight",
        "b4.conv.bias": "final_conv.bias",
        "b4.fc.weight": "final_fc.weight",
        "b4.fc.bias": "final_fc.bias",
        "b4.out.weight": "final_out.weight",
        "b4.out.bias": "final_out.bias",
    }
    return _disc_map(discriminator, (f"b{size}.fromrgb.weight", f"b{size}.fromrgb.bias"), block, final)


def official_fencoder_key_map(f_encoder) -> dict[str, str]:
    """UGPNet ``Fencoder`` names -> our ``FEncoder`` names."""
    m: dict[str, str] = {}
    for i, block in enumerate(f_encoder.blocks):
        for j in range(len(block.convs)):
            m[f"downblocks.{i}.conv.{j}.weight"] = f"blocks.{i}.convs.{j}.weight"
            m[f"downblocks.{i}.conv.{j}.bias"] = f"blocks.{i}.convs.{j}.bias"
            if block.norms is not None:
                for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    m[f"downblocks.{i}.bn.{j}.{name}"] = f"blocks.{i}.norms.{j}.{name}"
    m["conv1x1.weight"] = "out_conv.weight"
    m["conv1x1.bias"] = "out_conv.bias"
    return m


def official_map2style_key_map(map2style) -> dict[str, str]:
    """UGPNet ``Wmodule`` names -> our ``Map2Style`` names (Sequential index 2c = c-th conv)."""
    m: dict[str, str] = {}
    for c in range(len(map2style.convs)):
        m[f"convs.{2 * c}.weight"] = f"convs.{c}.weight"
        m[f"convs.{2 * c}.bias"] = f"convs.{c}.bias"
    for h in range(len(map2style.heads)):
        m[f"linear.{h}.weight"] = f"heads.{h}.weight"
        m[f"linear.{h}.bias"] = f"heads.{h}.bias"
    return m
