"""Kind ``uformer``: Uformer-B (Wang et al., CVPR 2022), a regression baseline of UGPNet's
Table 1 (a, b) and Table 2 (50.9 M).

One stage per task, ``train``, from scratch with the authors' recipe (ZhendongWang6/Uformer
@ 65fc970 ``train/train_denoise.py``, ``train/train_motiondeblur.py``; RECIPE.md, :mod:`.train`):
Charbonnier (eps 1e-3), AdamW 2e-4 / wd 0.02, 3 warm-up epochs then cosine to 1e-6, dihedral
augmentation, MixUp for denoising from epoch 6; the raw model (no EMA) selected on val PSNR.
Images stay in [0, 1], as the authors'. Network: :mod:`.arch` (Uformer-B, 50.88 M); the
official checkpoint (``{epoch, state_dict, optimizer}``, ``module.`` keys): :mod:`.keymap`.

The network is built for the task's training crop (``img_size`` = ``train.<task>.crop_size``, or
the data resolution when whole images are used): it decides which levels shift their windows, as
the official ``img_size=opt.train_ps``.
"""
from __future__ import annotations

from pathlib import Path

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import (Data, MethodKind, Stage, StageContext, data_options, final_weights,
                            loaders, new_run, register_kind)
from ugpnet.training import count_params, run_stage

from .arch import UFORMER_B, Uformer, build_uformer, required_multiple

TASKS = ("denoise", "deblur")
_PATH_PER_TASK = {"type": "object", "additionalProperties": False,
                  "properties": {t: {"type": ["string", "null"]} for t in TASKS}}
_INT_PER_TASK = {"type": "object", "additionalProperties": False, "required": list(TASKS),
                 "properties": {t: {"$ref": "#/$defs/posint"} for t in TASKS}}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "tasks", "architecture", "loss", "augment", "mixup", "schedule",
                 "select", "train"],
    "properties": {
        "kind": True,
        "tasks": {"items": {"enum": list(TASKS)}},
        "architecture": {
            "type": "object", "additionalProperties": False, "required": list(UFORMER_B),
            "properties": {
                "embed_dim": {"$ref": "#/$defs/posint"},
                "win_size": {"type": "integer", "minimum": 2},
                "depths": {"type": "array", "items": {"$ref": "#/$defs/posint"},
                           "minItems": 9, "maxItems": 9},
                "num_heads": {"type": "array", "items": {"$ref": "#/$defs/posint"},
                              "minItems": 9, "maxItems": 9},
                "mlp_ratio": {"type": "number", "exclusiveMinimum": 0},
                "token_projection": {"enum": ["linear"]},
                "token_mlp": {"enum": ["leff"]},
                "modulator": {"type": "boolean"},
                "dd_in": {"enum": [3]},
                "drop_path_rate": {"type": "number", "minimum": 0, "maximum": 1}}},
        "loss": {"type": "object", "additionalProperties": False, "required": ["charbonnier_eps"],
                 "properties": {"charbonnier_eps": {"type": "number", "exclusiveMinimum": 0}}},
        "augment": {"enum": ["dihedral", "none"]},
        "mixup": {"type": "object", "additionalProperties": False,
                  "required": ["alpha", "from_iter"],
                  "properties": {
                      "alpha": {"type": "number", "exclusiveMinimum": 0},
                      "from_iter": {"type": "object", "additionalProperties": False,
                                    "required": list(TASKS),
                                    "properties": {t: {"type": ["integer", "null"], "minimum": 0}
                                                   for t in TASKS}}}},
        "schedule": {"type": "object", "additionalProperties": False,
                     "required": ["warmup_iters", "lr_step_iters", "eta_min"],
                     "properties": {"warmup_iters": _INT_PER_TASK,
                                    "lr_step_iters": _INT_PER_TASK,
                                    "eta_min": {"type": "number", "minimum": 0}}},
        "select": {"enum": ["psnr", "ssim", "lpips", "final"]},
        "train": {"type": "object", "additionalProperties": False, "required": list(TASKS),
                  "properties": {t: {"$ref": "#/$defs/train"} for t in TASKS}},
    },
}


def img_size(cfg, method: str, task: str) -> int:
    """The training patch size the network is built for (official ``img_size=opt.train_ps``)."""
    crop = cfg["methods"][method]["train"][task].get("crop_size")
    return int(crop) if crop else int(cfg["data"]["resolution"])


