"""Supervised stage: a network trained with weighted pixel/perceptual losses against GT."""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .common import autocast, make_optimizer, make_scheduler, lr_of


def weighted_loss(weights: Mapping[str, float], device, kwargs: Mapping | None = None) -> Callable:
    """Sum of registered losses ``{name: weight}`` (weights from params.yaml).

    Returns ``fn(pred, target, **extra_targets) -> (total, parts)``; a loss named in
    ``extra_targets`` (e.g. ``contextual=x_syn``) is computed against that tensor instead.
    When an LPIPS term precedes a contextual term whose features it computes anyway
    (:func:`ugpnet.losses.contextual.shares_trunk`), the contextual term takes the prediction's
    features from it instead of running the VGG again (same values up to float rounding).
    """
    from ..losses import LOSSES
    from ..losses.contextual import shares_trunk

    terms = []
    for name, weight in weights.items():
        if weight == 0:
            continue
        loss = LOSSES.get(name)(**(kwargs or {}).get(name, {}))
        terms.append((name, float(weight), loss.to(device) if hasattr(loss, "to") else loss))
    names = [t[0] for t in terms]
    shared = None  # (LPIPS term index, contextual term index, layer)
    if "lpips" in names and "contextual" in names \
            and names.index("lpips") < names.index("contextual"):
        i, j = names.index("lpips"), names.index("contextual")
        layer = shares_trunk(terms[i][2], terms[j][2])
        shared = None if layer is None else (i, j, layer)

    def fn(pred: torch.Tensor, target: torch.Tensor, **targets) -> tuple[torch.Tensor, dict]:
        total, parts = 0.0, {}
        use = shared is not None and terms[shared[1]][2].single_patch(pred)
        kept = None
        for k, (name, weight, loss) in enumerate(terms):
            tgt = targets.get(name, target)
            if use and k == shared[0]:
                value, kept = loss(pred, tgt, keep_pred_layer=shared[2])
            elif use and k == shared[1]:
                value = loss(pred, tgt, pred_features=kept)
            else:
                value = loss(pred, tgt)
            parts[name] = float(value.detach())
            total = total + weight * value
        return total, parts

    fn.terms = terms  # type: ignore[attr-defined]
    fn.shared_trunk = None if shared is None else shared[2]  # type: ignore[attr-defined]
    return fn


class SupervisedStage:
    """``loss(forward(lq), gt)`` with one optimiser over ``params``; ``model`` is exported.

    ``precision`` (resolved, :func:`~ugpnet.training.common.resolve_precision`): with ``bf16``
    the forward pass and the losses' networks run under bf16 autocast; the prediction enters
    the losses as fp32, and weights, gradients and the optimiser stay fp32."""

    def __init__(self, model: torch.nn.Module, forward: Callable, params, loss_weights: Mapping,
                 train: Mapping, device, predict: Callable | None = None,
                 loss_kwargs: Mapping | None = None, precision: str = "fp32"):
        self.model = model
        self.precision = precision
        self.autocast = lambda: autocast(precision, device)
        self.modules = [model]
        self.forward = forward
        self._predict = predict or forward
        self.params = [p for p in params if p.requires_grad]
        self.opt = make_optimizer(self.params, train)
        self.sched = make_scheduler(self.opt, train)
        self.loss_fn = weighted_loss(loss_weights, device, loss_kwargs)

    def step(self, batch, it):
        with self.autocast():
            loss, parts = self.loss_fn(self.forward(batch["lq"]).float(), batch["gt"])
        return self.optimise(loss, parts)

    def optimise(self, loss: torch.Tensor, parts: Mapping) -> dict:
        """One optimiser + scheduler step on ``loss``; returns the values to log."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return {"loss": float(loss.detach()), **parts, "lr": lr_of(self.opt)}

    @torch.no_grad()
    def predict(self, lq):
        return self._predict(lq)

    def weights(self):
        return self.model.state_dict()

    def state(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict()}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
