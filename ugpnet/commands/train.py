"""ugpnet train: train a method for a task (all its stages in order, or one)."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_threads_option

HELP = "train a method for a task (its stages in order, finished ones kept; resumes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="a method defined in params.yaml")
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr", "shared"],
                   help="the task; 'shared': the method's stages trained once for every task")
    p.add_argument("--stage", default=None,
                   help="one stage only (the method's kind lists its stages; default: all)")
    p.add_argument("--data", default=None, help="prepared data folder (default: paths.data)")
    p.add_argument("--runs", default=None,
                   help="runs folder; a stage trains in RUNS/<method>/<task>/<stage> "
                        "(a shared stage in RUNS/<method>/shared/<stage>; default: paths.runs)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="replace one of the files a stage reads (NAME as the stage declares it); repeatable")
    p.add_argument("--restart", action="store_true",
                   help="start the stage(s) afresh: earlier state is moved to "
                        "superseded-<hash>/ inside the run folder, never deleted")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _overrides(items) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--input expects NAME=PATH, got '{item}'")
        out[name] = path
    return out


def run(args) -> int:
    from ..config import load_config
    from ..plan import Plan
    from ..training import distributed
    from ..training.common import configure_backends, resolve_device, set_threads

    cfg = load_config(args)
    plan = Plan.of(cfg, data=args.data, runs=args.runs)
    stages = ([plan.stage(args.method, args.task, args.stage)] if args.stage
              else plan.stages(args.method, args.task))
    if not stages and args.task == "shared":
        from ..errors import ConfigError

        raise ConfigError(f"method '{args.method}' has no shared stage (one trained once for "
                          f"every task): train it per task, --task denoise|deblur|sr")
    overrides = _overrides(args.input)
    set_threads(args.threads)
    # under torchrun: join the process group (NCCL on CUDA, gloo on CPU), one device per rank
    device = resolve_device(distributed.setup(cfg["device"]))
    backends = configure_backends(cfg.get("cuda"), device)  # TF32, cuDNN: the GPU policy
    try:
        return _train(args, cfg, plan, stages, overrides, device, backends)
    finally:
        distributed.teardown()


def _train(args, cfg, plan, stages, overrides, device, backends) -> int:
    from ..provenance import digest_of
    from ..training import distributed
    from ..training.common import seed_everything
    from ..training.run import finished_model

    say = print if distributed.is_main() else (lambda *a, **k: None)
    kind = plan.kind(args.method)
    for stage in stages:
        out = Path(plan.stage_dir(args.method, args.task, stage.name))
        read = plan.stage_inputs(args.method, args.task, stage.name)
        ctx = plan.context(args.method, args.task, stage.name, device=device,
                           progress=not args.no_progress,
                           overrides={k: v for k, v in overrides.items()
                                      if k in read or args.stage},
                           restart=args.restart)
        if backends:  # recorded with the run (options.json operational), never hashed
            ctx.operational["cuda"] = backends
        finished = finished_model(out / "model.pt", digest_of(ctx.identity))
        if not args.restart and finished is not None:
            say(f"{out}: already finished with this identity (model.pt)")
            continue
        seed_everything(cfg["data"]["seed"])
        summary = kind.train_stage(ctx)
        metric = summary["select_metric"]
        how = ("the final iteration" if metric == "final"
               else f"{metric} = {summary['val'][metric]:.4f}")
        say(f"{out}: selected iteration {summary['selected_iter']} on the val split ({how})")
    return 0
