"""VQFR v1 (Gu et al., ECCV 2022, "VQFR: Blind Face Restoration with Vector-Quantized Dictionary
and Parallel Decoder"): our own plain-PyTorch networks, as the official ``VQFRv1`` / ``VQGANv1``
(TencentARC/VQFR ``vqfr/archs/vqfrv1_arch.py``, ``vqganv1_arch.py``, ``quantizer_arch.py``)
compute them.

Images are ``[N,3,S,S]`` in [-1, 1] (the authors' range; the kind converts at its boundary).
Feature levels are named by their down-sampling factor, ``Level_1`` (full size) ...
``Level_P`` (``P = patch_size``, 32 at 512 px: a 16x16 latent grid), as in the paper's code.

- :class:`VQGAN` (stage 1, the *codebook*): ``encoder`` → ``quantizer`` (1x1 ``quant_conv`` to
  the code dimension, nearest code of a ``num_code`` x ``code_dim`` codebook, 1x1
  ``post_quant_conv``) → ``texture_decoder``.
- :class:`VQFR` (stage 2): the same three parts plus ``lq_features`` (3 → ``cond_channels``
  conv of the degraded input) and ``main_decoder``, the parallel *fidelity* decoder that, at
  every level from ``Level_P`` to ``Level_1``, warps the texture decoder's features with a
  modulated deformable convolution (:class:`TextureWarpingModule`, ``torchvision.ops.
  deform_conv2d``, offsets and masks predicted from those features and the LQ features,
  propagated coarse to fine) and finally concatenates the LQ image. Its output ``main_dec`` is
  the restored face (the authors' ``test_which: main_branch``); ``dec`` is the texture branch.
- :class:`SWAGANDiscriminator`: the global critic (wavelet StyleGAN2 D with spectral norm,
  ``vqfr/archs/swagan_arch.py``); :class:`PatchDiscriminator`: the local PatchGAN critic
  (``patch_disc_arch.py``, pix2pix NLayer with spectral norm and BatchNorm).

Only ``torchvision.ops.deform_conv2d`` and our native ``upfirdn2d`` are used: no compiled
extension. Official checkpoints load through :mod:`.keymap`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ugpnet.models.synthesis.ops import make_kernel, upfirdn2d


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def level_names(patch_size: int) -> list[str]:
    """``Level_1 ... Level_<patch_size>`` (fine to coarse)."""
    n = int(math.log2(patch_size))
    if 2 ** n != patch_size:
        raise ValueError(f"VQFR: patch_size must be a power of two, got {patch_size}")
    return [f"Level_{2 ** s}" for s in range(n + 1)]


# ----------------------------------------------------------------------------- building blocks
class UpDownSample(nn.Module):
    """``up``: conv then bilinear x``scale``; ``down``: bilinear /``scale`` then conv; identity
    (no conv) when ``scale == 1``."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, direction: str):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.scale, self.direction = scale, direction
        if scale != 1:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        h, w = x.shape[-2:]
        if self.direction == "up":
            return F.interpolate(self.conv(x), size=(int(self.scale * h), int(self.scale * w)),
                                 mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=(int(h / self.scale), int(w / self.scale)), mode="bilinear",
                          align_corners=False)
        return self.conv(x)


