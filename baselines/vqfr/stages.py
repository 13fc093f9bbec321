"""VQFR's two training stages as :func:`ugpnet.training.run_stage` stage objects.

Both follow the authors' iteration (``vqfr/models/vqgan_model.py``, ``vqfrv1_model.py``): the G
step first, then the D steps on the same (detached) output, BasicSR's 1-based iteration
``cur = it + 1`` for every schedule threshold (a term starts when ``cur > start``; R1 when
``cur % r1_every == 0``). Images are [0, 1] at the boundary and [-1, 1] inside; the critics are
the shared :class:`ugpnet.training.Critic` (global SWAGAN D: non-saturating logistic = the
authors' ``wgan_softplus``, lazy R1 ``gamma/2 * every``) and :class:`.losses.HingeCritic`
(local PatchGAN). The shared ``AdversarialStage`` does not fit as is: one generator with two
outputs, four critics that start at two different iterations, a per-step adaptive weight, the
codebook bypass and k-means; these stages compose its pieces instead.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from ugpnet.training import (Critic, autocast, lr_of, make_optimizer, make_scheduler,
                             requires_grad)

from .kmeans import Reservoir, kmeans
from .losses import HingeCritic, LPIPSStyle, adaptive_weight_at_output


def _pm(x01: torch.Tensor) -> torch.Tensor:
    return x01 * 2.0 - 1.0


def _01(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5


def _f(t) -> float:
    return float(t.detach()) if torch.is_tensor(t) else float(t)


class CodebookStage:
    """Stage 1: the VQGAN on clean faces. ``L1 + LPIPS + codebook loss (+ GAN from
    gan_start)``; quantiser bypassed before ``bypass_iters``; codebook = k-means of a reservoir
    of encoder vectors every ``kmeans.every`` iterations below ``kmeans.until``."""

    def __init__(self, net, D, perceptual: LPIPSStyle, st: Mapping, device, precision="fp32"):
        train, loss = st["train"], st["loss"]
        self.net, self.perceptual, self.device, self.precision = net, perceptual, device, precision
        self.w = {k: float(loss[k]) for k in ("l1", "lpips", "codebook", "gan")}
        self.gan_start, self.bypass_iters = int(st["gan_start_iter"]), int(st["bypass_iters"])
        km = st["kmeans"]
        self.km_every, self.km_until = int(km["every"]), int(km["until"])
        self.km_iters = int(km.get("max_iters", 100))
        self.reservoir = Reservoir(int(km["reservoir"]))
        self.rng = torch.Generator().manual_seed(0)
        self.opt_g = make_optimizer(net.parameters(), train)
        self.scheduler = make_scheduler(self.opt_g, train)
        self.critic = Critic(D, make_optimizer(D.parameters(), train, lr=st["d_lr"]),
                             weight=self.w["gan"], input_range=(-1, 1),
                             r1_gamma=float(st["r1_gamma"]), r1_every=int(st["r1_every"]), name="d")
        self.modules = [net, D]
        self.kmeans_runs = 0

    def _observe(self, cur: int):
        if cur >= self.km_until:
            return None
        vq = self.net.quantizer.vq

        def hook(z_flat: torch.Tensor) -> None:
            self.reservoir.add(z_flat, self.rng)
            if cur % self.km_every == 0 and len(self.reservoir.contents()) >= vq.num_code:
                centres = kmeans(self.reservoir.contents(), vq.num_code, self.km_iters,
                                 seed=self.kmeans_runs)
                vq.embedding.weight.data.copy_(centres.to(vq.embedding.weight))
                self.reservoir.reset()
                self.kmeans_runs += 1
        return hook

    def step(self, batch: Mapping, it: int) -> dict:
        cur = it + 1
        gt = _pm(batch["gt"])
        gan = self.w["gan"] > 0 and cur > self.gan_start
        requires_grad(self.critic.net, False)
        with autocast(self.precision, self.device):
            dec, cb_loss, _ = self.net(gt, bypass=cur < self.bypass_iters,
                                       observe=self._observe(cur))
            dec = dec.float()
            l1 = F.l1_loss(dec, gt)
            percep, _ = self.perceptual(dec, gt)
            total = self.w["l1"] * l1 + self.w["lpips"] * percep + self.w["codebook"] * cb_loss
            parts = {"l1": _f(l1), "lpips": _f(percep), "codebook": _f(cb_loss)}
            if gan:
                g = self.critic.g_loss(_01(dec), None, "nonsaturating").float()
                total = total + self.w["gan"] * g
                parts["adversarial"] = _f(g)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        self.scheduler.step()
        requires_grad(self.critic.net, True)
        if gan:
            parts.update(self.critic.d_step(batch["gt"], _01(dec.detach()), cur, "nonsaturating"))
        return {"loss": _f(total), **parts, "lr": lr_of(self.opt_g)}

    @torch.no_grad()
    def predict(self, lq: torch.Tensor):
        return _01(self.net(_pm(lq))[0]).clamp(0, 1)

    def weights(self) -> dict:
        return self.net.state_dict()

    def state(self) -> dict:
        return {"net": self.net.state_dict(), "opt_g": self.opt_g.state_dict(),
                "sched": self.scheduler.state_dict(), "d": self.critic.net.state_dict(),
                "opt_d": self.critic.opt.state_dict(), "reservoir": self.reservoir.state(),
                "rng": self.rng.get_state(), "kmeans_runs": self.kmeans_runs}

    def load_state(self, s: Mapping) -> None:
        self.net.load_state_dict(s["net"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.scheduler.load_state_dict(s["sched"])
        self.critic.net.load_state_dict(s["d"])
        self.critic.opt.load_state_dict(s["opt_d"])
        self.reservoir.load_state(s["reservoir"])
        self.rng.set_state(s["rng"])
        self.kmeans_runs = int(s["kmeans_runs"])


class RestorationStage:
    """Stage 2: VQFR from the codebook network, codebook frozen, a frozen teacher VQGAN.

    ``L1(dec)*l1 + L1(main)*l1_main + MSE(z_conv, teacher codes)*latent + (LPIPS*lpips +
    Gram*style)(dec and main)``; from ``gan_start``: ``gan_global * NS-GAN(D_g(dec)) +
    gan_local * w_ada * hinge(D_l(dec))``, the same on ``main`` from ``main_gan_start`` with its
    own two critics; ``w_ada`` = :func:`.losses.adaptive_weight` of the branch's
    reconstruction + perceptual + style loss at the branch's last layer."""

    def __init__(self, net, teacher, critics: Mapping[str, torch.nn.Module],
                 perceptual: LPIPSStyle, st: Mapping, device, precision="fp32"):
        train, loss = st["train"], st["loss"]
        self.net, self.teacher, self.perceptual = net, teacher.eval(), perceptual
        requires_grad(self.teacher, False)
        net.quantizer.vq.embedding.weight.requires_grad_(False)  # fix_keys: ['embedding']
        self.device, self.precision = device, precision
        self.w = {k: float(loss[k]) for k in ("l1", "l1_main", "latent", "lpips", "style",
                                              "gan_global", "gan_local")}
        self.gan_start, self.main_gan_start = int(st["gan_start_iter"]), int(st["main_gan_start_iter"])
        self.opt_g = make_optimizer([p for p in net.parameters() if p.requires_grad], train)
        self.scheduler = make_scheduler(self.opt_g, train)

        def opt(d):
            return make_optimizer(d.parameters(), train, lr=st["d_lr"])
        r1 = dict(r1_gamma=float(st["r1_gamma"]), r1_every=int(st["r1_every"]))
        self.critics = {
            "dec": (Critic(critics["global"], opt(critics["global"]), self.w["gan_global"],
                           (-1, 1), name="d_global", **r1),
                    HingeCritic(critics["local"], opt(critics["local"]), self.w["gan_local"],
                                (-1, 1), name="d_local")),
            "main_dec": (Critic(critics["main_global"], opt(critics["main_global"]),
                                self.w["gan_global"], (-1, 1), name="d_main_global", **r1),
                         HingeCritic(critics["main_local"], opt(critics["main_local"]),
                                     self.w["gan_local"], (-1, 1), name="d_main_local"))}
        self.modules = [net, *critics.values()]

    def _active(self, cur: int) -> dict:
        return {"dec": cur > self.gan_start, "main_dec": cur > self.main_gan_start}

    def step(self, batch: Mapping, it: int) -> dict:
        """One iteration. The loss is the authors' sum; its gradient is assembled per branch
        image (d loss / d image of the branch's reconstruction + perceptual + style terms, of
        the global and of the adaptively weighted local GAN terms) and back-propagated once
        through the network: the same gradients as one ``backward`` of the sum, with LPIPS's
        VGG differentiated once per branch instead of twice (the adaptive weight's gradients
        at the last conv follow from the image gradients, :func:`.losses.
        adaptive_weight_at_output`)."""
        cur = it + 1
        lq, gt = _pm(batch["lq"]), _pm(batch["gt"])
        active = self._active(cur)
        self.teacher.eval()
        for pair in self.critics.values():
            for c in pair:
                requires_grad(c.net, False)
        parts, total = {}, 0.0
        roots, grads = [], []
        with autocast(self.precision, self.device):
            with torch.no_grad():
                _, _, t_info = self.teacher(gt)
                t_feats = self.perceptual.features(gt)
            out = self.net(lq)
            latent = self.w["latent"] * F.mse_loss(out["z_conv"].float(),
                                                   t_info["z_quant_before_conv"].float())
            roots.append(latent)
            grads.append(None)
            total += _f(latent)
            parts["latent"] = _f(latent)
            for branch, l1w, last in (("dec", self.w["l1"], self.net.last_layer()),
                                      ("main_dec", self.w["l1_main"], self.net.main_last_layer())):
                img = out[branch].float()
                rec = l1w * F.l1_loss(img, gt)
                percep, style = self.perceptual(img, gt, t_feats)
                nll = rec + self.w["lpips"] * percep
                if style is not None:
                    nll = nll + style
                (g_img,) = torch.autograd.grad(nll, img, retain_graph=False)
                total += _f(nll)
                tag = "" if branch == "dec" else "_main"
                parts.update({f"l1{tag}": _f(rec), f"lpips{tag}": _f(percep),
                              f"style{tag}": _f(style) if style is not None else 0.0})
                if active[branch]:
                    glob, loc = self.critics[branch]
                    g_glob = glob.g_loss(_01(img), None, "nonsaturating").float()
                    g_loc = loc.g_loss(_01(img)).float()
                    (d_glob,) = torch.autograd.grad(g_glob, img)
                    (d_loc,) = torch.autograd.grad(g_loc, img)
                    w_ada = loc.weight * adaptive_weight_at_output(img, last, g_img, d_loc)
                    g_img = g_img + glob.weight * d_glob + w_ada * d_loc
                    total += glob.weight * _f(g_glob) + _f(w_ada) * _f(g_loc)
                    parts.update({f"adv_global{tag}": _f(g_glob),
                                  f"adv_local{tag}": _f(g_loc), f"w_ada{tag}": _f(w_ada)})
                roots.append(img)
                grads.append(g_img)
        self.opt_g.zero_grad(set_to_none=True)
        torch.autograd.backward(roots, grads)
        self.opt_g.step()
        self.scheduler.step()
        for pair in self.critics.values():
            for c in pair:
                requires_grad(c.net, True)
        for branch, on in active.items():
            if on:
                fake = _01(out[branch].detach().float())
                for c in self.critics[branch]:
                    loss = "hinge" if isinstance(c, HingeCritic) else "nonsaturating"
                    for k, v in c.d_step(batch["gt"], fake, cur, loss).items():
                        parts[f"{k}_{c.name}"] = v
        return {"loss": total, **parts, "lr": lr_of(self.opt_g)}

    @torch.no_grad()
    def predict(self, lq: torch.Tensor):
        return _01(self.net(_pm(lq))["main_dec"]).clamp(0, 1)

    def weights(self) -> dict:
        return self.net.state_dict()

    def state(self) -> dict:
        s = {"net": self.net.state_dict(), "opt_g": self.opt_g.state_dict(),
             "sched": self.scheduler.state_dict()}
        for pair in self.critics.values():
            for c in pair:
                s[c.name], s[f"opt_{c.name}"] = c.net.state_dict(), c.opt.state_dict()
        return s

    def load_state(self, s: Mapping) -> None:
        self.net.load_state_dict(s["net"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.scheduler.load_state_dict(s["sched"])
        for pair in self.critics.values():
            for c in pair:
                c.net.load_state_dict(s[c.name])
                c.opt.load_state_dict(s[f"opt_{c.name}"])
