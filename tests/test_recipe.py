"""The official UGPNet training recipe at paper scale (docs: params.yaml comments, README).

Configuration values, and the behaviours behind them: backbone initialised from the baseline,
RRDBNet frozen, D input range, the official augmentation cycle shared by x_reg and gt, the
selection rules, the two-file prior, VGG19 required, HINet's stage-2 conv, the church variant.
"""
import contextlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ugpnet.config import load_config
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.methods import final_weights, get_kind, kind_of
from ugpnet.plan import Plan
from ugpnet.training.augment import CycleAugment
from ugpnet.training.common import seed_everything
from workspace import REPO, make_tiny_data

PAPER_PRIOR = ["priors.stylegan2.checkpoint=/weights/stylegan2-ffhq-512x512.pkl"]


@pytest.fixture(scope="module")
def paper():
    return load_config(profile="paper", sets=PAPER_PRIOR)


def test_paper_config_holds_the_official_recipe(paper):
    m = paper["methods"]["ugpnet"]
    st = m["stages"]
    assert m["init_from"] == {"denoise": "nafnet", "deblur": "nafnet", "sr": "rrdbnet"}
    assert m["direct_backbone"] == "frozen"
    assert st["synthesis"]["d_input_range"] == [0, 1]
    assert st["synthesis"]["augment"] == {"cycle": ["scale", "translate", "rotate"],
                                          "scale": [0.875, 1.125],
                                          "translate_px_at_512": [128, 50], "rotate_deg": 5}
    for name in ("restoration", "synthesis", "fusion"):
        assert st[name]["train"]["betas"] == [0.9, 0.999], name
        assert st[name]["train"]["hflip"] is False, name
    assert st["fusion"]["train"]["lr"] == 1e-3 and st["fusion"]["train"]["lr_steps"] == [8000]
    assert (st["restoration"]["select"], st["synthesis"]["select"], st["fusion"]["select"]) == \
        ("psnr", "final", "psnr")
    assert st["fusion"]["contextual"]["features"] == "vgg19_relu3_4"
    assert all(kw["stage2_intro"] == "conv_01" for kw in paper["backbones"]["hinet"].values())


def test_each_official_value_names_its_source_in_params_yaml():
    text = (REPO / "params.yaml").read_text().splitlines()
    for key in ("init_from:", "direct_backbone:", "d_input_range:", "augment:",
                "lr_steps: [8000]", "select: final", "features: vgg19_relu3_4", "stage2_intro"):
        i = next(i for i, line in enumerate(text) if key in line)
        context = " ".join(text[max(0, i - 6): i + 1])
        assert re.search(r"official|paper", context), key


# ----------------------------------------------------------------------------- DAG of stages
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    cfg = load_config(profile="tiny")
    make_tiny_data(Plan.of(cfg, data=str(root / "data")))
    return root


def _train(root, method, task, stage, sets=()):
    cfg = load_config(profile="tiny", sets=list(sets))
    seed_everything(cfg["data"]["seed"])
    plan = Plan.of(cfg, data=str(root / "data"), runs=str(root / "runs"))
    ctx = plan.context(method, task, stage, progress=False)
    kind_of(cfg, method).train_stage(ctx)
    return plan


def test_ugpnet_restoration_starts_from_the_baselines_weights(tiny):
    plan = _train(tiny, "nafnet", "deblur", "train")
    plan = _train(tiny, "ugpnet", "deblur", "restoration",
                  ["methods.ugpnet.stages.restoration.train.total_iters=0"])
    nafnet = final_weights(plan.final_model("nafnet", "deblur"))
    restoration = final_weights(plan.stage_model("ugpnet", "deblur", "restoration"))
    for k, v in nafnet.items():
        assert torch.equal(restoration[f"backbone.{k}"], v), k


