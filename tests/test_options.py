"""Options beyond the paper (ugpnet/models/options.py): off = the official networks bit for bit;
on = each module starts exactly at its base image and still learns; named in configs and tables.

The official forwards are written out here by hand from the paper's equations (Eq. 1; x_reg =
R_mg(R'(x) + R_se(x)); RRDBNet's conv_last), independently of the modules' option code paths. The
bicubic reference is the degradation's own numpy MATLAB bicubic (tests/test_degradations.py checks
it against BasicSR's imresize).
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ugpnet.config import resolve_files
from ugpnet.errors import ConfigError
from ugpnet.models.backbones import NAFNet, RRDBNet
from ugpnet.models.build import build_ugpnet
from ugpnet.models.fusion import FusionModule
from ugpnet.models.options import BEYOND_PAPER, beyond_paper, strip_official
from ugpnet.models.restoration import RestorationModule
from ugpnet.plan import Plan

from backbone_configs import TINY, n_params  # noqa: E402


def _cfg(profile="tiny", **over):
    return resolve_files(["params.yaml"], profile, sets=[f"{k}={v}" for k, v in over.items()])


def _official_x_reg(r, x):
    _, feat = r.backbone(x, return_feature=True)
    f = feat + r.structure_encoder(x)
    for block in r.merging_net.blocks:
        f = block(f)
    return F.leaky_relu(r.merging_net.to_image.conv(f), 0.2), f


def _official_x_hat(fusion, f_syn, f_reg):
    return fusion.out_conv(fusion.body(fusion.in_conv(f_syn) + f_reg))


# ----------------------------------------------------------------------------- off = official
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_official_options_build_the_official_ugpnet(repo_root, monkeypatch, task):
    monkeypatch.chdir(repo_root)
    cfg = _cfg()
    assert cfg["methods"]["ugpnet"]["fusion"]["xreg_skip"] is False
    torch.manual_seed(0)
    model = build_ugpnet(cfg, "ugpnet", task).eval()
    size = cfg["data"]["resolution"] // (8 if task == "sr" else 1)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = model.forward_all(x)
        x = x.contiguous(memory_format=torch.channels_last)  # as UGPNet runs inside
        r = model.restoration
        if r.kind == "residual":
            x_reg, f_reg = _official_x_reg(r, x)
        else:
            x_reg, f_reg = r.backbone(x, return_feature=True)
        x_syn, f_syn = model.synthesis(x_reg)
        x_hat = _official_x_hat(model.fusion, f_syn, f_reg)
    assert torch.equal(out["x_reg"], x_reg)
    assert torch.equal(out["x_hat"], x_hat)
    # the official initialisation: no zeroed output conv
    assert model.fusion.out_conv.weight.abs().sum() > 0


def test_official_rrdbnet_has_no_bicubic_term():
    torch.manual_seed(0)
    net = RRDBNet(**TINY["rrdbnet"]).eval()
    assert net.conv_last.weight.abs().sum() > 0
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        image, feat = net(x, return_feature=True)
    assert torch.equal(image, net.conv_last(feat))


def test_paper_profile_runs_no_option_and_keeps_its_identity(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    cfg = _cfg("paper")
    cfg["priors"]["stylegan2"]["checkpoint"] = "prior.pt"  # any path: only the plan's slices are read
    cfg["priors"]["stylegan2_cm1"]["checkpoint"] = "prior_cm1.pt"
    cfg["methods"]["gpen"].update(pretrained="GPEN-BFR-512.pth", pretrained_d="GPEN-BFR-512-D.pth",
                                  arcface="model_ir_se50.pth")  # the paper fine-tunes GPEN
    cfg["methods"]["gfpgan"].update(arcface="arcface.pth", landmarks="landmarks.pth")
    plan = Plan.of(cfg)
    labels = {v[1].split(" = ")[0] for v in BEYOND_PAPER.values()}
    # what the baselines' kinds name as their own departures at paper scale, given every user
    # file (tests/test_baseline_*.py): GFP-GAN's component boxes are not flipped, VQFR's codebook
    # is re-estimated with our torch k-means; none is an option beyond the paper
    known = {"gfpgan": ["no horizontal flip (component boxes)"],
             "vqfr": ["k-means: torch (sklearn absent)"],
             "esrgan": ["no rot90 augmentation (hflip only)"]}
    for method in plan.table1_methods():
        named = plan.options_beyond_paper(method)
        assert not any(n.startswith(tuple(labels)) for n in named), (method, named)
        assert named == known.get(method, []), (method, named)
        for task in cfg["methods"][method]["tasks"]:
            for st in plan.stages(method, task):
                sl = repr(plan.stage_config(method, task, st.name))
                assert not any(k in sl for k in BEYOND_PAPER), (method, task, st.name)


def test_options_add_no_parameters_or_keys(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    off = _cfg()
    on = _cfg(**{"methods.ugpnet.fusion.xreg_skip": "true",
                 "methods.ugpnet.restoration_skip.denoise": "backbone",
                 "backbones.rrdbnet.sr.bicubic_residual": "true"})
    for task in ("denoise", "sr"):
        a, b = build_ugpnet(off, "ugpnet", task), build_ugpnet(on, "ugpnet", task)
        assert {k: v.shape for k, v in a.state_dict().items()} == \
            {k: v.shape for k, v in b.state_dict().items()}
        assert n_params(a) == n_params(b)


# ----------------------------------------------------------------------------- on: start at base
def test_fusion_xreg_skip_starts_at_x_reg_and_learns():
    torch.manual_seed(0)
    f = FusionModule(syn_channels=8, num_blocks=2, xreg_skip=True)
    f_syn, f_reg, x_reg = torch.randn(2, 8, 16, 16), torch.randn(2, 64, 16, 16), torch.rand(2, 3, 16, 16)
    assert torch.equal(f(f_syn, f_reg, x_reg), x_reg)
    with pytest.raises(ValueError, match="xreg_skip adds x_reg"):
        f(f_syn, f_reg)
    gt = torch.rand(2, 3, 16, 16)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3)
    before = F.l1_loss(f(f_syn, f_reg, x_reg), gt).item()
    for _ in range(5):
        loss = F.l1_loss(f(f_syn, f_reg, x_reg), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.l1_loss(f(f_syn, f_reg, x_reg), gt).item() < before
    # every other layer still has the official (random) initialisation
    assert f.in_conv.weight.abs().sum() > 0


@pytest.mark.parametrize("skip", ["input", "backbone"])
def test_restoration_skip_starts_at_its_base(skip):
    torch.manual_seed(0)
    r = RestorationModule(NAFNet(**TINY["nafnet"]), skip=skip).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        x_reg, f_reg = r(x)
        base = x if skip == "input" else r.backbone(x)
        _, f_official = _official_x_reg(r, x)
    assert torch.equal(x_reg, base)
    assert torch.equal(f_reg, f_official)  # f_reg (what fusion reads) is unchanged
    r.train()
    x_reg, _ = r(x)
    x_reg.sum().backward()
    assert r.merging_net.to_image.conv.weight.grad.abs().sum() > 0


def test_restoration_skip_needs_a_residual_backbone(repo_root, monkeypatch):
    with pytest.raises(ValueError, match="needs a residual backbone"):
        RestorationModule(RRDBNet(**TINY["rrdbnet"]), skip="input")
    with pytest.raises(ValueError, match="must be one of"):
        RestorationModule(NAFNet(**TINY["nafnet"]), skip="sideways")
    monkeypatch.chdir(repo_root)
    cfg = _cfg(**{"methods.ugpnet.restoration_skip.sr": "input"})
    with pytest.raises(ConfigError, match=r"restoration_skip.sr = 'input'.*direct"):
        Plan.of(cfg).stage_inputs("ugpnet", "sr", "restoration")


def test_rrdbnet_bicubic_residual_starts_at_the_degradations_bicubic():
    from ugpnet.degradations import bicubic_upsample, imresize

    torch.manual_seed(0)
    net = RRDBNet(**TINY["rrdbnet"], bicubic_residual=True).eval()
    lr = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net(x)[0].permute(1, 2, 0).double().numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf16 = net(x)[0].permute(1, 2, 0).double().numpy()
    ref = imresize(lr.astype(np.float64), 8.0) / 255
    assert np.abs(y - ref).max() < 1e-6
    assert np.abs(y_bf16 - ref).max() < 1e-6  # the base stays fp32 under autocast
    u8 = np.round(np.clip(y * 255, 0, 255)).astype(np.uint8)
    assert np.array_equal(u8, bicubic_upsample(lr, 8))


# ----------------------------------------------------------------------------- names and identity
def test_labels_and_identity_stripping():
    sl = {"backbone_kwargs": {"num_feat": 8, "bicubic_residual": False},
          "fusion": {"num_blocks": 2, "xreg_skip": True}, "restoration_skip": "input"}
    assert beyond_paper(sl) == ["fusion x_reg skip", "restoration skip = input"]
    assert strip_official(sl) == {"backbone_kwargs": {"num_feat": 8},
                                  "fusion": {"num_blocks": 2, "xreg_skip": True},
                                  "restoration_skip": "input"}
    assert beyond_paper(strip_official(copy.deepcopy(sl))) == beyond_paper(sl)


def test_smoke_profile_names_its_options(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    plan = Plan.of(_cfg("smoke"))
    assert plan.options_beyond_paper("nafnet") == []
    assert plan.options_beyond_paper("rrdbnet") == ["RRDBNet bicubic residual"]
    ugp = plan.options_beyond_paper("ugpnet")
    assert "fusion x_reg skip" in ugp and "RRDBNet bicubic residual (sr)" in ugp
    assert any(o.startswith("restoration skip = ") and o.endswith("(denoise, deblur)")
               for o in ugp)
    # one task's own options, without the task list
    assert sorted(plan.options_beyond_paper("ugpnet", "sr")) == ["RRDBNet bicubic residual",
                                                                 "fusion x_reg skip"]
    assert plan.options_beyond_paper("ugpnet", "denoise")[0].startswith("restoration skip = ")
    assert "RRDBNet bicubic residual" not in plan.options_beyond_paper("ugpnet", "denoise")
