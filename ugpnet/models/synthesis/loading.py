"""Safe loading of pretrained StyleGAN2 / UGPNet synthesis weights with documented key maps.

Nothing here executes code from a checkpoint: ``.pt``/``.pth`` files go through
``torch.load(weights_only=True)`` (plus ``argparse.Namespace``, which rosinality's training
checkpoints store under ``args``), and NVIDIA ``.pkl`` files through :class:`RestrictedUnpickler`,
whose ``find_class`` resolves only a whitelist (tensor/storage rebuild functions wrapped with
type checks, ``collections.OrderedDict``, builtin containers, numpy array/dtype/scalar
reconstruction). NVIDIA's ``torch_utils.persistence._reconstruct_persistent_obj`` (which would
``exec`` the network source embedded in the pickle) is replaced by a function that keeps the
pickled module state (``_parameters``, ``_buffers``, ``_modules``) in an inert
:class:`PersistentPlaceholder`; other classes under ``training.*``, ``torch_utils.*``,
``dnnlib.*`` and ``torch.nn.modules.*`` become inert placeholders too. Any other global (e.g.
``os.system``) raises :class:`CheckpointError`.

Supported layouts (``load_stylegan2`` detects them):

* rosinality/stylegan2-pytorch ``.pt``: dict with ``g_ema`` (and ``g``), optional ``d``,
  ``latent_avg``.
* BasicSR ``.pth``: ``params_ema`` (+ ``params``) = generator, or ``params`` = discriminator
  (UGPNet's ``net_g.pth`` / ``net_d.pth``). Bare state dicts in either layout are accepted too.
* NVIDIA stylegan2-ada-pytorch / stylegan3 (StyleGAN2 configs) release ``.pkl``:
  ``G_ema`` (or ``G``) and ``D``. Class-conditional networks and StyleGAN3 generators are
  rejected. ``conv_clamp`` (256 in ADA-trained pickles) is not applied by our layers.

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

import argparse
import collections
import io
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ugpnet.errors import CheckpointError

__all__ = [
    "LoadReport",
    "RestrictedUnpickler",
    "PersistentPlaceholder",
    "read_checkpoint",
    "read_nvidia_pickle",
    "load_stylegan2",
    "load_official_synmodule",
    "rosinality_generator_key_map",
    "rosinality_discriminator_key_map",
    "basicsr_generator_key_map",
    "basicsr_discriminator_key_map",
    "nvidia_generator_key_map",
    "nvidia_discriminator_key_map",
    "official_fencoder_key_map",
    "official_map2style_key_map",
    "apply_key_map",
]

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


@dataclass
class LoadReport:
    """What a loader did: detected format, tensors loaded per network, extras found."""

    path: str
    format: str
    loaded: dict[str, int] = field(default_factory=dict)  # network -> number of tensors
    w_avg: torch.Tensor | None = None
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- key maps
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


# --------------------------------------------------------------------------- applying a map
def _fits(src: torch.Size, dst: torch.Size) -> bool:
    return src == dst or [d for d in src if d != 1] == [d for d in dst if d != 1]


def _short(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def apply_key_map(
    state: dict[str, torch.Tensor],
    key_map: dict[str, str],
    model: nn.Module,
    *,
    ignore: tuple[str, ...] = (),
    what: str = "network",
    source: str = "checkpoint",
    layout: str = "",
    hint: str = "",
) -> list[str]:
    """Rename ``state`` via ``key_map`` and load it into ``model`` strictly.

    Raises :class:`CheckpointError` listing missing keys, unexpected keys and shape mismatches.
    Returns the ignored keys.
    """
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: the {what} entry is empty or not a state dict")
    model_state = model.state_dict()
    mapped_targets = set(key_map.values())
    unmapped_model = sorted(set(model_state) - mapped_targets)
    if unmapped_model:  # programming error: our map does not cover the model
        raise CheckpointError(
            f"{source}: internal key map for {layout} {what} does not cover {_short(unmapped_model)}"
        )
    ign = [re.compile(p) for p in ignore]
    ignored = [k for k in state if k not in key_map and any(p.fullmatch(k) for p in ign)]
    unexpected = sorted(k for k in state if k not in key_map and k not in ignored)
    missing = sorted(k for k in key_map if k not in state)
    mismatched = []
    new_state = {}
    for src, dst in key_map.items():
        if src not in state:
            continue
        t = state[src]
        if not isinstance(t, torch.Tensor):
            mismatched.append(f"{src} (not a tensor: {type(t).__name__})")
            continue
        want = model_state[dst].shape
        if not _fits(t.shape, want):
            mismatched.append(f"{src} {tuple(t.shape)} -> {dst} {tuple(want)}")
            continue
        new_state[dst] = t.detach().reshape(want).to(dtype=model_state[dst].dtype)
    if unexpected or missing or mismatched:
        parts = [f"{source} does not fit our {what} as a {layout} checkpoint."]
        if missing:
            parts.append(f"Missing keys: {_short(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys: {_short(unexpected)}.")
        if mismatched:
            parts.append(f"Shape mismatches: {_short(mismatched)}.")
        parts.append(
            hint
            or "Check that the file is the right network and that the model configuration (size, "
            "channel_multiplier, style_dim, n_mlp) matches the checkpoint."
        )
        raise CheckpointError(" ".join(parts))
    model.load_state_dict(new_state, strict=True)
    return ignored


# --------------------------------------------------------------------------- restricted unpickler
class PersistentPlaceholder:
    """Inert stand-in for an object pickled through NVIDIA's ``torch_utils.persistence``.

    ``class_name`` and the pickled ``state`` (the module's ``__dict__``) are kept; the embedded
    ``module_src`` is stored as text and never executed.
    """

    def __init__(self, class_name: str, state: Any, module_src: str = "", version: Any = None):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src
        self.version = version

    def __repr__(self) -> str:
        return f"PersistentPlaceholder({self.class_name})"


class _InertPlaceholder(dict):
    """Inert stand-in for a whitelisted-module class (``training.*``, ``dnnlib.*``, ``torch.nn.modules.*``).

    Behaves as a dict (``dnnlib.EasyDict`` and friends), records constructor args, list items and
    ``__setstate__`` state; never runs foreign code.
    """

    qualname = "?"

    def __init__(self, *args, **kwargs):  # noqa: D401 - records arguments only
        dict.__init__(self)
        self.args = args
        self.kwargs = kwargs
        self.items_list: list = []
        self.pickled_state = None

    def __setstate__(self, state):
        self.pickled_state = state

    def append(self, item):
        self.items_list.append(item)

    def extend(self, items):
        self.items_list.extend(items)

    def __reduce__(self):  # never re-pickled as the foreign class
        raise TypeError("placeholder objects cannot be pickled")


def _new_placeholder_object(cls):
    obj = dict.__new__(cls)
    _InertPlaceholder.__init__(obj)
    return obj


_PLACEHOLDER_CACHE: dict[tuple[str, str], type] = {}


def _placeholder_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDER_CACHE:
        cls = type(f"Inert_{name}", (_InertPlaceholder,), {"qualname": f"{module}.{name}"})
        cls.__new__ = staticmethod(lambda c, *a, **k: _new_placeholder_object(c))  # type: ignore[assignment]
        _PLACEHOLDER_CACHE[key] = cls
    return _PLACEHOLDER_CACHE[key]


def _inert_persistent(meta):
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: no exec."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise CheckpointError("malformed persistent-object record in pickle")
    return PersistentPlaceholder(
        str(meta["class_name"]), meta.get("state"), str(meta.get("module_src", "")), meta.get("version")
    )


def _check_storage(storage):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
        raise CheckpointError(f"pickle rebuilds a tensor from a {type(storage).__name__}, not a storage")
    return storage


def _safe_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    _check_storage(storage)
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _safe_rebuild_tensor(storage, storage_offset, size, stride):
    _check_storage(storage)
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _safe_rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("pickle rebuilds a parameter from a non-tensor")
    return data


def _safe_rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_safe_rebuild_tensor_v2, _safe_rebuild_parameter, _safe_rebuild_tensor):
        raise CheckpointError("pickle uses an unsupported tensor rebuild function")
    if new_type not in (torch.Tensor, nn.Parameter):
        raise CheckpointError(f"pickle rebuilds a tensor of unsupported type {new_type!r}")
    return func(*args)


def _safe_load_storage(data: bytes):
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("pickle storage record is not bytes")
    try:
        obj = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any failure as a checkpoint problem
        raise CheckpointError(f"could not read an embedded tensor storage safely: {exc}") from exc
    return _check_storage(obj)


def _safe_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, _InertPlaceholder):
        obj = _new_placeholder_object(cls)
        obj.pickled_state = state
        return obj
    if cls is collections.OrderedDict:
        return collections.OrderedDict()
    raise CheckpointError(f"pickle reconstructs unsupported class {cls!r}")


def _safe_numpy_reconstruct(cls, shape, dtype):
    import numpy as np

    if cls is not np.ndarray:
        raise CheckpointError(f"pickle reconstructs numpy subclass {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_codecs_encode(text, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles store bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("pickle uses _codecs.encode outside the bytes-encoding idiom")
    return text.encode("latin1")


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _safe_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    np_scalar = _numpy_scalar()

    g: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("_codecs", "encode"): _safe_codecs_encode,
        ("torch._utils", "_rebuild_tensor_v2"): _safe_rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _safe_rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _safe_rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _safe_rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _safe_rebuild_from_type_v2,
        ("torch.storage", "_load_from_bytes"): _safe_load_storage,
        ("torch", "Size"): torch.Size,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): nn.Parameter,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _inert_persistent,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy.core.multiarray", "scalar"): np_scalar,
        ("numpy._core.multiarray", "scalar"): np_scalar,
    }
    for name in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"):
        g[("torch", name)] = getattr(torch, name)
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool_"):
        g[("numpy", name)] = getattr(np, name)
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType", "BoolDType", "UInt8DType"):
        if dtypes is not None and hasattr(dtypes, name):
            g[("numpy.dtypes", name)] = getattr(dtypes, name)
    return g


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

# modules whose classes become inert placeholders (NVIDIA network code and torch modules)
_PLACEHOLDER_MODULE_PREFIXES = ("training.", "torch_utils.", "dnnlib.", "torch.nn.modules.")
_PLACEHOLDER_MODULES = ("training", "torch_utils", "dnnlib")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals and never imports foreign modules.

    Records the foreign class names it replaced in ``self.placeholders``.
    """

    def __init__(self, file, source: str = "pickle"):
        super().__init__(file)
        self.source = source
        self.placeholders: set[str] = set()
        self._safe = _safe_globals()

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)  # protocol <= 2 writes Python 2 module names
        key = (module, name)
        if key in self._safe:
            return self._safe[key]
        if (module in _PLACEHOLDER_MODULES or module.startswith(_PLACEHOLDER_MODULE_PREFIXES)) and (
            name.isidentifier() and not name.startswith("_")
        ):
            self.placeholders.add(f"{module}.{name}")
            return _placeholder_class(module, name)
        raise CheckpointError(
            f"{self.source}: refusing to load: the pickle references '{module}.{name}', which is not on the "
            "whitelist of safe tensor/container types. Only NVIDIA StyleGAN2 network pickles are supported; "
            "do not load files from untrusted sources."
        )

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.source}: unexpected persistent id in pickle ({type(pid).__name__})")


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
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f, source=path)
            obj = data.load()
    except CheckpointError:
        raise
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
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


