"""StyleGAN2 building blocks in plain PyTorch (no compiled extensions).

Conventions (identical to the official StyleGAN2 / rosinality / BasicSR / NVIDIA
stylegan2-ada-pytorch implementations, so that their pretrained weights can be loaded):

* Equalized learning rate: parameters are stored as N(0, 1) / ``lr_mul`` and scaled at run time
  by ``lr_mul / sqrt(fan_in)``.
* ``upfirdn2d(x, k, up, down, pad)``: zero-insertion upsampling by ``up`` (each sample followed by
  ``up - 1`` zeros), zero padding by ``pad`` (negative values crop), *convolution* with the 2-D
  FIR kernel ``k`` (i.e. correlation with the flipped kernel) and keeping every ``down``-th
  sample, starting at the first.
* Modulated convolution: ``w' = scale * w * s`` (style ``s`` per input channel), optional
  demodulation ``w'' = w' / sqrt(sum_{in,kh,kw} w'^2 + 1e-8)``. Upsampling convs use a stride-2
  transposed convolution followed by the [1, 3, 3, 1] blur (pad (1, 1), gain 4); downsampling
  convs blur first (pad (2, 2) for 3x3) and then use a stride-2 convolution.
* Leaky ReLU as in StyleGAN2: ``sqrt(2) * leaky_relu(x + bias, 0.2)``.

Two numerically equivalent implementations of the modulated convolution exist:
``fused`` (per-sample modulated weights, grouped convolution; fastest for batch 1 on CPU) and
``unfused`` (scale the input by the styles, convolve with the shared weight, scale the output
by the precomputed demodulation coefficients; faster for batches > 1). ``fused=None`` picks the
faster one for the batch size (measured on the 2-core dev CPU, see bench/bench_synthesis.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "make_kernel",
    "upfirdn2d",
    "blur2d",
    "upsample2d",
    "downsample2d",
    "fused_leaky_relu",
    "EqualLinear",
    "EqualConv2d",
    "ModulatedConv2d",
    "modulated_conv2d",
    "DEFAULT_BLUR_KERNEL",
]

DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)
LRELU_GAIN = math.sqrt(2.0)


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """2-D FIR kernel normalised to sum 1; a 1-D kernel is expanded by its outer product."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    if k.ndim != 2:
        raise ValueError(f"FIR kernel must be 1-D or 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def _pad4(pad) -> tuple[int, int, int, int]:
    """(p0, p1) -> (x0, x1, y0, y1); (x0, x1, y0, y1) passes through."""
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad}")


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample, FIR-filter, downsample ``x`` [N, C, H, W] (reference semantics, see module doc).

    ``pad`` is (p0, p1) for both axes or (x0, x1, y0, y1). Output size per axis is
    ``(in * up + p0 + p1 - k) // down + 1``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got {tuple(x.shape)}")
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _pad4(pad)
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    kh, kw = kernel.shape
    if up > 1:
        xu = x.new_zeros(n, c, h * up, w * up)
        xu[:, :, ::up, ::up] = x
        x = xu
    x = F.pad(x, [px0, px1, py0, py1])
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)


def _grad_free(*tensors: torch.Tensor) -> bool:
    """True when autograd is not recording for these tensors (in-place ops are then safe)."""
    if not torch.is_grad_enabled():
        return True
    return not any(t is not None and t.requires_grad for t in tensors)


