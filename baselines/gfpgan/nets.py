"""GFP-GAN's training-only networks, our code, the official names (so files load unchanged):

- :class:`FacialComponentDiscriminator` (gfpganv1_arch.py): a VGG-like StyleGAN2-conv critic of
  eye / mouth crops; ``forward(x, return_feats=True)`` also gives the two feature levels of the
  component style loss. Names: ``conv{1..5}``, ``final_conv`` (our EqualConv2d).
- :class:`ResNetArcFace` (arcface_arch.py, ``block=IRBlock, layers=[2,2,2,2], use_se=False``): the
  identity network of ``arcface_resnet18.pth``, gray 128x128 input, 512-d embedding; same
  state-dict names as the official module (``conv1, bn1, prelu, layer{1..4}.{j}.{bn0, conv1,
  bn1, prelu, conv2, bn2, downsample.{0,1}}, bn4, fc5, bn5``), so the key map is the identity
  (a ``module.`` prefix is stripped).
- :class:`PerceptualStyleLoss` (BasicSR ``PerceptualLoss``): pre-ReLU VGG features, L1 content
  loss and Gram-matrix style loss with per-layer weights.
- :func:`component_boxes`: the eye / mouth boxes of an image from the FFHQ landmark file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.checkpoints import load_state_dict_strict, read_checkpoint, unwrap_state_dict
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.models.synthesis.ops import EqualConv2d

ARCFACE_FILE = "arcface_resnet18.pth"
LANDMARKS_FILE = "FFHQ_eye_mouth_landmarks_512.pth"
GFPGAN_RELEASE = "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/"


# ----------------------------------------------------------------------------- component critic
class FacialComponentDiscriminator(nn.Module):
    """[N,3,h,w] crop in [-1, 1] -> logits [N,1,h/4,w/4] (``return_feats``: and the features
    after conv3 and conv5)."""

    def __init__(self):
        super().__init__()
        self.conv1 = EqualConv2d(3, 64, 3)
        self.conv2 = EqualConv2d(64, 128, 3, downsample=True)
        self.conv3 = EqualConv2d(128, 128, 3)
        self.conv4 = EqualConv2d(128, 256, 3, downsample=True)
        self.conv5 = EqualConv2d(256, 256, 3)
        self.final_conv = EqualConv2d(256, 1, 3, activate=False)

    def forward(self, x, return_feats: bool = False):
        f1 = self.conv3(self.conv2(self.conv1(x)))
        f2 = self.conv5(self.conv4(f1))
        out = self.final_conv(f2)
        return (out, [f1, f2]) if return_feats else out


def component_key_map(net: FacialComponentDiscriminator) -> dict[str, str]:
    """Official ``FacialComponentDiscriminator`` names (BasicSR ConvLayer) -> ours."""
    m = {}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "final_conv"):
        i = 1 if getattr(net, name).downsample else 0
        m[f"{name}.{i}.weight"] = f"{name}.weight"
        m[f"{name}.{i + 1 if name != 'final_conv' else 0}.bias"] = f"{name}.bias"
    return m


# ----------------------------------------------------------------------------- ArcFace
class IRBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, inplanes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        res = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + res)


class ResNetArcFace(nn.Module):
    """ArcFace ResNet18 with IR blocks, no SE: gray [N,1,128,128] -> [N,512] (eval, frozen)."""

    def __init__(self, layers=(2, 2, 2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != planes:
                down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(planes))
            blocks = [IRBlock(cin, planes, stride, down)] + [IRBlock(planes, planes)
                                                            for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = planes
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)

    def forward(self, x):
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def load_arcface(path: str | Path) -> ResNetArcFace:
    """``arcface_resnet18.pth`` (a flat state dict, maybe ``module.``-prefixed), strictly."""
    net = ResNetArcFace()
    sd = unwrap_state_dict(read_checkpoint(path, f"ArcFace identity network ({ARCFACE_FILE})"),
                           str(path))
    load_state_dict_strict(net, sd, f"{path} (ArcFace ResNet18, {ARCFACE_FILE})",
                           hint=f"methods.gfpgan.arcface must be GFP-GAN's {ARCFACE_FILE} "
                                f"({GFPGAN_RELEASE}{ARCFACE_FILE})")
    return net.eval().requires_grad_(False)


def gray_resize(x11: torch.Tensor, size: int = 128) -> torch.Tensor:
    """The identity network's input: ITU-R 601 gray of [-1,1] RGB, bilinear to ``size``."""
    g = 0.2989 * x11[:, 0] + 0.5870 * x11[:, 1] + 0.1140 * x11[:, 2]
    return F.interpolate(g.unsqueeze(1), (size, size), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- perceptual + style
VGG19_CONV = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}
VGG16_CONV = {"conv1_2": 2, "conv2_2": 7, "conv3_3": 14, "conv4_3": 21, "conv5_3": 28}
VGG16_FOR_19 = {"conv1_2": "conv1_2", "conv2_2": "conv2_2", "conv3_4": "conv3_3",
                "conv4_4": "conv4_3", "conv5_4": "conv5_3"}


def gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