class ResnetBlock(nn.Module):
    """GN-SiLU-conv3 twice, plus the input (1x1 conv when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _gn(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _gn(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.act = nn.SiLU()
        if in_channels != out_channels:
            self.shortcut_conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.act(self.norm2(h)))
        if self.in_channels != self.out_channels:
            x = self.shortcut_conv(x)
        return x + h


def _level_tables(base_channels, patch_size, scale_rates, channel_multipliers):
    names = level_names(patch_size)
    if len(channel_multipliers) != len(names) or len(scale_rates) != len(names):
        raise ValueError(f"VQFR: patch_size {patch_size} has {len(names)} levels; "
                         f"channel_multipliers {list(channel_multipliers)} and scale_rates "
                         f"{list(scale_rates)} need one entry each")
    channels = {n: int(m) * base_channels for n, m in zip(names, channel_multipliers)}
    for n, c in channels.items():
        if c % 32:
            raise ValueError(f"VQFR: {n} has {c} channels; GroupNorm(32) needs a multiple of 32")
    return names, channels


class VQGANEncoder(nn.Module):
    """``[N,3,S,S] -> {Level_P: [N,C_P,S/P,S/P]}`` (the pre-quantisation features)."""

    def __init__(self, base_channels: int, patch_size: int, scale_rates: Sequence[int],
                 channel_multipliers: Sequence[int], num_blocks: int):
        super().__init__()
        names, self.channels = _level_tables(base_channels, patch_size, scale_rates,
                                             channel_multipliers)
        self.names, self.quant_level = names, names[-1]
        rate = dict(zip(names, scale_rates))
        self.conv_in = nn.Conv2d(3, self.channels[names[0]], 3, 1, 1)
        self.encoder_dict = nn.ModuleDict()
        self.pre_downsample_dict = nn.ModuleDict()
        for i, n in enumerate(names):
            c_in = self.channels[names[max(i - 1, 0)]]
            c = self.channels[n]
            self.encoder_dict[n] = nn.Sequential(*[ResnetBlock(c, c) for _ in range(num_blocks)])
            self.pre_downsample_dict[n] = UpDownSample(c_in, c, rate[n], "down")
        c = self.channels[self.quant_level]
        self.enc_convout_dict = nn.ModuleDict(
            {self.quant_level: nn.Sequential(_gn(c), nn.SiLU(), nn.Conv2d(c, c, 3, 1, 1))})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.conv_in(x)
        for n in self.names:
            x = self.encoder_dict[n](self.pre_downsample_dict[n](x))
        return {self.quant_level: self.enc_convout_dict[self.quant_level](x)}


class VQGANDecoder(nn.Module):
    """The texture decoder: ``{Level_P: quantised}`` → image, and every level's features."""

    def __init__(self, base_channels: int, patch_size: int, scale_rates: Sequence[int],
                 channel_multipliers: Sequence[int], num_blocks: int):
        super().__init__()
        names, self.channels = _level_tables(base_channels, patch_size, scale_rates,
                                             channel_multipliers)
        self.names = names[::-1]  # coarse to fine
        rate = dict(zip(names, list(scale_rates)[::-1]))  # Level_P: 1, finer levels: 2
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for i, n in enumerate(self.names):
            c_in = self.channels[self.names[max(i - 1, 0)]]
            c = self.channels[n]
            self.decoder_dict[n] = nn.Sequential(*[ResnetBlock(c, c) for _ in range(num_blocks)])
            self.pre_upsample_dict[n] = UpDownSample(c_in, c, rate[n], "up")
        c1 = self.channels[names[0]]
        self.conv_out = nn.Sequential(_gn(c1), nn.SiLU(), nn.Conv2d(c1, 3, 3, 1, 1))

    def forward(self, quant: dict[str, torch.Tensor]):
        x = quant[self.names[0]]
        feats = {}
        for n in self.names:
            x = self.decoder_dict[n](self.pre_upsample_dict[n](x))
            feats[n] = x
        return self.conv_out(x), feats


