"""Uformer (Wang et al., CVPR 2022), our own code after ZhendongWang6/Uformer @ 65fc970 ``model.py``.

Uformer-B is ``get_arch('Uformer_B')`` (utils/model_utils.py:76-78)::

    Uformer(img_size=train_ps, embed_dim=32, win_size=8, token_projection='linear',
            token_mlp='leff', depths=[1, 2, 8, 8, 2, 8, 8, 2, 1], modulator=True, dd_in=3)

with the constructor defaults num_heads [1, 2, 4, 8, 16, 16, 8, 4, 2], mlp_ratio 4,
qkv_bias True, drop_path_rate 0.1, shift_flag True (model.py:1070-1077): 50,878,xxx
parameters (Table 2 of UGPNet: 50.9 M).

A 4-level U-shaped network of LeWin transformer blocks (model.py:850-1010): LayerNorm, (shifted)
window self-attention with a relative-position bias, LeFF (Linear-GELU, depth-wise 3x3 conv-GELU,
Linear), both residual with stochastic depth. Encoder level k at H/2^k with 2^k * C channels,
4x4 stride-2 conv downsampling, a bottleneck at H/16 (16 C), 2x2 stride-2 transposed-conv
upsampling concatenated with the skip, the decoder blocks carrying a learnable *modulator*
(``nn.Embedding(win*win, dim)`` added to every window before attention), a 3x3 output conv and a
global residual (``x + y`` when dd_in = 3, model.py:1301).

Tokens are kept here as ``[B, H, W, C]`` (the official ``[B, H*W, C]`` with H = W = sqrt(L)), so
nothing is inferred from a square root; the arithmetic is the official one.

``img_size`` (the official training patch size) is part of the architecture: a level whose
resolution at ``img_size`` is <= ``win_size`` gets windows of that resolution and no shift
(model.py:865-868), fixed at construction. With the paper's crops this is the bottleneck at
128 px (denoise: 8x8 windows, no shift) but not at 256 px (deblur: shifted 8x8 windows). At other
input sizes every level must tile into its windows: the input must be a multiple of
:attr:`Uformer.multiple` (128 at win 8 for the paper nets), which :meth:`Uformer.forward` checks.

Modules and names follow the official file (``encoderlayer_k.blocks.i.attn.qkv.to_q`` ...), except
``dowsample_k`` -> ``downsample_k`` and the bottleneck ``conv`` -> ``bottleneck``
(:mod:`.keymap`). timm's ``DropPath`` / ``trunc_normal_`` and einops are replaced by torch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Uformer", "build_uformer", "window_partition", "window_reverse", "DropPath",
           "LeWinTransformerBlock", "WindowAttention", "LeFF", "UFORMER_B", "required_multiple"]

# get_arch('Uformer_B') (utils/model_utils.py:76-78) + Uformer defaults (model.py:1070-1077)
UFORMER_B = {"embed_dim": 32, "win_size": 8, "depths": [1, 2, 8, 8, 2, 8, 8, 2, 1],
             "num_heads": [1, 2, 4, 8, 16, 16, 8, 4, 2], "mlp_ratio": 4.0,
             "token_projection": "linear", "token_mlp": "leff", "modulator": True, "dd_in": 3,
             "drop_path_rate": 0.1}


def required_multiple(win_size: int, img_size: int) -> int:
    """The side every input must be a multiple of: level k (side / 2^k) must tile into its
    window ``min(win_size, img_size / 2^k)`` (model.py:865-868), k = 0..4 (128 at win 8)."""
    return math.lcm(*[2 ** k * min(win_size, img_size // 2 ** k) for k in range(5)])


def trunc_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """timm ``trunc_normal_(t, std=.02)``: a normal truncated at the absolute bounds [-2, 2]."""
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2.0, b=2.0)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm ``DropPath``, scale_by_keep): in training each sample's
    branch is zeroed with probability ``p`` and the kept ones divided by ``1 - p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def window_partition(x: torch.Tensor, win: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * H/win * W/win, win, win, C]`` (model.py:704-715)."""
    B, H, W, C = x.shape
    x = x.view(B, H // win, win, W // win, win, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, win, win, C)


def window_reverse(windows: torch.Tensor, win: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition` (model.py:717-727)."""
    B = windows.shape[0] // ((H // win) * (W // win))
    x = windows.view(B, H // win, W // win, win, win, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


def relative_position_index(win: int) -> torch.Tensor:
    """``[win^2, win^2]`` index into the ``(2 win - 1)^2`` bias table (Swin; model.py:466-476)."""
    coords = torch.stack(torch.meshgrid(torch.arange(win), torch.arange(win), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (win - 1)
    return rel[:, :, 0] * (2 * win - 1) + rel[:, :, 1]


def shift_mask(H: int, W: int, win: int, shift: int, device, dtype) -> torch.Tensor:
    """``[nW, win^2, win^2]``: 0 within a region of the cyclically shifted map, -100 across
    regions (model.py:921-937)."""
    img = torch.zeros(1, H, W, 1, device=device, dtype=dtype)
    cnt = 0
    for h in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
        for w in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
            img[:, h, w, :] = cnt
            cnt += 1
    m = window_partition(img, win).view(-1, win * win)
    m = m.unsqueeze(1) - m.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class LinearProjection(nn.Module):
    """q, k, v of ``[B', N, C]`` tokens, ``heads`` heads (model.py:421-446, token_projection
    'linear')."""

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=bias)

    def forward(self, x: torch.Tensor):
        B, N, C = x.shape
        q = self.to_q(x).reshape(B, N, self.heads, C // self.heads).transpose(1, 2)
        kv = self.to_kv(x).reshape(B, N, 2, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return q, kv[0], kv[1]


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a relative-position bias (model.py:452-520)."""

    def __init__(self, dim: int, win: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"WindowAttention: dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.win, self.num_heads = dim, win, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * win - 1) ** 2, num_heads))
        # rebuilt from win; the official file stores it too (ignored by .keymap)
        self.register_buffer("relative_position_index", relative_position_index(win),
                             persistent=False)
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = LinearProjection(dim, num_heads, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B*nW, N, C]; mask: [nW, N, N] or None
        B_, N, C = x.shape
        q, k, v = self.qkv(x)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW, nH, N, N]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj(x)


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: Linear-GELU, depth-wise 3x3 conv-GELU, Linear
    (model.py:654-687, no ECA)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU())
        self.dwconv = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1, groups=hidden_dim),
                                    nn.GELU())
        self.linear2 = nn.Sequential(nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, W, C]
        x = self.linear1(x)
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.linear2(x)


class LeWinTransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention (+ modulator) -> residual with DropPath;
    LayerNorm -> LeFF -> residual with DropPath (model.py:850-991).

    ``resolution``: the level's side at the construction ``img_size``; at or below ``win_size``
    the window is the whole level and nothing is shifted (model.py:865-868)."""

    def __init__(self, dim: int, resolution: int, num_heads: int, win_size: int = 8,
                 shift_size: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, modulator: bool = False):
        super().__init__()
        self.dim = dim
        self.win_size, self.shift_size = win_size, shift_size
        if resolution <= win_size:
            self.win_size, self.shift_size = resolution, 0
        if not 0 <= self.shift_size < self.win_size:
            raise ValueError(f"shift_size {self.shift_size} must be in [0, {self.win_size})")
        # the official Embedding takes the constructor's win_size, not the reduced one: with a
        # reduced window its [win^2, C] table cannot be added (the official forward fails)
        if modulator and self.win_size != win_size:
            raise ValueError(f"a modulated (decoder) level of side {resolution} at img_size is "
                             f"smaller than win_size {win_size}: use a smaller win_size or a "
                             f"larger img_size")
        self.modulator = nn.Embedding(win_size * win_size, dim) if modulator else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.win_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LeFF(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, W, C]
        B, H, W, C = x.shape
        win, shift = self.win_size, self.shift_size
        shortcut = x
        x = self.norm1(x)
        mask = None
        if shift > 0:
            mask = shift_mask(H, W, win, shift, x.device, x.dtype)
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(x, win).view(-1, win * win, C)
        if self.modulator is not None:
            windows = windows + self.modulator.weight
        windows = self.attn(windows, mask=mask).view(-1, win, win, C)
        x = window_reverse(windows, win, H, W)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicUformerLayer(nn.Module):
    """``depth`` blocks, the odd ones shifted by ``win_size // 2`` (model.py:1013-1050)."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, win_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop_path: list[float], modulator: bool):
        super().__init__()
        if len(drop_path) != depth:
            raise ValueError(f"{depth} blocks but {len(drop_path)} drop-path rates")
        self.blocks = nn.ModuleList([
            LeWinTransformerBlock(dim, resolution, num_heads, win_size,
                                  0 if i % 2 == 0 else win_size // 2, mlp_ratio, qkv_bias,
                                  drop_path[i], modulator)
            for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class Downsample(nn.Module):
    """4x4 stride-2 conv on ``[B, H, W, C]`` (model.py:730-748)."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channel, out_channel, 4, 2, 1))

    def forward(self, x):
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Upsample(nn.Module):
    """2x2 stride-2 transposed conv on ``[B, H, W, C]`` (model.py:756-773)."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.deconv = nn.Sequential(nn.ConvTranspose2d(in_channel, out_channel, 2, 2))

    def forward(self, x):
        return self.deconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Uformer(nn.Module):
    """Uformer (model.py:1069-1301); defaults = Uformer-B at ``img_size`` (see module doc).

    ``forward(x)``: ``[N, 3, H, W]`` in [0, 1] (the authors' range) -> the restored image,
    ``x + output_proj(...)`` (dd_in = 3). H and W must be multiples of :attr:`multiple`."""

    def __init__(self, img_size: int = 256, in_chans: int = 3, dd_in: int = 3,
                 embed_dim: int = 32, depths=(1, 2, 8, 8, 2, 8, 8, 2, 1),
                 num_heads=(1, 2, 4, 8, 16, 16, 8, 4, 2), win_size: int = 8,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.1,
                 token_projection: str = "linear", token_mlp: str = "leff",
                 modulator: bool = True):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) != 9 or len(num_heads) != 9:
            raise ValueError(f"Uformer needs 9 depths and 9 head counts (4 encoder levels, the "
                             f"bottleneck, 4 decoder levels), got {depths} and {num_heads}")
        if token_projection != "linear" or token_mlp != "leff":
            raise ValueError(f"only Uformer-B's token_projection 'linear' and token_mlp 'leff' "
                             f"are implemented, got {token_projection!r} / {token_mlp!r}")
        if img_size % 16:
            raise ValueError(f"Uformer img_size {img_size} must be divisible by 16 (4 levels)")
        self.img_size, self.embed_dim, self.win_size, self.dd_in = img_size, embed_dim, \
            win_size, dd_in
        # stochastic depth (model.py:1094-1096): linear over the encoder, constant at the
        # bottleneck, the encoder's rates reversed over the decoder
        n_enc = sum(depths[:4])
        enc_dpr = torch.linspace(0, drop_path_rate, n_enc, device="cpu").tolist()  # float32, as .item()
        dec_dpr = enc_dpr[::-1]
        E = embed_dim

        def layer(dim, level, k, dpr, mod):
            return BasicUformerLayer(dim, img_size // 2 ** level, depths[k], num_heads[k],
                                     win_size, mlp_ratio, qkv_bias, dpr, mod)

        self.input_proj = nn.Sequential(nn.Conv2d(dd_in, E, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.output_proj = nn.Sequential(nn.Conv2d(2 * E, in_chans, 3, 1, 1))
        for k in range(4):
            lo, hi = sum(depths[:k]), sum(depths[:k + 1])
            setattr(self, f"encoderlayer_{k}", layer(E * 2 ** k, k, k, enc_dpr[lo:hi], False))
            setattr(self, f"downsample_{k}", Downsample(E * 2 ** k, E * 2 ** (k + 1)))
        self.bottleneck = layer(16 * E, 4, 4, [drop_path_rate] * depths[4], False)
        ups = [(16 * E, 8 * E), (16 * E, 4 * E), (8 * E, 2 * E), (4 * E, E)]
        for k, (cin, cout) in enumerate(ups):
            lo, hi = sum(depths[5:5 + k]), sum(depths[5:6 + k])
            setattr(self, f"upsample_{k}", Upsample(cin, cout))
            setattr(self, f"decoderlayer_{k}", layer(2 * cout, 3 - k, 5 + k, dec_dpr[lo:hi],
                                                     modulator))
        # every level must tile into its (possibly reduced) windows, at any input size
        self.multiple = required_multiple(win_size, img_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):  # model.py:1260-1267
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.dd_in:
            raise ValueError(f"Uformer expects [N, {self.dd_in}, H, W], got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % self.multiple or W % self.multiple:
            raise ValueError(
                f"Uformer (win_size {self.win_size}, built for {self.img_size} px) needs H and W "
                f"divisible by {self.multiple} (every one of its 5 levels must tile into its "
                f"windows), got {H}x{W}; pad or crop the input (512 works)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        y = self.input_proj(x).permute(0, 2, 3, 1)  # [B, H, W, C]
        skips = []
        for k in range(4):
            y = getattr(self, f"encoderlayer_{k}")(y)
            skips.append(y)
            y = getattr(self, f"downsample_{k}")(y)
        y = self.bottleneck(y)
        for k in range(4):
            y = torch.cat([getattr(self, f"upsample_{k}")(y), skips[3 - k]], -1)
            y = getattr(self, f"decoderlayer_{k}")(y)
        y = self.output_proj(y.permute(0, 3, 1, 2))
        return x + y if self.dd_in == 3 else y


def build_uformer(arch, img_size: int) -> Uformer:
    """Our Uformer from a params.yaml ``architecture`` entry and the training patch size."""
    a = dict(arch)
    return Uformer(img_size=img_size, dd_in=a["dd_in"], embed_dim=a["embed_dim"],
                   depths=a["depths"], num_heads=a["num_heads"], win_size=a["win_size"],
                   mlp_ratio=a["mlp_ratio"], drop_path_rate=a["drop_path_rate"],
                   token_projection=a["token_projection"], token_mlp=a["token_mlp"],
                   modulator=a["modulator"])
