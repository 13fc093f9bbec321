"""Checkpoint key maps for the regression backbones and UGPNet's restoration/fusion modules.

Every map takes a raw state dict (already read safely by the caller) and returns one keyed for
our modules; :func:`ugpnet.checkpoints.load_state_dict_strict` then loads it and lists what does not
fit. Files are read with :func:`ugpnet.checkpoints.read_checkpoint` and unwrapped with
:func:`ugpnet.checkpoints.unwrap_state_dict` (``params_ema`` > ``params`` > ``state_dict`` >
``model`` > ``net``; leading ``module.`` prefixes removed).

Backbones (:func:`backbone_keymap`):

- NAFNet (megvii-research/NAFNet ``params``), HINet (megvii-model/HINet ``params``), UNet: identity.
- RRDBNet: our names are BasicSR's, which is also the official UGPNet ``RRDBNetX8`` layout
  (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1..3``, ``conv_hr``,
  ``conv_last``; file ``rrdbnet_x8_bicubic.pth`` with ``params_ema``): identity. Original ESRGAN
  (xinntao/ESRGAN ``RRDBNet_arch.py``): ``RRDB_trunk.N.RDBK.convJ`` -> ``body.N.rdbK.convJ``,
  ``trunk_conv`` -> ``conv_body``, ``upconvK`` -> ``conv_upK``, ``HRconv`` -> ``conv_hr``. ESRGAN
  "old arch" (``model.N``): ``model.0`` -> ``conv_first``, ``model.1.sub.N.RDBK.convJ.0`` ->
  ``body.N.rdbK.convJ``, ``model.1.sub.<num_block>`` -> ``conv_body``, ``model.<3k>`` ->
  ``conv_up<k>``, ``model.<3n+2>`` -> ``conv_hr``, ``model.<3n+4>`` -> ``conv_last`` (n = number
  of upsampling convs).
- A UGPNet resmodule file or our RestorationModule state dict also works as a backbone file: only
  its ``regression.*`` / ``backbone.*`` entries are used.

Official UGPNet restoration module (``resmodule_best_*.pth``, a raw ``ResModule.state_dict()``)
-> :class:`~ugpnet.models.restoration.RestorationModule` (:func:`official_resmodule_to_restoration`)::

    regression.*                        -> backbone.*
    encoder.input_encoder.conv.K.*      -> structure_encoder.conv.K.*
    encoder.merge_decoder.N.conv.K.*    -> merging_net.blocks.N.conv.K.*
    encoder.to_img.body.0.*             -> merging_net.to_image.conv.*

For the RRDBNet (direct) variant the official "resmodule" is the RRDBNetX8 ``params_ema`` itself:
every key gets the ``backbone.`` prefix.

Official UGPNet fusion module (``fusmodule_best.pth``, raw ``FusionNet.state_dict()``) ->
:class:`~ugpnet.models.fusion.FusionModule` (:func:`official_fusmodule_to_fusion`)::

    conv.*            -> in_conv.*
    body.N.body.0.*   -> body.N.conv1.*
    body.N.body.2.*   -> body.N.conv2.*
    last.*            -> out_conv.*
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from ..checkpoints import WRAPPER_KEYS, StateDict, load_state_dict_strict, read_checkpoint, unwrap_state_dict
from ..errors import CheckpointError

# where to get official weights, by backbone class name (for missing-file messages)
DOWNLOAD_HINTS = {
    "NAFNet": ("NAFNet-GoPro-width32.pth (deblur) or NAFNet-SIDD-width32.pth (denoise) from the "
               "NAFNet release (github.com/megvii-research/NAFNet, 'Results and Pre-trained "
               "Models')"),
    "HINet": ("HINet-GoPro.pth (deblur) or HINet-SIDD-0.5x.pth (denoise) from the HINet release "
              "(github.com/megvii-model/HINet)"),
    "RRDBNet": ("rrdbnet_x8_bicubic.pth from the UGPNet release (github.com/hwayoon2/UGPNet, "
                "'ckpt/pretrained'), or train the rrdbnet baseline first"),
    "UNet": "a finished ugpnet-bench UNet run (there is no official UNet checkpoint)",
}


# --------------------------------------------------------------------------- backbone maps
def _rename(sd: Mapping[str, torch.Tensor], rules: Sequence[tuple]) -> StateDict:
    """Apply regex rules (pattern, replacement) in order to every key (all that match)."""
    out = {}
    for k, v in sd.items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


ESRGAN_RULES = (
    (r"^RRDB_trunk\.", "body."),
    (r"\.RDB([123])\.", r".rdb\1."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv(\d+)\.", r"conv_up\1."),
    (r"^HRconv\.", "conv_hr."),
)


def _esrgan_old_arch(sd: Mapping[str, torch.Tensor]) -> StateDict:
    subs = {int(m.group(1)) for k in sd if (m := re.match(r"^model\.1\.sub\.(\d+)\.", k))}
    trunk = [i for i in subs if not any(k.startswith(f"model.1.sub.{i}.RDB") for k in sd)]
    tops = sorted({int(m.group(1)) for k in sd if (m := re.match(r"^model\.(\d+)\.", k))} - {0, 1})
    if len(trunk) != 1 or len(tops) < 2:
        raise CheckpointError("ESRGAN old-arch checkpoint with an unexpected layout "
                              f"(model.* indices {tops}, trunk candidates {trunk})")
    n_up = len(tops) - 2
    names = {0: "conv_first"}
    for k in range(1, n_up + 1):
        names[3 * k] = f"conv_up{k}"
    names[3 * n_up + 2] = "conv_hr"
    names[3 * n_up + 4] = "conv_last"
    out = {}
    for k, v in sd.items():
        m = re.match(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv(\d)\.0\.(weight|bias)$", k)
        if m:
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = v
            continue
        m = re.match(rf"^model\.1\.sub\.{trunk[0]}\.(weight|bias)$", k)
        if m:
            out[f"conv_body.{m.group(1)}"] = v
            continue
        m = re.match(r"^model\.(\d+)\.(weight|bias)$", k)
        if m and int(m.group(1)) in names:
            out[f"{names[int(m.group(1))]}.{m.group(2)}"] = v
            continue
        out[k] = v  # left as is: load_state_dict_strict reports it
    return out


def rrdbnet_keymap(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """BasicSR / official UGPNet (identity), original ESRGAN or ESRGAN old-arch -> our RRDBNet."""
    if any(k.startswith("model.1.sub.") for k in sd):
        return _esrgan_old_arch(sd)
    if any(k.startswith(("RRDB_trunk.", "trunk_conv.", "upconv", "HRconv.")) for k in sd):
        return _rename(sd, ESRGAN_RULES)
    return dict(sd)


def identity_keymap(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return dict(sd)


BACKBONE_KEYMAPS: Dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "NAFNet": identity_keymap,
    "HINet": identity_keymap,
    "UNet": identity_keymap,
    "RRDBNet": rrdbnet_keymap,
}


def _sub_dict(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def backbone_keymap(sd: Mapping[str, torch.Tensor], backbone: nn.Module | str) -> StateDict:
    """Map a backbone state dict (official layouts, see module doc) to our backbone's names."""
    name = backbone if isinstance(backbone, str) else type(backbone).__name__
    for prefix in ("regression.", "backbone."):  # a resmodule / RestorationModule file
        if any(k.startswith(prefix) for k in sd):
            sd = _sub_dict(sd, prefix)
            break
    return BACKBONE_KEYMAPS.get(name, identity_keymap)(sd)


