"""GLEAN's training step (mmagic ``SRGAN.train_step``, mmagic/models/editors/srgan/srgan.py) on the
shared :class:`ugpnet.training.AdversarialStage`.

One iteration: G forward on the LR (images in [-1, 1]); the G step first (``order="g_first"``:
srgan.py ``train_step`` runs ``g_step_with_optim`` before ``d_step_with_optim``) with
``mse * MSE + perceptual * VGG16-conv4_3 MSE + gan * BCE(D(fake), 1)``; then one D step on the
detached output, ``BCE(D(real), 1) + BCE(D(fake), 0)`` (= the logistic loss; mmagic's GANLoss
``vanilla`` applies ``loss_weight`` only to G, gan_loss.py:145). No R1, no EMA: the raw G is
validated and exported. Both optimisers follow the same CosineAnnealingLR (one ``param_scheduler``
for the MultiOptimWrapper, base_glean.py), stepped once per iteration.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.training import AdversarialStage


def cosine_annealing(opt: torch.optim.Optimizer, t_max_iters: int, eta_min: float):
    """``CosineAnnealingLR(T_max, eta_min)`` in closed form (base_glean.py ``param_scheduler``):
    ``lr_t = eta_min + (lr_0 - eta_min) (1 + cos(pi t / T_max)) / 2`` for every param group.
    ``T_max`` is independent of the run length (600k for a 300k run: the rate ends at ~lr_0/2),
    which ``ugpnet.training.make_scheduler``'s ``cosine`` (T_max = total_iters) cannot express."""
    base = [g["lr"] for g in opt.param_groups]

    def factor(i):
        def f(it: int) -> float:
            return (eta_min + (base[i] - eta_min) * 0.5 * (1 + math.cos(math.pi * it / t_max_iters))) / base[i]
        return f

    return torch.optim.lr_scheduler.LambdaLR(opt, [factor(i) for i in range(len(base))])


class VGG16Conv43(nn.Module):
    """mmagic ``PerceptualLoss(layer_weights={'21': 1}, vgg_type='vgg16', norm_img=False,
    criterion='mse')`` (glean_x16_2xb8_ffhq.py): torchvision VGG16 ``features[:22]`` (ends at
    conv4_3, before its ReLU), ImageNet mean/std applied to the [-1, 1] image as it is
    (``norm_img=False`` skips the mapping to [0, 1]; perceptual_loss.py:54-62, :186-189). The
    extractor is the shared one (:func:`ugpnet.losses.vgg.build_vgg_features` ``conv4_3``, the
    VGG16 the LPIPS metric carries offline), which normalises its input the same way."""

    def __init__(self):
        super().__init__()
        from ugpnet.losses.vgg import build_vgg_features

        self.vgg = build_vgg_features("conv4_3", backbone="vgg16")
        self.source = f"{self.vgg.source}, MSE, on [-1, 1] images (norm_img=False)"
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """MSE of the conv4_3 features of ``fake`` and ``real`` (both in [-1, 1])."""
        return F.mse_loss(self.vgg(fake), self.vgg(real.detach()))


def predict01(net, lr01: torch.Tensor) -> torch.Tensor:
    """Evaluation: LR in [0, 1] -> HR in [0, 1] (the raw generator, fixed noise)."""
    return (net(lr01 * 2 - 1) + 1) * 0.5


class GLEANStage(AdversarialStage):
    """``weights``: ``methods.<m>.loss`` (mse, perceptual, gan); ``perceptual``: a
    :class:`VGG16Conv43` or None; ``d_scheduler``: the D optimiser's schedule (stepped with G's)."""

    def __init__(self, net, opt_g, critics, *, weights, perceptual=None, d_scheduler=None, **kw):
        super().__init__(net, opt_g, critics, recon=self._recon, order="g_first",
                         loss="nonsaturating", predict=predict01,
                         forward=lambda batch, it: (predict01(net, batch["lq"]), batch["gt"]),
                         frozen=[net.generator] + ([perceptual] if perceptual is not None else []),
                         **kw)
        self.w, self.perceptual, self.d_scheduler = dict(weights), perceptual, d_scheduler

    def _recon(self, fake01: torch.Tensor, real01: torch.Tensor):
        fake, real = fake01 * 2 - 1, real01 * 2 - 1  # mmagic's losses see [-1, 1] images
        total = self.w["mse"] * F.mse_loss(fake, real)
        parts = {"mse": float(total.detach())}
        if self.perceptual is not None and self.w["perceptual"] > 0:
            p = self.w["perceptual"] * self.perceptual(fake, real)
            total = total + p
            parts["perceptual"] = float(p.detach())
        return total, parts

    def step(self, batch, it: int) -> dict:
        out = super().step(batch, it)
        if self.d_scheduler is not None:
            self.d_scheduler.step()
        return out

    def state(self) -> dict:
        s = super().state()
        if self.d_scheduler is not None:
            s["sched_d"] = self.d_scheduler.state_dict()
        return s

    def load_state(self, s) -> None:
        super().load_state(s)
        if self.d_scheduler is not None:
            self.d_scheduler.load_state_dict(s["sched_d"])
