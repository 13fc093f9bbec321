"""Official VQFR checkpoints → our :class:`~baselines.vqfr.arch.VQFR` / ``VQGAN``, strictly.

Official files (TencentARC/VQFR release v1.0.0; BasicSR format, a ``params`` wrapper — the demo
also accepts ``params_ema``):

- ``VQFR_v1-33a1fac5.pth``: ``VQFRv1`` (``network_sr`` of ``train_vqfr_v1_B16_200K.yml``).
  Keys: ``inpfeat_extraction.conv.{weight,bias}``, ``encoder.{conv_in, encoder_dict.Level_L.i,
  pre_downsample_dict.Level_L.conv, enc_convout_dict.Level_32.{0,2}}``, ``decoder.{decoder_dict,
  pre_upsample_dict, conv_out.{0,2}}``, ``main_decoder.{decoder_dict, pre_upsample_dict,
  align_func_dict.Level_L.{downsample.conv, offset_conv1.{0,1,3,4,6}, offset_conv2.{0,1},
  dcn.{weight, bias, conv_offset}}, conv_out_1.0, conv_out.0}``,
  ``quantizer.quantize_dict.Level_32.{quant_conv, post_quant_conv, embedding}``.
- ``VQ_Codebook_FFHQ512-39165968.pth``: ``VQGANv1`` (stage 1): ``encoder.*``, ``decoder.*``,
  ``quantizer.*`` as above.

Our names differ in four prefixes only (:data:`RENAMES`): the texture branch is
``texture_decoder`` (the paper's name), the LQ feature conv ``lq_features``, the warping modules
``main_decoder.warp``. Buffers the authors' quantiser may carry (``usage``, the k-means
``reestimation_reservoir.buffer``; non-persistent in the released code) are dropped: they are
training state, not weights.

Stage 2 starts from the codebook file as the authors do (``strict_load_sr: false``):
:func:`load_codebook_into_vqfr` loads every key of the file strictly into encoder, quantiser and
texture decoder, and leaves ``lq_features`` and ``main_decoder`` (absent from the file) at their
initialisation — the only keys the authors' non-strict load skips.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch

from ugpnet.checkpoints import load_state_dict_strict, read_checkpoint, unwrap_state_dict
from ugpnet.errors import CheckpointError

# (official prefix, our prefix), first match wins
RENAMES: tuple[tuple[str, str], ...] = (
    ("inpfeat_extraction.conv.", "lq_features."),
    ("main_decoder.align_func_dict.", "main_decoder.warp."),
    ("decoder.", "texture_decoder."),
)
TRAINING_BUFFERS = (".usage", ".reestimation_reservoir.buffer")
HINT = ("Give the official file of this network: VQFR_v1-33a1fac5.pth (stage 2, the restoration "
        "network) or VQ_Codebook_FFHQ512-39165968.pth (stage 1, the VQGAN codebook), from "
        "https://github.com/TencentARC/VQFR/releases/tag/v1.0.0, and a model built with the "
        "paper-scale architecture (the defaults of methods.vqfr).")


def _rename(key: str, pairs) -> str:
    for a, b in pairs:
        if key.startswith(a):
            return b + key[len(a):]
    return key


def official_to_ours(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official VQFRv1/VQGANv1 state dict to ours (training buffers dropped)."""
    return {_rename(k, RENAMES): v for k, v in sd.items()
            if not any(k.endswith(b) for b in TRAINING_BUFFERS)}


def ours_to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`official_to_ours` (for equivalence checks and tests)."""
    return {_rename(k, [(b, a) for a, b in RENAMES]): v for k, v in sd.items()}


def read_official(path_or_sd, what: str) -> dict[str, torch.Tensor]:
    """The state dict of an official file (``params_ema`` > ``params`` > flat), renamed."""
    if isinstance(path_or_sd, (str, os.PathLike)):
        obj = read_checkpoint(path_or_sd, what, hint=HINT)
        name = f"{what} '{path_or_sd}'"
    else:
        obj, name = path_or_sd, what
    return official_to_ours(unwrap_state_dict(obj, name))


def load_official(model: torch.nn.Module, path_or_sd, what: str = "official VQFR checkpoint"):
    """Load an official ``VQFR_v1`` file into a :class:`VQFR` (or a codebook file into a
    :class:`VQGAN`) strictly: every key present in both, shapes equal."""
    load_state_dict_strict(model, read_official(path_or_sd, what), what, hint=HINT)
    return model


def load_codebook_into_vqfr(model: torch.nn.Module, sd_or_path, what: str = "VQ codebook"):
    """Stage 2's initialisation: the codebook network's weights (official file or our stage-1
    ``VQGAN`` state dict) into the encoder, quantiser and texture decoder of a :class:`VQFR`,
    strictly for those parts; ``lq_features`` and ``main_decoder`` keep their initialisation.
    Returns the list of our keys left at initialisation."""
    sd = read_official(sd_or_path, what) if isinstance(sd_or_path, (str, os.PathLike)) \
        else official_to_ours(dict(sd_or_path))
    parts = model.CODEBOOK_PARTS
    foreign = sorted(k for k in sd if k.split(".")[0] not in parts)
    if foreign:
        raise CheckpointError(f"{what} holds keys outside the codebook network "
                              f"({', '.join(parts)}): {foreign[:10]}. {HINT}")
    for part in parts:
        sub = {k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")}
        load_state_dict_strict(getattr(model, part), sub, f"{what} ({part}.*)", hint=HINT)
    return sorted(k for k in model.state_dict() if k.split(".")[0] not in parts)