class VectorQuantizer(nn.Module):
    """One level's quantiser (the official ``L2VectorQuantizerKmeans`` at inference).

    ``z [N,C,h,w]`` → ``quant_conv`` → nearest of ``num_code`` codes (L2) → straight-through →
    ``post_quant_conv``. Returns ``(quantised [N,C,h,w], codebook loss, info)`` with
    ``info = {"z_conv": before quantisation, "z_quant_before_conv": the codes [N,D,h,w],
    "indices": [N*h*w]}``. The codebook loss is ``|sg(e) - z|^2 + beta |e - sg(z)|^2``
    (VQ-VAE; beta 0.25). ``bypass=True`` skips quantisation (the authors' first 10k iterations
    of stage 1): ``z_conv`` goes straight to ``post_quant_conv`` with a zero loss. The k-means
    re-estimation of the codebook is the training stage's (:mod:`.kmeans`): ``observe(z [M,D])``
    sees the vectors before they are quantised (and may replace the codebook)."""

    beta = 0.25

    def __init__(self, num_code: int, in_dim: int, code_dim: int):
        super().__init__()
        self.num_code, self.code_dim = num_code, code_dim
        self.quant_conv = nn.Conv2d(in_dim, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, in_dim, 1)
        self.embedding = nn.Embedding(num_code, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_code, 1.0 / num_code)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes of ``z [M, D]`` (L2, the authors' expansion)."""
        e = self.embedding.weight
        d = (z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)
             - 2 * torch.einsum("bc,dc->bd", z, e))
        return torch.argmin(d, dim=1)

    def forward(self, z: torch.Tensor, bypass: bool = False, observe=None):
        z_conv = self.quant_conv(z)
        zl = z_conv.permute(0, 2, 3, 1).contiguous()  # [N,h,w,D]
        if observe is not None:  # stage 1: the reservoir / k-means step, before quantising
            observe(zl.detach().view(-1, self.code_dim))
        if bypass:
            zq, loss, idx = zl, z_conv.new_zeros(()), None
        else:
            idx = self.nearest(zl.view(-1, self.code_dim))
            e = self.embedding(idx).view(zl.shape)
            loss = torch.mean((e.detach() - zl) ** 2) + self.beta * torch.mean((e - zl.detach()) ** 2)
            zq = zl + (e - zl).detach()
        zq = zq.permute(0, 3, 1, 2).contiguous()
        return self.post_quant_conv(zq), loss, {"z_conv": z_conv, "z_quant_before_conv": zq,
                                                "indices": idx}


class Quantizer(nn.Module):
    """The official ``GeneralizedQuantizer``: one :class:`VectorQuantizer` per quantised level
    (VQFR v1: ``Level_P`` only)."""

    def __init__(self, level: str, num_code: int, in_dim: int, code_dim: int):
        super().__init__()
        self.level = level
        self.quantize_dict = nn.ModuleDict({level: VectorQuantizer(num_code, in_dim, code_dim)})

    @property
    def vq(self) -> VectorQuantizer:
        return self.quantize_dict[self.level]

    def forward(self, enc: dict[str, torch.Tensor], bypass: bool = False, observe=None):
        q, loss, info = self.vq(enc[self.level], bypass=bypass, observe=observe)
        return {self.level: q}, loss, {self.level: info}


# ----------------------------------------------------------------------------- texture warping
class DeformConv(nn.Module):
    """Modulated deformable 3x3 convolution (DCNv2) whose offsets and masks come from a separate
    feature map (the official ``DCNv2Pack.forward(x, feat)``): ``conv_offset(feat)`` gives
    ``3 * groups * 9`` channels = (dy/dx halves, mask logits)."""

    def __init__(self, channels: int, deformable_groups: int, kernel_size: int = 3):
        super().__init__()
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.uniform_(self.weight, -1 / math.sqrt(channels * kernel_size ** 2),
                         1 / math.sqrt(channels * kernel_size ** 2))
        self.conv_offset = nn.Conv2d(channels, deformable_groups * 3 * kernel_size ** 2,
                                     kernel_size, padding=self.padding)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        # imported here: torchvision's package import pulls in torch._dynamo (~3 s), which every
        # job of the workflow would pay when the configuration merely names this kind
        from torchvision.ops import deform_conv2d

        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        # fp32 always: torchvision has no bf16/fp16 deformable-conv kernel on CPU ("deformable_
        # im2col not implemented for 'BFloat16'"), so under mixed precision (train_precision:
        # bf16, or auto on a CPU with native bf16) this one op runs in fp32 and returns fp32
        with torch.autocast(device_type=x.device.type, enabled=False):
            return deform_conv2d(x.float(), torch.cat((o1, o2), dim=1).float(), self.weight,
                                 self.bias, padding=self.padding,
                                 mask=torch.sigmoid(mask.float()))


