"""GLEAN (baselines/glean/): parameter counts at 512 (spec: mmagic GLEANStyleGANv2(64, 512)), the
mmagic key maps (synthetic state dicts in the official layout), the recipe in params.yaml, the
cosine schedule with its own T_max, the training step, refusals, a tiny DAG run and a
paper-scale forward/backward.

The official-equivalence figures (same random weights as mmagic's GLEANStyleGANv2 at 512 px)
come from bench/official_glean.py (bench/official-glean.json): the official code is not a test
dependency."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baselines.glean import GLEANKind, build_net, deviations_of
from baselines.glean.arch import GLEANStyleGANv2
from baselines.glean.keymap import (discriminator_key_map, glean_key_map, load_official)
from baselines.glean.train import cosine_annealing
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.models.synthesis import Discriminator
from workspace import copy_workflow, env_with, failure, plan_for, snakemake

REPO = Path(__file__).resolve().parents[1]
TINY_BANK = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
PAPER_BANK = dict(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512,
                  lr_mlp=0.01)


def cfg_of(profile: str):
    return resolve(load_params_file(REPO / "params.yaml"), profile, warnings=[])


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------- architecture
def test_paper_parameter_counts_on_meta():
    """Spec (baselines.md, section 1): GLEANStyleGANv2(in 64, out 512) = 166.92 M, 136.65 M
    trainable, 30.28 M frozen StyleGAN2 cm=2, RRDB extractor 16.59 M; one Linear(8192, 16*512)."""
    with torch.device("meta"):
        net = build_net(cfg_of("paper"), "glean")
    assert net.in_size == 64 and net.out_size == 512
    assert n_params(net) == pytest.approx(166.92e6, rel=5e-3)
    assert sum(p.numel() for p in net.trainable_parameters()) == pytest.approx(136.65e6, rel=5e-3)
    parts = GLEANKind().parameter_breakdown(net)
    assert parts["generator (frozen prior)"] == pytest.approx(30.28e6, rel=5e-3)
    assert parts["rrdb_extractor"] == pytest.approx(16.59e6, rel=5e-3)
    assert parts["fusion"] == pytest.approx(23.67e6, rel=5e-3)
    assert parts["decoder"] == pytest.approx(7.75e6, rel=5e-3)
    lin = net.encoder[-1][-1]
    assert tuple(lin.weight.shape) == (16 * 512, 8192)
    assert not any(p.requires_grad for p in net.generator.parameters())


def test_ugpnet_params_cli_reports_the_paper_count():
    r = subprocess.run([sys.executable, "-m", "ugpnet.cli", "--profile", "paper", "params",
                        "--method", "glean", "--task", "sr"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"] == pytest.approx(166.92e6, rel=5e-3)


def test_shapes_fusion_order_and_gradients():
    torch.manual_seed(0)
    net = GLEANStyleGANv2(TINY_BANK, in_size=8, rrdb_channels=8, num_rrdbs=1, growth_channels=4)
    assert len(net.fusion_out) == 2 and len(net.decoder) == 3  # fusion at 4, 8; decoder 8..32
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    y, rgb = net(x, return_rgb=True)
    assert y.shape == (2, 3, 32, 32) and rgb.shape == (2, 3, 32, 32)
    assert torch.equal(net(x), y), "fixed noise buffers: deterministic, skip path does not matter"
    y.square().mean().backward()
    assert net.encoder[-1][-1].weight.grad is not None
    assert net.fusion_out[0].weight.grad.abs().sum() > 0
    assert net.fusion_skip[0].weight.grad is None  # mmagic's unused RGB skip path
    assert all(p.grad is None for p in net.generator.parameters())
    with pytest.raises(ValueError, match=r"\[N, C, 8, 8\]"):
        net(torch.zeros(1, 3, 32, 32))


# ----------------------------------------------------------------------------- official key map
def official_glean_names(net) -> dict[str, tuple]:
    """mmagic GLEANStyleGANv2 state-dict names and shapes for ``net``'s sizes, enumerated from
    the official module tree (glean_styleganv2.py, stylegan2_generator.py, stylegan2_modules.py;
    checked against the modules built by bench/_mmagic_shim.py), not from our key map."""
    g = net.generator
    ch, sd, L = g.channels, g.style_dim, g.log_size
    out = {}
    for j in range(g.num_layers):
        r = 2 ** ((j + 5) // 2)
        out[f"generator.injected_noise_{j}"] = (1, 1, r, r)
    for i in range(1, g.n_mlp + 1):
        out[f"generator.style_mapping.{i}.bias"] = (sd,)
        out[f"generator.style_mapping.{i}.linear.weight_orig"] = (sd, sd)
    out["generator.constant_input.input"] = (1, ch[4], 4, 4)

    def style(p, cin, cout, up=False):
        out.update({f"{p}.conv.weight_orig": (1, cout, cin, 3, 3),
                    f"{p}.conv.style_modulation.bias": (cin,),
                    f"{p}.conv.style_modulation.linear.weight_orig": (cin, sd),
                    f"{p}.noise_injector.weight": (1,), f"{p}.activate.bias": (cout,)})
        if up:
            out[f"{p}.conv.blur.kernel"] = (4, 4)

    def rgb(p, cin, up=True):
        out.update({f"{p}.bias": (1, 3, 1, 1), f"{p}.conv.weight_orig": (1, 3, cin, 1, 1),
                    f"{p}.conv.style_modulation.bias": (cin,),
                    f"{p}.conv.style_modulation.linear.weight_orig": (cin, sd)})
        if up:
            out[f"{p}.upsample.kernel"] = (4, 4)

    style("generator.conv1", ch[4], ch[4])
    rgb("generator.to_rgb1", ch[4], up=False)
    cin = ch[4]
    for k, i in enumerate(range(3, L + 1)):
        c = ch[2 ** i]
        style(f"generator.convs.{2 * k}", cin, c, up=True)
        style(f"generator.convs.{2 * k + 1}", c, c)
        rgb(f"generator.to_rgbs.{k}", c)
        cin = c
    s, rc = net.in_size, net.encoder[0][0].conv_first.out_channels
    gc = net.encoder[0][0].body[0].rdb1.conv1.out_channels if len(net.encoder[0][0].body) else 0
    e = "encoder.0.0"
    out.update({f"{e}.conv_first.weight": (rc, 3, 3, 3), f"{e}.conv_first.bias": (rc,),
                f"{e}.conv_body.weight": (rc, rc, 3, 3), f"{e}.conv_body.bias": (rc,),
                "encoder.0.1.weight": (ch[s], rc, 3, 3), "encoder.0.1.bias": (ch[s],)})
    for b in range(len(net.encoder[0][0].body)):
        for r in (1, 2, 3):
            for c in range(5):
                o = rc if c == 4 else gc
                p = f"{e}.body.{b}.rdb{r}.conv{c + 1}"
                out.update({f"{p}.weight": (o, rc + c * gc, 3, 3), f"{p}.bias": (o,)})
    res = [2 ** i for i in range(int(math.log2(s)), 1, -1)]
    for n, r in enumerate(res, start=1):
        if r > 4:
            c = ch[r // 2]
            out.update({f"encoder.{n}.0.weight": (c, ch[r], 3, 3), f"encoder.{n}.0.bias": (c,),
                        f"encoder.{n}.2.weight": (c, c, 3, 3), f"encoder.{n}.2.bias": (c,)})
        else:
            out.update({f"encoder.{n}.0.weight": (ch[4], ch[4], 3, 3),
                        f"encoder.{n}.0.bias": (ch[4],),
                        f"encoder.{n}.3.weight": (g.num_latents * sd, 16 * ch[4]),
                        f"encoder.{n}.3.bias": (g.num_latents * sd,)})
    for k, r in enumerate(res[::-1]):
        out.update({f"fusion_out.{k}.weight": (ch[r], 2 * ch[r], 3, 3),
                    f"fusion_out.{k}.bias": (ch[r],),
                    f"fusion_skip.{k}.weight": (3, ch[r] + 3, 3, 3), f"fusion_skip.{k}.bias": (3,)})
    dec = [2 ** i for i in range(int(math.log2(s)), L + 1)]
    for k, r in enumerate(dec):
        cin = ch[r] if r == s else 2 * ch[r]
        if r < g.size:
            out.update({f"decoder.{k}.upsample_conv.weight": (4 * ch[2 * r], cin, 3, 3),
                        f"decoder.{k}.upsample_conv.bias": (4 * ch[2 * r],)})
        else:
            out.update({f"decoder.{k}.0.weight": (64, cin, 3, 3), f"decoder.{k}.0.bias": (64,),
                        f"decoder.{k}.2.weight": (3, 64, 3, 3), f"decoder.{k}.2.bias": (3,)})
    return out


def official_d_names(D) -> dict[str, tuple]:
    """mmagic StyleGAN2Discriminator names (stylegan2_discriminator.py, ConvDownLayer/ResBlock)."""
    ch, S = D.channels, D.size
    out = {"convs.0.0.conv.weight_orig": (ch[S], 3, 1, 1), "convs.0.1.bias": (ch[S],)}
    cin = ch[S]
    for k in range(len(D.blocks)):
        c = ch[S // 2 ** (k + 1)]
        p = f"convs.{k + 1}"
        out.update({f"{p}.conv1.0.conv.weight_orig": (cin, cin, 3, 3), f"{p}.conv1.1.bias": (cin,),
                    f"{p}.conv2.0.kernel": (4, 4), f"{p}.conv2.1.conv.weight_orig": (c, cin, 3, 3),
                    f"{p}.conv2.2.bias": (c,), f"{p}.skip.0.kernel": (4, 4),
                    f"{p}.skip.1.conv.weight_orig": (c, cin, 1, 1)})
        cin = c
    out.update({"final_conv.0.conv.weight_orig": (ch[4], cin + 1, 3, 3),
                "final_conv.1.bias": (ch[4],),
                "final_linear.0.bias": (ch[4],),
                "final_linear.0.linear.weight_orig": (ch[4], 16 * ch[4]),
                "final_linear.1.bias": (1,), "final_linear.1.linear.weight_orig": (1, ch[4])})
    return out


def synthetic(names, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in names.items()}


def tiny_pair():
    net = GLEANStyleGANv2(TINY_BANK, in_size=8, rrdb_channels=8, num_rrdbs=1, growth_channels=4)
    return net, Discriminator(32, channel_multiplier=1, channel_max=16)


def test_mmagic_checkpoint_loads_strictly(tmp_path):
    net, D = tiny_pair()
    g_state, d_state = synthetic(official_glean_names(net)), synthetic(official_d_names(D), 4)
    path = tmp_path / "glean.pth"
    torch.save({"meta": {}, "state_dict": {**{f"generator.{k}": v for k, v in g_state.items()},
                                           **{f"discriminator.{k}": v for k, v in d_state.items()}}},
               path)
    ignored = load_official(net, path, D)
    assert set(ignored) == {k for k in {**g_state, **d_state} if k.endswith("kernel")}  # FIR
    assert torch.equal(net.generator.convs[3].conv.weight,
                       g_state["generator.convs.3.conv.weight_orig"][0])
    assert torch.equal(net.generator.noises.noise_4, g_state["generator.injected_noise_4"])
    assert torch.equal(net.generator.to_rgbs[1].bias, g_state["generator.to_rgbs.1.bias"].view(3))
    assert torch.equal(net.generator.conv1.noise_strength,
                       g_state["generator.conv1.noise_injector.weight"])
    assert torch.equal(net.encoder[-1][3].weight, g_state["encoder.2.3.weight"])
    assert torch.equal(D.blocks[1].skip.weight, d_state["convs.2.skip.1.conv.weight_orig"])
    assert torch.equal(D.final_out.weight, d_state["final_linear.1.linear.weight_orig"])
    # every official name is used by the map, and nothing else is
    assert set(glean_key_map(net)) == {k for k in g_state if not k.endswith("kernel")}
    assert set(discriminator_key_map(D)) == {k for k in d_state if not k.endswith("kernel")}


def test_mmagic_checkpoint_strict_failures_name_the_file(tmp_path):
    net, _ = tiny_pair()
    good = synthetic(official_glean_names(net))
    cases = {"missing": {k: v for k, v in good.items() if k != "fusion_out.1.weight"},
             "unexpected": {**good, "generator.extra.weight": torch.zeros(1)},
             "shape": {**good, "decoder.0.upsample_conv.bias": torch.zeros(7)}}
    for what, state in cases.items():
        path = tmp_path / f"{what}.pth"
        torch.save({"state_dict": {f"generator.{k}": v for k, v in state.items()}}, path)
        with pytest.raises(CheckpointError) as e:
            load_official(net, path)
        msg = str(e.value)
        assert str(path) in msg, what
        key = {"missing": "fusion_out.1.weight", "unexpected": "generator.extra.weight",
               "shape": "decoder.0.upsample_conv.bias"}[what]
        assert key in msg, (what, msg)
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no GLEAN entries"):
        load_official(net, tmp_path / "other.pth")


def test_official_ffhq_x16_sizes_build():
    """glean_ffhq_16x (in 64, out 1024; StyleGAN2 config-f) is the same code at another size:
    its key map covers the official 1024 layout (built on meta, no weights)."""
    with torch.device("meta"):
        net = GLEANStyleGANv2(dict(PAPER_BANK, size=1024), in_size=64)
        names = official_glean_names(net)
    assert set(glean_key_map(net)) == {k for k in names if not k.endswith("kernel")}


# ----------------------------------------------------------------------------- recipe
def test_recipe_values_in_params_defaults():
    """configs/_base_/models/base_glean.py and configs/glean/glean_x16_2xb8_ffhq.py."""
    m = cfg_of("paper")["methods"]["glean"]
    assert m["tasks"] == ["sr"] and m["sr_input"] == "lr" and m["prior"] == "stylegan2"
    assert m["arch"] == {"rrdb_channels": 64, "num_rrdbs": 23, "growth_channels": 32}
    assert m["loss"] == {"mse": 1.0, "perceptual": 1e-2, "gan": 1e-2}
    assert m["d"] == {"lr": 1e-4, "betas": [0.9, 0.99], "init_from_prior": True}
    assert m["cosine"] == {"t_max_iters": 600000, "eta_min": 1e-7}
    t = m["train"]
    assert (t["total_iters"], t["batch_size"], t["lr"], t["betas"]) == (300000, 16, 1e-4, [0.9, 0.99])
    assert t.get("lr_schedule", "constant") == "constant" and t["hflip"] is True
    assert m.get("select", "final") == "final"


def test_cosine_with_its_own_t_max():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-4)
    sched = cosine_annealing(opt, 600000, 1e-7)
    opt.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    sched.last_epoch = 299999
    sched.step()  # iteration 300k: the end of the official run
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7 + (1e-4 - 1e-7) * 0.5, rel=1e-9)
    sched.last_epoch = 599999
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7, rel=1e-6)


def test_deviations_and_refusals():
    cfg = cfg_of("paper")
    kind = GLEANKind()
    assert kind.deviations(cfg, "glean", "sr") == [
        "latent bank: a StyleGAN2 pretrained here (not FFHQ config-f)"]
    m = json.loads(json.dumps(cfg["methods"]["glean"]))
    m["loss"]["perceptual"], m["cosine"] = 0.0, None
    assert deviations_of(m, True) == ["no perceptual loss", "constant learning rate (not cosine)"]
    with pytest.raises(ConfigError, match="super-resolution"):
        kind.check_stage(cfg, "glean", "denoise", "train", {})
    bad = json.loads(json.dumps(cfg))
    bad["methods"]["glean"]["train"]["lr_schedule"] = "cosine"
    with pytest.raises(ConfigError, match="methods.glean.cosine"):
        kind.check_stage(bad, "glean", "sr", "train", {})
    bad = json.loads(json.dumps(cfg))
    bad["methods"]["glean"]["prior"] = "stylegan2_cm1"
    bad["data"]["resolution"] = 256
    with pytest.raises(ConfigError, match="256"):
        kind.check_stage(bad, "glean", "sr", "train", {})


# ----------------------------------------------------------------------------- training step
def test_training_step_g_first_vanilla_gan_and_both_schedules():
    from ugpnet.methods import random_batch  # noqa: F401  (the contract's helper exists)

    cfg = cfg_of("tiny")
    m = json.loads(json.dumps(cfg["methods"]["glean"]))
    net = build_net(cfg, "glean")
    D = Discriminator(32, channel_multiplier=1, channel_max=16)
    stage = GLEANKind().make_stage(m, net, D, "cpu", "fp32", perceptual=None)
    assert stage.order == "g_first" and stage.ema is None and stage.critics[0].r1_gamma == 0
    assert stage.critics[0].weight == pytest.approx(1e-2)
    bank = {k: v.clone() for k, v in net.generator.state_dict().items()}
    batch = {"lq": torch.rand(2, 3, 4, 4), "gt": torch.rand(2, 3, 32, 32)}
    lr0 = stage.opt_g.param_groups[0]["lr"]
    out = stage.step(batch, 0)
    assert {"loss", "mse", "adversarial", "d_loss"} <= set(out)
    assert stage.opt_g.param_groups[0]["lr"] < lr0
    c, eta = 0.5 * (1 + math.cos(math.pi / m["cosine"]["t_max_iters"])), m["cosine"]["eta_min"]
    for opt, base in ((stage.opt_g, lr0), (stage.critics[0].opt, m["d"]["lr"])):  # G and D
        assert opt.param_groups[0]["lr"] == pytest.approx(eta + (base - eta) * c, rel=1e-9)
    for k, v in net.generator.state_dict().items():
        assert torch.equal(v, bank[k]), f"the latent bank is frozen: {k}"
    assert "sched_d" in stage.state()
    assert stage.predict(batch["lq"]).shape == (2, 3, 32, 32)


def test_perceptual_term_is_vgg16_conv4_3_pre_relu():
    from baselines.glean.train import VGG16Conv43

    vgg = VGG16Conv43()
    feats = vgg.vgg.features
    assert len(feats) == 22 and isinstance(feats[21], torch.nn.Conv2d)
    assert feats[21].out_channels == 512
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert vgg(x, x).item() == 0.0
    assert vgg(x, -x).item() > 0


# ----------------------------------------------------------------------------- the real DAG
OVERRIDE = """
overrides:
  table1: {methods: [glean], tasks: [sr]}
