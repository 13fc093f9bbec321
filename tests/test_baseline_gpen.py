"""GPEN BFR-512 (baselines/gpen/): architecture, parameter counts, official key maps, the recipe in
params.yaml, the refusals for missing external files, the training step (separate R1 step,
path-length regulariser, EMA) and one tiny run through the real DAG into results/table1.csv.

The official-equivalence figures (same random weights as yangxy/GPEN's FullGenerator, 512 px)
come from bench/official_gpen.py (bench/official-gpen.json): the official code is not a test
dependency."""
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from baselines.gpen import GPENKind, PAPER_ARCHITECTURE
from baselines.gpen.arch import GPEN, GPENDiscriminator, gpen_channels
from baselines.gpen.irse import IDLoss, IRSE50
from baselines.gpen.keymap import (gpen_discriminator_key_map, gpen_generator_key_map,
                                   irse50_key_map, load_gpen_discriminator, load_gpen_generator,
                                   load_irse50)
from ugpnet.cli import main
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from workspace import copy_workflow, failure, plan_for, snakemake

M = 1e6
TINY = dict(size=16, style_dim=8, n_mlp=1, narrow=1 / 64)  # 8 channels


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def paper_cfg(repo_root):
    return resolve(load_params_file(repo_root / "params.yaml"), "paper", warnings=[])


# ----------------------------------------------------------------------------- architecture
def test_paper_parameter_counts_on_meta():
    with torch.device("meta"):
        g, d = GPEN(), GPENDiscriminator(512, channels=gpen_channels(512))
    assert n_params(g) == 71_005_223  # issue: 71.01 M (FullGenerator, counted by the bench too)
    assert n_params(g.generator) / M == pytest.approx(55.82, rel=5e-3)
    assert (n_params(g) - n_params(g.generator)) / M == pytest.approx(15.18, rel=5e-3)
    assert n_params(d) / M == pytest.approx(28.98, rel=5e-3)
    assert len(g.encoder) == 8  # ecd0 .. ecd7 at 512 px


@pytest.mark.parametrize("task", ["denoise", "deblur", "sr"])
def test_ugpnet_params_reports_gpen_at_paper_scale(capsys, task):
    assert main(["--profile", "paper", "params", "--method", "gpen", "--task", task]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] / M == pytest.approx(71.01, rel=5e-3)
    assert sum(out["modules"].values()) == out["total"]
    assert set(out["modules"]) == {"encoder", "final_linear", "generator"}


def test_channel_table_is_the_official_one():
    assert gpen_channels(512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256,
                                  256: 128, 512: 64}
    assert gpen_channels(64, 2, 1 / 32) == {4: 16, 8: 16, 16: 16, 32: 16, 64: 16}


def test_shapes_range_and_concatenated_features():
    torch.manual_seed(0)
    g = GPEN(**TINY).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        img, latent = g(x * 2 - 1, return_latents=True)
        out = g.restore(x)
    assert img.shape == (2, 3, 16, 16) and latent.shape == (2, g.generator.num_latents, 8)
    assert torch.allclose(out, (img + 1) / 2)
    # every style layer outputs 2 C channels (its conv and the encoder feature)
    assert g.generator.conv1.bias.shape == (2 * 8,) and g.generator.to_rgb1.conv.in_channels == 16
    # the encoder features reach the output: changing a feature strength changes the image
    with torch.no_grad():
        g.generator.convs[1].feature_strength.fill_(1.0)
        assert not torch.allclose(g(x * 2 - 1), img)
    with pytest.raises(ValueError, match="GPEN expects"):
        g(torch.rand(1, 3, 32, 32))


def test_discriminator_stddev_over_the_whole_batch():
    torch.manual_seed(0)
    d = GPENDiscriminator(16, channels=gpen_channels(16, 2, 1 / 64))
    x = torch.randn(3, 8, 4, 4)
    y = d.minibatch_stddev(x)[:, -1]
    expected = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean()
    assert torch.allclose(y, expected.expand_as(y))


# ----------------------------------------------------------------------------- key maps
def official_layout(model, key_map, buffers=()) -> dict:
    """Our weights in the official layout (the inverse key map, official shapes), plus the
    official FIR-kernel buffers."""
    ours = model.state_dict()
    sd = {}
    for src, dst in key_map.items():
        t = ours[dst].clone()
        if src.endswith("conv.weight") and src.startswith("generator."):
            t = t.unsqueeze(0)  # [1, O, I, k, k]
        if re.fullmatch(r"generator\.to_rgb(1|s\.\d+)\.bias", src):
            t = t.view(1, 3, 1, 1)
        sd[src] = t
    for k in buffers:
        sd[k] = torch.ones(4, 4) / 16
    return sd


