"""ESRGAN x8 (baselines/esrgan/): parameter counts, the VGG-style D, official key maps (BasicSR,
original ESRGAN, x4 into x8 refused), the recipe in params.yaml, the refusals, the relativistic
losses against BasicSR's ESRGANModel formulas (written out here from esrgan_model.py:34-68), the
training step, one tiny run through the real DAG and a paper-scale forward/backward.

The same-weights comparison with the official BasicSR modules is bench/official_esrgan.py
(bench/official-esrgan.json); :func:`test_official_equivalence` repeats it when
/tmp/official/BasicSR exists."""
import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from baselines.esrgan import ESRGANKind, deviations_of
from baselines.esrgan.arch import VGGStyleDiscriminator
from baselines.esrgan.keymap import load_esrgan_generator, load_vgg_discriminator
from baselines.esrgan.train import PerceptualLoss, esrgan_recon, make_esrgan_stage, vgg_layer
from ugpnet.cli import main
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.models.backbones.rrdbnet import RRDBNet
from workspace import copy_workflow, failure, plan_for, snakemake

M = 1e6
OFFICIAL = Path("/tmp/official/BasicSR")


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def paper_cfg(repo_root):
    return resolve(load_params_file(repo_root / "params.yaml"), "paper", warnings=[])


def cfg_with(repo_root, profile, *sets):
    return resolve(load_params_file(repo_root / "params.yaml"), profile, list(sets), warnings=[])


# ----------------------------------------------------------------------------- architecture
def test_paper_parameter_counts_on_meta():
    with torch.device("meta"):
        g8 = RRDBNet(3, 3, 64, 23, 32, scale=8)
        g4 = RRDBNet(3, 3, 64, 23, 32, scale=4)
        d128, d256 = VGGStyleDiscriminator(3, 64, 128), VGGStyleDiscriminator(3, 64, 256)
    # spec: RRDBNetX8 16.73 M (x4: 16.70)
    assert n_params(g8) / M == pytest.approx(16.73, rel=5e-3)
    assert n_params(g4) / M == pytest.approx(16.70, rel=5e-3)
    assert n_params(g8) - n_params(g4) == 64 * 64 * 9 + 64  # conv_up3
    # VGGStyleDiscriminator(3, 64, 128 / 256), counted by hand from discriminator_arch.py:19-56
    def official_d(s):
        ch = [64, 128, 256, 512, 512] + ([512] if s == 256 else [])
        n, cin = 3 * 64 * 9 + 64, 3  # conv0_0 (bias)
        for k, c in enumerate(ch):
            if k:
                n += cin * c * 9 + 2 * c  # conv{k}_0, bn{k}_0
            n += c * c * 16 + 2 * c  # conv{k}_1, bn{k}_1
            cin = c
        return n + 512 * 16 * 100 + 100 + 101
    assert n_params(d128) == official_d(128) == 14_499_401
    assert n_params(d256) == official_d(256) == 21_055_049


