"""UGPNet's synthesis encoder E: F-encoder (basecode F + style feature) and ONE shared map2style.

Follows the official UGPNet code (``models/synmodule.py``: ``Fencoder``, ``Wmodule``;
``archs/blocks.py``: ``ConvBlock``):

* ``FEncoder``: ``log2(input_size / basecode_size) + 1`` ConvBlocks, each
  [conv3x3 -> BatchNorm -> LeakyReLU(0.2)] x 3 followed by 2x2 average pooling (all but the
  last block). The block that reads resolution r outputs ``channels[r]`` channels
  (official: {512: 16, 256: 32, 128: 64, 64: 128, 32: 256, 16: 512, 8: 512}, i.e.
  ``min(512, 8192 // r)``). A final 1x1 conv (with bias, no activation) gives the basecode F
  [N, channels[b], b, b]. The style feature is the (last) block output at
  ``style_feature_size`` (32 px: [N, 128, 32, 32] at 512 px input).
* ``Map2Style`` (official ``Wmodule``): ONE shared CNN of ``log2(spatial_size)`` stride-2
  3x3 convs (in -> C, then C -> C, each + LeakyReLU(0.01), PyTorch's default slope) down to
  1x1, then per-latent linear heads. With ``first_used_latent = u`` it has
  ``num_latents - u`` heads; head 0 is repeated ``u + 1`` times (the generator ignores the
  first u entries; the official code's "5 dummy copies of w1" at 512 px / basecode 16) and
  heads 1.. fill the remaining entries, giving W+ [N, num_latents, style_dim].
* Weights are initialised as in the official ``initialize_weights``: convs Kaiming-normal
  (fan_out, leaky_relu), BN weight 1 / bias 0, linear N(0, 0.01), biases 0.

The encoder takes images in [0, 1] (the official SynModule feeds the regression output
unchanged; only the generator output is mapped from [-1, 1] to [0, 1]).

map2style designs are registered by name in :data:`MAP2STYLES` (``methods.<ugpnet>.map2style``):
``shared`` (UGPNet, :class:`Map2Style` above) and ``per_latent`` (pSp's design, an ablation beyond
the paper: :class:`PerLatentMap2Style`, one Map2Style with a single head per W+ entry the
generator reads). Both take the same constructor arguments and give the same W+ layout.
"""

from __future__ import annotations

import inspect

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import Registry
from ..blocks import init_official

__all__ = ["ConvBlock", "FEncoder", "Map2Style", "PerLatentMap2Style", "SynthesisEncoder",
           "default_encoder_channels", "MAP2STYLES", "OFFICIAL_MAP2STYLE"]

OFFICIAL_MAP2STYLE = "shared"
MAP2STYLES = Registry("map2style")


