"""Training machinery shared by every method kind (public API for kinds and plugins)::

    from ugpnet.training import (run_stage, Run, SupervisedStage, weighted_loss, make_optimizer,
                                 make_scheduler, requires_grad, lr_of, count_params, load_prior)

- :func:`run_stage`: the one loop (iterate, log, validate, checkpoint, resume) over a stage
  object with ``step(batch, it)``, ``predict(lq)``, ``weights()``, ``state()``, ``load_state()``.
- :class:`SupervisedStage`: ``loss(forward(lq), gt)`` with one optimiser.
- :mod:`.gan`: StyleGAN2 D step (logistic + lazy R1) and the non-saturating G loss.
"""
from .common import (count_params, lr_of, make_optimizer, make_scheduler,  # noqa: F401
                     requires_grad)
from .loop import run_stage  # noqa: F401
from .prior import load_prior  # noqa: F401
from .regression import SupervisedStage, weighted_loss  # noqa: F401
from .run import OPERATIONAL_KEYS, Run, strip_operational  # noqa: F401

__all__ = ["OPERATIONAL_KEYS", "Run", "strip_operational", "SupervisedStage", "count_params", "load_prior", "lr_of", "make_optimizer",
           "make_scheduler", "requires_grad", "run_stage", "weighted_loss"]
