"""MATLAB-compatible bicubic resizing (``imresize(img, 1/s, 'bicubic')``) for the SR task.

We use the ``resize-right`` library (A. Shocher, MIT licence) with MATLAB's settings: the cubic
kernel with ``a = -0.5`` (Keys), antialiasing when downscaling (the kernel is stretched by the
scale factor), weights normalised per output pixel, MATLAB's pixel-centre alignment, and
symmetric boundary handling (``numpy.pad`` mode 'symmetric', MATLAB's index mirroring). The
height is resized first, then the width (MATLAB's order for equal scales). Computation is in float64
on the [0, 255] scale with a single clip-and-round at the end; MATLAB on a uint8 image rounds after
each 1-D pass, which can differ by at most one grey level. Checked against BasicSR's
``matlab_functions.imresize`` (see tests/test_degradations.py).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError

RESIZE_LIBRARY = "resize-right"


def _resize_right():
    try:
        from resize_right import interp_methods, resize
    except ImportError:
        raise ConfigError("the SR degradation needs the 'resize-right' package: "
                          "pip install resize-right") from None
    return resize, interp_methods


def resize_library_info() -> dict:
    """Name, version and settings of the resizer (recorded in manifests)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version(RESIZE_LIBRARY)
    except PackageNotFoundError:
        ver = None
    return {"library": RESIZE_LIBRARY, "version": ver, "kernel": "cubic (a=-0.5)",
            "antialiasing": True, "boundary": "symmetric", "matlab_compatible": True}


def _check_scale(scale) -> int:
    if int(scale) != scale or int(scale) < 1:
        raise ValueError(f"SR scale must be a positive integer, got {scale}")
    return int(scale)


def imresize(x: np.ndarray, scale_factor: float) -> np.ndarray:
    """MATLAB ``imresize(x, scale_factor, 'bicubic')`` of float ``x [H, W, C]``; no clipping."""
    resize, interp = _resize_right()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"imresize expects [H, W, C], got shape {x.shape}")
    return resize(x, scale_factors=[scale_factor, scale_factor, 1], interp_method=interp.cubic,
                  antialiasing=True, pad_mode="symmetric")


def _to_u8(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(y, 0.0, 255.0)).astype(np.uint8)


def bicubic_downsample(img_u8: np.ndarray, scale: int, name: str = "image") -> np.ndarray:
    """``scale``x smaller uint8 image (MATLAB bicubic with antialiasing); sizes must divide."""
    scale = _check_scale(scale)
    h, w = img_u8.shape[:2]
    if h % scale or w % scale:
        raise DataError(f"{name} is {w}x{h} px, not divisible by the SR scale {scale}: crop or "
                        f"resize the ground truth to a multiple of {scale} (e.g. "
                        f"{w - w % scale}x{h - h % scale}).")
    if scale == 1:
        return img_u8.copy()
    lr = imresize(img_u8.astype(np.float64), 1.0 / scale)
    assert lr.shape[:2] == (h // scale, w // scale), lr.shape
    return _to_u8(lr)


def bicubic_upsample(lr_u8: np.ndarray, scale: int) -> np.ndarray:
    """``scale``x larger uint8 image with the same MATLAB-compatible bicubic kernel."""
    scale = _check_scale(scale)
    if scale == 1:
        return lr_u8.copy()
    up = imresize(lr_u8.astype(np.float64), float(scale))
    h, w = lr_u8.shape[:2]
    assert up.shape[:2] == (h * scale, w * scale), up.shape
    return _to_u8(up)


def bicubic_upsample_matrix(n: int, scale: int) -> np.ndarray:
    """The ``[n * scale, n]`` matrix ``M`` of the same MATLAB bicubic upsampling along one axis
    (float64, unrounded): ``M @ x`` upsamples the columns of ``x``; ``M_h @ X @ M_w.T`` equals
    :func:`imresize` of ``X`` by ``scale`` (the kernel is separable and linear). Lets a network
    add exactly this bicubic image as a differentiable residual (RRDBNet ``bicubic_residual``)."""
    resize, interp = _resize_right()
    scale = _check_scale(scale)
    eye = np.eye(int(n), dtype=np.float64)
    m = resize(eye, scale_factors=[float(scale), 1.0], interp_method=interp.cubic,
               antialiasing=True, pad_mode="symmetric")
    assert m.shape == (n * scale, n), m.shape
    return m


def sr_input(lr_u8: np.ndarray, mode: str, scale: int) -> np.ndarray:
    """What an SR method receives: ``'lr'`` the LR image itself (RRDBNet), ``'bicubic_up'`` the
    LR image bicubically upsampled back to the HR size (face restoration methods)."""
    if mode == "lr":
        return lr_u8
    if mode == "bicubic_up":
        return bicubic_upsample(lr_u8, scale)
    raise ConfigError(f"unknown SR input mode '{mode}'; use 'lr' or 'bicubic_up'")
