"""Training losses of UGPNet and the baselines, by name (``LOSSES.get(name)(**kwargs)``).

Registered names (params.yaml ``loss: {name: weight}``)::

    l1, mse, charbonnier, psnr   pixel losses                   loss(pred, target)      (.pixel)
    lpips                        LPIPS v0.1, frozen, offline     loss(pred, target)      (.perceptual)
    contextual                   patch-wise contextual loss      loss(pred, target)      (.contextual)
    adversarial                  StyleGAN2 logistic + lazy R1    .g_loss / .d_loss / .r1_loss (.adversarial)

The adversarial pairs themselves (``GAN_LOSSES``: ``nonsaturating`` = StyleGAN2's logistic D +
non-saturating G loss, ``relativistic`` = ESRGAN's relativistic average GAN) are plain functions
of the logits, used by :class:`ugpnet.training.AdversarialStage`.

All images are ``[N,3,H,W]`` float in [0, 1]. Feature-based losses expose ``.feature_source``
(which pretrained weights they use) for the run's recorded options.
"""
from ..registry import Registry

LOSSES = Registry("loss")

# explicit imports: each module registers its classes with @LOSSES.register(...)
from . import adversarial, contextual, perceptual, pixel  # noqa: E402,F401
from .adversarial import (  # noqa: E402,F401
    GAN_LOSSES,
    StyleGAN2AdversarialLoss,
    d_logistic_loss,
    d_r1_penalty,
    d_relativistic_loss,
    g_nonsaturating_loss,
    g_relativistic_loss,
    r1_weight,
)
from .contextual import ContextualLoss, contextual_loss_from_features, contextual_similarity  # noqa: E402,F401
from .perceptual import LPIPSLoss  # noqa: E402,F401
from .pixel import CharbonnierLoss, L1Loss, MSELoss, PSNRLoss  # noqa: E402,F401
