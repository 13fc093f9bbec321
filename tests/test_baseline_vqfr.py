"""VQFR v1 baseline (baselines/vqfr/): architecture, parameter counts, official key maps, the
recipe in params.yaml, the stages' pieces, and one run of the method through the real DAG on
the tiny profile. Paper-scale forward/backward passes are ``slow``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baselines.vqfr import VQFRKind, VQFRRestorer, build_vqfr, build_vqgan
from baselines.vqfr.arch import VQFR, VQGAN, PatchDiscriminator, SWAGANDiscriminator
from baselines.vqfr.kmeans import Reservoir, kmeans
from baselines.vqfr.keymap import (load_codebook_into_vqfr, load_official, official_to_ours,
                                   ours_to_official)
from baselines.vqfr.losses import HingeCritic, adaptive_weight, adaptive_weight_at_output
from baselines.vqfr.stages import CodebookStage
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from workspace import copy_workflow, failure, plan_for, snakemake

REPO = Path(__file__).resolve().parents[1]
SPEC_M = 76.56  # arithmetic over the official VQFRv1 constructor (Table 2: 76.6)
TINY_ARCH = dict(base_channels=32, patch_size=4, scale_rates=[1, 2, 2], channel_multipliers=[1, 1, 1],
                 encoder_blocks=1, decoder_blocks=1, num_code=16, code_dim=8, cond_channels=8,
                 deformable_groups=1)


def cfg_of(profile: str) -> dict:
    return resolve(load_params_file(REPO / "params.yaml"), profile)


def count(m) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------- architecture
def test_paper_parameter_count_matches_spec_and_table2():
    with torch.device("meta"):
        net = build_vqfr(cfg_of("paper")["methods"]["vqfr"]["arch"])
    n = count(net) / 1e6
    assert abs(n - SPEC_M) / SPEC_M < 0.005, n
    assert round(n, 1) == 76.6
    parts = VQFRKind().parameter_breakdown(net)
    assert sum(parts.values()) == count(net)
    assert parts["quantizer"] == 512 * 256 + 256 + 256 * 512 + 512 + 1024 * 256


def test_params_cli_paper_scale(repo_root):
    r = subprocess.run([sys.executable, "-m", "ugpnet", "params", "--method", "vqfr", "--task",
                        "sr", "--profile", "paper"], cwd=repo_root, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert abs(out["total"] / 1e6 - SPEC_M) / SPEC_M < 0.005


def test_smoke_model_shapes_and_range():
    cfg = cfg_of("smoke")
    model = VQFRKind().build(cfg, "vqfr", "denoise").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y = VQFRKind().predict(model, x)["x_hat"]
        raw = model.net(x * 2 - 1)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert raw["dec"].shape == x.shape and raw["z_conv"].shape == (2, 32, 8, 8)


def test_main_start_input_returns_the_input_at_init():
    net = VQFR(**TINY_ARCH).eval()
    net.start_main_at_input()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(net(x)["main_dec"], x, atol=1e-6)
    cfg = cfg_of("smoke")
    assert cfg["methods"]["vqfr"]["main_start"] == "input"
    assert cfg_of("paper")["methods"]["vqfr"]["main_start"] == "random"
    assert "main branch starts at the input (main_start: input)" in VQFRKind().deviations(
        cfg, "vqfr", "sr")


def test_bad_architecture_is_refused():
    with pytest.raises(ValueError, match="GroupNorm"):
        VQFR(**{**TINY_ARCH, "base_channels": 16})
    with pytest.raises(ValueError, match="one entry each"):
        VQFR(**{**TINY_ARCH, "channel_multipliers": [1, 1]})


def test_deformable_warp_moves_features():
    """Non-zero offsets change the warped features (the DCN is live, not an identity)."""
    net = VQFR(**TINY_ARCH).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a = net(x)["main_dec"]
        for w in net.main_decoder.warp.values():
            w.dcn.conv_offset.weight.normal_(0, 0.5)
        b = net(x)["main_dec"]
    assert not torch.allclose(a, b)


def test_deformable_conv_trains_under_bf16_autocast():
    """Mixed precision (train_precision bf16, or auto on a CPU with native bf16 such as AMX):
    torchvision has no bf16 deformable-conv kernel, so the DCN runs in fp32 inside autocast
    (the default smoke run failed on such a CPU before), and gradients reach its weights."""
    from baselines.vqfr.arch import DeformConv

    torch.manual_seed(0)
    dcn = DeformConv(8, deformable_groups=1)
    x, feat = torch.rand(2, 8, 8, 8), torch.rand(2, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dcn(x, feat)
        loss = out.float().square().mean()
    loss.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out, dcn(x, feat), atol=0)  # the same op as without autocast
    assert dcn.weight.grad.abs().sum() > 0 and dcn.conv_offset.weight.grad is not None


def test_discriminators_shapes():
    d = SWAGANDiscriminator(64, 1, channel_max=16)
    assert d(torch.rand(4, 3, 64, 64)).shape == (4, 1)
    with pytest.raises(ValueError, match="stddev group"):
        d(torch.rand(6, 3, 64, 64))
    p = PatchDiscriminator(8, 2)
    assert p(torch.rand(2, 3, 64, 64)).shape[:2] == (2, 1)


# ----------------------------------------------------------------------------- key maps
OFFICIAL_KEYS = [  # names of TencentARC/VQFR VQFRv1 (vqfrv1_arch.py, vqganv1_arch.py)
    "inpfeat_extraction.conv.weight", "encoder.conv_in.weight",
    "encoder.encoder_dict.Level_1.0.norm1.weight", "encoder.pre_downsample_dict.Level_2.conv.weight",
    "encoder.enc_convout_dict.Level_32.2.weight", "decoder.decoder_dict.Level_32.2.conv2.weight",
    "decoder.pre_upsample_dict.Level_1.conv.weight", "decoder.conv_out.2.weight",
    "main_decoder.decoder_dict.Level_1.shortcut_conv.weight",
    "main_decoder.pre_upsample_dict.Level_16.conv.bias",
    "main_decoder.align_func_dict.Level_32.downsample.conv.weight",
    "main_decoder.align_func_dict.Level_1.offset_conv1.3.weight",
    "main_decoder.align_func_dict.Level_16.offset_conv2.0.weight",
    "main_decoder.align_func_dict.Level_8.dcn.weight",
    "main_decoder.align_func_dict.Level_8.dcn.conv_offset.weight",
    "main_decoder.conv_out_1.0.weight", "main_decoder.conv_out.0.weight",
    "quantizer.quantize_dict.Level_32.quant_conv.weight",
    "quantizer.quantize_dict.Level_32.embedding.weight",
    "quantizer.quantize_dict.Level_32.post_quant_conv.bias",
]


def test_official_layout_names_at_paper_scale():
    with torch.device("meta"):
        net = VQFR()
    keys = set(ours_to_official(net.state_dict()))
    missing = [k for k in OFFICIAL_KEYS if k not in keys]
    assert not missing, missing
    assert "main_decoder.align_func_dict.Level_1.downsample.conv.weight" not in keys  # rate 1
    assert net.state_dict()["main_decoder.warp.Level_32.dcn.conv_offset.weight"].shape == \
        (4 * 27, 512, 3, 3)


def test_official_vqfr_file_loads_strictly(tmp_path):
    src = VQFR(**TINY_ARCH).eval()
    official = ours_to_official(src.state_dict())
    official["quantizer.quantize_dict.Level_4.usage"] = torch.zeros(16, dtype=torch.int)
    path = tmp_path / "VQFR_v1-33a1fac5.pth"
    torch.save({"params": official}, path)
    dst = load_official(VQFR(**TINY_ARCH).eval(), path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(src(x)["main_dec"], dst(x)["main_dec"])


def test_official_file_mismatch_names_file_and_keys(tmp_path):
    official = ours_to_official(VQFR(**TINY_ARCH).state_dict())
    official.pop("main_decoder.conv_out.0.weight")
    official["extra.weight"] = torch.zeros(1)
    path = tmp_path / "VQFR_v1-33a1fac5.pth"
    torch.save({"params": official}, path)
    with pytest.raises(CheckpointError) as e:
        load_official(VQFR(**TINY_ARCH), path)
    msg = str(e.value)
    assert "VQFR_v1-33a1fac5.pth" in msg and "main_decoder.conv_out.0.weight" in msg
    assert "extra.weight" in msg


def test_official_codebook_into_vqgan_and_vqfr(tmp_path):
    vqgan = VQGAN(**{k: v for k, v in TINY_ARCH.items()
                     if k not in ("cond_channels", "deformable_groups")}).eval()
    sd = ours_to_official(vqgan.state_dict())
    assert any(k.startswith("decoder.") for k in sd)
    path = tmp_path / "VQ_Codebook_FFHQ512-39165968.pth"
    torch.save({"params": sd}, path)
    other = load_official(build_vqgan(TINY_ARCH).eval(), path, "VQ codebook")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vqgan(x)[0], other(x)[0])
    net = build_vqfr(TINY_ARCH).eval()
    fresh = load_codebook_into_vqfr(net, path)
    assert {k.split(".")[0] for k in fresh} == {"lq_features", "main_decoder"}
    with torch.no_grad():  # the texture branch is the codebook network's decoder
        assert torch.equal(net(x)["dec"], vqgan(x)[0])
    with pytest.raises(CheckpointError, match="outside the codebook network"):
        load_codebook_into_vqfr(build_vqfr(TINY_ARCH), {"main_decoder.x": torch.zeros(1)})


def test_keymap_roundtrip():
    sd = VQFR(**TINY_ARCH).state_dict()
    assert official_to_ours(ours_to_official(sd)).keys() == sd.keys()


# ----------------------------------------------------------------------------- recipe
def test_recipe_values_in_params_defaults():
    m = cfg_of("paper")["methods"]["vqfr"]
    s1, s2 = m["stages"]["codebook"], m["stages"]["restoration"]
    assert m["sr_input"] == "bicubic_up" and m["codebook"] is None
    assert (m["arch"]["num_code"], m["arch"]["code_dim"], m["arch"]["patch_size"]) == (1024, 256, 32)
    assert s1["loss"] == {"l1": 1.0, "lpips": 1.0, "codebook": 1.0, "gan": 1.0}
    assert (s1["gan_start_iter"], s1["bypass_iters"]) == (50000, 10000)
    assert s1["kmeans"] == {"every": 2000, "until": 30000, "reservoir": 16384}
    assert (s1["r1_gamma"], s1["r1_every"], s1["d_lr"]) == (10.0, 16, 1.0e-4)
    t1 = s1["train"]
    assert (t1["total_iters"], t1["batch_size"], t1["lr"], t1["betas"]) == (800000, 16, 1e-4, [0.9, 0.96])
    assert (t1["lr_schedule"], t1["lr_steps"], t1["lr_gamma"]) == ("step", [500000, 650000], 0.5)
    assert s2["loss"] == {"l1": 1.0, "l1_main": 0.0, "latent": 1.0, "lpips": 1.0,
                          "style": 2000.0, "gan_global": 0.5, "gan_local": 0.5}
    assert (s2["gan_start_iter"], s2["main_gan_start_iter"], s2["d_lr"]) == (-1, 5000, 1e-5)
    t2 = s2["train"]
    assert (t2["total_iters"], t2["batch_size"], t2["lr"], t2["betas"], t2["lr_schedule"]) == \
        (200000, 16, 1e-5, [0.5, 0.9], "constant")


def test_stages_with_and_without_official_codebook():
    kind = VQFRKind()
    m = cfg_of("paper")["methods"]["vqfr"]
    st = kind.stages(m, "sr")
    assert [s.name for s in st] == ["codebook", "restoration"] and st[0].shared
    st = kind.stages({**m, "codebook": "/x/VQ_Codebook_FFHQ512-39165968.pth"}, "sr")
    assert [s.name for s in st] == ["restoration"]
    (uf,) = [n for n in st[0].reads if getattr(n, "key", None) == "codebook"]
    assert uf.per_task is False and "VQ_Codebook_FFHQ512" in uf.hint
    assert "official VQ codebook (stage 1 not trained)" in kind.deviations(
        {"methods": {"vqfr": {**m, "codebook": "x"}}}, "vqfr", "sr")


def test_missing_codebook_file_is_refused_when_planning(tmp_path):
    from ugpnet.plan import Plan

    raw = load_params_file(REPO / "params.yaml")
    raw["profiles"]["tiny"].setdefault("methods", {}).setdefault("vqfr", {})["codebook"] = \
        str(tmp_path / "VQ_Codebook_FFHQ512-39165968.pth")
    cfg = resolve(raw, "tiny")
    with pytest.raises(ConfigError) as e:
        Plan.of(cfg).stage_inputs("vqfr", "denoise", "restoration")
    assert "methods.vqfr.codebook" in str(e.value) and "VQ_Codebook_FFHQ512" in str(e.value)


def test_check_stage_refuses_a_batch_the_stddev_group_cannot_split():
    cfg = cfg_of("tiny")
    cfg["methods"]["vqfr"]["stages"]["restoration"]["train"]["batch_size"] = 6
    with pytest.raises(ConfigError, match="multiple of 4"):
        VQFRKind().check_stage(cfg, "vqfr", "sr", "restoration", {})


# ----------------------------------------------------------------------------- stage pieces
def test_kmeans_and_reservoir():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 2, generator=g)
    c = kmeans(x, 3)
    assert torch.cdist(c, centres).min(1).values.max() < 0.2
    r = Reservoir(20)
    r.add(torch.randn(15, 2))
    r.add(torch.randn(30, 2), g)
    assert r.contents().shape == (20, 2) and r.seen == 45


def test_codebook_stage_bypass_then_kmeans_codebook():
    net = build_vqgan({k: v for k, v in TINY_ARCH.items()})
    st = {"loss": {"l1": 1.0, "lpips": 1.0, "codebook": 1.0, "gan": 1.0}, "gan_start_iter": 2,
          "bypass_iters": 2, "kmeans": {"every": 2, "until": 4, "reservoir": 256, "max_iters": 5},
          "d_lr": 1e-3, "r1_gamma": 10.0, "r1_every": 2,
          "train": {"total_iters": 4, "batch_size": 2, "lr": 1e-3}}

    class NoPerceptual(torch.nn.Module):  # LPIPS needs its offline weights; not the point here
        def forward(self, a, b, feats=None):
            return (a - b).abs().mean() * 0, None

    stage = CodebookStage(net, SWAGANDiscriminator(32, 1, channel_max=8), NoPerceptual(), st,
                          "cpu")
    b = {"lq": torch.rand(2, 3, 32, 32), "gt": torch.rand(2, 3, 32, 32)}
    before = net.quantizer.vq.embedding.weight.detach().clone()
    p0 = stage.step(b, 0)  # cur 1: bypassed, no GAN
    assert p0["codebook"] == 0.0 and "adversarial" not in p0
    stage.step(b, 1)  # cur 2: k-means (2 x 64 vectors >= 16 codes) and quantised, R1 due
    assert stage.kmeans_runs == 1 and not torch.equal(before, net.quantizer.vq.embedding.weight)
    p2 = stage.step(b, 2)  # cur 3: GAN on
    assert p2["codebook"] > 0 and "adversarial" in p2 and "d_loss" in p2
    s = stage.state()
    stage.load_state(s)


def test_hinge_critic_and_adaptive_weight():
    d = PatchDiscriminator(8, 1)
    c = HingeCritic(d, torch.optim.Adam(d.parameters(), 1e-3), 0.5, (-1, 1), name="d_local")
    out = c.d_step(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), 1)
    assert set(out) == {"d_loss"}
    w = torch.nn.Parameter(torch.ones(3))
    rec, gan = (2 * w).sum(), (0.5 * w).sum()
    assert abs(float(adaptive_weight(rec, gan, w)) - 4.0) < 1e-3
    # from the image gradients (what RestorationStage uses) = taming's from the losses
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    img = conv(torch.randn(2, 4, 8, 8))
    rec = (img.tanh() - 0.3).abs().mean() + img.pow(2).mean()
    gan = -(img.sin() * 2).mean()
    ref = adaptive_weight(rec, gan, conv.weight)
    (g_rec,) = torch.autograd.grad(rec, img, retain_graph=True)
    (g_gan,) = torch.autograd.grad(gan, img, retain_graph=True)
    assert torch.allclose(adaptive_weight_at_output(img, conv.weight, g_rec, g_gan), ref,
                          rtol=1e-5)


# ----------------------------------------------------------------------------- the DAG
# one method alone through the DAG; tests/test_dag.py runs every baseline on every task
# through the whole tiny DAG in CI, so this one is for `make test-all`
@pytest.mark.slow
def test_vqfr_trains_through_the_dag_on_tiny(repo_root, tmp_path_factory):
    """The shared codebook stage then denoise's restoration stage, restored and evaluated into
    results/table1.csv by the real workflow (tiny profile: a few iterations each)."""
    work = copy_workflow(tmp_path_factory.mktemp("vqfr"))
    (work / "vqfr.yaml").write_text("overrides:\n  table1: {methods: [vqfr], tasks: [denoise]}\n")
    r = snakemake(["--cores", "1", "results/table1.csv", "--configfile", "params.yaml",
                   "vqfr.yaml", "--config", "profile=tiny"], work, timeout=1200)
    assert r.returncode == 0, failure(r, work)
    plan = plan_for(work, configfiles=["vqfr.yaml"])
    runs = Path(plan.runs) / "vqfr"
    assert (runs / "shared" / "codebook" / "model.pt").exists()
    assert (runs / "denoise" / "restoration" / "model.pt").exists()
    opts = (runs / "denoise" / "restoration" / "options.json").read_text()
    assert "loss_terms_run" in opts and "main_start" in opts
    table = (Path(plan.results) / "table1.csv").read_text()
    assert "vqfr" in table


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_backward_cpu():
    torch.manual_seed(0)
    net = build_vqfr(cfg_of("paper")["methods"]["vqfr"]["arch"]).train()
    net.quantizer.vq.embedding.weight.requires_grad_(False)
    out = net(torch.rand(1, 3, 512, 512) * 2 - 1)
    assert out["main_dec"].shape == (1, 3, 512, 512) and out["z_conv"].shape == (1, 256, 16, 16)
    (out["main_dec"].abs().mean() + out["dec"].abs().mean()).backward()
    assert net.main_decoder.warp["Level_1"].dcn.weight.grad is not None
    assert net.quantizer.vq.embedding.weight.grad is None


@pytest.mark.slow
def test_paper_scale_discriminators_forward_backward_cpu():
    d = SWAGANDiscriminator(512, 2)
    assert abs(count(d) / 1e6 - 27.71) < 0.01
    x = torch.rand(4, 3, 512, 512, requires_grad=True)
    d(x).sum().backward()
    assert x.grad is not None
    p = PatchDiscriminator(64, 3)
    assert p(torch.rand(1, 3, 512, 512)).shape == (1, 1, 62, 62)


@pytest.mark.skipif(not Path("/tmp/official/VQFR/vqfr/archs/vqfrv1_arch.py").exists(),
                    reason="the official code is not fetched into /tmp/official/VQFR")
def test_equivalence_with_official_code_at_64px(tmp_path):
    out = tmp_path / "eq.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "official_vqfr.py"), "--official",
                        "/tmp/official/VQFR", "--size", "64", "--repeats", "1", "--threads", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    checks = json.loads(out.read_text())["checks"]
    for name in ("vqfr_main_dec", "vqfr_dec", "vqgan_dec", "swagan_d", "patch_d"):
        assert checks[name]["max_rel"] < 1e-5, (name, checks[name])