def test_ugpnet_params_reports_esrgan_at_paper_scale(capsys):
    assert main(["--profile", "paper", "params", "--method", "esrgan", "--task", "sr"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] / M == pytest.approx(16.73, rel=5e-3)
    assert out["modules"] == {"generator (RRDBNet)": out["total"]}


def test_discriminator_sizes_and_refusals():
    for s, stages in ((32, 3), (64, 4), (128, 5), (256, 6)):
        d = VGGStyleDiscriminator(3, 8, s)
        assert d.n_stages == stages and d(torch.rand(2, 3, s, s)).shape == (2, 1)
    assert hasattr(VGGStyleDiscriminator(3, 8, 256), "conv5_1")
    assert not hasattr(VGGStyleDiscriminator(3, 8, 128), "conv5_0")
    assert not hasattr(VGGStyleDiscriminator(3, 8, 128), "bn0_0")  # conv0_0: bias, no BN
    for bad in (16, 96, 100):
        with pytest.raises(ValueError, match="power of two"):
            VGGStyleDiscriminator(3, 8, bad)
    with pytest.raises(ValueError, match="crop_size"):
        VGGStyleDiscriminator(3, 8, 64)(torch.rand(1, 3, 32, 32))


# ----------------------------------------------------------------------------- key maps
def basicsr_x8_state(net) -> dict:
    """Random tensors in the BasicSR / UGPNet RRDBNetX8 layout, keys and shapes from the
    official constructor (rrdbnet_arch.py:88-101, + conv_up3)."""
    f, g, nb = 64, 32, 23
    sd = {"conv_first.weight": (f, 3, 3, 3), "conv_first.bias": (f,)}
    for n in range(nb):
        for r in (1, 2, 3):
            for j in range(1, 6):
                cin, cout = f + (j - 1) * g, (g if j < 5 else f)
                sd[f"body.{n}.rdb{r}.conv{j}.weight"] = (cout, cin, 3, 3)
                sd[f"body.{n}.rdb{r}.conv{j}.bias"] = (cout,)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_up3", "conv_hr"):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = (f, f, 3, 3), (f,)
    sd["conv_last.weight"], sd["conv_last.bias"] = (3, f, 3, 3), (3,)
    return {k: torch.randn(s) for k, s in sd.items()}


def to_old_esrgan(sd: dict) -> dict:
    """BasicSR names -> the original ESRGAN RRDBNet_arch.py names (RRDB_ESRGAN_x4.pth)."""
    ren = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
           "conv_hr": "HRconv"}
    out = {}
    for k, v in sd.items():
        head, rest = k.split(".", 1)
        if head == "body":
            n, rdb, tail = rest.split(".", 2)
            out[f"RRDB_trunk.{n}.RDB{rdb[-1]}.{tail}"] = v
        else:
            out[f"{ren.get(head, head)}.{rest}"] = v
    return out


@pytest.fixture(scope="module")
def x8_state():
    torch.manual_seed(0)
    return basicsr_x8_state(None)


def test_basicsr_x8_layout_loads_strictly(tmp_path, x8_state):
    net = RRDBNet(3, 3, 64, 23, 32, scale=8)
    torch.save({"params_ema": x8_state}, tmp_path / "rrdbnet_x8_bicubic.pth")
    load_esrgan_generator(tmp_path / "rrdbnet_x8_bicubic.pth", net)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in x8_state.items())
    assert len(net.state_dict()) == len(x8_state)


def test_x4_releases_load_into_x4_and_are_refused_by_x8(tmp_path, x8_state):
    x4 = {k: v for k, v in x8_state.items() if not k.startswith("conv_up3")}
    torch.save({"params": x4}, tmp_path / "ESRGAN_SRx4_DF2KOST_official-ff704c30.pth")
    torch.save(to_old_esrgan(x4), tmp_path / "RRDB_ESRGAN_x4.pth")
    assert "RRDB_trunk.0.RDB1.conv1.weight" in to_old_esrgan(x4)
    for name in ("ESRGAN_SRx4_DF2KOST_official-ff704c30.pth", "RRDB_ESRGAN_x4.pth"):
        net4 = RRDBNet(3, 3, 64, 23, 32, scale=4)
        load_esrgan_generator(tmp_path / name, net4)
        assert torch.equal(net4.conv_up2.weight, x4["conv_up2.weight"])
        assert torch.equal(net4.body[22].rdb3.conv5.bias, x4["body.22.rdb3.conv5.bias"])
        with pytest.raises(CheckpointError) as e:
            load_esrgan_generator(tmp_path / name, RRDBNet(3, 3, 64, 23, 32, scale=8))
        msg = str(e.value)
        assert name in msg and "x4" in msg and "backbones.rrdbnet.sr.scale: 4" in msg


