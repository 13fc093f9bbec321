"""UGPNet's staged training (paper Sec. 3.4): restoration → synthesis → fusion.

- restoration: the regression network's own loss; backbone from its pretrained weights where
  given (``methods.<m>.pretrained.<task>``: an official file or a finished ugpnet-bench run),
  structure_encoder/merging_net from scratch.
- synthesis: restoration frozen; E from scratch, G and D from the StyleGAN2 prior, fine-tuned with
  L1 + LPIPS(VGG) + non-saturating adversarial; D with the logistic loss and lazy R1.
- fusion: restoration and synthesis frozen; fusion with L1 + LPIPS + contextual(x_hat, x_syn).

Checkpoints are selected on the validation split (PSNR for restoration, LPIPS for the others).
The fusion stage exports the complete UGPNet, so ``<run>/fusion/model.pt`` is the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError, ConfigError
from ..methods import METHOD_KINDS, backbone_name, check_task, method_cfg
from ..models.build import build_discriminator, build_restoration, build_synthesis, build_ugpnet
from .common import Run, load_checkpoint, lr_of, make_optimizer, make_scheduler, requires_grad
from .gan import d_step, g_adv_loss
from .kinds import _data_options, _loaders, final_weights
from .loop import run_stage
from .regression import SupervisedStage, weighted_loss

PRIOR_FORMAT = "ugpnet-bench/stylegan2-prior"


def load_prior(path: str | Path, generator, discriminator=None) -> str:
    """Load a StyleGAN2 prior: our own pretrained prior, or an official checkpoint format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"StyleGAN2 prior '{path}' not found. For the paper profile download an FFHQ 512 "
            f"StyleGAN2 (rosinality .pt, BasicSR params_ema .pth or NVIDIA stylegan2-ada .pkl) "
            f"and set stylegan2.checkpoint in params.yaml; the smoke profile pretrains one.")
    if path.suffix in (".pt", ".pth"):
        ckpt = load_checkpoint(path)
        if ckpt.get("format") == PRIOR_FORMAT:
            from ..models.keymaps import load_state_dict_strict

            load_state_dict_strict(generator, ckpt["g_ema"], f"{path} (g_ema)")
            if discriminator is not None:
                load_state_dict_strict(discriminator, ckpt["d"], f"{path} (d)")
            return PRIOR_FORMAT
    from ..models.synthesis.loading import load_stylegan2

    return load_stylegan2(path, generator, discriminator).format


def _lpips_kwargs(st: Mapping, device) -> dict:
    return {"net": st.get("lpips_net", "vgg"), "resize_px": st.get("lpips_resize_px"),
            "device": str(device)}


def _restoration_loss(stage_cfg: Mapping, backbone: str) -> dict:
    losses = stage_cfg["loss"]
    if backbone in losses:
        return losses[backbone]
    if "default" in losses:
        return losses["default"]
    raise ConfigError(f"methods.<ugpnet>.stages.restoration.loss has no entry for backbone "
                      f"'{backbone}' (nor 'default')")


def _load_weights(module: torch.nn.Module, path: Path, what: str) -> None:
    from ..models.keymaps import load_state_dict_strict

    load_state_dict_strict(module, final_weights(path), f"{path} ({what})")


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    requires_grad(module, False)
    return module.eval()