"""


@pytest.mark.slow
def test_glean_trains_restores_and_reaches_table1_on_tiny(tmp_path):
    work = copy_workflow(tmp_path / "glean")
    (work / "glean.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml",
                   "glean.yaml", "--config", "profile=tiny"], work, env=env_with(REPO),
                  timeout=1200)
    assert r.returncode == 0, failure(r, work)
    plan = plan_for(work, configfiles=["glean.yaml"])
    run = Path(plan.stage_dir("glean", "sr", "train"))
    opts = json.loads((run / "options.json").read_text())["options"]
    assert opts["input"] == "lr" and opts["in_size"] == 4
    assert opts["perceptual_source"].startswith("vgg16/conv4_3")
    assert (work / opts["prior"]["file"]).resolve() == \
        Path(plan.pretrained_prior("stylegan2")).resolve()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(x["d_loss"] > 0 and "perceptual" in x for x in log)
    prior = torch.load(plan.pretrained_prior("stylegan2"), weights_only=True)["g_ema"]
    final = torch.load(plan.final_model("glean", "sr"), weights_only=True)["weights"]
    for k, v in prior.items():
        assert torch.equal(final[f"generator.{k}"], v), k
    assert "glean" in (work / "results" / "table1.csv").read_text()


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_and_backward_on_cpu():
    torch.manual_seed(0)
    net = build_net(cfg_of("paper"), "glean").train()
    D = Discriminator(512, channel_multiplier=1)
    y = net(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert y.shape == (1, 3, 512, 512)
    (D(y).sum() + y.square().mean()).backward()
    assert torch.isfinite(net.encoder[-1][-1].weight.grad).all()
    assert net.encoder[0][0].conv_first.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.generator.parameters())