def blur2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    pad,
    gain: float = 1.0,
    down: int = 1,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """FIR filter: ``upfirdn2d(x, kernel * gain, up=1, down, pad)`` plus an optional per-channel bias.

    One depthwise convolution (symmetric padding is passed to the conv, avoiding a padded copy);
    keeps the memory format of ``x`` (channels-last is the fast path on CPU).
    """
    c = x.shape[1]
    px0, px1, py0, py1 = _pad4(pad)
    kh, kw = kernel.shape
    k = torch.flip(kernel.to(device=x.device, dtype=x.dtype), [0, 1])
    if gain != 1.0:
        k = k * gain
    weight = k.view(1, 1, kh, kw).expand(c, 1, kh, kw)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, weight, bias, stride=down, padding=(py0, px0), groups=c)
    x = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(x, weight, bias, stride=down, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """StyleGAN2 FIR upsampling (ToRGB skip path).

    Equals ``upfirdn2d(x, kernel * factor**2, up=factor, pad=((p+1)//2 + factor - 1, p//2))`` with
    ``p = k - factor``; computed as a depthwise stride-``factor`` transposed convolution (which is
    zero insertion followed by a full convolution) cropped to the padded window, so that no
    zero-inserted tensor is materialised.
    """
    kh, kw = kernel.shape
    if kh != kw:
        raise ValueError("upsample2d needs a square FIR kernel")
    p = kh - factor
    pad0, pad1 = (p + 1) // 2 + factor - 1, p // 2
    n, c, h, w = x.shape
    off = kh - 1 - pad0  # y[i] = full_conv[i + k - 1 - pad0]
    if off < 0:
        return upfirdn2d(x, kernel * factor**2, up=factor, pad=(pad0, pad1))
    k = kernel.to(device=x.device, dtype=x.dtype) * (factor**2)
    weight = k.view(1, 1, kh, kw).expand(c, 1, kh, kw)
    out = F.conv_transpose2d(x, weight, stride=factor, groups=c)
    out_h = h * factor + pad0 + pad1 - kh + 1
    out_w = w * factor + pad0 + pad1 - kw + 1
    return out[:, :, off : off + out_h, off : off + out_w]


def downsample2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """StyleGAN2 FIR downsampling: pad ((p+1)//2, p//2) with p = k - factor, keep every 2nd sample."""
    kh = kernel.shape[0]
    p = kh - factor
    return blur2d(x, kernel, pad=((p + 1) // 2, p // 2), down=factor)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = LRELU_GAIN
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias)``; ``bias`` is per channel (dim 1)."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.view(shape)
    return F.leaky_relu(x, negative_slope) * scale


def leaky_relu_maybe_inplace(x: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """Leaky ReLU, in place when autograd does not need the input (saves a large allocation)."""
    if _grad_free(x):
        return F.leaky_relu_(x, negative_slope)
    return F.leaky_relu(x, negative_slope)


class EqualLinear(nn.Module):
    """Equalized-lr linear layer; ``activation`` is None or ``"lrelu"`` (fused leaky ReLU, gain sqrt 2)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        if activation not in (None, "lrelu"):
            raise ValueError(f"EqualLinear activation must be None or 'lrelu', got {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sqrt(2) * lrelu(y) == lrelu(sqrt(2) * y): the activation gain is folded into W and b.
        gain = LRELU_GAIN if self.activation == "lrelu" else 1.0
        bias = self.bias * (self.lr_mul * gain) if self.bias is not None else None
        out = F.linear(x, self.weight * (self.scale * gain), bias)
        if self.activation == "lrelu":
            out = leaky_relu_maybe_inplace(out, 0.2)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Equalized-lr conv layer (StyleGAN2 discriminator ``ConvLayer``).

    ``downsample=True`` blurs with the FIR kernel and then convolves with stride 2 (padding
    ``((k_fir - 2) + (k - 1))`` split as (p+1)//2, p//2). ``activate=True`` applies the fused
    leaky ReLU (gain sqrt 2) with the layer bias; otherwise the bias (if any) is added linearly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activate = activate
        self.downsample = downsample
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            self.blur_pad = ((p + 1) // 2, p // 2)
            self.register_buffer("blur_kernel", make_kernel(blur_kernel), persistent=False)
            self.padding = 0
        else:
            self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = LRELU_GAIN if self.activate else 1.0
        w = self.weight * (self.scale * gain)
        b = self.bias * gain if self.bias is not None else None
        if self.downsample:
            if self.kernel_size == 1:
                # a 1x1 conv commutes with the blur: filter + subsample first (4x fewer conv inputs)
                x = blur2d(x, self.blur_kernel, self.blur_pad, down=2)
                out = F.conv2d(x, w, b)
            else:
                x = blur2d(x, self.blur_kernel, self.blur_pad)
                out = F.conv2d(x, w, b, stride=2)
        else:
            out = F.conv2d(x, w, b, padding=self.padding)
        if self.activate:
            out = leaky_relu_maybe_inplace(out, 0.2)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, down={self.downsample}, "
            f"activate={self.activate}"
        )


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    weight_scale: float = 1.0,
    demodulate: bool = True,
    up: bool = False,
    blur_kernel: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
    fused: bool | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, ``gain * modconv(x) + bias``.

    x [N, Cin, H, W]; weight [Cout, Cin, k, k] (the effective weight is ``weight * weight_scale``,
    the equalized-lr scale); styles [N, Cin]; bias [Cout] or None. ``up=True``: stride-2
    transposed conv + FIR blur (needs ``blur_kernel``), output [N, Cout, 2H, 2W]; otherwise
    'same' padding. ``fused=None`` picks the fused path iff N == 1. The memory format of ``x`` is
    kept for N == 1.

    Demodulation coefficients use ``sum_{in,kh,kw} (c w s)^2 = c^2 * (s^2 @ sum_{kh,kw} w^2)``, so the
    modulated weight is formed in a single pass (``w * outer(d, s)``).
    """
    n, cin, h, w_ = x.shape
    cout, cin_w, kh, kw = weight.shape
    if cin_w != cin or styles.shape != (n, cin):
        raise ValueError(
            f"modulated_conv2d: input {tuple(x.shape)}, weight {tuple(weight.shape)}, styles "
            f"{tuple(styles.shape)} do not fit"
        )
    if fused is None:
        fused = n == 1
    pad = kh // 2
    if demodulate:
        wsq = weight.square().sum(dim=[2, 3])  # [Cout, Cin]
        d = torch.rsqrt(styles.square() @ wsq.t() * (weight_scale**2) + eps)  # [N, Cout]
        out_scale = d * (gain * weight_scale)
    else:
        out_scale = None
    if fused:
        if out_scale is not None:
            coef = out_scale.unsqueeze(2) * styles.unsqueeze(1)  # [N, Cout, Cin]
        else:
            coef = (styles * (gain * weight_scale)).unsqueeze(1).expand(n, cout, cin)
        xg = x if n == 1 else x.reshape(1, n * cin, h, w_)
        # weights in the input's memory format (mkldnn otherwise reorders them on every call)
        fmt = torch.channels_last if (n == 1 and x.is_contiguous(memory_format=torch.channels_last)) else None
        if up:
            # modulated weight directly in transposed-conv layout [N*Cin, Cout, k, k]
            wt = _modulated_weight(weight.transpose(0, 1), coef.transpose(1, 2), fmt)
            out = F.conv_transpose2d(xg, wt, stride=2, groups=n)
            if n != 1:
                out = out.view(n, cout, out.shape[2], out.shape[3])
            return _up_blur(out, blur_kernel, bias)
        wm = _modulated_weight(weight, coef, fmt)
        b = None if bias is None else (bias if n == 1 else bias.repeat(n))
        out = F.conv2d(xg, wm, b, padding=pad, groups=n)
        return out if n == 1 else out.view(n, cout, h, w_)
    # unfused: same math with the shared weight; scales applied to activations
    xs = x * styles.view(n, cin, 1, 1)
    if up:
        out = _up_blur(F.conv_transpose2d(xs, weight.transpose(0, 1), stride=2), blur_kernel, None)
    else:
        out = F.conv2d(xs, weight, padding=pad)
    scale = out_scale if out_scale is not None else out.new_full((n, cout), gain * weight_scale)
    if _grad_free(out, scale, bias):
        out.mul_(scale.view(n, cout, 1, 1))
        if bias is not None:
            out.add_(bias.view(1, cout, 1, 1))
        return out
    out = out * scale.view(n, cout, 1, 1)
    if bias is not None:
        out = out + bias.view(1, cout, 1, 1)
    return out


def _modulated_weight(weight: torch.Tensor, coef: torch.Tensor, fmt) -> torch.Tensor:
    """``weight[None] * coef[..., None, None]`` -> [N*A, B, k, k] (weight [A, B, k, k], coef [N, A, B]),
    written in one pass into ``fmt`` (channels-last) layout when autograd is not recording."""
    n, a, b = coef.shape
    kh, kw = weight.shape[2:]
    x, y = weight.unsqueeze(0), coef[..., None, None]
    if fmt is not None and _grad_free(x, y):  # n == 1 here
        out = torch.empty(a, b, kh, kw, dtype=weight.dtype, device=weight.device, memory_format=fmt)
        torch.mul(x[0], y[0], out=out)
        return out
    out = (x * y).reshape(n * a, b, kh, kw)
    return out if fmt is None else out.contiguous(memory_format=fmt)


def _up_blur(x: torch.Tensor, blur_kernel: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """Blur after the stride-2 transposed 3x3 conv: gain 4, pads ((p+1)//2 + 1, p//2 + 1) with
    p = k_fir - 4 (StyleGAN2), plus an optional bias."""
    if blur_kernel is None:
        raise ValueError("upsampling modulated conv needs a blur kernel")
    p = blur_kernel.shape[0] - 4
    return blur2d(x, blur_kernel, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0, bias=bias)


class ModulatedConv2d(nn.Module):
    """Modulated conv with its style affine (``affine``: EqualLinear(style_dim, Cin, bias_init=1)).

    Parameters: ``weight`` [Cout, Cin, k, k] (N(0,1), equalized-lr scale 1/sqrt(Cin k^2)),
    ``affine.weight`` [Cin, style_dim], ``affine.bias`` [Cin]. ``forward(x, w, bias, gain)``
    returns ``gain * modconv(x) + bias`` (bias/gain let callers fold their activation in).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        fused: bool | None = None,
    ):
        super().__init__()
        if upsample and kernel_size != 3:
            raise ValueError("upsampling modulated conv is implemented for 3x3 kernels only")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        self.fused = fused
        if upsample:
            self.register_buffer("blur_kernel", make_kernel(blur_kernel), persistent=False)
        else:
            self.blur_kernel = None

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, gain: float = 1.0
    ) -> torch.Tensor:
        styles = self.affine(w)
        return modulated_conv2d(
            x,
            self.weight,
            styles,
            weight_scale=self.scale,
            demodulate=self.demodulate,
            up=self.upsample,
            blur_kernel=self.blur_kernel,
            bias=bias,
            gain=gain,
            fused=self.fused,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, up={self.upsample}, "
            f"demodulate={self.demodulate}"
        )