# --------------------------------------------------------------------------- checkpoint reading
def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read a ``.pt``/``.pth`` checkpoint with ``torch.load(weights_only=True)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: cannot be read safely with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Re-save it as a plain state dict."
        ) from exc


def _is_torch_file(path: str) -> bool:
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_TORCH_MAGIC)) == _LEGACY_TORCH_MAGIC


def _looks_basicsr_g(sd) -> bool:
    return isinstance(sd, dict) and "constant_input.weight" in sd


def _looks_basicsr_d(sd) -> bool:
    return isinstance(sd, dict) and "conv_body.0.0.weight" in sd


def _looks_rosinality_g(sd) -> bool:
    return isinstance(sd, dict) and "input.input" in sd


def _looks_rosinality_d(sd) -> bool:
    return isinstance(sd, dict) and "convs.0.0.weight" in sd and "final_linear.0.weight" in sd


def _w_avg(t) -> torch.Tensor | None:
    if isinstance(t, torch.Tensor):
        return t.detach().float().reshape(1, -1).clone()
    return None


def load_stylegan2(
    path: str | os.PathLike,
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    *,
    use_ema: bool = True,
) -> LoadReport:
    """Load pretrained StyleGAN2 weights into our ``Generator`` and/or ``Discriminator``.

    Detects the layout (rosinality ``.pt``, BasicSR ``.pth``, NVIDIA ``.pkl``). ``use_ema``
    picks ``g_ema``/``params_ema``/``G_ema`` over the raw generator. Raises
    :class:`CheckpointError` (missing/unexpected keys, shape mismatches, unsafe pickle) when the
    file does not fit. Returns a :class:`LoadReport` (``w_avg`` is set when the file has one).
    """
    path = os.fspath(path)
    if generator is None and discriminator is None:
        raise ValueError("load_stylegan2 needs a generator and/or a discriminator")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if _is_torch_file(path):
        ckpt = read_checkpoint(path)
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
        if "g_ema" in ckpt or "g" in ckpt or ("d" in ckpt and _looks_rosinality_d(ckpt.get("d"))):
            return _load_rosinality(path, ckpt, generator, discriminator, use_ema)
        if "params_ema" in ckpt or "params" in ckpt:
            return _load_basicsr(path, ckpt, generator, discriminator, use_ema)
        if _looks_basicsr_g(ckpt) or _looks_basicsr_d(ckpt):
            key = "params_ema" if _looks_basicsr_g(ckpt) else "params"
            return _load_basicsr(path, {key: ckpt}, generator, discriminator, use_ema)
        if _looks_rosinality_g(ckpt) or _looks_rosinality_d(ckpt):
            key = "g_ema" if _looks_rosinality_g(ckpt) else "d"
            return _load_rosinality(path, {key: ckpt}, generator, discriminator, use_ema)
        raise CheckpointError(
            f"{path}: unknown checkpoint layout (top-level keys: {_short(sorted(map(str, ckpt)))}). Expected "
            "rosinality (g_ema/d), BasicSR (params_ema/params) or an NVIDIA .pkl."
        )
    return _load_nvidia(path, generator, discriminator, use_ema)