def test_generator_strict_load_failures(tmp_path, x8_state):
    bad = dict(x8_state)
    del bad["body.5.rdb2.conv3.bias"]
    bad["body.23.rdb1.conv1.weight"] = torch.zeros(32, 64, 3, 3)  # a 24th block
    bad["conv_hr.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save({"params": bad}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_esrgan_generator(tmp_path / "bad.pth", RRDBNet(3, 3, 64, 23, 32, scale=8))
    msg = str(e.value)
    assert "bad.pth" in msg and "body.5.rdb2.conv3.bias" in msg
    assert "body.23.rdb1.conv1.weight" in msg and "conv_hr.weight" in msg


def test_basicsr_discriminator_layout_loads_strictly(tmp_path):
    torch.manual_seed(0)
    src, dst = VGGStyleDiscriminator(3, 8, 128), VGGStyleDiscriminator(3, 8, 128)
    src(torch.rand(3, 3, 128, 128))  # non-trivial BN running statistics
    sd = src.state_dict()
    assert {"conv0_0.bias", "bn0_1.running_var", "conv4_1.weight", "bn4_1.num_batches_tracked",
            "linear1.weight", "linear2.bias"} <= set(sd)
    torch.save({"params": sd}, tmp_path / "net_d_400000.pth")
    load_vgg_discriminator(tmp_path / "net_d_400000.pth", dst)
    x = torch.rand(2, 3, 128, 128)
    assert torch.equal(src.eval()(x), dst.eval()(x))
    bad = dict(sd)
    del bad["bn2_0.running_mean"]
    torch.save({"params": bad}, tmp_path / "bad_d.pth")
    with pytest.raises(CheckpointError, match=r"bad_d.pth[\s\S]*bn2_0.running_mean"):
        load_vgg_discriminator(tmp_path / "bad_d.pth", dst)
    with pytest.raises(CheckpointError, match="net_d_400000.pth"):  # a 256 D is another net
        load_vgg_discriminator(tmp_path / "net_d_400000.pth", VGGStyleDiscriminator(3, 8, 256))


# ----------------------------------------------------------------------------- recipe, checks
def test_recipe_values_in_params_defaults(paper_cfg):
    m = paper_cfg["methods"]["esrgan"]
    assert m["kind"] == "esrgan" and m["tasks"] == ["sr"] and m["sr_input"] == "lr"
    assert m["init_from"] == {"sr": "rrdbnet"} and m["pretrained"] == {"sr": None}
    assert paper_cfg["backbones"]["rrdbnet"]["sr"] == {
        "num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 8, "bicubic_residual": False}
    # train_ESRGAN_x4.yml
    assert m["loss"] == {"l1": 1e-2, "perceptual": 1.0, "layers": {"conv5_4": 1.0},
                         "vgg": "vgg19", "gan": 5e-3}
    assert m["d"] == {"lr": 1e-4, "betas": [0.9, 0.99]}
    assert m["discriminator"]["num_feat"] == 64 and m["discriminator"]["input_size"] in (128, 256)
    assert m["ema_decay"] == 0.999 and m["select"] == "final"
    t = m["train"]
    assert (t["total_iters"], t["batch_size"], t["lr"], t["betas"], t["weight_decay"]) == \
        (400_000, 16, 1e-4, [0.9, 0.99], 0.0)
    assert (t["lr_schedule"], t["lr_steps"], t["lr_gamma"]) == \
        ("step", [50_000, 100_000, 200_000, 300_000], 0.5)
    assert t["crop_size"] == m["discriminator"]["input_size"] and t["hflip"] is True


def test_stage_optimisers_schedules_and_ema(paper_cfg):
    m = copy.deepcopy(paper_cfg["methods"]["esrgan"])
    m["loss"]["perceptual"] = 0.0  # no VGG file in the tests (its term: test_perceptual_*)
    st = make_esrgan_stage(m, RRDBNet(3, 3, 4, 1, 4, scale=8), VGGStyleDiscriminator(3, 4, 32),
                           "cpu", "fp32")
    assert isinstance(st.opt_g, torch.optim.Adam) and not isinstance(st.opt_g, torch.optim.AdamW)
    for opt in (st.opt_g, st.critics[0].opt):
        grp = opt.param_groups[0]
        assert grp["lr"] == 1e-4 and grp["betas"] == (0.9, 0.99) and grp["weight_decay"] == 0
    for sched in (st.scheduler, st.d_scheduler):
        assert dict(sched.milestones) == {50_000: 1, 100_000: 1, 200_000: 1, 300_000: 1}
        assert sched.gamma == 0.5
    assert st.loss == "relativistic" and st.order == "g_first" and st.adv_weight == 5e-3
    assert st.ema_beta == 0.999 and st.critics[0].input_range == (0.0, 1.0)


def test_init_is_required(repo_root):
    k = ESRGANKind()
    cfg = cfg_with(repo_root, "paper", "methods.esrgan.init_from.sr=null")
    with pytest.raises(ConfigError) as e:
        k.check_stage(cfg, "esrgan", "sr", "gan", {"gt": "x"})
    assert "methods.esrgan.init_from.sr: rrdbnet" in str(e.value)
    assert "methods.esrgan.pretrained.sr" in str(e.value)
    cfg = cfg_with(repo_root, "paper", "methods.esrgan.init_from.sr=ugpnet")
    with pytest.raises(ConfigError, match="not a regression method of backbone rrdbnet"):
        k.check_stage(cfg, "esrgan", "sr", "gan", {"gt": "x", "init_from": "m.pt"})


def test_discriminator_input_must_be_the_crop(repo_root, monkeypatch):
    import ugpnet.pretrained.vgg as vgg

    monkeypatch.setattr(vgg, "vgg19_checkpoint", lambda: Path("vgg19-dcbb9e9d.pth"))
    k = ESRGANKind()
    cfg = cfg_with(repo_root, "paper", "methods.esrgan.train.crop_size=128")
    with pytest.raises(ConfigError, match="discriminator.input_size = 256.*128 px"):
        k.check_stage(cfg, "esrgan", "sr", "gan", {"gt": "x", "init_from": "m.pt"})
    cfg = cfg_with(repo_root, "paper", "methods.esrgan.train.crop_size=128",
                   "methods.esrgan.discriminator.input_size=128")
    k.check_stage(cfg, "esrgan", "sr", "gan", {"gt": "x", "init_from": "m.pt"})


def test_missing_vgg19_is_one_clear_error(repo_root, monkeypatch, paper_cfg):
    import ugpnet.pretrained.vgg as vgg

    monkeypatch.setattr(vgg, "vgg19_checkpoint", lambda: None)
    k = ESRGANKind()
    with pytest.raises(ConfigError) as e:
        k.check_stage(paper_cfg, "esrgan", "sr", "gan", {"gt": "x", "init_from": "m.pt"})
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "methods.esrgan.loss.vgg: vgg16" in msg
    with pytest.raises(CheckpointError, match="vgg19-dcbb9e9d.pth"):
        PerceptualLoss({"conv5_4": 1.0}, "vgg19")
    cfg = cfg_with(repo_root, "paper", "methods.esrgan.loss.vgg=vgg16")
    k.check_stage(cfg, "esrgan", "sr", "gan", {"gt": "x", "init_from": "m.pt"})


def test_deviations(repo_root, paper_cfg):
    k = ESRGANKind()
    assert k.deviations(paper_cfg, "esrgan", "sr") == ["no rot90 augmentation (hflip only)"]
    smoke = cfg_with(repo_root, "smoke")
    assert k.deviations(smoke, "esrgan", "sr") == ["perceptual: VGG16 for VGG19",
                                                   "no rot90 augmentation (hflip only)"]
    m = copy.deepcopy(paper_cfg["methods"]["esrgan"])
    m["loss"].update(perceptual=0.0, gan=0.0)
    assert deviations_of(m)[:2] == ["no perceptual loss", "no GAN loss"]


def test_a_pretrained_path_that_does_not_exist_is_refused_by_the_plan(repo_root):
    from ugpnet.plan import Plan

    cfg = cfg_with(repo_root, "paper", "methods.esrgan.pretrained.sr=/nowhere/rrdbnet_x8.pth",
                   "methods.esrgan.init_from.sr=null")
    with pytest.raises(ConfigError) as e:
        Plan.of(cfg).stage_inputs("esrgan", "sr", "gan")
    assert "methods.esrgan.pretrained" in str(e.value) and "rrdbnet_x8" in str(e.value)


# ----------------------------------------------------------------------------- the losses
def test_perceptual_layer_is_pre_relu_conv5_4():
    assert vgg_layer("conv5_4", "vgg19") == ("conv5_4", 34)  # torchvision vgg19.features[34]
    assert vgg_layer("conv5_4", "vgg16") == ("conv5_3", 28)
    torch.manual_seed(0)
    from ugpnet.pretrained.archs import VGG19_CONVS, features_shapes

    state = {k: torch.randn(s) * 0.05 for k, s in features_shapes(VGG19_CONVS).items()}
    p = PerceptualLoss({"conv5_4": 1.0}, "vgg19", state=state)
    assert isinstance(p.features[-1], torch.nn.Conv2d) and len(p.features) == 35
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    fx = p.features((x - p.mean) / p.std)
    assert (fx < 0).any()  # before the ReLU
    assert torch.allclose(p(x, y), F.l1_loss(fx, p.features((y - p.mean) / p.std)))
    assert not any(q.requires_grad for q in p.parameters())


def basicsr_g_gan(d, out, gt):
    """esrgan_model.py:38-42 with GANLoss('vanilla', loss_weight=5e-3) = 5e-3 * BCEWithLogits."""
    bce = torch.nn.BCEWithLogitsLoss()
    real_d_pred = d(gt).detach()
    fake_g_pred = d(out)
    l_g_real = 5e-3 * bce(real_d_pred - torch.mean(fake_g_pred), torch.zeros_like(real_d_pred))
    l_g_fake = 5e-3 * bce(fake_g_pred - torch.mean(real_d_pred), torch.ones_like(fake_g_pred))
    return (l_g_real + l_g_fake) / 2


def basicsr_d_loss(d, out, gt):
    """esrgan_model.py:59-68: two halves, each 0.5 * BCE, separate backward passes."""
    bce = torch.nn.BCEWithLogitsLoss()
    fake_d_pred = d(out).detach()
    real_d_pred = d(gt)
    l_d_real = bce(real_d_pred - torch.mean(fake_d_pred), torch.ones_like(real_d_pred)) * 0.5
    l_d_real.backward()
    fake_d_pred = d(out.detach())
    l_d_fake = bce(fake_d_pred - torch.mean(real_d_pred.detach()),
                   torch.zeros_like(fake_d_pred)) * 0.5
    l_d_fake.backward()
    return l_d_real + l_d_fake


def test_step_equals_basicsr_formulas():
    """One G step and one D step of our stage against ESRGANModel's lines on the same nets and
    tensors (L1 1e-2 + relativistic GAN 5e-3; perceptual off here: a random VGG is the bench's):
    the loss values and the gradients on G and D."""
    torch.manual_seed(0)
    g, d = RRDBNet(3, 3, 8, 1, 4, scale=8), VGGStyleDiscriminator(3, 8, 32)
    g_ref, d_ref = copy.deepcopy(g), copy.deepcopy(d)
    m = {"train": {"lr": 1e-4, "betas": [0.9, 0.99], "total_iters": 4},
         "loss": {"l1": 1e-2, "perceptual": 0.0, "gan": 5e-3},
         "d": {"lr": 1e-4, "betas": [0.9, 0.99]}, "ema_decay": 0.999}
    st = make_esrgan_stage(m, g, d, "cpu", "fp32")
    lq, gt = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 32, 32)
    for opt in (st.opt_g, st.critics[0].opt):
        opt.param_groups[0]["lr"] = 0.0  # compare gradients on unchanged weights
    fake, real = st.images({"lq": lq, "gt": gt}, 0)
    gp = st.g_step(fake, real)
    dp = st.d_step(real, fake, 0)
    # BasicSR
    d_ref.requires_grad_(False)
    out = g_ref(lq)
    l_gan = basicsr_g_gan(d_ref, out, gt)
    l_g = 1e-2 * F.l1_loss(out, gt) + l_gan
    l_g.backward()
    d_ref.requires_grad_(True)
    l_d = basicsr_d_loss(d_ref, out, gt)
    assert gp["loss"] == pytest.approx(float(l_g.detach()), rel=1e-6)
    assert 5e-3 * gp["adversarial"] == pytest.approx(float(l_gan.detach()), rel=1e-6)
    assert dp["d_loss"] == pytest.approx(float(l_d.detach()), rel=1e-6)
    for a, b in ((g, g_ref), (d, d_ref)):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-9), name