class TextureWarpingModule(nn.Module):
    """Warp the texture features ``x`` of one level toward the LQ input: offsets from
    [LQ features resized to the level, ``x``] (and the up-sampled offsets of the coarser level)."""

    def __init__(self, channel: int, cond_channels: int, cond_downscale_rate: int,
                 deformable_groups: int, previous_offset_channel: int = 0):
        super().__init__()
        self.downsample = UpDownSample(cond_channels, cond_channels, cond_downscale_rate, "down")
        self.offset_conv1 = nn.Sequential(
            nn.Conv2d(channel + cond_channels, channel, 1), _gn(channel), nn.SiLU(),
            nn.Conv2d(channel, channel, 7, padding=3, groups=channel), _gn(channel), nn.SiLU(),
            nn.Conv2d(channel, channel, 1))
        self.offset_conv2 = nn.Sequential(
            nn.Conv2d(channel + previous_offset_channel, channel, 3, 1, 1), _gn(channel),
            nn.SiLU())
        self.dcn = DeformConv(channel, deformable_groups)

    def forward(self, x, cond, previous_offset=None):
        offset = self.offset_conv1(torch.cat([self.downsample(cond), x], dim=1))
        if previous_offset is not None:
            offset = torch.cat([offset, previous_offset], dim=1)
        offset = self.offset_conv2(offset)
        return self.dcn(x, offset), offset


class MainDecoder(nn.Module):
    """The fidelity (main) decoder: warped texture features at every level, fused coarse to fine
    with a ResnetBlock on [up-sampled main features, warped features], then
    ``conv_out([GN-SiLU(x), x_lq])``."""

    def __init__(self, base_channels: int, patch_size: int, scale_rates: Sequence[int],
                 channel_multipliers: Sequence[int], cond_channels: int,
                 deformable_groups: int):
        super().__init__()
        names, ch = _level_tables(base_channels, patch_size, scale_rates, channel_multipliers)
        self.names = names[::-1]  # coarse to fine
        rate = dict(zip(names, list(scale_rates)[::-1]))
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for prev, n in zip(self.names[:-1], self.names[1:]):
            self.decoder_dict[n] = ResnetBlock(2 * ch[n], ch[n])
            self.pre_upsample_dict[n] = UpDownSample(ch[prev], ch[n], rate[n], "up")
        self.warp = nn.ModuleDict()
        for i, n in enumerate(self.names):
            self.warp[n] = TextureWarpingModule(
                ch[n], cond_channels, int(n.split("_")[1]), deformable_groups,
                previous_offset_channel=0 if i == 0 else ch[self.names[i - 1]])
        c1 = ch[names[0]]
        self.conv_out_1 = nn.Sequential(_gn(c1), nn.SiLU())
        self.conv_out = nn.Sequential(nn.Conv2d(c1 + 3, 3, 3, 1, 1))

    def forward(self, tex_feats: dict[str, torch.Tensor], cond: torch.Tensor,
                x_lq: torch.Tensor) -> torch.Tensor:
        x, offset = self.warp[self.names[0]](tex_feats[self.names[0]], cond)
        for n in self.names[1:]:
            x = self.pre_upsample_dict[n](x)
            up = F.interpolate(offset, scale_factor=2, mode="bilinear", align_corners=False) * 2
            warped, offset = self.warp[n](tex_feats[n], cond, previous_offset=up)
            x = self.decoder_dict[n](torch.cat([x, warped], dim=1))
        return self.conv_out(torch.cat([self.conv_out_1(x), x_lq], dim=1))