def test_gpen_bfr_512_layout_loads_strictly(tmp_path):
    torch.manual_seed(0)
    src = GPEN(**TINY)
    km = gpen_generator_key_map(src)
    assert {"generator.style.1.weight", "generator.input.input", "generator.conv1.noise.weight",
            "generator.conv1.activate.bias", "ecd0.0.0.weight", "ecd1.0.1.weight",
            "ecd1.0.2.bias", "final_linear.0.weight", "generator.to_rgbs.0.bias"} <= set(km)
    buffers = ["generator.convs.0.conv.blur.kernel", "generator.to_rgbs.0.upsample.kernel",
               "ecd1.0.0.kernel"]
    sd = official_layout(src, km, buffers)
    assert sd["generator.convs.0.conv.weight"].ndim == 5
    path = tmp_path / "GPEN-BFR-512.pth"
    torch.save(sd, path)
    dst = GPEN(**TINY)
    ignored = load_gpen_generator(path, dst)
    assert sorted(ignored) == sorted(buffers)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # the kind loads the official file as a model too
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(src.eval().restore(x), dst.eval().restore(x))


def test_gpen_generator_strict_load_failures(tmp_path):
    g = GPEN(**TINY)
    sd = official_layout(g, gpen_generator_key_map(g))
    bad = dict(sd)
    del bad["ecd2.0.1.weight"]
    bad["generator.noises.noise_0"] = torch.zeros(1)
    bad["final_linear.0.bias"] = torch.zeros(5)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_gpen_generator(tmp_path / "bad.pth", g)
    msg = str(e.value)
    assert "ecd2.0.1.weight" in msg and "generator.noises.noise_0" in msg
    assert "final_linear.0.bias" in msg and "GPEN-BFR-512.pth" in msg
    # a training checkpoint {g, d, g_ema, ...} is not the flat release
    torch.save({"g": sd, "d": {}, "g_ema": sd}, tmp_path / "train.pth")
    with pytest.raises(CheckpointError, match="not the flat GPEN generator"):
        load_gpen_generator(tmp_path / "train.pth", g)