def test_step_runs_updates_and_resumes(paper_cfg):
    torch.manual_seed(0)
    m = copy.deepcopy(paper_cfg["methods"]["esrgan"])
    m["train"].update(lr_steps=[1], total_iters=4)
    m["loss"]["perceptual"] = 0.0
    g, d = RRDBNet(3, 3, 8, 1, 4, scale=8), VGGStyleDiscriminator(3, 8, 32)
    st = make_esrgan_stage(m, g, d, "cpu", "fp32")
    g0 = copy.deepcopy(g.state_dict())
    batch = {"lq": torch.rand(2, 3, 4, 4), "gt": torch.rand(2, 3, 32, 32)}
    p0 = st.step(batch, 0)
    assert {"loss", "l1", "adversarial", "d_loss", "lr"} <= set(p0)
    p1 = st.step(batch, 1)
    assert p1["lr"] == pytest.approx(5e-5)  # G's MultiStepLR
    assert st.critics[0].opt.param_groups[0]["lr"] == pytest.approx(5e-5)  # and D's
    # the EMA generator is exported
    assert all(torch.equal(v, st.ema.state_dict()[k]) for k, v in st.weights().items())
    k = "conv_last.weight"
    assert not torch.equal(g.state_dict()[k], g0[k])
    other = make_esrgan_stage(m, RRDBNet(3, 3, 8, 1, 4, scale=8),
                              VGGStyleDiscriminator(3, 8, 32), "cpu", "fp32")
    other.load_state(st.state())
    assert other.d_scheduler.last_epoch == st.d_scheduler.last_epoch == 2
    assert torch.equal(other.ema.conv_last.weight, st.ema.conv_last.weight)