class PerceptualStyleLoss(nn.Module):
    """BasicSR ``PerceptualLoss(layer_weights, vgg_type, use_input_norm=True, range_norm)``
    with an L1 criterion: ``(content, style)`` of images in [0, 1] (ImageNet-normalised),
    features *before* the ReLU. ``vgg``: ``vgg19`` (torchvision's file in the torch hub cache,
    else an error naming it) or ``vgg16`` (our offline weights; VGG19 layer names are mapped to
    the last conv of the same VGG16 block)."""

    def __init__(self, layer_weights: Mapping[str, float], vgg: str = "vgg19"):
        super().__init__()
        from ugpnet.pretrained.vgg import (IMAGENET_MEAN, IMAGENET_STD, VGG19_FILE, VGG19_URL,
                                           vgg16_features_state, vgg16_source, vgg19_checkpoint,
                                           vgg19_features_state)
        from ugpnet.losses.vgg import vgg_trunk

        if vgg == "vgg19":
            ckpt = vgg19_checkpoint()
            if ckpt is None:
                raise CheckpointError(
                    f"GFP-GAN's perceptual loss needs torchvision's VGG19 ({VGG19_FILE}) in the "
                    f"torch hub cache (<torch.hub.get_dir()>/checkpoints); download {VGG19_URL} "
                    f"there, or choose methods.gfpgan.loss.perceptual.vgg: vgg16 (our offline "
                    f"weights, a recorded deviation) or perceptual weight 0.")
            state, table = vgg19_features_state(ckpt), VGG19_CONV
            self.source = f"vgg19 ({VGG19_FILE})"
            names = dict(layer_weights)
        elif vgg == "vgg16":
            state, table = vgg16_features_state(), VGG16_CONV
            self.source = f"vgg16 ({vgg16_source()})"
            names = {VGG16_FOR_19.get(k, k): w for k, w in layer_weights.items()}
        else:
            raise ConfigError(f"perceptual vgg must be vgg19 or vgg16, got {vgg!r}")
        unknown = sorted(set(names) - set(table))
        if unknown:
            raise ConfigError(f"perceptual layers {unknown} are not in {vgg} ({sorted(table)})")
        self.weights = {table[k]: float(w) for k, w in names.items()}
        self.features = vgg_trunk(vgg, state, max(self.weights) + 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.requires_grad_(False).eval()
        self.layer_names = names

    def train(self, mode: bool = True):
        return super().train(False)

    def feats(self, x01: torch.Tensor) -> dict[int, torch.Tensor]:
        out, x = {}, (x01 - self.mean) / self.std
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.weights:
                out[i] = x
        return out

    def forward(self, pred01, target01):
        fp, ft = self.feats(pred01), self.feats(target01.detach())
        content = sum(F.l1_loss(fp[i], ft[i]) * w for i, w in self.weights.items())
        style = sum(F.l1_loss(gram(fp[i]), gram(ft[i])) * w for i, w in self.weights.items())
        return content, style


# ----------------------------------------------------------------------------- landmarks
class ComponentBoxes:
    """Eye and mouth boxes per training image from ``FFHQ_eye_mouth_landmarks_512.pth``
    (``{'%08d' % index: {'left_eye'|'right_eye'|'mouth': [x, y, half_len]}}`` at 512 px, made
    by GFP-GAN's scripts/parse_landmark.py), as the official dataset computes them: eyes
    enlarged by ``eye_enlarge`` (1.4), box ``(c - h + 1, c + h)``; scaled to ``resolution``.
    Images are found by their FFHQ id (the file stem, e.g. ``00042``)."""

    def __init__(self, path: str | Path, resolution: int, eye_enlarge: float = 1.4):
        self.path = Path(path)
        data = read_checkpoint(path, f"facial component landmarks ({LANDMARKS_FILE})")
        if not isinstance(data, Mapping) or not data:
            raise CheckpointError(f"{path}: expected {LANDMARKS_FILE}'s dict of boxes per image")
        self.data, self.ratio, self.eye_enlarge = data, resolution / 512.0, eye_enlarge

    def boxes(self, names) -> torch.Tensor:
        """[N, 3, 4] (x1, y1, x2, y2) for left eye, right eye, mouth of images ``names``."""
        out = []
        for name in names:
            try:
                entry = self.data[f"{int(name):08d}"]
            except (ValueError, KeyError):
                raise ConfigError(
                    f"{self.path} has no facial-component boxes for training image '{name}' "
                    f"(keys are FFHQ ids '%08d'); the components need FFHQ training images "
                    f"named by their id, or methods.gfpgan.variant: simple") from None
            rows = []
            for part in ("left_eye", "right_eye", "mouth"):
                x, y, half = (float(v) for v in entry[part])
                if "eye" in part:
                    half *= self.eye_enlarge
                rows.append([x - half + 1, y - half + 1, x + half, y + half])
            out.append(rows)
        return torch.tensor(out, dtype=torch.float32) * self.ratio


def crop_view(part: int, out_size: int):
    """A critic's view: ``roi_align`` of component ``part`` (0 left eye, 1 right eye, 2 mouth)
    from the batch's boxes (``batch['components']`` [N,3,4]) to ``out_size`` px."""
    from torchvision.ops import roi_align

    def view(images, batch):
        b = batch["components"][:, part].to(images)
        idx = torch.arange(b.shape[0], device=images.device, dtype=images.dtype)[:, None]
        return roi_align(images, torch.cat([idx, b], 1), output_size=out_size)

    return view