# --------------------------------------------------------------------------- UGPNet module maps
RESMODULE_RULES = (
    (r"^regression\.", "backbone."),
    (r"^encoder\.input_encoder\.", "structure_encoder."),
    (r"^encoder\.merge_decoder\.(\d+)\.", r"merging_net.blocks.\1."),
    (r"^encoder\.to_img\.body\.0\.", "merging_net.to_image.conv."),
)

FUSMODULE_RULES = (
    (r"^conv\.", "in_conv."),
    (r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1."),
    (r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2."),
    (r"^last\.", "out_conv."),
)


def official_resmodule_to_restoration(sd: Mapping[str, torch.Tensor],
                                      backbone: nn.Module | str | None = None) -> StateDict:
    """Official UGPNet ``ResModule`` state dict (or RRDBNetX8 ``params_ema`` for the direct
    variant) -> our RestorationModule. Our own RestorationModule state dicts pass unchanged."""
    if any(k.startswith(("regression.", "encoder.")) for k in sd):
        out = _rename(sd, RESMODULE_RULES)
        if backbone is not None:
            bb = backbone_keymap(_sub_dict(out, "backbone."), backbone)
            out = {k: v for k, v in out.items() if not k.startswith("backbone.")}
            out.update({f"backbone.{k}": v for k, v in bb.items()})
        return out
    if any(k.startswith(("backbone.", "structure_encoder.", "merging_net.")) for k in sd):
        return dict(sd)
    # a bare backbone (direct variant: RRDBNetX8)
    bb = backbone_keymap(sd, backbone) if backbone is not None else dict(sd)
    return {f"backbone.{k}": v for k, v in bb.items()}


def official_fusmodule_to_fusion(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Official UGPNet ``FusionNet`` state dict -> our FusionModule (ours pass unchanged)."""
    if any(k.startswith(("in_conv.", "out_conv.")) for k in sd):
        return dict(sd)
    return _rename(sd, FUSMODULE_RULES)


# --------------------------------------------------------------------------- file loaders
def load_pretrained_backbone(path: str | os.PathLike, backbone: nn.Module,
                             prefer: Sequence[str] = WRAPPER_KEYS) -> None:
    """Load official pretrained weights into a backbone (NAFNet/HINet ``params``, BasicSR or UGPNet
    ``params_ema``, ESRGAN raw dicts, ``.safetensors``); CheckpointError when the file is missing
    or does not fit."""
    path = Path(path)
    name = type(backbone).__name__
    if not path.is_file():
        hint = DOWNLOAD_HINTS.get(name, f"the official {name} weights")
        raise CheckpointError(
            f"pretrained {name} weights not found at {path}: download {hint} and set "
            f"methods.<method>.pretrained.<task> in params.yaml (or --set) to its path")
    sd = unwrap_state_dict(read_checkpoint(path, f"pretrained {name} weights"), str(path), prefer)
    load_state_dict_strict(backbone, backbone_keymap(sd, backbone), f"{path} ({name} weights)")


def load_official_restoration(path: str | os.PathLike, restoration: nn.Module) -> None:
    """Official UGPNet ``resmodule_*.pth`` (or ``rrdbnet_x8_bicubic.pth``) -> RestorationModule."""
    path = Path(path)
    sd = unwrap_state_dict(read_checkpoint(path, "UGPNet restoration module"), str(path))
    mapped = official_resmodule_to_restoration(sd, restoration.backbone)
    load_state_dict_strict(restoration, mapped, f"{path} (UGPNet restoration module)")


def load_official_fusion(path: str | os.PathLike, fusion: nn.Module) -> None:
    """Official UGPNet ``fusmodule_*.pth`` -> FusionModule."""
    path = Path(path)
    sd = unwrap_state_dict(read_checkpoint(path, "UGPNet fusion module"), str(path))
    load_state_dict_strict(fusion, official_fusmodule_to_fusion(sd),
                           f"{path} (UGPNet fusion module)")


def _pick(folder: Path, patterns: Sequence[str], what: str) -> Path:
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            # official training writes <name>_best_<iter>.pth at every new best: take the last
            iters = [re.search(r"_(\d+)\.pth$", h.name) for h in hits]
            if all(iters):
                return max(zip((int(m.group(1)) for m in iters), hits))[1]
            raise CheckpointError(f"{folder}: several {what} files match {pat!r}: "
                                  f"{[h.name for h in hits]}; keep exactly one or pass the "
                                  f"file explicitly")
    raise CheckpointError(f"{folder}: no {what} file (looked for {', '.join(patterns)})")


OFFICIAL_PATTERNS = {
    "resmodule": (("resmodule_best*.pth", "resmodule*.pth", "rrdbnet_x8*.pth"),
                  "restoration module (resmodule_*.pth / rrdbnet_x8*.pth)"),
    "synmodule": (("synmodule*.pth",), "synthesis module (synmodule_*.pth)"),
    "fusmodule": (("fusmodule_best.pth", "fusmodule*.pth"), "fusion module (fusmodule_*.pth)"),
}


def find_official_files(folder: str | os.PathLike,
                        given: Optional[Mapping[str, str | os.PathLike]] = None) -> Dict[str, Path]:
    """Locate ``resmodule`` / ``synmodule`` / ``fusmodule`` files of an official UGPNet release
    folder (``ckpt/UGPNet_with_<...>``); ``given`` names any of them elsewhere (the SR release
    keeps its restoration module ``rrdbnet_x8_bicubic.pth`` in ``ckpt/pretrained/``)."""
    folder = Path(folder)
    found = {k: Path(v) for k, v in (given or {}).items()}
    missing = [k for k in OFFICIAL_PATTERNS if k not in found]
    if missing and not folder.is_dir():
        raise CheckpointError(f"official UGPNet checkpoint folder {folder} not found (expected "
                              f"resmodule_*.pth, synmodule_*.pth and fusmodule_best.pth)")
    for key in missing:
        patterns, what = OFFICIAL_PATTERNS[key]
        found[key] = _pick(folder, patterns, what)
    return found


def load_official_ugpnet(path: str | os.PathLike, model: nn.Module,
                         files: Optional[Mapping[str, str | os.PathLike]] = None) -> None:
    """Load an official UGPNet release folder (see :func:`find_official_files`) into our UGPNet
    (``model.restoration``, ``model.synthesis``, ``model.fusion``). ``files`` overrides any of the
    three paths (keys ``resmodule``, ``synmodule``, ``fusmodule``)."""
    found = find_official_files(path, files)
    load_official_restoration(found["resmodule"], model.restoration)
    from .synthesis.loading import load_official_synmodule

    load_official_synmodule(found["synmodule"], model.synthesis)
    load_official_fusion(found["fusmodule"], model.fusion)
