"""Training machinery shared by every method kind (public API for kinds and plugins)::

    from ugpnet.training import (run_stage, Run, SupervisedStage, AdversarialStage, Critic,
                                 weighted_loss, make_optimizer, make_scheduler, requires_grad,
                                 lr_of, count_params, load_prior, autocast, resolve_precision,
                                 reg_scaled_optimizer)

- :func:`run_stage`: the one loop (iterate, log, validate, checkpoint, resume) over a stage
  object with ``step(batch, it)``, ``predict(lq)``, ``weights()``, ``state()``, ``load_state()``.
- :class:`SupervisedStage`: ``loss(forward(lq), gt)`` with one optimiser.
- :class:`AdversarialStage`: a generator (any parameter groups in one optimiser, LR scheduler,
  optional EMA) against one or more :class:`Critic` (each with its own optimiser, G-loss weight,
  input range, view and lazy R1); ``nonsaturating`` (StyleGAN2) or ``relativistic`` (ESRGAN)
  loss, D step first or G step first; a reconstruction loss beside the adversarial one.
  :func:`to_range` maps [0, 1] images to a critic's range, :func:`ema_update` is the EMA lerp.
- :func:`autocast` / :func:`resolve_precision`: the mixed-precision context of the run's
  ``train_precision`` (``StageContext.precision`` is already resolved).
"""
from .adversarial import AdversarialStage  # noqa: F401
from .common import (autocast, count_params, lr_of, make_optimizer, make_scheduler,  # noqa: F401
                     reg_scaled_optimizer, requires_grad, resolve_precision)
from .gan import Critic, ema_update, to_range  # noqa: F401
from .loop import run_stage  # noqa: F401
from .prior import PRIOR_FORMAT, load_prior  # noqa: F401
from .regression import SupervisedStage, weighted_loss  # noqa: F401
from .run import OPERATIONAL_KEYS, Run, strip_operational  # noqa: F401

__all__ = ["AdversarialStage", "Critic", "OPERATIONAL_KEYS", "PRIOR_FORMAT", "Run",
           "SupervisedStage", "autocast", "count_params", "ema_update", "load_prior", "lr_of",
           "make_optimizer", "make_scheduler", "reg_scaled_optimizer", "requires_grad", "resolve_precision", "run_stage",
           "strip_operational", "to_range", "weighted_loss"]