def test_recon_weights():
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total, parts = esrgan_recon(1e-2, 0.0, None)(x, y)
    assert float(total) == pytest.approx(1e-2 * float(F.l1_loss(x, y))) and "perceptual" not in parts
    with pytest.raises(ValueError, match="no VGG"):
        esrgan_recon(1e-2, 1.0, None)


# ----------------------------------------------------------------------------- official code
@pytest.mark.skipif(not OFFICIAL.exists(), reason="no /tmp/official/BasicSR checkout")
def test_official_equivalence(tmp_path):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "official_esrgan", Path(__file__).parents[1] / "bench" / "official_esrgan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    saved = {k: v for k, v in sys.modules.items() if k.startswith("basicsr")}
    try:
        mods = mod.official_basicsr(OFFICIAL)
        res = mod.losses(mods, size_gt=128)  # the official D: 128 or 256
        d = mod.discriminators(mods)
    finally:
        for k in [k for k in sys.modules if k.startswith("basicsr")]:
            del sys.modules[k]
        sys.modules.update(saved)
    for key in ("g_loss_total", "g_perceptual", "g_gan_weighted", "d_loss"):
        assert res[key]["ours"] == pytest.approx(res[key]["official"], rel=1e-5), key
    assert res["g_gradients"]["max_rel"] < 1e-5 and res["d_gradients"]["max_rel"] < 1e-5
    assert d["vgg_style_d_128"]["params_ours"] == d["vgg_style_d_128"]["params_official"]
    assert d["vgg_style_d_256"]["logits_train_mode"]["max_rel"] < 1e-5