# ----------------------------------------------------------------------------- the networks
def _init_weights(m: nn.Module) -> None:
    """The authors' initialisation (``VQFRv1._init_weights``): convs and linears truncated
    normal std 0.02 with zero bias, GroupNorm (1, 0); the deformable conv keeps its own."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class VQGAN(nn.Module):
    """Stage 1: encoder, quantiser, texture decoder.
    ``forward(x, bypass=False, observe=None) -> (image, codebook loss, info of the quantised
    level)``."""

    def __init__(self, base_channels: int = 128, patch_size: int = 32,
                 scale_rates: Sequence[int] = (1, 2, 2, 2, 2, 2),
                 channel_multipliers: Sequence[int] = (1, 1, 2, 2, 2, 4),
                 encoder_blocks: int = 2, decoder_blocks: int = 3, num_code: int = 1024,
                 code_dim: int = 256):
        super().__init__()
        self.encoder = VQGANEncoder(base_channels, patch_size, scale_rates, channel_multipliers,
                                    encoder_blocks)
        self.texture_decoder = VQGANDecoder(base_channels, patch_size, scale_rates,
                                            channel_multipliers, decoder_blocks)
        level = self.encoder.quant_level
        self.quantizer = Quantizer(level, num_code, self.encoder.channels[level], code_dim)
        self.apply(_init_weights)
        nn.init.uniform_(self.quantizer.vq.embedding.weight, -1.0 / num_code, 1.0 / num_code)

    @property
    def level(self) -> str:
        return self.quantizer.level

    def forward(self, x: torch.Tensor, bypass: bool = False, observe=None):
        q, loss, info = self.quantizer(self.encoder(x), bypass=bypass, observe=observe)
        dec, _ = self.texture_decoder(q)
        return dec, loss, info[self.level]

    def last_layer(self) -> torch.Tensor:
        return self.texture_decoder.conv_out[-1].weight


class VQFR(nn.Module):
    """Stage 2: VQGAN's parts plus ``lq_features`` and ``main_decoder``.
    ``forward(x_lq) -> {"main_dec", "dec", "z_conv", ...}``: ``main_dec`` is the result."""

    def __init__(self, base_channels: int = 128, patch_size: int = 32,
                 scale_rates: Sequence[int] = (1, 2, 2, 2, 2, 2),
                 channel_multipliers: Sequence[int] = (1, 1, 2, 2, 2, 4),
                 encoder_blocks: int = 2, decoder_blocks: int = 3, num_code: int = 1024,
                 code_dim: int = 256, cond_channels: int = 32, deformable_groups: int = 4):
        super().__init__()
        self.lq_features = nn.Conv2d(3, cond_channels, 3, padding=1)
        self.encoder = VQGANEncoder(base_channels, patch_size, scale_rates, channel_multipliers,
                                    encoder_blocks)
        self.texture_decoder = VQGANDecoder(base_channels, patch_size, scale_rates,
                                            channel_multipliers, decoder_blocks)
        self.main_decoder = MainDecoder(base_channels, patch_size, scale_rates,
                                        channel_multipliers, cond_channels, deformable_groups)
        level = self.encoder.quant_level
        self.quantizer = Quantizer(level, num_code, self.encoder.channels[level], code_dim)
        self.apply(_init_weights)
        nn.init.uniform_(self.quantizer.vq.embedding.weight, -1.0 / num_code, 1.0 / num_code)

    CODEBOOK_PARTS = ("encoder", "texture_decoder", "quantizer")  # what stage 1 trains

    @torch.no_grad()
    def start_main_at_input(self) -> None:
        """An option beyond the paper (short runs): the main decoder's last conv starts as the
        identity on the LQ image it concatenates (feature weights and bias zero), so the
        evaluated branch starts at the input and learns what to change; the authors' start is
        random (``_init_weights``)."""
        conv = self.main_decoder.conv_out[0]
        c = conv.in_channels - 3
        conv.weight.zero_()
        conv.bias.zero_()
        k = conv.kernel_size[0] // 2
        for i in range(3):
            conv.weight[i, c + i, k, k] = 1.0

    @property
    def level(self) -> str:
        return self.quantizer.level

    def forward(self, x_lq: torch.Tensor, texture: bool = True) -> dict:
        if x_lq.ndim != 4 or x_lq.shape[1] != 3:
            raise ValueError(f"VQFR expects [N,3,H,W] in [-1,1], got {tuple(x_lq.shape)}")
        cond = self.lq_features(x_lq)
        q, loss, info = self.quantizer(self.encoder(x_lq))
        dec, feats = self.texture_decoder(q)
        main = self.main_decoder(feats, cond, x_lq)
        return {"main_dec": main, "dec": dec, "codebook_loss": loss, **info[self.level]}

    def last_layer(self) -> torch.Tensor:
        return self.texture_decoder.conv_out[-1].weight

    def main_last_layer(self) -> torch.Tensor:
        return self.main_decoder.conv_out[-1].weight


# ----------------------------------------------------------------------------- discriminators
class SNLayer(nn.Module):
    """A conv or linear layer's parameters under spectral normalisation (one power iteration per
    call, as the authors' ``SpectralNorm``): ``weight_bar`` (trained), ``bias``, and the
    power-iteration vectors ``weight_u``/``weight_v`` (buffers here: never trained)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        h = weight.shape[0]
        self.weight_bar = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.register_buffer("weight_u", F.normalize(torch.randn(h), dim=0, eps=1e-12))
        self.register_buffer("weight_v", F.normalize(torch.randn(weight[0].numel()), dim=0,
                                                     eps=1e-12))

    def normalised_weight(self) -> torch.Tensor:
        w = self.weight_bar
        w2 = w.view(w.shape[0], -1)
        with torch.no_grad():  # the authors update u, v on every call, train and eval
            v = w2.t().mv(self.weight_u)
            v = v / (v.norm() + 1e-12)
            u = w2.mv(v)
            u = u / (u.norm() + 1e-12)
            self.weight_v.copy_(v)
            self.weight_u.copy_(u)
        sigma = u.dot(w2.mv(v))  # this call's vectors (the buffers change on the next call)
        return w / sigma


class SNConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias)
        self.stride, self.padding = stride, padding
        self.module = SNLayer(conv.weight, conv.bias)

    def forward(self, x):
        return F.conv2d(x, self.module.normalised_weight(), self.module.bias, self.stride,
                        self.padding)


class SNLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        lin = nn.Linear(cin, cout)
        self.module = SNLayer(lin.weight, lin.bias)

    def forward(self, x):
        return F.linear(x, self.module.normalised_weight(), self.module.bias)


class Blur(nn.Module):
    """The FIR low-pass before a stride-2 conv (``UpFirDnSmooth``, no parameters)."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int]):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel), persistent=False)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


def _sn_conv_layer(cin, cout, k, downsample=False, blur_kernel=(1, 3, 3, 1), activate=True):
    """The authors' SWAGAN ``ConvLayer`` (spectral norm, plain LeakyReLU 0.2)."""
    layers = []
    if downsample:
        p = len(blur_kernel) - 2 + (k - 1)
        layers += [Blur(blur_kernel, ((p + 1) // 2, p // 2)), SNConv2d(cin, cout, k, 2, 0)]
    else:
        layers += [SNConv2d(cin, cout, k, 1, k // 2)]
    if activate:
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class Haar(nn.Module):
    """Haar wavelet analysis (``inverse=False``: [N,C,H,W] → [N,4C,H/2,W/2]) or synthesis."""

    def __init__(self, inverse: bool = False):
        super().__init__()
        lo = torch.ones(1, 2) / math.sqrt(2)
        hi = lo.clone()
        hi[0, 0] = -hi[0, 0]
        ll, lh, hl, hh = lo.T * lo, hi.T * lo, lo.T * hi, hi.T * hi
        if inverse:
            lh, hl = -lh, -hl
        self.inverse = inverse
        for n, k in (("ll", ll), ("lh", lh), ("hl", hl), ("hh", hh)):
            self.register_buffer(n, k)

    def forward(self, x):
        ks = (self.ll, self.lh, self.hl, self.hh)
        if not self.inverse:
            return torch.cat([upfirdn2d(x, k, down=2) for k in ks], 1)
        return sum(upfirdn2d(part, k, up=2, pad=(1, 0)) for part, k in zip(x.chunk(4, 1), ks))


class FIRDown(nn.Module):
    """Blur and keep every second pixel (the authors' ``Downsample``; its kernel is saved)."""

    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel))
        p = len(kernel) - factor
        self.factor, self.pad = factor, ((p + 1) // 2, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, down=self.factor, pad=self.pad)


class FromRGB(nn.Module):
    """Wavelet skip: (inverse Haar, blur-down, Haar) of the previous level's wavelet image, then
    a conv into the features (plus the running features)."""

    def __init__(self, out_channel: int, downsample: bool, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.downsample = None
        if downsample:
            self.iwt = Haar(inverse=True)
            self.downsample = FIRDown(blur_kernel)
            self.dwt = Haar()
        self.conv = _sn_conv_layer(12, out_channel, 3)

    def forward(self, x, skip=None):
        if self.downsample is not None:
            x = self.dwt(self.downsample(self.iwt(x)))
        out = self.conv(x)
        return x, (out if skip is None else out + skip)


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = _sn_conv_layer(cin, cin, 3)
        self.conv2 = _sn_conv_layer(cin, cout, 3, downsample=True, blur_kernel=blur_kernel)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def swagan_channels(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {r: min(channel_max, c if r <= 32 else c * channel_multiplier)
            for r, c in base.items()}


class SWAGANDiscriminator(nn.Module):
    """The global critic: wavelet (Haar) StyleGAN2-style D with spectral norm and minibatch
    stddev (group 4); input [N,3,size,size] in [-1,1], output logits [N,1]. ``channel_max``
    narrows every level (smoke profile); 512 is the authors'."""

    def __init__(self, size: int = 512, channel_multiplier: int = 2,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), channel_max: int = 512):
        super().__init__()
        ch = swagan_channels(channel_multiplier, channel_max)
        self.dwt = Haar()
        self.from_rgbs, self.convs = nn.ModuleList(), nn.ModuleList()
        log_size = int(math.log2(size)) - 1
        cin = ch[size]
        for i in range(log_size, 2, -1):
            cout = ch[2 ** (i - 1)]
            self.from_rgbs.append(FromRGB(cin, downsample=i != log_size, blur_kernel=blur_kernel))
            self.convs.append(ConvBlock(cin, cout, blur_kernel))
            cin = cout
        self.from_rgbs.append(FromRGB(ch[4], downsample=True, blur_kernel=blur_kernel))
        self.stddev_group = 4
        self.final_conv = _sn_conv_layer(cin + 1, ch[4], 3)
        self.final_linear = nn.Sequential(SNLinear(ch[4] * 16, ch[4]), nn.LeakyReLU(0.2),
                                          SNLinear(ch[4], 1))

    def forward(self, x):
        x = self.dwt(x)
        out = None
        for from_rgb, conv in zip(self.from_rgbs, self.convs):
            x, out = from_rgb(x, out)
            out = conv(out)
        _, out = self.from_rgbs[-1](x, out)
        n, c, h, w = out.shape
        g = min(n, self.stddev_group)
        if n % g:
            raise ValueError(f"SWAGAN D: batch {n} is not a multiple of its stddev group {g}")
        s = out.view(g, -1, 1, c, h, w)
        s = torch.sqrt(s.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, s.repeat(g, 1, h, w)], 1)
        return self.final_linear(self.final_conv(out).view(n, -1))


class PatchDiscriminator(nn.Module):
    """The local critic: pix2pix PatchGAN (``n_layers`` stride-2 4x4 convs, BatchNorm, spectral
    norm), logits per patch [N,1,h,w]; input in [-1,1]."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, in_channels: int = 3):
        super().__init__()
        seq = [SNConv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [SNConv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [SNConv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2), SNConv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*seq)

    def forward(self, x):
        return self.main(x)