def _load_rosinality(path, ckpt, generator, discriminator, use_ema) -> LoadReport:
    rep = LoadReport(path, "rosinality")
    if generator is not None:
        key = "g_ema" if (use_ema and "g_ema" in ckpt) else "g"
        if key not in ckpt:
            raise CheckpointError(f"{path}: rosinality checkpoint has no generator ('g_ema'/'g')")
        if key != ("g_ema" if use_ema else "g"):
            rep.notes.append(f"used '{key}'")
        rep.ignored += apply_key_map(
            ckpt[key], rosinality_generator_key_map(generator), generator,
            ignore=ROSINALITY_GENERATOR_IGNORED, what="generator", source=path, layout="rosinality",
        )
        rep.loaded["generator"] = len(ckpt[key])
        rep.w_avg = _w_avg(ckpt.get("latent_avg"))
    if discriminator is not None:
        if "d" not in ckpt:
            raise CheckpointError(f"{path}: rosinality checkpoint has no discriminator ('d')")
        rep.ignored += apply_key_map(
            ckpt["d"], rosinality_discriminator_key_map(discriminator), discriminator,
            ignore=ROSINALITY_DISCRIMINATOR_IGNORED, what="discriminator", source=path, layout="rosinality",
        )
        rep.loaded["discriminator"] = len(ckpt["d"])
    return rep