# ----------------------------------------------------------------------------- the real DAG
OVERRIDE = """
overrides:
  table1: {methods: [rrdbnet, esrgan], tasks: [sr]}
"""


@pytest.mark.slow
def test_esrgan_trains_restores_and_reaches_table1_on_tiny(repo_root, tmp_path):
    work = copy_workflow(tmp_path / "esrgan")
    (work / "esrgan.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml",
                   "esrgan.yaml", "--config", "profile=tiny"], work, timeout=1200)
    assert r.returncode == 0, failure(r, work)
    df = pd.read_csv(work / "results" / "table1.csv", index_col="method")
    assert list(df.index) == ["rrdbnet", "esrgan"] and df.loc["esrgan", "family"] == "generative"
    assert pd.notna(df.loc["esrgan", "sr_psnr"])
    assert "perceptual: VGG16 for VGG19" in df.loc["esrgan", "options"]
    plan = plan_for(work, configfiles=["esrgan.yaml"])
    run = Path(plan.stage_dir("esrgan", "sr", "gan"))
    opts = json.loads((run / "options.json").read_text())["options"]
    assert opts["init"].startswith("init_from rrdbnet: ")
    assert opts["terms"]["perceptual_vgg"] == "vgg16" and opts["terms"]["gan_relativistic"] == 5e-3
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["d_loss"] > 0 and "perceptual" in r for r in log)


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_backward_on_cpu():
    torch.manual_seed(0)
    g, d = RRDBNet(3, 3, 64, 23, 32, scale=8), VGGStyleDiscriminator(3, 64, 256)
    out = g(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3, 512, 512)
    crop = out[:, :, 128:384, 128:384]
    (d(torch.cat([crop, torch.rand(1, 3, 256, 256)])).sum() + out.abs().mean()).backward()
    assert torch.isfinite(g.conv_first.weight.grad).all() and g.conv_up3.weight.grad is not None
    assert torch.isfinite(d.conv5_1.weight.grad).all()
