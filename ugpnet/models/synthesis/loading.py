"""Loading pretrained StyleGAN2 / UGPNet synthesis weights: format detection and strict loading.

Nothing here executes code from a checkpoint: ``.pt``/``.pth`` files are read by
:func:`ugpnet.checkpoints.read_checkpoint` (``torch.load(weights_only=True)`` plus
``argparse.Namespace``, which rosinality's training checkpoints store under ``args``) and NVIDIA
``.pkl`` files by :func:`~ugpnet.models.synthesis.nvidia_pickle.read_nvidia_pickle` (the one
restricted unpickler, NVIDIA-network policy).


Supported layouts (``load_stylegan2`` detects them):

* rosinality/stylegan2-pytorch ``.pt``: dict with ``g_ema`` (and ``g``), optional ``d``,
  ``latent_avg``.
* BasicSR ``.pth``: ``params_ema`` (+ ``params``) = generator, or ``params`` = discriminator
  (UGPNet's ``net_g.pth`` / ``net_d.pth``). Bare state dicts in either layout are accepted too.
* NVIDIA stylegan2-ada-pytorch / stylegan3 (StyleGAN2 configs) release ``.pkl``:
  ``G_ema`` (or ``G``) and ``D``. Class-conditional networks and StyleGAN3 generators are
  rejected. ``conv_clamp`` (256 in ADA-trained pickles) is not applied by our layers.

The official-name -> our-name tables are in :mod:`ugpnet.models.synthesis.keymaps_stylegan2`.
:func:`apply_key_map` renames a state dict with one of them and loads it strictly; what does not fit
is reported in the one format of :func:`ugpnet.checkpoints.mismatch_message` (missing / unexpected /
shape mismatch, official names).
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field

import torch
from torch import nn

from ...checkpoints import mismatch_message, read_checkpoint, shape_mismatch
from ...errors import CheckpointError
from ...io import listing
from .keymaps_stylegan2 import (
    NVIDIA_IGNORED,
    ROSINALITY_DISCRIMINATOR_IGNORED,
    ROSINALITY_GENERATOR_IGNORED,
    basicsr_discriminator_key_map,
    basicsr_generator_key_map,
    nvidia_discriminator_key_map,
    nvidia_generator_key_map,
    official_fencoder_key_map,
    official_map2style_key_map,
    rosinality_discriminator_key_map,
    rosinality_generator_key_map,
)
from .nvidia_pickle import read_nvidia_pickle

__all__ = [
    "LoadReport",
    "load_stylegan2",
    "load_official_synmodule",
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


# --------------------------------------------------------------------------- applying a map
MODEL_CONFIG_HINT = ("Check that the file is the right network and that the model configuration "
                     "(size, channel_multiplier, style_dim, n_mlp) matches the checkpoint.")


def _fits(src: torch.Size, dst: torch.Size) -> bool:
    return src == dst or [d for d in src if d != 1] == [d for d in dst if d != 1]


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

    Raises :class:`CheckpointError` (:func:`ugpnet.checkpoints.mismatch_message`: missing keys,
    unexpected keys and shape mismatches, by official name). Returns the ignored keys.
    """
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: the {what} entry is empty or not a state dict")
    model_state = model.state_dict()
    mapped_targets = set(key_map.values())
    unmapped_model = sorted(set(model_state) - mapped_targets)
    if unmapped_model:  # programming error: our map does not cover the model
        raise CheckpointError(
            f"{source}: internal key map for {layout} {what} does not cover {listing(unmapped_model)}"
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
        want = model_state[dst].shape
        if not isinstance(t, torch.Tensor):
            mismatched.append(shape_mismatch(src, f"a {type(t).__name__} (not a tensor)", tuple(want), dst))
            continue
        if not _fits(t.shape, want):
            mismatched.append(shape_mismatch(src, tuple(t.shape), tuple(want), dst))
            continue
        new_state[dst] = t.detach().reshape(want).to(dtype=model_state[dst].dtype)
    if unexpected or missing or mismatched:
        target = f"our {what} as a {layout} checkpoint" if layout else f"our {what}"
        raise CheckpointError(mismatch_message(
            source, target, missing=missing, unexpected=unexpected, mismatched=mismatched,
            n_model=len(model_state), n_file=len(state), hint=hint or MODEL_CONFIG_HINT))
    model.load_state_dict(new_state, strict=True)
    return ignored


# --------------------------------------------------------------------------- format detection
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
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        read_checkpoint(path, "StyleGAN2 checkpoint")  # raises: not found / not a file / empty
    if _is_torch_file(path):
        ckpt = read_checkpoint(path, "StyleGAN2 checkpoint")
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
            f"{path}: unknown checkpoint layout (top-level keys: {listing(sorted(map(str, ckpt)))}). Expected "
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
    ckpt = read_checkpoint(path, "UGPNet synmodule checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    needed = [k for k in ("generator", "fencoder", "wmodule") if k not in ckpt]
    if needed:
        raise CheckpointError(
            f"{path}: not a UGPNet synmodule checkpoint: missing {needed} (top-level keys: "
            f"{listing(sorted(map(str, ckpt)))})"
        )
    m2s = synthesis_module.encoder.map2style
    if not hasattr(m2s, "heads"):  # e.g. the per-latent ablation (pSp): no official layout
        raise CheckpointError(
            f"{path}: an official UGPNet synmodule has ONE shared map2style (Wmodule); this "
            f"encoder's map2style is a {type(m2s).__name__} (methods.<m>.map2style), which no "
            f"official release has. Train it (the synthesis stage), or set map2style: shared")
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