class SynthesisStage:
    def __init__(self, restoration, synthesis, discriminator, st: Mapping, train: Mapping,
                 device):
        self.restoration = _frozen(restoration)
        self.synthesis, self.D = synthesis, discriminator
        self.modules = [synthesis, discriminator]
        self.st = st
        gen_params = [p for p in synthesis.generator.parameters()]
        enc_params = [p for p in synthesis.encoder.parameters()]
        self.opt_g = make_optimizer([{"params": enc_params, "lr": train["lr"]},
                                     {"params": gen_params, "lr": st["g_lr"]}], train)
        self.opt_d = make_optimizer(discriminator.parameters(), train, lr=st["d_lr"])
        self.sched = make_scheduler(self.opt_g, train)
        weights = {k: v for k, v in st["loss"].items() if k != "adversarial"}
        self.adv_weight = float(st["loss"].get("adversarial", 0.0))
        self.loss_fn = weighted_loss(weights, device, {"lpips": _lpips_kwargs(st, device)})

    def step(self, batch, it):
        with torch.no_grad():
            x_reg = self.restoration(batch["lq"])[0]
        x_syn, _ = self.synthesis(x_reg)
        parts = {}
        if self.adv_weight > 0:
            parts.update(d_step(self.D, self.opt_d, batch["gt"], x_syn, it, self.st["r1_gamma"],
                                self.st["r1_every"]))
        requires_grad(self.D, False)
        loss, rec = self.loss_fn(x_syn, batch["gt"])
        if self.adv_weight > 0:
            adv = g_adv_loss(self.D, x_syn)
            loss = loss + self.adv_weight * adv
            rec["adversarial"] = float(adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.sched.step()
        requires_grad(self.D, True)
        return {"loss": float(loss.detach()), **rec, **parts, "lr": lr_of(self.opt_g)}

    @torch.no_grad()
    def predict(self, lq):
        return self.synthesis(self.restoration(lq)[0])[0]

    def weights(self):
        return self.synthesis.state_dict()

    def state(self):
        return {"synthesis": self.synthesis.state_dict(), "d": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched": self.sched.state_dict()}

    def load_state(self, s):
        self.synthesis.load_state_dict(s["synthesis"])
        self.D.load_state_dict(s["d"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.sched.load_state_dict(s["sched"])


class FusionStage(SupervisedStage):
    def __init__(self, model, st: Mapping, train: Mapping, device):
        _frozen(model.restoration)
        _frozen(model.synthesis)
        self.ugpnet = model
        ctx = dict(st.get("contextual", {}))
        super().__init__(model.fusion, None, model.fusion.parameters(), st["loss"], train, device,
                         loss_kwargs={"lpips": _lpips_kwargs(st, device), "contextual": ctx})
        self.modules = [model.fusion]

    def step(self, batch, it):
        with torch.no_grad():
            x_reg, f_reg = self.ugpnet.restoration(batch["lq"])
            x_syn, f_syn = self.ugpnet.synthesis(x_reg)
        x_hat = self.ugpnet.fusion(f_syn, f_reg)
        return self.optimise(*self.loss_fn(x_hat, batch["gt"], contextual=x_syn))

    @torch.no_grad()
    def predict(self, lq):
        return self.ugpnet.forward_all(lq)

    def weights(self):
        return self.ugpnet.state_dict()

    def feature_source(self) -> str | None:
        for name, _, loss in self.loss_fn.terms:
            if name == "contextual":
                return getattr(loss, "feature_source", None)
        return None


@METHOD_KINDS.register("ugpnet")
class UGPNetKind:
    STAGES = ("restoration", "synthesis", "fusion")

    @staticmethod
    def train(cfg: Mapping, method: str, task: str, stage: str, data: Path, out: Path, device,
              progress: bool = True, runs: Path | None = None, prior: str | None = None,
              **_) -> dict:
        check_task(cfg, method, task)
        m = method_cfg(cfg, method)
        st = m["stages"][stage]
        train = st["train"]
        runs = Path(runs) if runs else out.parents[2]
        base = runs / method / task
        bname = backbone_name(cfg, method, task)
        train_loader, val_loader = _loaders(cfg, m, task, data, train)
        options = {"method": method, "kind": "ugpnet", "stage": stage, "backbone": bname,
                   "backbone_kwargs": cfg["backbones"][bname][task], "stage_options": st,
                   "stylegan2": cfg["stylegan2"], "fusion": m["fusion"],
                   **_data_options(cfg, data, task)}
        if stage == "restoration":
            restoration = build_restoration(cfg, method, task)
            pretrained = (m.get("pretrained") or {}).get(task)
            if pretrained:
                _load_pretrained_backbone(Path(pretrained), restoration.backbone)
            options["pretrained"] = pretrained
            restoration.to(device)
            loss = _restoration_loss(st, bname)
            options["loss"] = loss
            s = SupervisedStage(restoration, lambda x: restoration(x)[0],
                                restoration.parameters(), loss, train, device)
            run = Run(out, options, select_metric="psnr")
            return run_stage(s, run=run, train=train, train_loader=train_loader,
                             val_loader=val_loader, device=device, progress=progress)
        restoration = build_restoration(cfg, method, task)
        _load_weights(restoration, base / "restoration", "restoration")
        if stage == "synthesis":
            sg = cfg["stylegan2"]
            prior = prior or sg["checkpoint"] or str(runs / "prior" / "model.pt")
            synthesis = build_synthesis(sg, m.get("randomize_noise", False))
            D = build_discriminator(sg)
            options["prior"] = {"path": str(prior), "format": load_prior(prior, synthesis.generator, D)}
            s = SynthesisStage(restoration.to(device), synthesis.to(device), D.to(device), st,
                               train, device)
            run = Run(out, options, select_metric="lpips")
            return run_stage(s, run=run, train=train, train_loader=train_loader,
                             val_loader=val_loader, device=device, progress=progress)
        if stage == "fusion":
            model = build_ugpnet(cfg, method, task)
            model.restoration.load_state_dict(restoration.state_dict())
            _load_weights(model.synthesis, base / "synthesis", "synthesis")
            model.to(device)
            s = FusionStage(model, st, train, device)
            options["contextual_features"] = s.feature_source()
            run = Run(out, options, select_metric="lpips")
            return run_stage(s, run=run, train=train, train_loader=train_loader,
                             val_loader=val_loader, device=device, progress=progress,
                             extra_summary={"contextual_features": s.feature_source()})
        raise ConfigError(f"unknown UGPNet stage '{stage}'")

    @staticmethod
    def load(cfg: Mapping, method: str, task: str, checkpoint: Path, device):
        model = build_ugpnet(cfg, method, task)
        path = Path(checkpoint)
        if path.is_dir() and (path / "fusion" / "model.pt").exists():
            path = path / "fusion"
        if path.is_file() and path.suffix != ".pt":
            raise CheckpointError(f"'{path}' is not a ugpnet-bench checkpoint")
        try:
            weights = final_weights(path)
        except CheckpointError:
            from ..models.keymaps import load_official_ugpnet

            load_official_ugpnet(path, model)  # official resmodule/synmodule/fusmodule folder
            return model.to(device).eval()
        from ..models.keymaps import load_state_dict_strict

        load_state_dict_strict(model, weights, str(path))
        return model.to(device).eval()


def _load_pretrained_backbone(path: Path, backbone: torch.nn.Module) -> None:
    """An official file (params/params_ema, key-mapped) or a finished ugpnet-bench run."""
    if path.is_dir() or (path.suffix == ".pt" and "summary" in load_checkpoint(path)):
        _load_weights(backbone, path if path.is_dir() else path, "pretrained backbone")
        return
    from ..models.keymaps import load_pretrained_backbone

    load_pretrained_backbone(path, backbone)
