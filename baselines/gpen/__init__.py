"""Kind ``gpen``: GPEN BFR-512 (Yang et al., CVPR 2021), as UGPNet's Table 1 ran it.

One stage per task, ``train``: the official simplified recipe (yangxy/GPEN ``train_simple.py``,
see RECIPE.md and :mod:`.train`) on the shared adversarial stage, fine-tuning the official
``GPEN-BFR-512.pth`` / ``-D.pth`` when given (``methods.<m>.pretrained`` / ``pretrained_d``: the
paper's protocol), else from scratch (recorded, and listed in :meth:`GPENKind.deviations`). The
ArcFace identity term reads the user's ``model_ir_se50.pth`` (``methods.<m>.arcface``); with
weight > 0 and no file the plan is refused (set ``loss.id: 0`` to leave it out, recorded).
Network: :mod:`.arch` (FullGenerator, 71.01 M at 512), official names: :mod:`.keymap`.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import (Data, MethodKind, Stage, StageContext, UserFile, data_options,
                            final_weights, loaders, new_run, register_kind)
from ugpnet.training import count_params, make_scheduler, run_stage

from .arch import GPEN, build_discriminator, build_gpen

PAPER_ARCHITECTURE = {"style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "narrow": 1.0,
                      "lr_mlp": 0.01}
PRETRAINED_HINT = ("the official GPEN-BFR-512.pth (flat generator; yangxy/GPEN README, "
                   "'GPEN-BFR-512' under Download models), the model UGPNet fine-tuned")
PRETRAINED_D_HINT = "the official GPEN-BFR-512-D.pth (its discriminator, same place)"
ARCFACE_HINT = ("ArcFace IR-SE50 model_ir_se50.pth (TreB1eN/InsightFace_Pytorch; GPEN's "
                "train_simple.py reads it from weights/), for GPEN's identity loss")

_NUM = {"type": "number", "minimum": 0}
_PATH = {"type": ["string", "null"]}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "sr_input", "architecture", "pretrained", "pretrained_d",
                 "arcface", "loss", "r1", "path_length", "ema_half_life_iters", "select",
                 "train"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": ["denoise", "deblur", "sr"]}},
        "sr_input": {"enum": ["bicubic_up"]},
        "architecture": {
            "type": "object", "additionalProperties": False,
            "required": list(PAPER_ARCHITECTURE),
            "properties": {"style_dim": {"$ref": "#/$defs/posint"},
                           "n_mlp": {"$ref": "#/$defs/posint"},
                           "channel_multiplier": {"type": "number", "exclusiveMinimum": 0},
                           "narrow": {"type": "number", "exclusiveMinimum": 0},
                           "lr_mlp": {"type": "number", "exclusiveMinimum": 0}}},
        "pretrained": _PATH,
        "pretrained_d": _PATH,
        "arcface": _PATH,
        "loss": {"type": "object", "additionalProperties": False,
                 "required": ["adversarial", "smooth_l1", "id"],
                 "properties": {"adversarial": _NUM, "smooth_l1": _NUM, "id": _NUM}},
        "r1": {"type": "object", "additionalProperties": False, "required": ["gamma", "every"],
               "properties": {"gamma": _NUM, "every": {"$ref": "#/$defs/posint"}}},
        "path_length": {"type": "object", "additionalProperties": False,
                        "required": ["weight", "every", "decay"],
                        "properties": {"weight": _NUM, "every": {"$ref": "#/$defs/posint"},
                                       "decay": _NUM}},
        "ema_half_life_iters": {"type": "number", "exclusiveMinimum": 0},
        "select": {"enum": ["final", "psnr", "ssim", "lpips"]},
        "train": {"$ref": "#/$defs/train"},
    },
}


def terms(m) -> dict:
    """The loss terms and regularisers a run of entry ``m`` uses (weights; 0: off)."""
    return {"adversarial": m["loss"]["adversarial"], "smooth_l1": m["loss"]["smooth_l1"],
            "id_arcface_irse50": m["loss"]["id"], "r1": m["r1"]["gamma"],
            "path_length": m["path_length"]["weight"]}


@register_kind("gpen")
class GPENKind(MethodKind):
    family = "generative"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        reads = (Data(),
                 UserFile("pretrained", per_task=False, hint=PRETRAINED_HINT),
                 UserFile("pretrained_d", per_task=False, hint=PRETRAINED_D_HINT),
                 UserFile("arcface", per_task=False, hint=ARCFACE_HINT))
        return (Stage("train", reads=reads, select=mcfg.get("select", "final")),)

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        w = m["loss"]["id"]
        if w > 0 and "arcface" not in inputs:
            raise ConfigError(
                f"methods.{method}.loss.id = {w}, but methods.{method}.arcface is null: GPEN's "
                f"identity loss needs the {ARCFACE_HINT}. Set methods.{method}.arcface: "
                f"/path/to/model_ir_se50.pth, or leave the term out explicitly with "
                f"methods.{method}.loss.id: 0 (recorded as a deviation).")
        given = [k for k in ("pretrained", "pretrained_d") if k in inputs]
        if given and (cfg["data"]["resolution"] != 512
                      or dict(m["architecture"]) != PAPER_ARCHITECTURE):
            raise ConfigError(
                f"methods.{method}.{given[0]} is an official GPEN-BFR-512 file, but this run's "
                f"GPEN is not the 512-px paper network (resolution {cfg['data']['resolution']}, "
                f"architecture {dict(m['architecture'])}): set methods.{method}.{given[0]}: null "
                f"(from scratch) or use the paper profile")

    def deviations(self, cfg, method, task):
        m = cfg["methods"][method]
        out = []
        if m.get("pretrained") is None:
            out.append("from scratch (no GPEN-BFR-512 given)")
        elif m.get("pretrained_d") is None:
            out.append("D from scratch (no GPEN-BFR-512-D given)")
        if m["loss"]["id"] == 0:
            out.append("no ID loss (no IR-SE50 ArcFace)")
        if m["path_length"]["weight"] == 0:
            out.append("no path-length regularisation")
        return out

    def build(self, cfg, method, task) -> GPEN:
        return build_gpen(cfg["methods"][method]["architecture"], cfg["data"]["resolution"])

    def make_stage(self, m, net, D, device, precision, id_net=None):
        """The stage object of entry ``m`` (weights already loaded), see :mod:`.train`."""
        from .irse import IDLoss
        from ugpnet.training import reg_scaled_optimizer

        from .train import GPENCritic, GPENStage, gpen_recon

        train = m["train"]
        betas = train.get("betas", [0.9, 0.999])  # the schema default; params.yaml: [0, 0.99]
        path, r1 = m["path_length"], m["r1"]
        opt_g = reg_scaled_optimizer(net.parameters(), train["lr"], betas, path["every"])
        opt_d = reg_scaled_optimizer(D.parameters(), train["lr"], betas, r1["every"])
        critic = GPENCritic(D, opt_d, weight=1.0, input_range=(-1.0, 1.0), r1_gamma=r1["gamma"],
                            r1_every=r1["every"], name="d")
        id_loss = IDLoss(id_net).to(device) if id_net is not None else None
        return GPENStage(net, opt_g, [critic],
                         forward=lambda batch, it: (net.restore(batch["lq"]), batch["gt"]),
                         recon=gpen_recon(m["loss"], id_loss),
                         adv_weight=m["loss"]["adversarial"], loss="nonsaturating",
                         order="d_first", scheduler=make_scheduler(opt_g, train),
                         ema_beta=0.5 ** (1.0 / m["ema_half_life_iters"]),
                         frozen=[id_loss] if id_loss is not None else [],
                         predict=lambda g, lq: g.restore(lq), precision=precision,
                         device=device, name="g", path_weight=path["weight"],
                         path_every=path["every"], path_decay=path["decay"])

    def train_stage(self, ctx: StageContext) -> dict:
        from .irse import IRSE50
        from .keymap import load_gpen_discriminator, load_gpen_generator, load_irse50

        m, size = ctx.mcfg, ctx.cfg["data"]["resolution"]
        net, D = self.build(ctx.cfg, ctx.method, ctx.task), build_discriminator(
            m["architecture"], size)
        pretrained, pretrained_d = ctx.optional_input("pretrained"), ctx.optional_input(
            "pretrained_d")
        if pretrained:
            load_gpen_generator(pretrained, net)  # into G and (copied next) its EMA
        if pretrained_d:
            load_gpen_discriminator(pretrained_d, D)
        id_net = None
        if m["loss"]["id"] > 0:
            id_net = IRSE50()
            load_irse50(ctx.input("arcface"), id_net)
            id_net.to(ctx.device)
        net.to(ctx.device)
        D.to(ctx.device)
        stage = self.make_stage(m, net, D, ctx.device, ctx.precision, id_net)
        train = m["train"]
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, ctx.task))
        run = new_run(ctx, {
            "architecture": m["architecture"], "terms": terms(m),
            "init": (f"GPEN-BFR-512: {pretrained}" if pretrained else "from scratch"),
            "init_d": str(pretrained_d) if pretrained_d else "from scratch",
            "arcface": str(ctx.optional_input("arcface") or "") or None,
            "deviations": self.deviations(ctx.cfg, ctx.method, ctx.task),
            "ema_half_life_iters": m["ema_half_life_iters"], "train": train,
            "input": self.input_mode(m, ctx.task), "value_range": "[-1, 1] inside",
            **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def benchmark_stage(self, cfg, method, task, stage, device):
        from ugpnet.methods import bench_precision, random_batch

        from .irse import IRSE50

        m = cfg["methods"][method]
        size = cfg["data"]["resolution"]
        net = self.build(cfg, method, task).to(device)
        D = build_discriminator(m["architecture"], size).to(device)
        id_net = IRSE50().to(device) if m["loss"]["id"] > 0 else None
        st = self.make_stage(m, net, D, device, bench_precision(cfg, device), id_net)
        note = "ArcFace with random weights (timing only)" if id_net is not None else None
        return st, random_batch(cfg, self, m, task, 1, device), note

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``, or the official ``GPEN-BFR-512.pth`` itself."""
        from .keymap import load_gpen_generator

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a GPEN model is one file (model.pt or "
                              f"GPEN-BFR-512.pth)")
        net = self.build(cfg, method, task)
        path = Path(checkpoint)
        if path.is_file() and path.suffix == ".pth":
            load_gpen_generator(path, net)
        elif path.is_dir() or path.suffix == ".pt":
            load_state_dict_strict(net, final_weights(path), str(path))
        else:
            raise CheckpointError(f"'{path}' is neither a ugpnet-bench model.pt nor an official "
                                  f"GPEN-BFR-512.pth")
        return net.to(device).eval()

    def predict(self, model, x):
        return {"x_hat": model.restore(x)}

    def parameter_breakdown(self, model) -> dict[str, int]:
        return {"encoder": count_params(model.encoder),
                "final_linear": count_params(model.final_linear),
                "generator": count_params(model.generator)}
