"""Kind ``regression``: one backbone trained with its own loss (NAFNet: PSNR loss, RRDBNet: L1).

One stage, ``train``, that reads the data and optionally official weights to start from
(``methods.<m>.pretrained.<task>``); selected on val PSNR.
"""
from __future__ import annotations

from pathlib import Path
from ..errors import ConfigError
from ..models.build import build_backbone
from ..training.common import count_params
from .common import (bench_precision, data_options, final_weights, loaders, new_run,
                     random_batch)
from .contract import Data, MethodKind, Stage, StageContext, UserFile
from .registry import register_kind

SCHEMA = Path(__file__).with_name("schemas") / "regression.yaml"


@register_kind("regression")
class RegressionKind(MethodKind):
    family = "regression"
    outputs = ("x_hat",)
    schema = SCHEMA

    def stages(self, mcfg, task):
        return (Stage("train", reads=(Data(), UserFile("pretrained")), select="psnr"),)

    def stage_config(self, cfg, method, task, stage):
        m = cfg["methods"][method]
        return {"method": m, "backbone": cfg["backbones"].get(m["backbone"], {}).get(task),
                "degradations": cfg["degradations"][task], "data": cfg["data"]}

    def build(self, cfg, method, task):
        return build_backbone(cfg, cfg["methods"][method]["backbone"], task)

    def train_stage(self, ctx: StageContext) -> dict:
        from ..models.keymaps import load_pretrained_backbone
        from ..training.loop import run_stage
        from ..training.regression import SupervisedStage

        m, task = ctx.mcfg, ctx.task
        net = self.build(ctx.cfg, ctx.method, task)
        pretrained = ctx.optional_input("pretrained")
        if pretrained:
            load_pretrained_backbone(pretrained, net)
        net.to(ctx.device)
        train = m["train"]
        train_loader, val_loader = loaders(ctx, train, self.input_mode(m, task))
        run = new_run(ctx, {"backbone": m["backbone"],
                            "backbone_kwargs": ctx.cfg["backbones"][m["backbone"]][task],
                            "pretrained": None if pretrained is None else str(pretrained),
                            "loss": m["loss"], "train": train,
                            "input": self.input_mode(m, task), **data_options(ctx)})
        stage = SupervisedStage(net, net, net.parameters(), m["loss"], train, ctx.device,
                                precision=ctx.precision)
        return run_stage(stage, run=run, train=train, train_loader=train_loader,
                         val_loader=val_loader, device=ctx.device, progress=ctx.progress)

    def benchmark_stage(self, cfg, method, task, stage, device):
        from ..training.regression import SupervisedStage

        m = cfg["methods"][method]
        net = self.build(cfg, method, task).to(device).train()
        train = m["train"]
        batch = random_batch(cfg, self, m, task, 1, device)
        return SupervisedStage(net, net, net.parameters(), m["loss"], train, device,
                               precision=bench_precision(cfg, device)), batch, None

    def load(self, cfg, method, task, checkpoint, device, extra=None):
        from ..checkpoints import load_state_dict_strict

        if extra:
            raise ConfigError(f"--weights {sorted(extra)}: a regression method loads one file")

        net = self.build(cfg, method, task)
        load_state_dict_strict(net, final_weights(checkpoint), str(checkpoint))
        return net.to(device).eval()

    def parameter_breakdown(self, model) -> dict[str, int]:
        return {type(model).__name__: count_params(model)}
