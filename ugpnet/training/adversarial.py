"""The adversarial stage: a generator G (any modules and parameter groups in one optimiser)
against one or more critics, for :func:`~ugpnet.training.loop.run_stage`.

One iteration (``order="d_first"``, the official UGPNet / StyleGAN2 order)::

    fake, real = forward(batch, it)                    # under autocast; fake carries G's graph
    for C in critics: C.d_step(real, fake, it)         # fp32, detached images, lazy R1
    L_G = recon(fake, real) + adv_weight * sum_C C.weight * C.g_loss(fake, real)
    opt_g step on L_G (critics frozen); scheduler step; EMA of G

``order="g_first"`` (BasicSR's ESRGAN) makes the G step first and then the D steps on the same
(detached) fake. ``fresh_fake=True`` calls ``forward`` again for the second of the two steps
(StyleGAN2 pretraining samples z once for D and once for G); the first of them then runs without
a graph when it is the D step. ``adv_weight = 0`` (or no critic) leaves the critics untouched.

Frozen modules (e.g. UGPNet's restoration) get no gradient and are kept in eval mode. With
``ema_beta``, an EMA copy of G (made when the stage is built, so load G's weights first) is what
:meth:`AdversarialStage.predict` runs and :meth:`AdversarialStage.weights` exports.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Mapping, Sequence

import torch

from ..errors import ConfigError
from .common import autocast, lr_of, requires_grad
from .gan import Critic, check_gan_loss, ema_update

ORDERS = ("d_first", "g_first")


class AdversarialStage:
    """Generator ``generator`` (optimiser ``opt_g``, optional ``scheduler``) against ``critics``.

    - ``forward(batch, it) -> (fake, real)``: the iteration's images in [0, 1], ``fake`` with
      G's graph (default: ``generator(batch["lq"]), batch["gt"]``; or override :meth:`forward`);
    - ``recon(fake, real) -> (loss, parts)``: the reconstruction loss (e.g.
      :func:`~ugpnet.training.weighted_loss`), or None for none;
    - ``adv_weight``: weight of the adversarial loss; ``loss``: ``nonsaturating`` or
      ``relativistic``; ``order``: ``d_first`` or ``g_first``; ``fresh_fake``: see the module;
    - ``ema_beta``: keep an EMA of G (``None``: none);
    - ``frozen``: modules that stay frozen and in eval mode;
    - ``predict(g, lq)``: the validation output of generator ``g`` (default ``g(lq)``);
    - ``precision`` (resolved): forward passes and losses under
      :func:`~ugpnet.training.common.autocast`; the D steps and R1 in fp32;
    - ``name``: G's key in the resume state (``name``, ``opt_g``, ``sched``, ``<name>_ema`` and
      each critic's ``<critic>``, ``opt_<critic>``).

    ``step`` logs ``loss`` (L_G), the reconstruction parts, ``adversarial`` and the critics'
    ``d_loss``/``r1`` (suffixed ``_<critic>`` when there are several), and ``lr``.
    """

    def __init__(self, generator: torch.nn.Module, opt_g: torch.optim.Optimizer,
                 critics: Sequence[Critic] = (), *, forward: Callable | None = None,
                 recon: Callable | None = None, adv_weight: float = 1.0,
                 loss: str = "nonsaturating", order: str = "d_first", fresh_fake: bool = False,
                 scheduler=None, ema_beta: float | None = None,
                 frozen: Iterable[torch.nn.Module] = (), predict: Callable | None = None,
                 precision: str = "fp32", device="cpu", name: str = "g"):
        if order not in ORDERS:
            raise ConfigError(f"adversarial order must be one of {', '.join(ORDERS)}, "
                              f"got {order!r}")
        self.loss = check_gan_loss(loss)
        self.order = order
        self.generator, self.opt_g, self.scheduler = generator, opt_g, scheduler
        self.critics = list(critics)
        self.name = name
        keys = [name, "opt_g", "sched", f"{name}_ema"]
        keys += [k for c in self.critics for k in (c.name, f"opt_{c.name}")]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"adversarial stage: the names of G and the critics collide: {keys}")
        self._forward = forward
        self.recon = recon
        self.adv_weight = float(adv_weight)
        self.fresh_fake = bool(fresh_fake)
        self.frozen = list(frozen)
        for m in self.frozen:
            requires_grad(m, False)
            m.eval()
        self._predict = predict
        self.precision, self.device = precision, device
        self.ema_beta = ema_beta
        self.ema = None
        if ema_beta is not None:
            self.ema = copy.deepcopy(generator).eval()
            requires_grad(self.ema, False)
        self.modules = [generator, *(c.net for c in self.critics)]

    # ------------------------------------------------------------------ the iteration
    def autocast(self):
        return autocast(self.precision, self.device)

    def forward(self, batch: Mapping, it: int):
        """``(fake, real)`` of iteration ``it`` (called under autocast)."""
        if self._forward is not None:
            return self._forward(batch, it)
        return self.generator(batch["lq"]), batch["gt"]

    @property
    def adversarial(self) -> bool:
        return self.adv_weight > 0 and bool(self.critics)

    def images(self, batch: Mapping, it: int, grad: bool = True):
        """``forward`` under autocast, the fake as fp32 (without a graph when ``grad`` is off)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), self.autocast():
            fake, real = self.forward(batch, it)
            return fake.float(), real

    def step(self, batch: Mapping, it: int) -> dict:
        for m in self.frozen:
            m.eval()
        d_first = self.adversarial and self.order == "d_first"
        fake, real = self.images(batch, it, grad=not (d_first and self.fresh_fake))
        d_parts = {}
        if d_first:
            d_parts = self.d_step(real, fake, it, batch)
            if self.fresh_fake:
                fake, real = self.images(batch, it)
        out = self.g_step(fake, real, batch)
        if self.adversarial and self.order == "g_first":
            if self.fresh_fake:
                fake, real = self.images(batch, it, grad=False)
            d_parts = self.d_step(real, fake, it, batch)
        if self.ema is not None:
            ema_update(self.ema, self.generator, self.ema_beta)
        return {**out, **d_parts, "lr": lr_of(self.opt_g)}

    def _key(self, key: str, critic: Critic) -> str:
        return key if len(self.critics) == 1 else f"{key}_{critic.name}"

    def d_step(self, real, fake, it: int, batch: Mapping | None = None) -> dict:
        """Every critic's own D step (fp32, outside autocast)."""
        parts = {}
        for c in self.critics:
            for k, v in c.d_step(real, fake, it, self.loss, batch).items():
                parts[self._key(k, c)] = v
        return parts

    def g_step(self, fake, real, batch: Mapping | None = None) -> dict:
        """``recon + adv_weight * sum_C weight_C * L_adv(C)`` with the critics frozen."""
        parts = {}
        for c in self.critics:
            requires_grad(c.net, False)
        try:
            with self.autocast():
                loss, parts = self.recon(fake, real) if self.recon is not None else (None, {})
                if self.adversarial:
                    adv = None
                    for c in self.critics:
                        term = c.weight * c.g_loss(fake, real, self.loss, batch).float()
                        if len(self.critics) > 1:
                            parts[self._key("adversarial", c)] = float(term.detach())
                        adv = term if adv is None else adv + term
                    weighted = self.adv_weight * adv
                    loss = weighted if loss is None else loss + weighted
                    parts["adversarial"] = float(adv.detach())
            if loss is None:
                raise ConfigError("adversarial stage: no loss (no reconstruction loss and "
                                  "adv_weight 0 or no critic)")
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
            if self.scheduler is not None:
                self.scheduler.step()
        finally:
            for c in self.critics:
                requires_grad(c.net, True)
        return {"loss": float(loss.detach()), **parts}

    # ------------------------------------------------------------------ what run_stage reads
    @property
    def g_eval(self) -> torch.nn.Module:
        """The generator that is evaluated and exported: the EMA model when there is one."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def predict(self, lq: torch.Tensor):
        g = self.g_eval
        return self._predict(g, lq) if self._predict is not None else g(lq)

    def weights(self) -> dict:
        return self.g_eval.state_dict()

    def state(self) -> dict:
        s = {self.name: self.generator.state_dict(), "opt_g": self.opt_g.state_dict()}
        if self.scheduler is not None:
            s["sched"] = self.scheduler.state_dict()
        for c in self.critics:
            s[c.name], s[f"opt_{c.name}"] = c.net.state_dict(), c.opt.state_dict()
        if self.ema is not None:
            s[f"{self.name}_ema"] = self.ema.state_dict()
        return s

    def load_state(self, s: Mapping) -> None:
        self.generator.load_state_dict(s[self.name])
        self.opt_g.load_state_dict(s["opt_g"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(s["sched"])
        for c in self.critics:
            c.net.load_state_dict(s[c.name])
            c.opt.load_state_dict(s[f"opt_{c.name}"])
        if self.ema is not None:
            self.ema.load_state_dict(s[f"{self.name}_ema"])
