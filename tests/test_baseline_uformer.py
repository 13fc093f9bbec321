"""Uformer-B (baselines/uformer/): architecture and parameter count, the official key map, the
recipe in params.yaml (loss, AdamW, warm-up + cosine, augmentation), the refusals, the training
step and one tiny run through the real DAG into results/table1.csv.

The official-equivalence figures (same random weights as ZhendongWang6/Uformer's model.py at 512
px) come from bench/official_uformer.py (bench/official-uformer.json); the official code is not a
test dependency (test_matches_the_official_code_when_present runs only where it is checked out).
"""
import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from baselines.uformer import UformerKind
from baselines.uformer.arch import UFORMER_B, Uformer, build_uformer, required_multiple, \
    window_partition, window_reverse
from baselines.uformer.keymap import load_uformer, official_name, uformer_key_map
from baselines.uformer.train import UformerStage, dihedral, warmup_cosine_factor
from ugpnet.cli import main
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.losses.pixel import CharbonnierLoss
from workspace import copy_workflow, failure, plan_for, snakemake

M = 1e6
OFFICIAL = Path(os.environ.get("UFORMER_OFFICIAL", "/tmp/official/Uformer"))
BENCH = Path(__file__).resolve().parents[1] / "bench" / "official-uformer.json"
TINY = dict(img_size=32, embed_dim=4, win_size=4, depths=[1, 2, 1, 1, 2, 1, 1, 2, 1],
            num_heads=[1, 1, 2, 2, 4, 4, 2, 2, 1])


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def paper_cfg(repo_root):
    return resolve(load_params_file(repo_root / "params.yaml"), "paper", warnings=[])


# ----------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("img_size", [128, 256, 512])
def test_paper_parameter_count_on_meta(img_size):
    with torch.device("meta"):
        net = Uformer(img_size=img_size)
    # 50,880,946 = the official get_arch('Uformer_B') counted by bench/official_uformer.py
    # (bench/official-uformer.json); Table 2 of UGPNet: 50.9 M; spec: 50.88 M
    assert n_params(net) / M == pytest.approx(50.88, rel=5e-3)
    assert n_params(net) == 50_880_946
    assert net.multiple == 128


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_ugpnet_params_reports_uformer_at_paper_scale(capsys, task):
    assert main(["--profile", "paper", "params", "--method", "uformer", "--task", task]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] / M == pytest.approx(50.9, abs=0.05)
    assert sum(out["modules"].values()) == out["total"]
    assert list(out["modules"])[:2] == ["input_proj", "encoder_0"]


def test_img_size_decides_the_bottleneck_windows():
    """model.py:865-868: a level at or below win_size at img_size is one unshifted window."""
    with torch.device("meta"):
        den, deb = Uformer(img_size=128), Uformer(img_size=256)
    # denoise crops (128): the bottleneck is 8x8 = one window, never shifted
    assert [b.shift_size for b in den.bottleneck.blocks] == [0, 0]
    assert [b.win_size for b in den.bottleneck.blocks] == [8, 8]
    # deblur crops (256): 16x16, the second block shifted by 4
    assert [b.shift_size for b in deb.bottleneck.blocks] == [0, 4]
    assert [b.shift_size for b in deb.encoderlayer_2.blocks] == [0, 4] * 4
    # the modulators sit on the decoder only, one row per window position
    assert den.decoderlayer_0.blocks[0].modulator.weight.shape == (64, 512)
    assert den.encoderlayer_0.blocks[0].modulator is None


def test_window_partition_roundtrip_and_layout():
    x = torch.arange(2 * 8 * 8 * 3, dtype=torch.float32).view(2, 8, 8, 3)
    w = window_partition(x, 4)
    assert w.shape == (8, 4, 4, 3)
    assert torch.equal(w[1], x[0, :4, 4:8])  # row-major windows of each image
    assert torch.equal(window_reverse(w, 4, 8, 8), x)