@register_kind("uformer")
class UformerKind(MethodKind):
    family = "regression"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("train", reads=(Data(),), select=mcfg.get("select", "psnr")),)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"method": {"kind": m["kind"], "architecture": m["architecture"],
                           "loss": m["loss"], "augment": m["augment"],
                           "mixup": {"alpha": m["mixup"]["alpha"],
                                     "from_iter": m["mixup"]["from_iter"][task]},
                           "schedule": {"warmup_iters": m["schedule"]["warmup_iters"][task],
                                        "lr_step_iters": m["schedule"]["lr_step_iters"][task],
                                        "eta_min": m["schedule"]["eta_min"]},
                           "select": m["select"], "train": m["train"][task]},
                "data": cfg["data"], "degradations": cfg["degradations"][task]}

    def check_stage(self, cfg, method, task, stage, inputs):
        m = cfg["methods"][method]
        a, size = m["architecture"], cfg["data"]["resolution"]
        ps = img_size(cfg, method, task)
        where = f"methods.{method}.train.{task}.crop_size" if m["train"][task].get("crop_size") \
            else "data.resolution"
        try:
            mult = required_multiple(a["win_size"], ps)
            dims = [a["embed_dim"] * f for f in (1, 2, 4, 8, 16, 16, 8, 4, 2)]
            bad = [(d, h) for d, h in zip(dims, a["num_heads"]) if d % h]
            if bad:
                raise ValueError(f"level widths {[d for d, _ in bad]} are not divisible by their "
                                 f"head counts {[h for _, h in bad]}")
            if a["modulator"] and ps // 8 < a["win_size"]:
                raise ValueError(f"the first decoder level ({ps // 8} px at img_size {ps}) is "
                                 f"smaller than win_size {a['win_size']}, so its modulator "
                                 f"cannot be added (the official forward fails too)")
        except ValueError as e:
            raise ConfigError(f"methods.{method}.architecture at img_size {ps} ({where}): {e}")
        for name, side in ((where, ps), ("data.resolution", size)):
            if side % mult:
                raise ConfigError(
                    f"{name} = {side}: Uformer (win_size {a['win_size']}, built for {ps} px) "
                    f"needs sides divisible by {mult} (each of its 5 levels must tile into its "
                    f"windows; 128 at win 8, e.g. 512). Change {name} or "
                    f"methods.{method}.architecture.win_size")
        if "lr_schedule" in m["train"][task]:
            raise ConfigError(f"methods.{method}.train.{task}.lr_schedule is not used by Uformer: "
                              f"its learning rate follows methods.{method}.schedule (the "
                              f"authors' warm-up + cosine); remove the key")
        sch = m["schedule"]
        if sch["warmup_iters"][task] % sch["lr_step_iters"][task]:
            raise ConfigError(f"methods.{method}.schedule.warmup_iters.{task} must be a whole "
                              f"number of lr_step_iters.{task} (epochs of the official schedule)")

    def deviations(self, cfg, method, task):
        m = cfg["methods"][method]
        out = []
        if m["augment"] == "none":
            out.append("no dihedral augmentation")
        if task == "denoise" and m["mixup"]["from_iter"]["denoise"] is None:
            out.append("no MixUp")
        if task == "deblur" and m["mixup"]["from_iter"]["deblur"] is not None:
            out.append("MixUp (authors: denoising only)")
        return out

    def build(self, cfg, method, task) -> Uformer:
        return build_uformer(cfg["methods"][method]["architecture"], img_size(cfg, method, task))

    def make_stage(self, m, task, net, device, precision):
        from .train import UformerStage

        return UformerStage(
            net, m["train"][task],
            {"warmup_iters": m["schedule"]["warmup_iters"][task],
             "lr_step_iters": m["schedule"]["lr_step_iters"][task],
             "eta_min": m["schedule"]["eta_min"]},
            device, eps=m["loss"]["charbonnier_eps"], augment=m["augment"],
            mixup_from_iter=m["mixup"]["from_iter"][task], mixup_alpha=m["mixup"]["alpha"],
            precision=precision)

    def train_stage(self, ctx: StageContext) -> dict:
        m, task = ctx.mcfg, ctx.task
        net = self.build(ctx.cfg, ctx.method, task).to(ctx.device)
        train = m["train"][task]
        stage = self.make_stage(m, task, net, ctx.device, ctx.precision)
        train_loader, val_loader = loaders(ctx, train, "lq")
        run = new_run(ctx, {
            "architecture": m["architecture"], "img_size": net.img_size,
            "loss": {"charbonnier": 1.0, "eps": m["loss"]["charbonnier_eps"]},
            "augment": m["augment"], "mixup_from_iter": m["mixup"]["from_iter"][task],
            "schedule": {"warmup_iters": m["schedule"]["warmup_iters"][task],
                         "lr_step_iters": m["schedule"]["lr_step_iters"][task],
                         "eta_min": m["schedule"]["eta_min"]},
            "train": train, "init": "from scratch",
            "deviations": self.deviations(ctx.cfg, ctx.method, task),
            "value_range": "[0, 1]", **data_options(ctx)})
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def benchmark_stage(self, cfg, method, task, stage, device):
        import torch

        from ugpnet.methods import bench_precision

        m = cfg["methods"][method]
        net = self.build(cfg, method, task).to(device).train()
        st = self.make_stage(m, task, net, device, bench_precision(cfg, device))
        t, side = m["train"][task], img_size(cfg, method, task)
        batch = {k: torch.rand(t["batch_size"], 3, side, side, device=device)
                 for k in ("lq", "gt")}
        return st, batch, f"the authors' batch: {t['batch_size']} crops of {side} px"

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        """A finished run's ``model.pt``, or an official Uformer checkpoint (``.pth``)."""
        from .keymap import load_uformer

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a Uformer model is one file "
                              f"(model.pt or the official .pth)")
        net = self.build(cfg, method, task)
        path = Path(checkpoint)
        if path.is_file() and path.suffix == ".pth":
            load_uformer(path, net)
        elif path.is_dir() or path.suffix == ".pt":
            load_state_dict_strict(net, final_weights(path), str(path))
        else:
            raise CheckpointError(f"'{path}' is neither a ugpnet-bench model.pt nor an official "
                                  f"Uformer .pth checkpoint")
        return net.to(device).eval()

    def predict(self, model, x):
        return {"x_hat": model(x).clamp(0, 1)}  # the authors' test scripts clamp to [0, 1]

    def parameter_breakdown(self, model) -> dict[str, int]:
        parts = {"input_proj": model.input_proj}
        for k in range(4):
            parts[f"encoder_{k}"] = [getattr(model, f"encoderlayer_{k}"),
                                     getattr(model, f"downsample_{k}")]
        parts["bottleneck"] = model.bottleneck
        for k in range(4):
            parts[f"decoder_{k}"] = [getattr(model, f"upsample_{k}"),
                                     getattr(model, f"decoderlayer_{k}")]
        parts["output_proj"] = model.output_proj
        return {name: sum(count_params(x) for x in (mods if isinstance(mods, list) else [mods]))
                for name, mods in parts.items()}
