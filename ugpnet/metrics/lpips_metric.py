"""LPIPS (Zhang et al. 2018) via the ``lpips`` package, v0.1, nets ``alex`` (default) and ``vgg``.

Protocol: the model is ``lpips.LPIPS(net=..., version='0.1', pnet_rand=True)`` (so the package does not
download) with the ImageNet backbone weights from :mod:`ugpnet.pretrained` loaded into ``net.net``;
the linear layers are the v0.1 weights shipped in the ``lpips`` wheel. 8-bit RGB images are scaled to
[-1, 1] exactly as ``lpips.im2tensor`` does (``x / 127.5 - 1``), full resolution, no resize or crop.
The dropout layers in front of the linear layers are replaced by identities, so the model gives the
same value in train and eval mode (a loss module can embed it safely).
"""
from __future__ import annotations

import threading
import warnings

import numpy as np

from ..errors import DataError
from ..pretrained.lpips_nets import LPIPS_LIN_CHANNELS, check_net, lpips_backbone_state, lpips_linear_weights_file
from ..pretrained.store import read_weights, skipped_init

LPIPS_VERSION = "0.1"
_lock = threading.Lock()


def _load_backbone_into(model, net: str) -> dict:
    """Copy the torchvision-layout backbone state into lpips' sliced ``model.net``."""
    import torch

    state, info = lpips_backbone_state(net)
    mapped = {}
    for name, _ in model.net.named_parameters():  # e.g. 'slice2.3.weight' -> features '3.weight'
        _, idx, kind = name.split(".")
        mapped[name] = state[f"{idx}.{kind}"]
    if len(mapped) != len(state):
        raise AssertionError(f"LPIPS {net}: {len(state)} backbone tensors but {len(mapped)} slots")
    model.net.load_state_dict(mapped, strict=True)
    # the lpips package loads its linear layers with strict=False: make sure they really arrived
    ref = read_weights(lpips_linear_weights_file(net))
    for i, ch in enumerate(LPIPS_LIN_CHANNELS[net]):
        w = model.lins[i].model[-1].weight
        if tuple(w.shape) != (1, ch, 1, 1) or not torch.equal(w.detach().cpu(),
                                                             ref[f"lin{i}.model.1.weight"]):
            raise AssertionError(f"LPIPS {net}: linear layer {i} was not loaded")
    return info


def get_lpips_model(net: str = "alex", device: str = "cpu"):
    """A new ``lpips.LPIPS`` v0.1 with offline weights, in eval mode, ``requires_grad=False``.

    Forward takes two ``[N,3,H,W]`` tensors in [-1, 1] (or [0, 1] with ``normalize=True``) and returns
    ``[N,1,1,1]``. Gradients flow to the inputs, so it can serve as a loss."""
    import lpips
    import torch.nn as nn

    net = check_net(net)
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 'pretrained' deprecation inside lpips
        # every tensor is loaded by _load_backbone_into and the lpips package (checked there)
        with skipped_init():
            model = lpips.LPIPS(net=net, version=LPIPS_VERSION, pnet_rand=True, verbose=False)
    _load_backbone_into(model, net)
    for lin in model.lins:
        if isinstance(lin.model[0], nn.Dropout):
            lin.model[0] = nn.Identity()
    model.eval().requires_grad_(False)
    return model.to(device)


def lpips_protocol(net: str = "alex") -> dict:
    """Description of the LPIPS setup for result files."""
    from importlib.metadata import version

    _, info = lpips_backbone_state(check_net(net))
    return {
        "net": net, "version": LPIPS_VERSION, "package": f"lpips {version('lpips')}",
        "linear_weights": f"lpips package weights/v{LPIPS_VERSION}/{net}.pth",
        "backbone_weights": info,
        "input": "8-bit RGB scaled to [-1, 1] as lpips.im2tensor (x / 127.5 - 1); full image, "
                 "no resize, no crop",
    }


def _u8_to_lpips_tensor(img: np.ndarray):
    import torch

    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
            and img.shape[2] == 3):
        raise ValueError(f"LPIPS expects uint8 [H,W,3] RGB arrays, got "
                         f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
    # identical arithmetic to lpips.im2tensor: float64 numpy, then float32
    arr = img / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)[None])).float()


class LPIPSMetric:
    """Callable LPIPS distance. ``metric(gt_u8, pred_u8) -> float``; ``metric.batch(gt, pred)`` for
    float tensors ``[N,3,H,W]`` in [0, 1] returns a ``[N]`` tensor (no gradient)."""

    def __init__(self, net: str = "alex", device: str = "cpu"):
        self.net = check_net(net)
        self.device = device
        self.model = get_lpips_model(net, device)

    def __call__(self, gt_u8: np.ndarray, pred_u8: np.ndarray) -> float:
        import torch

        if gt_u8.shape != pred_u8.shape:
            raise DataError(f"LPIPS: image sizes differ ({gt_u8.shape} vs {pred_u8.shape}).")
        a = _u8_to_lpips_tensor(gt_u8).to(self.device)
        b = _u8_to_lpips_tensor(pred_u8).to(self.device)
        with torch.no_grad():
            return float(self.model(a, b).item())

    def batch(self, gt, pred):
        import torch

        if gt.shape != pred.shape or gt.ndim != 4 or gt.shape[1] != 3:
            raise ValueError(f"LPIPSMetric.batch expects two [N,3,H,W] tensors of equal shape, got "
                             f"{tuple(gt.shape)} and {tuple(pred.shape)}")
        with torch.no_grad():
            d = self.model(gt.to(self.device), pred.to(self.device), normalize=True)
        return d.reshape(-1)

    def protocol(self) -> dict:
        return lpips_protocol(self.net)