def _load_basicsr(path, ckpt, generator, discriminator, use_ema) -> LoadReport:
    rep = LoadReport(path, "basicsr")
    g_sd = None
    if "params_ema" in ckpt and use_ema:
        g_sd = ckpt["params_ema"]
    elif _looks_basicsr_g(ckpt.get("params")):
        g_sd = ckpt["params"]
    elif "params_ema" in ckpt:
        g_sd = ckpt["params_ema"]
    d_sd = ckpt.get("params") if _looks_basicsr_d(ckpt.get("params")) else None
    if generator is not None:
        if g_sd is None:
            raise CheckpointError(
                f"{path}: BasicSR checkpoint holds no generator (no 'params_ema', and 'params' is not a "
                "StyleGAN2Generator); BasicSR stores G and D in separate files (net_g / net_d)."
            )
        apply_key_map(g_sd, basicsr_generator_key_map(generator), generator,
                      what="generator", source=path, layout="BasicSR")
        rep.loaded["generator"] = len(g_sd)
    if discriminator is not None:
        if d_sd is None:
            raise CheckpointError(
                f"{path}: BasicSR checkpoint holds no discriminator ('params' with conv_body.*); BasicSR "
                "stores G and D in separate files (net_g / net_d): pass the net_d file."
            )
        apply_key_map(d_sd, basicsr_discriminator_key_map(discriminator), discriminator,
                      what="discriminator", source=path, layout="BasicSR")
        rep.loaded["discriminator"] = len(d_sd)
    return rep