def default_encoder_channels(res: int) -> int:
    """Official F-encoder width for a block reading resolution ``res``."""
    return int(min(512, 8192 // res))


def _log2_exact(value: int, what: str) -> int:
    k = int(round(math.log2(value))) if value > 0 else -1
    if value <= 0 or 2**k != value:
        raise ValueError(f"{what} must be a power of two, got {value}")
    return k


class ConvBlock(nn.Module):
    """[conv3x3 -> (BatchNorm) -> LeakyReLU(0.2)] x 3, then optional 2x2 average pooling.

    In eval mode the BatchNorm is folded into the conv on the fly (same math, one pass less).
    """

    def __init__(self, in_channels: int, out_channels: int, down: bool = False, batch_norm: bool = True):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList() if batch_norm else None
        for _ in range(3):
            self.convs.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            if batch_norm:
                self.norms.append(nn.BatchNorm2d(out_channels))
            in_channels = out_channels
        self.down = down

    def _conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        conv = self.convs[i]
        if self.norms is None:
            return conv(x)
        bn = self.norms[i]
        if self.training or not bn.track_running_stats or bn.running_mean is None:
            return bn(conv(x))
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = (conv.bias - bn.running_mean) * scale + bn.bias
        return F.conv2d(x, weight, bias, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(3):
            x = F.leaky_relu(self._conv(i, x), 0.2, inplace=True)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return x


class FEncoder(nn.Module):
    """Image [N, 3, input_size, input_size] in [0, 1] -> (basecode F, style feature).

    Args:
        input_size: encoder input resolution (512 in UGPNet).
        basecode_size: resolution b of F (16 in UGPNet).
        channels: {resolution read by the block: output width}; default official table.
        style_feature_size: resolution of the feature handed to map2style (32 in UGPNet).
        batch_norm: BatchNorm in the ConvBlocks (True in UGPNet).
        channels_last: run in channels-last memory format (faster on CPU, mostly for the thin
            high-resolution convs; same math).
    """

    def __init__(
        self,
        input_size: int = 512,
        basecode_size: int = 16,
        channels: dict[int, int] | None = None,
        style_feature_size: int = 32,
        batch_norm: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        self.channels_last = channels_last
        n_down = _log2_exact(input_size, "input_size") - _log2_exact(basecode_size, "basecode_size")
        if n_down < 0:
            raise ValueError(f"basecode_size {basecode_size} exceeds input_size {input_size}")
        self.input_size = input_size
        self.basecode_size = basecode_size
        self.style_feature_size = style_feature_size
        res_read = [input_size // 2**i for i in range(n_down + 1)]
        if channels is None:
            channels = {r: default_encoder_channels(r) for r in res_read}
        channels = {int(k): int(v) for k, v in channels.items()}
        missing = [r for r in res_read if r not in channels]
        if missing:
            raise ValueError(f"FEncoder channels dict lacks resolutions {missing}")
        self.channels = channels
        self.blocks = nn.ModuleList()
        in_ch = 3
        self.style_feature_channels = None
        self._style_block = None
        for i, r in enumerate(res_read):
            last = i == len(res_read) - 1
            out_ch = channels[r]
            self.blocks.append(ConvBlock(in_ch, out_ch, down=not last, batch_norm=batch_norm))
            out_res = r if last else r // 2
            if out_res == style_feature_size:
                self.style_feature_channels = out_ch
                self._style_block = i
            in_ch = out_ch
        if self._style_block is None:
            raise ValueError(
                f"style_feature_size must be a block output resolution in [{basecode_size}, {input_size // 2}], "
                f"got {style_feature_size}"
            )
        self.basecode_channels = in_ch
        self.out_conv = nn.Conv2d(in_ch, in_ch, kernel_size=1)
        init_official(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)  # conv weights in the activations' layout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"F-encoder expects [N, 3, {s}, {s}] images in [0, 1], got {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feat = None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self._style_block:
                feat = x
        return self.out_conv(x), feat


@MAP2STYLES.register("shared")
class Map2Style(nn.Module):
    """ONE shared CNN (stride-2 convs to 1x1) + per-latent linear heads -> W+ [N, num_latents, S].

    Args:
        in_channels: channels of the style feature (128 in UGPNet).
        style_dim: W width (512).
        num_latents: W+ length of the generator (16 at 512 px).
        spatial_size: style feature resolution (32).
        first_used_latent: generator's first used W+ index (4 for basecode 16); head 0 fills
            entries 0..first_used_latent, heads 1.. the rest.
        conv_channels: width of the shared CNN (official: = style_dim).
        channels_last: keep conv weights in channels-last layout (CPU speed; same math).
    """

    def __init__(
        self,
        in_channels: int = 128,
        style_dim: int = 512,
        num_latents: int = 16,
        spatial_size: int = 32,
        first_used_latent: int = 4,
        conv_channels: int | None = None,
        channels_last: bool = True,
    ):
        super().__init__()
        n_convs = _log2_exact(spatial_size, "spatial_size")
        if n_convs < 1:
            raise ValueError("map2style spatial_size must be >= 2")
        if not 0 <= first_used_latent < num_latents:
            raise ValueError(f"first_used_latent must be in [0, {num_latents}), got {first_used_latent}")
        c = conv_channels or style_dim
        self.in_channels, self.style_dim, self.num_latents = in_channels, style_dim, num_latents
        self.spatial_size, self.first_used_latent, self.conv_channels = spatial_size, first_used_latent, c
        self.convs = nn.ModuleList(
            [nn.Conv2d(in_channels if i == 0 else c, c, kernel_size=3, stride=2, padding=1) for i in range(n_convs)]
        )
        self.num_heads = num_latents - first_used_latent
        self.heads = nn.ModuleList([nn.Linear(c, style_dim) for _ in range(self.num_heads)])
        init_official(self)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        s = self.spatial_size
        if feat.ndim != 4 or feat.shape[1:] != (self.in_channels, s, s):
            raise ValueError(f"map2style expects [N, {self.in_channels}, {s}, {s}], got {tuple(feat.shape)}")
        x = feat
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.01, inplace=True)
        x = x.flatten(1)  # [N, C] (spatial 1x1)
        first = self.heads[0](x)
        latents = [first] * (self.first_used_latent + 1)
        latents += [head(x) for head in list(self.heads)[1:]]
        return torch.stack(latents, dim=1)


@MAP2STYLES.register("per_latent")
class PerLatentMap2Style(nn.Module):
    """pSp's design: one :class:`Map2Style` (its own CNN and ONE linear head) per W+ entry the
    generator reads -> W+ [N, num_latents, S] in the layout of the shared :class:`Map2Style`.

    ``num_latents - first_used_latent`` blocks (12 at 512 px, basecode 16); block 0 fills entries
    0..first_used_latent (the generator ignores the first ``first_used_latent``), block i the
    entry ``first_used_latent + i``. Same arguments as :class:`Map2Style`. Its parameters are
    ``num_heads x`` those of one CNN and one head: ``(num_heads - 1) x`` the CNN more than the
    shared design. Keys ``blocks.{i}.convs.{c}.*``, ``blocks.{i}.heads.0.*`` (no official layout).
    """

    def __init__(self, **kwargs):
        """The keyword arguments of :class:`Map2Style` (same defaults)."""
        super().__init__()
        bound = inspect.signature(Map2Style).bind(**kwargs)
        bound.apply_defaults()
        arg = bound.arguments
        if not 0 <= arg["first_used_latent"] < arg["num_latents"]:
            raise ValueError(f"first_used_latent must be in [0, {arg['num_latents']}), got "
                             f"{arg['first_used_latent']}")
        self.in_channels, self.style_dim = arg["in_channels"], arg["style_dim"]
        self.num_latents, self.spatial_size = arg["num_latents"], arg["spatial_size"]
        self.first_used_latent = arg["first_used_latent"]
        self.conv_channels = arg["conv_channels"] or arg["style_dim"]
        self.num_heads = self.num_latents - self.first_used_latent
        one = {**arg, "num_latents": 1, "first_used_latent": 0}
        self.blocks = nn.ModuleList(Map2Style(**one) for _ in range(self.num_heads))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        s = self.spatial_size
        if feat.ndim != 4 or feat.shape[1:] != (self.in_channels, s, s):
            raise ValueError(f"map2style expects [N, {self.in_channels}, {s}, {s}], got {tuple(feat.shape)}")
        styles = [block(feat)[:, 0] for block in self.blocks]  # each [N, S]
        latents = [styles[0]] * (self.first_used_latent + 1) + styles[1:]
        return torch.stack(latents, dim=1)


class SynthesisEncoder(nn.Module):
    """E: image in [0, 1] -> (basecode F [N, C_b, b, b], W+ [N, num_latents, style_dim])."""

    def __init__(self, f_encoder: FEncoder, map2style: Map2Style):
        super().__init__()
        if map2style.in_channels != f_encoder.style_feature_channels or (
            map2style.spatial_size != f_encoder.style_feature_size
        ):
            raise ValueError(
                f"map2style expects [{map2style.in_channels}, {map2style.spatial_size}^2] but the F-encoder "
                f"style feature is [{f_encoder.style_feature_channels}, {f_encoder.style_feature_size}^2]"
            )
        self.f_encoder = f_encoder
        self.map2style = map2style

    @property
    def input_size(self) -> int:
        return self.f_encoder.input_size

    @classmethod
    def for_generator(
        cls,
        generator,
        input_size: int | None = None,
        channels: dict[int, int] | None = None,
        channel_max: int | None = None,
        style_feature_size: int | None = None,
        map2style: str = OFFICIAL_MAP2STYLE,
    ) -> "SynthesisEncoder":
        """Build E consistent with ``generator`` (basecode size/width, W+ length, style dim).

        Defaults reproduce UGPNet at 512 px. ``channel_max`` caps the default encoder widths
        (small profiles); the last block always gets the generator's basecode width.
        ``map2style``: a :data:`MAP2STYLES` name, ``shared`` (UGPNet) or ``per_latent`` (pSp).
        """
        m2s_cls = MAP2STYLES.get(map2style)
        input_size = input_size or generator.size
        b = generator.basecode_size
        if style_feature_size is None:
            style_feature_size = max(b, min(32, input_size // 2))
        n_down = _log2_exact(input_size, "input_size") - _log2_exact(b, "basecode_size")
        res_read = [input_size // 2**i for i in range(n_down + 1)]
        if channels is None:
            channels = {r: default_encoder_channels(r) for r in res_read}
            if channel_max is not None:
                channels = {r: min(c, channel_max) for r, c in channels.items()}
            channels[b] = generator.basecode_channels
        f_enc = FEncoder(input_size, b, channels, style_feature_size)
        m2s = m2s_cls(
            in_channels=f_enc.style_feature_channels,
            style_dim=generator.style_dim,
            num_latents=generator.num_latents,
            spatial_size=style_feature_size,
            first_used_latent=generator.first_used_latent,
        )
        return cls(f_enc, m2s)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        basecode, feat = self.f_encoder(x)
        return basecode, self.map2style(feat)
