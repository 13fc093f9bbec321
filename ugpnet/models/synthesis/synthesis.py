"""UGPNet synthesis module: E (F-encoder + ONE shared map2style) followed by StyleGAN2 G.

``map2style="per_latent"`` (an ablation beyond the paper, :mod:`.encoder`) gives E pSp's one
map2style per W+ latent instead.

Protocol (official ``SynModule.forward``): the regression output x_reg in [0, 1] goes into E
unchanged; G's output in [-1, 1] is mapped to [0, 1] by (img + 1) / 2 (no clamping, the losses
in the official training see the unclamped image). The generator uses the stored noise
buffers by default (official ``randomize_noise=False``).
"""

from __future__ import annotations

import torch
from torch import nn

from .encoder import SynthesisEncoder
from .stylegan2 import Generator

__all__ = ["SynthesisModule", "build_synthesis_module"]


class SynthesisModule(nn.Module):
    """``forward(x_reg [N, 3, S, S] in [0, 1]) -> (x_syn [N, 3, size, size] in [0, 1], f_syn)``.

    f_syn [N, C_last, size, size] is the generator feature before its last toRGB (64 channels at
    512 px, channel multiplier 2); it is a channels-last tensor when the generator runs
    channels-last (the default; use ``.reshape``/``.contiguous()`` rather than ``.view``).
    ``noise``: 'const' (UGPNet default), 'random' or 'none'.
    """

    def __init__(self, generator: Generator, encoder: SynthesisEncoder, noise: str = "const"):
        super().__init__()
        fe, m2s = encoder.f_encoder, encoder.map2style
        problems = []
        if fe.basecode_size != generator.basecode_size:
            problems.append(f"basecode size E={fe.basecode_size} vs G={generator.basecode_size}")
        if fe.basecode_channels != generator.basecode_channels:
            problems.append(f"basecode channels E={fe.basecode_channels} vs G={generator.basecode_channels}")
        if m2s.num_latents != generator.num_latents:
            problems.append(f"W+ length E={m2s.num_latents} vs G={generator.num_latents}")
        if m2s.style_dim != generator.style_dim:
            problems.append(f"style dim E={m2s.style_dim} vs G={generator.style_dim}")
        if m2s.first_used_latent != generator.first_used_latent:
            problems.append(f"first used latent E={m2s.first_used_latent} vs G={generator.first_used_latent}")
        if problems:
            raise ValueError("synthesis encoder and generator do not fit: " + "; ".join(problems))
        if noise not in ("const", "random", "none"):
            raise ValueError(f"noise must be 'const', 'random' or 'none', got {noise!r}")
        self.encoder = encoder
        self.generator = generator
        self.noise = noise

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    def forward(self, x_reg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.input_size
        if x_reg.ndim != 4 or x_reg.shape[1:] != (3, s, s):
            raise ValueError(f"synthesis module expects x_reg [N, 3, {s}, {s}] in [0, 1], got {tuple(x_reg.shape)}")
        basecode, wplus = self.encoder(x_reg)
        img, f_syn = self.generator.synthesize(basecode, wplus, noise=self.noise)
        return ((img + 1.0) * 0.5).contiguous(), f_syn


def build_synthesis_module(
    size: int = 512,
    style_dim: int = 512,
    n_mlp: int = 8,
    channel_multiplier: float = 2,
    channel_max: int = 512,
    basecode_size: int = 16,
    encoder_input_size: int | None = None,
    encoder_channel_max: int | None = None,
    style_feature_size: int | None = None,
    noise: str = "const",
    map2style: str = "shared",
) -> SynthesisModule:
    """Generator + matching encoder. Defaults are UGPNet's 512-px configuration (51.59 M params).
    ``map2style``: ``shared`` (UGPNet) | ``per_latent`` (:data:`.encoder.MAP2STYLES`)."""
    g = Generator(
        size=size,
        style_dim=style_dim,
        n_mlp=n_mlp,
        channel_multiplier=channel_multiplier,
        channel_max=channel_max,
        basecode_size=basecode_size,
    )
    e = SynthesisEncoder.for_generator(
        g,
        input_size=encoder_input_size,
        channel_max=encoder_channel_max,
        style_feature_size=style_feature_size,
        map2style=map2style,
    )
    return SynthesisModule(g, e, noise=noise)