def test_global_residual_and_input_checks():
    torch.manual_seed(0)
    net = Uformer(**TINY).eval()
    with torch.no_grad():
        net.output_proj[0].weight.zero_()
        net.output_proj[0].bias.zero_()
        x = torch.rand(1, 3, 32, 32)
        assert torch.equal(net(x), x)  # dd_in = 3: x + y
        assert net(torch.rand(1, 3, 64, 32)).shape == (1, 3, 64, 32)
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.rand(1, 3, 48, 48))
    assert required_multiple(8, 256) == 128 and required_multiple(8, 64) == 64
    with pytest.raises(ValueError, match="modulator|smaller than win_size"):
        Uformer(img_size=32, embed_dim=4, win_size=8, depths=[1] * 9)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = Uformer(**{**TINY, "depths": [2] * 9}, drop_path_rate=0.5)
    blocks = net.encoderlayer_0.blocks
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)  # rate 0: the official Identity
    assert blocks[1].drop_path.p == pytest.approx(0.5 / 7)  # linspace(0, 0.5, 2 * 4)[1]
    x = torch.rand(4, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


# ----------------------------------------------------------------------------- key map
def official_layout(model, prefix="module.") -> dict:
    """Our random weights under the official names (+ the index buffers the file carries)."""
    sd = {prefix + official_name(k): v.clone() for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        if hasattr(mod, "relative_position_index"):
            sd[prefix + official_name(name) + ".relative_position_index"] = \
                mod.relative_position_index.clone()
    return sd


def test_official_names():
    with torch.device("meta"):
        km = uformer_key_map(Uformer(img_size=128))
    assert len(km) == 759 - 40  # the official state dict minus 40 relative_position_index
    for key in ("input_proj.proj.0.weight", "output_proj.proj.0.bias",
                "dowsample_3.conv.0.weight", "upsample_0.deconv.0.weight",
                "conv.blocks.1.attn.relative_position_bias_table",
                "encoderlayer_0.blocks.0.attn.qkv.to_kv.weight",
                "decoderlayer_3.blocks.0.modulator.weight",
                "decoderlayer_0.blocks.7.mlp.dwconv.0.weight",
                "encoderlayer_3.blocks.7.mlp.linear2.0.bias"):
        assert key in km, key
    assert km["conv.blocks.0.norm1.weight"] == "bottleneck.blocks.0.norm1.weight"
    assert km["dowsample_0.conv.0.bias"] == "downsample_0.conv.0.bias"


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_official_checkpoint_loads_strictly(tmp_path, prefix):
    torch.manual_seed(0)
    src, dst = Uformer(**TINY), Uformer(**TINY)
    opt = torch.optim.AdamW(src.parameters(), lr=2e-4)
    src(torch.rand(1, 3, 32, 32)).mean().backward()
    opt.step()
    path = tmp_path / "Uformer_B.pth"
    torch.save({"epoch": 250, "state_dict": official_layout(src, prefix),
                "optimizer": opt.state_dict()}, path)
    ignored = load_uformer(path, dst)
    assert len(ignored) == 12 and all(k.endswith("relative_position_index") for k in ignored)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_official_checkpoint_failures_name_the_file(tmp_path):
    net = Uformer(**TINY)
    sd = official_layout(net)
    bad = dict(sd)
    del bad["module.decoderlayer_1.blocks.0.modulator.weight"]
    bad["module.encoderlayer_0.blocks.0.cross_modulator.weight"] = torch.zeros(16, 4)
    bad["module.conv.blocks.0.attn.relative_position_bias_table"] = torch.zeros(49, 4)
    path = tmp_path / "Uformer_B.pth"
    torch.save({"epoch": 1, "state_dict": bad, "optimizer": {}}, path)
    with pytest.raises(CheckpointError) as e:
        load_uformer(path, net)
    msg = str(e.value)
    assert str(path) in msg and "decoderlayer_1.blocks.0.modulator.weight" in msg
    assert "cross_modulator" in msg and "conv.blocks.0.attn.relative_position_bias_table" in msg
    torch.save({"epoch": 1, "params": sd}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an official Uformer checkpoint"):
        load_uformer(tmp_path / "other.pth", net)


def test_the_kind_loads_an_official_file_and_a_model_pt(tmp_path, repo_root):
    cfg = resolve(load_params_file(repo_root / "params.yaml"), "tiny", warnings=[])
    k = UformerKind()
    torch.manual_seed(0)
    src = k.build(cfg, "uformer", "denoise")
    torch.save({"epoch": 1, "state_dict": official_layout(src), "optimizer": {}},
               tmp_path / "Uformer_B.pth")
    net = k.load(cfg, "uformer", "denoise", tmp_path / "Uformer_B.pth", "cpu")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = k.predict(net, x)["x_hat"]
        assert torch.equal(out, src.eval()(x).clamp(0, 1))
    with pytest.raises(CheckpointError, match="neither"):
        k.load(cfg, "uformer", "denoise", tmp_path / "weights.bin", "cpu")


# ----------------------------------------------------------------------------- recipe
def test_recipe_values_in_params_defaults(paper_cfg):
    m = paper_cfg["methods"]["uformer"]
    assert m["kind"] == "uformer" and m["tasks"] == ["denoise", "deblur"]
    assert dict(m["architecture"]) == UFORMER_B
    assert m["loss"] == {"charbonnier_eps": 1e-3}
    assert m["augment"] == "dihedral" and m["select"] == "psnr"
    assert m["mixup"] == {"alpha": 1.2, "from_iter": {"denoise": 5 * 3000, "deblur": None}}
    assert m["schedule"] == {"warmup_iters": {"denoise": 3 * 3000, "deblur": 3 * 263},
                             "lr_step_iters": {"denoise": 3000, "deblur": 263}, "eta_min": 1e-6}
    for task, (bs, ps, epochs, epoch_iters) in {"denoise": (32, 128, 250, 3000),
                                                "deblur": (8, 256, 3000, 263)}.items():
        t = m["train"][task]
        assert (t["batch_size"], t["crop_size"]) == (bs, ps)
        assert t["total_iters"] == epochs * epoch_iters
        assert (t["lr"], t["betas"], t["weight_decay"]) == (2e-4, [0.9, 0.999], 0.02)
        assert t["val_every"] == epoch_iters // 4 and t["hflip"] is False
        assert "lr_schedule" not in t
    # GoPro: 2,103 training pairs in batches of 8 (drop_last False); SIDD: 320 x 300 patches / 32
    assert math.ceil(2103 / 8) == 263 and 320 * 300 // 32 == 3000


def test_charbonnier_is_the_official_formula():
    """losses.py:41-51: mean(sqrt(d*d + eps*eps)), eps 1e-3 (squared)."""
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    official = torch.mean(torch.sqrt((a - b) * (a - b) + 1e-3 * 1e-3))
    assert torch.allclose(CharbonnierLoss(eps=1e-3)(a, b), official)
    same = torch.rand(1, 3, 4, 4)
    assert float(CharbonnierLoss(eps=1e-3)(same, same)) == pytest.approx(1e-3)


def test_schedule_is_the_official_per_epoch_warmup_and_cosine():
    """Golden: the official GradualWarmupScheduler + CosineAnnealingLR (torch 1.8 rule) per
    epoch, written by bench/official_uformer.py; and the closed form by hand."""
    kw = dict(total_iters=20, warmup_iters=3, step_iters=1, lr=2e-4, eta_min=1e-6)
    ours = [2e-4 * warmup_cosine_factor(e, **kw) for e in range(20)]
    assert ours[:4] == pytest.approx([2e-4 / 3, 4e-4 / 3, 2e-4, 2e-4])
    assert ours[4] == pytest.approx(1e-6 + (2e-4 - 1e-6) * (1 + math.cos(math.pi / 17)) / 2)
    if BENCH.exists():
        sch = json.loads(BENCH.read_text())["schedule"]
        assert ours == pytest.approx(sch["official_lr_per_epoch_torch18"], rel=1e-9)
    # epochs of many iterations: the lr changes only at epoch boundaries
    f = [warmup_cosine_factor(i, total_iters=60, warmup_iters=9, step_iters=3, lr=2e-4,
                              eta_min=1e-6) for i in range(60)]
    assert f[0] == f[2] == pytest.approx(1 / 3) and f[3] == pytest.approx(2 / 3)
    assert f[9] == f[11] == pytest.approx(1.0) and f[12] < 1.0


def test_dihedral_is_augment_rgb_torch():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    img = x[0]
    expected = [img, torch.rot90(img, 1, [-1, -2]), torch.rot90(img, 2, [-1, -2]),
                torch.rot90(img, 3, [-1, -2]), img.flip(-2),
                torch.rot90(img, 1, [-1, -2]).flip(-2), torch.rot90(img, 2, [-1, -2]).flip(-2),
                torch.rot90(img, 3, [-1, -2]).flip(-2)]
    for k in range(8):
        assert torch.equal(out[k], expected[k]), k
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_stage_optimiser_schedule_and_mixup():
    torch.manual_seed(0)
    net = Uformer(**TINY)
    st = UformerStage(net, {"total_iters": 12, "batch_size": 2, "lr": 2e-4,
                            "betas": [0.9, 0.999], "weight_decay": 0.02},
                      {"warmup_iters": 6, "lr_step_iters": 2, "eta_min": 1e-6}, "cpu",
                      mixup_from_iter=3)
    g = st.opt.param_groups[0]
    assert isinstance(st.opt, torch.optim.AdamW)
    assert (g["betas"], g["weight_decay"], g["eps"]) == ((0.9, 0.999), 0.02, 1e-8)
    assert g["lr"] == pytest.approx(2e-4 / 3)  # iteration 0 trains at lr / 3
    batch = {"lq": torch.rand(2, 3, 32, 32), "gt": torch.rand(2, 3, 32, 32)}
    logs = [st.step(batch, it) for it in range(4)]
    assert "mixup" not in logs[2] and logs[3]["mixup"] == 1.0
    assert [round(r["lr"] / 2e-4, 6) for r in logs] == [round(v, 6) for v in
                                                       (1 / 3, 2 / 3, 2 / 3, 1.0)]
    assert st.weights() is not None and set(st.weights()) == set(net.state_dict())


# ----------------------------------------------------------------------------- checks
def test_check_stage_refuses_sizes_that_do_not_tile(repo_root):
    k = UformerKind()
    base = load_params_file(repo_root / "params.yaml")
    ok = resolve(base, "paper", warnings=[])
    for task in ("denoise", "deblur"):
        k.check_stage(ok, "uformer", task, "train", {})
    bad = resolve(base, "paper", ["data.resolution=320"], warnings=[])
    with pytest.raises(ConfigError, match=r"data.resolution = 320.*divisible by 128"):
        k.check_stage(bad, "uformer", "denoise", "train", {})
    bad = resolve(base, "paper", ["methods.uformer.train.deblur.crop_size=192"], warnings=[])
    with pytest.raises(ConfigError, match=r"train.deblur.crop_size = 192"):
        k.check_stage(bad, "uformer", "deblur", "train", {})
    bad = resolve(base, "paper", ["methods.uformer.train.denoise.lr_schedule=cosine"],
                  warnings=[])
    with pytest.raises(ConfigError, match="lr_schedule is not used"):
        k.check_stage(bad, "uformer", "denoise", "train", {})
    bad = resolve(base, "paper", ["methods.uformer.architecture.num_heads=[3,2,4,8,16,16,8,4,2]"],
                  warnings=[])
    with pytest.raises(ConfigError, match="head counts"):
        k.check_stage(bad, "uformer", "denoise", "train", {})


def test_sr_is_not_a_uformer_task(repo_root):
    with pytest.raises(ConfigError):
        resolve(load_params_file(repo_root / "params.yaml"), "paper",
                ["methods.uformer.tasks=[denoise,sr]"], warnings=[])


def test_deviations(repo_root, paper_cfg):
    k = UformerKind()
    for prof in ("paper", "smoke", "tiny"):
        cfg = resolve(load_params_file(repo_root / "params.yaml"), prof, warnings=[])
        assert k.deviations(cfg, "uformer", "denoise") == []
        assert k.deviations(cfg, "uformer", "deblur") == []
    cfg = resolve(load_params_file(repo_root / "params.yaml"), "paper",
                  ["methods.uformer.augment=none", "methods.uformer.mixup.from_iter.denoise=null"],
                  warnings=[])
    assert k.deviations(cfg, "uformer", "denoise") == ["no dihedral augmentation", "no MixUp"]


# ----------------------------------------------------------------------------- official code
@pytest.mark.skipif(not (OFFICIAL / "model.py").exists(), reason="official Uformer not checked out")
def test_matches_the_official_code_when_present(tmp_path, monkeypatch):
    import importlib.util

    offpkgs = Path(os.environ.get("UFORMER_OFFPKGS", "/tmp/offpkgs-uformer"))
    if offpkgs.exists():  # timm and einops installed apart (bench/official_uformer.py)
        monkeypatch.setattr(sys, "path", sys.path + [str(offpkgs)])
    pytest.importorskip("timm")
    pytest.importorskip("einops")
    spec = importlib.util.spec_from_file_location("uformer_official_model", OFFICIAL / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    Official = mod.Uformer
    torch.manual_seed(0)
    off = Official(img_size=64, embed_dim=8, win_size=8, token_projection="linear",
                   token_mlp="leff", depths=[1, 2, 2, 2, 2, 2, 2, 2, 1], modulator=True).eval()
    ours = Uformer(img_size=64, embed_dim=8, win_size=8, depths=[1, 2, 2, 2, 2, 2, 2, 2, 1])
    torch.save({"epoch": 1, "state_dict": torch.nn.DataParallel(off).state_dict()},
               tmp_path / "u.pth")
    load_uformer(tmp_path / "u.pth", ours)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), off(x), atol=1e-5)


# ----------------------------------------------------------------------------- the real DAG
OVERRIDE = """
overrides:
  table1: {methods: [uformer], tasks: [denoise, deblur]}
"""


# one method alone through the DAG (`make test-all`)
@pytest.mark.slow
def test_uformer_trains_restores_and_reaches_table1_on_tiny(repo_root, tmp_path):
    work = copy_workflow(tmp_path / "uformer")
    (work / "uformer.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml",
                   "uformer.yaml", "--config", "profile=tiny"], work, timeout=1200)
    assert r.returncode == 0, failure(r, work)
    df = pd.read_csv(work / "results" / "table1.csv", index_col="method")
    assert list(df.index) == ["uformer"] and df.loc["uformer", "family"] == "regression"
    assert pd.notna(df.loc["uformer", "denoise_psnr"]) and pd.notna(df.loc["uformer", "deblur_psnr"])
    plan = plan_for(work, configfiles=["uformer.yaml"])
    run = Path(plan.stage_dir("uformer", "denoise", "train"))
    opts = json.loads((run / "options.json").read_text())["options"]
    assert opts["img_size"] == 32 and opts["deviations"] == [] and opts["augment"] == "dihedral"
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["charbonnier"] > 0 for r in log)
    assert any("mixup" in r for r in log)


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_backward_on_cpu():
    torch.manual_seed(0)
    net = build_uformer(UFORMER_B, 256)
    x = torch.rand(1, 3, 512, 512)
    out = net(x)
    assert out.shape == (1, 3, 512, 512)
    CharbonnierLoss(eps=1e-3)(out, torch.rand_like(x)).backward()
    assert torch.isfinite(net.input_proj[0].weight.grad).all()
    assert net.decoderlayer_0.blocks[0].modulator.weight.grad is not None
    assert torch.isfinite(net.bottleneck.blocks[1].attn.relative_position_bias_table.grad).all()