def test_rrdbnet_is_frozen_and_untouched_by_every_stage(tiny):
    from ugpnet.training.prior import pretrain_prior

    plan = _train(tiny, "rrdbnet", "sr", "train")
    pretrain_prior(plan.cfg["priors"]["stylegan2"], plan.gt_root(),
                   Path(plan.pretrained_prior("stylegan2")).parent, "cpu", progress=False)
    for stage in ("restoration", "synthesis", "fusion"):
        plan = _train(tiny, "ugpnet", "sr", stage)
    rrdb = final_weights(plan.final_model("rrdbnet", "sr"))
    run = Path(plan.stage_dir("ugpnet", "sr", "restoration"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_iters"] == 0 and summary["select_metric"] == "final"
    assert not (run / "log.jsonl").exists()  # not one training iteration
    exported = final_weights(plan.final_model("ugpnet", "sr"))
    for k, v in rrdb.items():
        assert torch.equal(exported[f"restoration.backbone.{k}"], v), k


def test_frozen_direct_backbone_without_weights_is_refused():
    cfg = load_config(profile="tiny", sets=["methods.ugpnet.init_from.sr=null"])
    with pytest.raises(ConfigError, match=r"used as trained and frozen.*init_from\.sr"):
        Plan.of(cfg).stage_inputs("ugpnet", "sr", "restoration")


def test_init_from_a_method_of_another_backbone_is_refused():
    cfg = load_config(profile="tiny", sets=["methods.ugpnet.backbone.deblur=unet",
                                            "backbones.unet.deblur={}"])
    with pytest.raises(ConfigError, match=r"init_from\.deblur = 'nafnet', whose backbone is "
                                          r"'nafnet', but ugpnet uses 'unet'"):
        Plan.of(cfg).stage_inputs("ugpnet", "deblur", "restoration")


# ----------------------------------------------------------------------------- D input range
class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return (x * self.w).mean(dim=(1, 2, 3), keepdim=False)[:, None]


@pytest.mark.parametrize("rng,expect", [((0, 1), lambda x: x), ((-1, 1), lambda x: 2 * x - 1)])
def test_discriminator_sees_the_configured_input_range(rng, expect):
    from ugpnet.training.gan import d_step, g_adv_loss

    D = _Recorder()
    opt = torch.optim.SGD(D.parameters(), lr=0.0)
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    d_step(D, opt, real, fake, it=1, r1_gamma=10.0, r1_every=10, input_range=rng)
    g_adv_loss(D, fake, input_range=rng)
    assert torch.equal(D.seen[0], expect(real)) and torch.equal(D.seen[1], expect(fake))
    assert torch.equal(D.seen[2], expect(fake))


# ----------------------------------------------------------------------------- augmentation
AUG = dict(cycle=["scale", "translate", "rotate"], scale=[0.875, 1.125],
           translate_px_at_512=[128, 50], rotate_deg=5)


def test_augmentation_is_the_official_cycle_with_official_ranges():
    a = CycleAugment(**AUG, resolution=512)
    ops = [a.params(it)[0] for it in range(9)]
    assert ops == ["scale", "translate", "rotate"] * 3
    draws = [a.params(it)[1] for it in range(3000)]
    scales = [d["scale"] for d in draws[0::3]]
    shifts = np.array([d["translate"] for d in draws[1::3]])
    angles = [d["angle"] for d in draws[2::3]]
    assert 0.875 <= min(scales) and max(scales) <= 1.125 and np.ptp(scales) > 0.2
    # Python's randint(-r, r + 1) of the official code: inclusive ends
    assert shifts[:, 0].min() == -128 and shifts[:, 0].max() == 129
    assert shifts[:, 1].min() == -50 and shifts[:, 1].max() == 51
    assert set(angles) == set(float(v) for v in range(-5, 6))
    # each draw changes only its own parameter
    assert all(d["translate"] == [0, 0] and d["angle"] == 0 for d in draws[0::3])
    # translation scales with the resolution; draws depend on the iteration only (exact resume)
    small = CycleAugment(**AUG, resolution=64)
    assert small.translate == (16, 6)
    assert [CycleAugment(**AUG, resolution=512).params(it) for it in (5, 7)] == \
        [a.params(5), a.params(7)]


@pytest.mark.parametrize("it", [0, 1, 2])
def test_augmentation_is_shared_by_the_batch_and_by_x_reg_and_gt(it):
    a = CycleAugment(**AUG, resolution=64)
    torch.manual_seed(it)
    x_reg, gt = torch.rand(3, 3, 64, 64) * 1.5, torch.rand(3, 3, 64, 64)
    out_reg, out_gt = a(it, x_reg, gt)
    _, args = a.params(it)
    for i in range(3):  # one transform for every sample, as torchvision applies it to one image
        for src, out in ((x_reg, out_reg), (gt, out_gt)):
            ref = TF.affine(src[i], interpolation=InterpolationMode.NEAREST, fill=0.0, **args)
            assert torch.equal(out[i], ref.clamp(0, 1))
    assert out_reg.max() <= 1.0 and out_reg.min() >= 0.0  # clamped


def test_synthesis_stage_augments_x_reg_and_gt_together():
    from ugpnet.methods.ugpnet_stages import SynthesisStage

    stage = SynthesisStage.__new__(SynthesisStage)  # only its input path is exercised
    stage.restoration = lambda x: (x, None)
    stage.augment = CycleAugment(**AUG, resolution=64)
    stage.autocast = contextlib.nullcontext  # fp32
    img = torch.rand(2, 3, 64, 64)
    x_reg, gt = stage.inputs({"lq": img, "gt": img.clone()}, it=1)
    assert torch.equal(x_reg, gt) and not torch.equal(x_reg, img)


# ----------------------------------------------------------------------------- selection
def test_selection_rules(paper):
    kind = get_kind("ugpnet")
    m = paper["methods"]["ugpnet"]
    assert [s.select for s in kind.stages(m, "deblur")] == ["psnr", "final", "psnr"]
    assert [s.select for s in kind.stages(m, "sr")] == ["final", "final", "psnr"]  # frozen RRDB
    alt = load_config(profile="paper", sets=PAPER_PRIOR + [
        "methods.ugpnet.stages.synthesis.select=lpips", "methods.ugpnet.stages.fusion.select=lpips"])
    assert [s.select for s in kind.stages(alt["methods"]["ugpnet"], "deblur")] == \
        ["psnr", "lpips", "lpips"]


def test_final_selection_keeps_the_last_iteration(tmp_path):
    from ugpnet.training.run import Run

    run = Run(tmp_path, {"x": 1}, select_metric="final")
    run.start()
    run.validated(2, {"psnr": 30.0}, {"w": torch.zeros(1)})
    run.validated(4, {"psnr": 20.0}, {"w": torch.ones(1)})
    assert run.finish()["selected_iter"] == 4
    run.close()


# ----------------------------------------------------------------------------- weights
def test_the_official_pair_of_prior_files(tmp_path):
    from test_stylegan_loading import (G_ARGS, assert_same_state, randomized, to_basicsr_d,
                                       to_basicsr_g)

    from ugpnet.models.synthesis.stylegan2 import Discriminator, Generator
    from ugpnet.training.prior import load_prior

    g_src, d_src = randomized(Generator(**G_ARGS), 1), randomized(Discriminator(size=G_ARGS["size"]), 2)
    torch.save({"params_ema": to_basicsr_g(g_src)}, tmp_path / "net_g.pth")
    torch.save({"params": to_basicsr_d(d_src)}, tmp_path / "net_d.pth")
    g, d = Generator(**G_ARGS), Discriminator(size=G_ARGS["size"])
    fmt = load_prior(tmp_path / "net_g.pth", g, d, tmp_path / "net_d.pth")
    assert "separate G and D files" in fmt
    assert_same_state(g, g_src)
    assert_same_state(d, d_src)
    cfg = load_config(profile="paper", sets=[f"priors.stylegan2.checkpoint={{g: {tmp_path}/net_g.pth, "
                                             f"d: {tmp_path}/net_d.pth}}"])
    inputs = Plan.of(cfg).stage_inputs("ugpnet", "deblur", "synthesis")
    assert (inputs["prior"], inputs["prior_d"]) == (f"{tmp_path}/net_g.pth", f"{tmp_path}/net_d.pth")


def test_official_release_with_the_restoration_module_elsewhere(tmp_path):
    from ugpnet.models import keymaps as km

    (tmp_path / "rel").mkdir()
    for name in ("synmodule_40000.pth", "fusmodule_best.pth"):
        (tmp_path / "rel" / name).write_bytes(b"x")
    with pytest.raises(CheckpointError, match="restoration module"):
        km.find_official_files(tmp_path / "rel")
    rrdb = tmp_path / "pretrained" / "rrdbnet_x8_bicubic.pth"
    found = km.find_official_files(tmp_path / "rel", {"resmodule": rrdb})
    assert found["resmodule"] == rrdb and found["synmodule"].name == "synmodule_40000.pth"


def test_vgg19_is_required_unless_the_profile_chooses_vgg16(tmp_path, monkeypatch):
    from ugpnet.losses.contextual import ContextualLoss

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(tmp_path))}/hub/checkpoints/"
                                              r"vgg19-dcbb9e9d\.pth' does not exist.*vgg16_relu3_3"):
        ContextualLoss(features="vgg19_relu3_4")
    assert ContextualLoss(features="vgg16_relu3_3").feature_source.startswith("vgg16/relu3_3")
    smoke = load_config(profile="smoke")["methods"]["ugpnet"]["stages"]["fusion"]["contextual"]
    assert smoke["features"] == "vgg16_relu3_3"