def _load_nvidia(path, generator, discriminator, use_ema) -> LoadReport:
    pk = read_nvidia_pickle(path)
    rep = LoadReport(path, "nvidia-pkl")
    if generator is not None:
        key = "G_ema" if (use_ema and "G_ema" in pk.networks) else "G"
        if key not in pk.networks:
            raise CheckpointError(f"{path}: pickle has no generator (G_ema/G)")
        sd = pk.networks[key]
        if any(k.startswith("synthesis.input.") for k in sd):
            raise CheckpointError(f"{path}: this is a StyleGAN3 generator; only StyleGAN2 networks are supported")
        if "mapping.embed.weight" in sd:
            raise CheckpointError(f"{path}: class-conditional generator (mapping.embed) is not supported")
        rep.ignored += apply_key_map(
            sd, nvidia_generator_key_map(generator), generator, ignore=NVIDIA_IGNORED,
            what="generator", source=path, layout="NVIDIA stylegan2-ada",
        )
        rep.loaded["generator"] = len(sd)
        rep.w_avg = _w_avg(sd.get("mapping.w_avg"))
        rep.notes.append(f"generator class {pk.class_names.get(key)}; init kwargs {pk.init_kwargs.get(key)}")
    if discriminator is not None:
        if "D" not in pk.networks:
            raise CheckpointError(f"{path}: pickle has no discriminator (D)")
        sd = pk.networks["D"]
        if any(".cmap" in k or k.startswith("mapping.") for k in sd):
            raise CheckpointError(f"{path}: class-conditional discriminator is not supported")
        rep.ignored += apply_key_map(
            sd, nvidia_discriminator_key_map(discriminator), discriminator, ignore=NVIDIA_IGNORED,
            what="discriminator", source=path, layout="NVIDIA stylegan2-ada",
        )
        rep.loaded["discriminator"] = len(sd)
    return rep


def load_official_synmodule(
    path: str | os.PathLike, synthesis_module: nn.Module, discriminator: nn.Module | None = None
) -> LoadReport:
    """Load UGPNet's released ``synmodule_*.pth`` (``generator``, ``fencoder``, ``wmodule``,
    optionally ``discriminator``) into our :class:`SynthesisModule` (and Discriminator)."""
    path = os.fspath(path)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    needed = [k for k in ("generator", "fencoder", "wmodule") if k not in ckpt]
    if needed:
        raise CheckpointError(
            f"{path}: not a UGPNet synmodule checkpoint: missing {needed} (top-level keys: "
            f"{_short(sorted(map(str, ckpt)))})"
        )
    rep = LoadReport(path, "ugpnet-synmodule")
    apply_key_map(ckpt["generator"], basicsr_generator_key_map(synthesis_module.generator), synthesis_module.generator,
                  what="generator", source=path, layout="UGPNet (BasicSR)")
    fe, m2s = synthesis_module.encoder.f_encoder, synthesis_module.encoder.map2style
    apply_key_map(ckpt["fencoder"], official_fencoder_key_map(fe), fe, what="F-encoder", source=path,
                  layout="UGPNet Fencoder")
    apply_key_map(ckpt["wmodule"], official_map2style_key_map(m2s), m2s, what="map2style", source=path,
                  layout="UGPNet Wmodule")
    rep.loaded.update(generator=len(ckpt["generator"]), fencoder=len(ckpt["fencoder"]), wmodule=len(ckpt["wmodule"]))
    if discriminator is not None:
        if "discriminator" not in ckpt:
            raise CheckpointError(f"{path}: synmodule checkpoint has no 'discriminator' entry")
        apply_key_map(ckpt["discriminator"], basicsr_discriminator_key_map(discriminator), discriminator,
                      what="discriminator", source=path, layout="UGPNet (BasicSR)")
        rep.loaded["discriminator"] = len(ckpt["discriminator"])
    return rep

