"""The identity loss of GPEN's ``train_simple.py``: ArcFace IR-SE50 (TreB1eN's InsightFace_Pytorch
``Backbone(112, 50, mode='ir_se', drop_ratio=0.6)``, as ``training/loss/model_irse.py``), frozen,
reading the user's ``model_ir_se50.pth`` (:func:`baselines.gpen.keymap.load_irse50`).

``IDLoss(y_hat, y) = mean_n (1 - <f(y_hat_n), f(y_n)>)`` on unit-norm 512-d embeddings of the
face crop ``[35:-33, 32:-36]`` per 256 px, average-pooled to 112x112 (official
``training/loss/id_loss.py``). Images in [-1, 1] (GPEN's range), as the official code feeds them.
Below 256 px the official integer crop (``h // 256``) would be empty: we scale it by ``h / 256``
and round (identical at 256, 512, 1024).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["IRSE50", "IDLoss", "IRSE50_UNITS"]

# (in_channels, depth, stride) of the 24 bottleneck units of IR-50: 3 + 4 + 14 + 3
IRSE50_UNITS = tuple(
    unit for cin, depth, n in ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
    for unit in [(cin, depth, 2)] + [(depth, depth, 1)] * (n - 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * s


class BottleneckIRSE(nn.Module):
    """BN -> 3x3 conv -> PReLU -> 3x3 conv (stride) -> BN -> SE, plus the shortcut (subsampling
    when the width is kept, else 1x1 conv (stride) + BN)."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        self.shortcut = None
        if in_channels != depth:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                          nn.BatchNorm2d(depth))
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False)
        self.prelu = nn.PReLU(depth)
        self.conv2 = nn.Conv2d(depth, depth, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(depth)
        self.se = SqueezeExcite(depth)

    def forward(self, x):
        short = x[:, :, ::self.stride, ::self.stride] if self.shortcut is None else self.shortcut(x)
        res = self.se(self.bn2(self.conv2(self.prelu(self.conv1(self.bn1(x))))))
        return res + short


class IRSE50(nn.Module):
    """ArcFace IR-SE50 on 112x112 faces -> unit-norm 512-d embedding (eval mode only: dropout
    and batch norm as at inference)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.PReLU(64))
        self.units = nn.Sequential(*[BottleneckIRSE(*u) for u in IRSE50_UNITS])
        self.head_bn = nn.BatchNorm2d(512)
        self.head_fc = nn.Linear(512 * 7 * 7, 512)
        self.head_bn1d = nn.BatchNorm1d(512)

    def forward(self, x):
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IR-SE50 expects 112x112 faces, got {tuple(x.shape)}")
        x = self.units(self.stem(x))
        x = self.head_bn1d(self.head_fc(self.head_bn(x).flatten(1)))
        return nn.functional.normalize(x, dim=1)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always inference statistics, no dropout


class IDLoss(nn.Module):
    """GPEN's identity loss (module doc); ``net`` is a loaded, frozen :class:`IRSE50`."""

    def __init__(self, net: IRSE50):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @staticmethod
    def crop(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h != w:
            raise ValueError(f"ID loss needs square images, got {tuple(x.shape)}")
        s = h / 256
        top, bottom, left, right = (int(round(v * s)) for v in (35, 33, 32, 36))
        x = x[:, :, top:h - bottom, left:w - right]
        return nn.functional.adaptive_avg_pool2d(x, (112, 112))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.crop(x))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self.embed(y).detach()
        return (1.0 - (self.embed(y_hat) * target).sum(dim=1)).mean()