def test_hinet_stage_two_reuses_conv_01_as_the_official_code():
    from ugpnet.models.backbones import HINet

    torch.manual_seed(0)
    net = HINet(wf=8, depth=2, stage2_intro="conv_01").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        base = net(x)
        net.conv_02.weight.add_(1.0)  # conv_02 is not used at all
        assert torch.equal(net(x), base)
        net.conv_01.weight.add_(0.1)
        assert not torch.equal(net(x), base)


def test_church_variant_architecture_and_parameter_count():
    cfg = load_config(profile="church", sets=["priors.stylegan2.checkpoint=/weights/church.pkl"])
    model = get_kind("ugpnet").build(cfg, "ugpnet", "deblur")
    g = model.synthesis.generator
    assert g.num_latents == 14 and g.feature_channels == 128 and g.size == 256
    assert model.fusion.in_conv.in_channels == 128 and model.fusion.in_conv.out_channels == 64
    # FusionNet(chan=128, num_block=8) of the official code, counted by hand
    expected = (128 * 64 * 9 + 64) + 8 * 2 * (64 * 64 * 9 + 64) + (64 * 3 * 9 + 3)
    assert sum(p.numel() for p in model.fusion.parameters()) == expected
    from ugpnet.models.build import build_discriminator

    d = build_discriminator(cfg["priors"]["stylegan2"])
    assert d.channels[256] == 128  # channel multiplier 2 (train_synmodule.py: chan = 2)