def test_gpen_d_layout_loads_strictly(tmp_path):
    torch.manual_seed(0)
    ch = gpen_channels(16, 2, 1 / 64)
    src, dst = GPENDiscriminator(16, channels=ch), GPENDiscriminator(16, channels=ch)
    km = gpen_discriminator_key_map(src)
    assert {"convs.0.0.weight", "convs.0.1.bias", "convs.1.conv2.1.weight",
            "final_linear.1.bias"} <= set(km)
    sd = {k: src.state_dict()[v].clone() for k, v in km.items()}
    sd["convs.1.conv2.0.kernel"] = torch.ones(4, 4) / 16
    torch.save(sd, tmp_path / "GPEN-BFR-512-D.pth")
    load_gpen_discriminator(tmp_path / "GPEN-BFR-512-D.pth", dst)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(src(x), dst(x))
    del sd["final_linear.0.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="final_linear.0.weight"):
        load_gpen_discriminator(tmp_path / "bad.pth", dst)


def test_irse50_layout_loads_strictly(tmp_path):
    torch.manual_seed(0)
    src, dst = IRSE50(), IRSE50()
    km = irse50_key_map(src)
    assert "input_layer.0.weight" in km and "body.0.res_layer.5.fc1.weight" in km
    assert "body.1.shortcut_layer.0.weight" not in km and "body.3.shortcut_layer.0.weight" in km
    assert sum(p.numel() for p in src.parameters()) / M == pytest.approx(43.8, rel=1e-2)
    # an old-PyTorch file without num_batches_tracked loads; anything else missing does not
    sd = {k: src.state_dict()[v].clone() for k, v in km.items()
          if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "model_ir_se50.pth")
    load_irse50(tmp_path / "model_ir_se50.pth", dst)
    faces = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        assert torch.equal(src.eval()(faces), dst.eval()(faces))
    del sd["output_layer.3.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="output_layer.3.weight"):
        load_irse50(tmp_path / "bad.pth", dst)


def test_id_loss_crop_and_value():
    net = IRSE50()
    loss = IDLoss(net)
    x = torch.rand(2, 3, 512, 512) * 2 - 1
    assert loss.crop(x).shape == (2, 3, 112, 112)
    # the official crop at 512: rows 70:-66, cols 64:-72
    assert torch.allclose(loss.crop(x), torch.nn.functional.adaptive_avg_pool2d(
        x[:, :, 70:-66, 64:-72], 112))
    small = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert float(loss(small, small)) == pytest.approx(0.0, abs=1e-5)
        assert 0 < float(loss(small, small.flip(0))) <= 2


# ----------------------------------------------------------------------------- recipe, checks
def test_recipe_values_in_params_defaults(paper_cfg):
    m = paper_cfg["methods"]["gpen"]
    assert m["kind"] == "gpen" and m["tasks"] == ["denoise", "deblur", "sr"]
    assert m["sr_input"] == "bicubic_up"
    assert dict(m["architecture"]) == PAPER_ARCHITECTURE
    assert m["loss"] == {"adversarial": 1.0, "smooth_l1": 1.0, "id": 1.0}
    assert m["r1"] == {"gamma": 10.0, "every": 16}
    assert m["path_length"] == {"weight": 2.0, "every": 4, "decay": 0.01}
    assert 0.5 ** (1 / m["ema_half_life_iters"]) == pytest.approx(0.5 ** (32 / 10000))
    t = m["train"]
    assert (t["lr"], t["betas"], t["lr_schedule"], t["batch_size"], t["total_iters"]) == \
        (0.002, [0.0, 0.99], "constant", 2, 4_000_000)
    assert m["select"] == "final" and m["pretrained"] is None and m["arcface"] is None


def test_reg_ratio_scaled_optimisers(paper_cfg):
    m = paper_cfg["methods"]["gpen"]
    k = GPENKind()
    g, d = GPEN(**TINY), GPENDiscriminator(16, channels=gpen_channels(16, 2, 1 / 64))
    st = k.make_stage(m, g, d, "cpu", "fp32", id_net=IRSE50())
    assert st.frozen and not any(p.requires_grad for p in st.frozen[0].parameters())
    gg, dg = st.opt_g.param_groups[0], st.critics[0].opt.param_groups[0]
    assert gg["lr"] == pytest.approx(0.002 * 4 / 5) and gg["betas"] == pytest.approx((0, 0.99 ** 0.8))
    assert dg["lr"] == pytest.approx(0.002 * 16 / 17)
    assert dg["betas"] == pytest.approx((0, 0.99 ** (16 / 17)))
    assert st.ema_beta == pytest.approx(0.5 ** (32 / 10000))


def test_missing_arcface_is_refused_with_one_message(paper_cfg):
    k = GPENKind()
    with pytest.raises(ConfigError) as e:
        k.check_stage(paper_cfg, "gpen", "denoise", "train", {"gt": "x"})
    msg = str(e.value)
    assert "methods.gpen.arcface" in msg and "model_ir_se50.pth" in msg
    assert "methods.gpen.loss.id: 0" in msg
    # explicit off: accepted
    cfg = resolve(load_params_file(Path(__file__).parents[1] / "params.yaml"), "paper",
                  ["methods.gpen.loss.id=0"], warnings=[])
    k.check_stage(cfg, "gpen", "denoise", "train", {"gt": "x"})
    assert "no ID loss (no IR-SE50 ArcFace)" in k.deviations(cfg, "gpen", "denoise")


def test_official_files_need_the_paper_network(repo_root, tmp_path):
    f = tmp_path / "GPEN-BFR-512.pth"
    f.write_bytes(b"x")
    cfg = resolve(load_params_file(repo_root / "params.yaml"), "smoke",
                  [f"methods.gpen.pretrained={f}"], warnings=[])
    with pytest.raises(ConfigError, match="not the 512-px paper network"):
        GPENKind().check_stage(cfg, "gpen", "denoise", "train", {"pretrained": str(f)})


def test_a_pretrained_path_that_does_not_exist_is_refused_by_the_plan(repo_root):
    from ugpnet.plan import Plan

    cfg = resolve(load_params_file(repo_root / "params.yaml"), "paper",
                  ["methods.gpen.pretrained=/nowhere/GPEN-BFR-512.pth", "methods.gpen.loss.id=0"],
                  warnings=[])
    with pytest.raises(ConfigError) as e:
        Plan.of(cfg).stage_inputs("gpen", "denoise", "train")
    assert "methods.gpen.pretrained" in str(e.value) and "GPEN-BFR-512.pth" in str(e.value)


def test_deviations(repo_root, paper_cfg):
    k = GPENKind()
    assert k.deviations(paper_cfg, "gpen", "sr") == ["from scratch (no GPEN-BFR-512 given)"]
    cfg = resolve(load_params_file(repo_root / "params.yaml"), "paper",
                  ["methods.gpen.pretrained=a.pth", "methods.gpen.pretrained_d=b.pth",
                   "methods.gpen.arcface=c.pth"], warnings=[])
    assert k.deviations(cfg, "gpen", "sr") == []
    smoke = resolve(load_params_file(repo_root / "params.yaml"), "smoke", warnings=[])
    assert k.deviations(smoke, "gpen", "sr") == ["from scratch (no GPEN-BFR-512 given)",
                                                 "no ID loss (no IR-SE50 ArcFace)"]


# ----------------------------------------------------------------------------- the training step
def tiny_stage(paper_cfg, **changes):
    import copy

    m = copy.deepcopy(paper_cfg["methods"]["gpen"])
    m["loss"]["id"] = 0.0
    m.update(changes)
    torch.manual_seed(0)
    g, d = GPEN(**TINY), GPENDiscriminator(16, channels=gpen_channels(16, 2, 1 / 64))
    return GPENKind().make_stage(m, g, d, "cpu", "fp32")


def test_step_runs_r1_and_path_length_on_their_iterations(paper_cfg):
    st = tiny_stage(paper_cfg, r1={"gamma": 10.0, "every": 2},
                    path_length={"weight": 2.0, "every": 2, "decay": 0.01})
    batch = {"lq": torch.rand(2, 3, 16, 16), "gt": torch.rand(2, 3, 16, 16)}
    p0 = st.step(batch, 0)
    assert {"d_loss", "r1", "path", "path_length", "smooth_l1", "adversarial"} <= set(p0)
    assert float(st.mean_path_length) == pytest.approx(0.01 * p0["path_length"], rel=1e-5)
    p1 = st.step(batch, 1)
    assert "r1" not in p1 and "path" not in p1
    # the EMA generator is what is exported; the running path mean is resumed
    assert all(torch.equal(v, st.ema.state_dict()[k]) for k, v in st.weights().items())
    state = st.state()
    other = tiny_stage(paper_cfg)
    other.load_state(state)
    assert float(other.mean_path_length) == float(st.mean_path_length)


def test_r1_is_a_separate_d_step(paper_cfg):
    st = tiny_stage(paper_cfg, r1={"gamma": 10.0, "every": 1})
    calls = []
    opt = st.critics[0].opt
    orig = opt.step
    opt.step = lambda *a, **k: (calls.append(1), orig(*a, **k))[1]
    st.critics[0].d_step(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), 0)
    assert len(calls) == 2


# ----------------------------------------------------------------------------- the real DAG
OVERRIDE = """
overrides:
  table1: {methods: [gpen], tasks: [sr]}
"""


# one method alone through the DAG; tests/test_dag.py runs every baseline on every task
# through the whole tiny DAG in CI, so this one is for `make test-all`
@pytest.mark.slow
def test_gpen_trains_restores_and_reaches_table1_on_tiny(repo_root, tmp_path):
    work = copy_workflow(tmp_path / "gpen")
    (work / "gpen.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml",
                   "gpen.yaml", "--config", "profile=tiny"], work, timeout=1200)
    assert r.returncode == 0, failure(r, work)
    df = pd.read_csv(work / "results" / "table1.csv", index_col="method")
    assert list(df.index) == ["gpen"] and df.loc["gpen", "family"] == "generative"
    assert pd.notna(df.loc["gpen", "sr_psnr"])
    plan = plan_for(work, configfiles=["gpen.yaml"])
    run = Path(plan.stage_dir("gpen", "sr", "train"))
    opts = json.loads((run / "options.json").read_text())["options"]
    assert opts["init"] == "from scratch" and opts["terms"]["id_arcface_irse50"] == 0.0
    assert opts["deviations"] == ["from scratch (no GPEN-BFR-512 given)",
                                  "no ID loss (no IR-SE50 ArcFace)"]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["d_loss"] > 0 for r in log)
    assert any("path" in r for r in log) and any("r1" in r for r in log)


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_backward_on_cpu():
    torch.manual_seed(0)
    g, d = GPEN(), GPENDiscriminator(512, channels=gpen_channels(512))
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    img, latent = g(x, return_latents=True)
    assert img.shape == (1, 3, 512, 512) and latent.shape == (1, 16, 512)
    (d(img).sum() + img.square().mean()).backward()
    assert g.encoder[0].weight.grad is not None and g.generator.const.grad is not None
    assert torch.isfinite(g.final_linear.weight.grad).all()


@pytest.mark.slow
def test_paper_scale_id_loss_backward_on_cpu():
    torch.manual_seed(0)
    loss = IDLoss(IRSE50())
    y_hat = (torch.rand(1, 3, 512, 512) * 2 - 1).requires_grad_(True)
    v = loss(y_hat, torch.rand(1, 3, 512, 512) * 2 - 1)
    v.backward()
    assert torch.isfinite(y_hat.grad).all() and float(v.detach()) > 0
