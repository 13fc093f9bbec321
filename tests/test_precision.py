"""train_precision: fp32 | bf16 | auto (mixed-precision training), and what it leaves alone."""
import json
from pathlib import Path

import pytest
import torch

from ugpnet.config import load_config
from ugpnet.errors import ConfigError
from ugpnet.losses.contextual import contextual_similarity
from ugpnet.methods import kind_of
from ugpnet.plan import Plan
from ugpnet.training import common
from ugpnet.training.common import resolve_precision, seed_everything
from ugpnet.training.regression import SupervisedStage
from workspace import make_tiny_data


def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert isinstance(common.native_bf16("cpu"), bool)
    monkeypatch.setattr(common, "native_bf16", lambda device: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(common, "native_bf16", lambda device: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="train_precision"):
        resolve_precision("fp16", "cpu")


def test_params_refuse_an_unknown_precision():
    with pytest.raises(ConfigError, match="train_precision"):
        load_config(profile="tiny", sets=["train_precision=half"])


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 3, 3, padding=1))


def _step(precision):
    net = _net()
    seen = []
    net[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    stage = SupervisedStage(net, net, net.parameters(), {"l1": 1.0},
                            {"total_iters": 1, "lr": 1e-3}, "cpu", precision=precision)
    g = torch.Generator().manual_seed(1)
    batch = {"lq": torch.rand(2, 3, 16, 16, generator=g), "gt": torch.rand(2, 3, 16, 16, generator=g)}
    parts = stage.step(batch, 0)
    return net, seen, parts


def test_bf16_step_runs_the_forward_in_bf16_and_keeps_fp32_weights():
    net32, seen32, parts32 = _step("fp32")
    net16, seen16, parts16 = _step("bf16")
    assert seen32 == [torch.float32] and seen16 == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in net16.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in net16.parameters())
    # same loss up to bf16 rounding (8-bit mantissa: ~0.4% per op), not a different loss
    assert parts16["l1"] == pytest.approx(parts32["l1"], rel=2e-2)
    assert parts16["l1"] != parts32["l1"]


def test_contextual_similarity_stays_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 16, 6, 6, generator=g), torch.rand(2, 16, 6, 6, generator=g)
    ref = contextual_similarity(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contextual_similarity(x, y)
        from_bf16 = contextual_similarity(x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert from_bf16.dtype == torch.float32


def test_fp32_stage_config_is_unchanged_and_auto_enters_it(tmp_path):
    fp32 = Plan.of(load_config(profile="tiny"), runs=str(tmp_path))
    assert "train_precision" not in fp32.stage_config("nafnet", "deblur", "train")
    auto = Plan.of(load_config(profile="tiny", sets=["train_precision=auto"]), runs=str(tmp_path))
    assert auto.stage_config("nafnet", "deblur", "train")["train_precision"] == "auto"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(data)), tasks=("denoise",))
    return data


# ~3 minutes on a CPU without native bf16 (emulated); the bf16 step, the fp32 weights and the
# fp32 contextual similarity are checked above in seconds: make test-all runs this one
@pytest.mark.slow
def test_ugpnet_stages_train_in_bf16(tiny_data, tmp_path):
    """Every UGPNet stage trains under bf16 autocast: losses fall, the run's identity says bf16,
    and the exported weights are fp32 (restoring and evaluation stay fp32)."""
    from ugpnet.methods import final_weights
    from ugpnet.training.prior import pretrain_prior

    sets = ["train_precision=bf16", "methods.ugpnet.init_from.denoise=null",
            "methods.ugpnet.stages.synthesis.loss.adversarial=0",
            "methods.ugpnet.stages.fusion.train.lr_steps=[]"]
    for stage in ("restoration", "synthesis", "fusion"):
        p = f"methods.ugpnet.stages.{stage}.train"
        sets += [f"{p}.total_iters=30", f"{p}.log_every=1", f"{p}.val_every=30",
                 f"{p}.ckpt_every=30", f"{p}.lr=2e-3"]
    cfg = load_config(profile="tiny", sets=sets)
    plan = Plan.of(cfg, data=str(tiny_data), runs=str(tmp_path))
    pretrain_prior(cfg["priors"]["stylegan2"], plan.gt_root(),
                   Path(plan.pretrained_prior("stylegan2")).parent, "cpu", progress=False)
    for stage, key in (("restoration", "psnr"), ("synthesis", "l1"), ("fusion", "l1")):
        seed_everything(cfg["data"]["seed"])
        ctx = plan.context("ugpnet", "denoise", stage, device="cpu", progress=False)
        assert ctx.precision == "bf16" and ctx.identity["precision"] == "bf16"
        kind_of(cfg, "ugpnet").train_stage(ctx)
        log = [json.loads(r) for r in (ctx.out / "log.jsonl").read_text().splitlines()]
        values = [r[key] for r in log]
        assert sum(values[-6:]) / 6 < sum(values[:6]) / 6, (stage, key, values)
        weights = final_weights(ctx.out)
        assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
