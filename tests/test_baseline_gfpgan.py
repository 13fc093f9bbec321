"""GFP-GAN v1 (baselines/gfpgan/): architecture, parameter count, official key map, recipe,
external-file checks, the full variant's training step, and a tiny run through the real DAG."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baselines.gfpgan.arch import GFPGANv1
from baselines.gfpgan.keymap import load_official, load_official_state
from baselines.gfpgan.nets import (ComponentBoxes, FacialComponentDiscriminator, ResNetArcFace,
                                   component_key_map, load_arcface)
from ugpnet.config import load_params_file, resolve
from ugpnet.errors import CheckpointError, ConfigError
from workspace import copy_workflow, env_with, failure, plan_for, snakemake

REPO = Path(__file__).resolve().parents[1]
TINY_DECODER = dict(size=32, style_dim=32, n_mlp=1, channel_multiplier=1, channel_max=16,
                    basecode_size=8)


def cfg_of(profile: str):
    return resolve(load_params_file(REPO / "params.yaml"), profile)


# ----------------------------------------------------------------------------- architecture
def test_paper_parameter_count_is_table2():
    """76.21 M at 512 with the channel-multiplier-1 decoder (Table 2: 76.2), 24.86 M frozen."""
    from baselines.gfpgan import GFPGANKind, build_net

    with torch.device("meta"):
        net = build_net(cfg_of("paper"), "gfpgan")
    total = sum(p.numel() for p in net.parameters())
    assert total == pytest.approx(76.21e6, rel=5e-3)
    parts = GFPGANKind().parameter_breakdown(net)
    assert parts["stylegan_decoder (frozen prior)"] == pytest.approx(24.86e6, rel=5e-3)
    assert parts["final_linear"] == 4096 * 16 * 512 + 16 * 512
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == pytest.approx(51.35e6, rel=5e-3)


def test_ugpnet_params_cli_reports_the_paper_count():
    r = subprocess.run([sys.executable, "-m", "ugpnet.cli", "--profile", "paper", "params",
                        "--method", "gfpgan", "--task", "sr"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["total"] == pytest.approx(76.21e6, rel=5e-3)


def test_shapes_value_range_and_frozen_decoder():
    torch.manual_seed(0)
    net = GFPGANv1(TINY_DECODER)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    img, pyr = net(x, noise="const")
    assert img.shape == (2, 3, 32, 32)
    assert [p.shape[-1] for p in pyr] == [8, 16, 32]
    assert not any(p.requires_grad for p in net.stylegan_decoder.parameters())
    img.mean().backward()
    assert net.final_linear.weight.grad is not None
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        net(torch.zeros(1, 3, 16, 16))
    from baselines.gfpgan.stage import predict01

    a, b = predict01(net.eval(), (x + 1) / 2), predict01(net, (x + 1) / 2)
    assert torch.equal(a, b), "evaluation noise is seeded: the same input gives the same output"


# ----------------------------------------------------------------------------- official key map
def official_names(net: GFPGANv1) -> dict[str, tuple]:
    """The official GFPGANv1 state-dict names and shapes for ``net``'s sizes, enumerated from the
    official module tree (gfpganv1_arch.py + BasicSR stylegan2_arch.py), not from our key map."""
    ch, g = net.unet_channels, net.stylegan_decoder
    S, L = net.size, net.log_size
    out = {"conv_body_first.0.weight": (ch[S], 3, 1, 1), "conv_body_first.1.bias": (ch[S],)}
    cin = ch[S]
    for k, i in enumerate(range(L, 2, -1)):
        c = ch[2 ** (i - 1)]
        p = f"conv_body_down.{k}"
        out.update({f"{p}.conv1.0.weight": (cin, cin, 3, 3), f"{p}.conv1.1.bias": (cin,),
                    f"{p}.conv2.1.weight": (c, cin, 3, 3), f"{p}.conv2.2.bias": (c,),
                    f"{p}.skip.1.weight": (c, cin, 1, 1)})
        cin = c
    out.update({"final_conv.0.weight": (ch[4], ch[4], 3, 3), "final_conv.1.bias": (ch[4],)})
    cin = ch[4]
    for k, i in enumerate(range(3, L + 1)):
        c, cd = ch[2 ** i], g.channels[2 ** i]
        p = f"conv_body_up.{k}"
        out.update({f"{p}.conv1.0.weight": (cin, cin, 3, 3), f"{p}.conv1.1.bias": (cin,),
                    f"{p}.conv2.weight": (c, cin, 3, 3), f"{p}.conv2.activation.bias": (c,),
                    f"{p}.skip.weight": (c, cin, 1, 1),
                    f"toRGB.{k}.weight": (3, c, 1, 1), f"toRGB.{k}.bias": (3,)})
        for cond in ("condition_scale", "condition_shift"):
            out.update({f"{cond}.{k}.0.weight": (c, c, 3, 3), f"{cond}.{k}.0.bias": (c,),
                        f"{cond}.{k}.2.weight": (cd // 2, c, 3, 3), f"{cond}.{k}.2.bias": (cd // 2,)})
        cin = c
    sd = g.style_dim
    out.update({"final_linear.weight": (g.num_latents * sd, ch[4] * 16),
                "final_linear.bias": (g.num_latents * sd,)})
    d = "stylegan_decoder"
    for i in range(1, g.n_mlp + 1):
        out.update({f"{d}.style_mlp.{i}.weight": (sd, sd), f"{d}.style_mlp.{i}.bias": (sd,)})
    c4 = g.channels[4]
    out[f"{d}.constant_input.weight"] = (1, c4, 4, 4)

    def style_conv(p, cin, cout):
        out.update({f"{p}.modulated_conv.weight": (1, cout, cin, 3, 3),
                    f"{p}.modulated_conv.modulation.weight": (cin, sd),
                    f"{p}.modulated_conv.modulation.bias": (cin,), f"{p}.weight": (1,),
                    f"{p}.activate.bias": (cout,)})

    def to_rgb(p, cin):
        out.update({f"{p}.modulated_conv.weight": (1, 3, cin, 1, 1),
                    f"{p}.modulated_conv.modulation.weight": (cin, sd),
                    f"{p}.modulated_conv.modulation.bias": (cin,), f"{p}.bias": (1, 3, 1, 1)})

    style_conv(f"{d}.style_conv1", c4, c4)
    to_rgb(f"{d}.to_rgb1", c4)
    cin = c4
    for k, i in enumerate(range(3, L + 1)):
        c = g.channels[2 ** i]
        style_conv(f"{d}.style_convs.{2 * k}", cin, c)
        style_conv(f"{d}.style_convs.{2 * k + 1}", c, c)
        to_rgb(f"{d}.to_rgbs.{k}", c)
        cin = c
    for j in range(2 * (L - 2) + 1):
        r = 2 ** ((j + 5) // 2)
        out[f"{d}.noises.noise{j}"] = (1, 1, r, r)
    return out


def synthetic_official_state(net):
    g = torch.Generator().manual_seed(3)
    return {k: torch.randn(s, generator=g) for k, s in official_names(net).items()}


def test_official_layout_loads_strictly_and_runs():
    net = GFPGANv1(TINY_DECODER)
    state = synthetic_official_state(net)
    assert load_official_state(net, state) == []
    assert torch.equal(net.conv_body_up[1].conv2.bias, state["conv_body_up.1.conv2.activation.bias"])
    assert torch.equal(net.condition_shift[2][1].weight, state["condition_shift.2.2.weight"])
    assert torch.equal(net.stylegan_decoder.convs[3].conv.weight,
                       state["stylegan_decoder.style_convs.3.modulated_conv.weight"][0])
    assert torch.equal(net.stylegan_decoder.noises.noise_4,
                       state["stylegan_decoder.noises.noise4"])
    # blur buffers, if a file carries them, are rebuilt by us
    extra = dict(state, **{"stylegan_decoder.style_convs.0.modulated_conv.smooth.kernel":
                           torch.ones(4, 4)})
    assert load_official_state(GFPGANv1(TINY_DECODER), extra) == [
        "stylegan_decoder.style_convs.0.modulated_conv.smooth.kernel"]


def test_official_file_params_ema_and_clear_errors(tmp_path):
    net = GFPGANv1(TINY_DECODER)
    state = synthetic_official_state(net)
    path = tmp_path / "GFPGANv1.pth"
    torch.save({"params_ema": state, "params": state}, path)
    assert load_official(GFPGANv1(TINY_DECODER), path) == "params_ema"
    broken = dict(state)
    del broken["condition_scale.0.2.bias"]
    broken["conv_body_first.0.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as e:
        load_official_state(GFPGANv1(TINY_DECODER), broken, "GFPGANv1.pth")
    msg = str(e.value)
    assert "condition_scale.0.2.bias" in msg and "conv_body_first.0.bias" in msg
    wrong = dict(state, **{"final_linear.bias": torch.zeros(7)})
    with pytest.raises(CheckpointError, match="final_linear.bias"):
        load_official_state(GFPGANv1(TINY_DECODER), wrong)
    torch.save({"net": state}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="params_ema"):
        load_official(GFPGANv1(TINY_DECODER), tmp_path / "other.pth")


def test_component_critic_and_arcface_official_layouts(tmp_path):
    d = FacialComponentDiscriminator()
    official = {}
    for name, cin, cout, down in (("conv1", 3, 64, 0), ("conv2", 64, 128, 1),
                                  ("conv3", 128, 128, 0), ("conv4", 128, 256, 1),
                                  ("conv5", 256, 256, 0)):
        official[f"{name}.{down}.weight"] = torch.randn(cout, cin, 3, 3)
        official[f"{name}.{down + 1}.bias"] = torch.randn(cout)
    official["final_conv.0.weight"] = torch.randn(1, 256, 3, 3)
    official["final_conv.0.bias"] = torch.randn(1)
    m = component_key_map(d)
    assert set(m) == set(official)
    d.load_state_dict({m[k]: v for k, v in official.items()})
    out, feats = d(torch.rand(2, 3, 80, 80) * 2 - 1, return_feats=True)
    assert out.shape == (2, 1, 20, 20) and len(feats) == 2
    # arcface_resnet18.pth: the official names, as DataParallel saved them
    sd = {f"module.{k}": v for k, v in ResNetArcFace().state_dict().items()}
    torch.save(sd, tmp_path / "arcface_resnet18.pth")
    net = load_arcface(tmp_path / "arcface_resnet18.pth")
    assert net(torch.rand(2, 1, 128, 128)).shape == (2, 512)
    del sd["module.layer4.1.bn2.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="layer4.1.bn2.weight"):
        load_arcface(tmp_path / "bad.pth")


# ----------------------------------------------------------------------------- recipe and checks
def test_recipe_values_in_params_defaults():
    m = load_params_file(REPO / "params.yaml")["defaults"]["methods"]["gfpgan"]
    loss = m["loss"]
    assert (loss["l1"], loss["pyramid"], loss["pyramid_until"]) == (0.1, 1.0, 50000)
    assert (loss["perceptual"], loss["style"], loss["vgg"]) == (1.0, 50.0, "vgg19")
    assert loss["layers"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                              "conv5_4": 1.0}
    assert (loss["gan"], loss["identity"], loss["component_gan"], loss["component_style"]) == \
        (0.1, 10.0, 1.0, 200.0)
    assert m["d"] == {"lr": 2e-3, "r1_gamma": 10.0, "r1_every": 16}
    assert 0.5 ** (1 / m["ema_half_life_iters"]) == pytest.approx(0.5 ** (32 / 10000))
    t = m["train"]
    assert (t["total_iters"], t["batch_size"], t["lr"], t["betas"]) == (800000, 12, 2e-3, [0, 0.99])
    assert (t["lr_steps"], t["lr_gamma"]) == ([600000, 700000], 0.5)
    assert (m["variant"], m["prior"], m["sr_input"]) == ("full", "stylegan2_cm1", "bicubic_up")
    prior = load_params_file(REPO / "params.yaml")["defaults"]["priors"]["stylegan2_cm1"]
    assert (prior["size"], prior["channel_multiplier"], prior["checkpoint"]) == (512, 1, None)


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_small_profiles_share_the_stylegan2_prior_file(profile):
    from ugpnet.plan import Plan

    plan = Plan.of(cfg_of(profile))
    assert plan.prior_id("stylegan2_cm1") == plan.prior_id("stylegan2")


def test_variant_full_without_files_is_refused_naming_them():
    from ugpnet.methods import get_kind

    cfg = cfg_of("paper")
    kind = get_kind("gfpgan")
    with pytest.raises(ConfigError) as e:
        kind.check_stage(cfg, "gfpgan", "deblur", "train", {"gt": "x", "prior": "p"})
    msg = str(e.value)
    for s in ("methods.gfpgan.arcface", "arcface_resnet18.pth", "methods.gfpgan.landmarks",
              "FFHQ_eye_mouth_landmarks_512.pth", "variant: simple"):
        assert s in msg
    cfg["methods"]["gfpgan"]["variant"] = "simple"
    cfg["methods"]["gfpgan"]["loss"]["vgg"] = "vgg16"
    kind.check_stage(cfg, "gfpgan", "deblur", "train", {"gt": "x", "prior": "p"})
    assert "train_gfpgan_v1_simple (no identity, no facial components)" in \
        kind.deviations(cfg, "gfpgan", "deblur")


def test_smoke_deviations_are_named():
    from ugpnet.methods import get_kind

    devs = get_kind("gfpgan").deviations(cfg_of("smoke"), "gfpgan", "sr")
    # smoke: no VGG19 offline and perceptual/style set to 0 explicitly (the budget); tiny keeps
    # them on the offline VGG16, which is named as such
    assert "no perceptual/style loss" in devs
    assert any("simple" in d for d in devs)
    assert any("pretrained here" in d for d in devs)  # the smoke prior, not the official one
    assert "perceptual + style: VGG16 for VGG19" in \
        get_kind("gfpgan").deviations(cfg_of("tiny"), "gfpgan", "sr")


def test_full_variant_step_runs_every_term(tmp_path):
    """Identity (ArcFace) and the three component critics with their style loss, on a tiny net
    with synthetic ArcFace weights and landmark boxes."""
    from baselines.gfpgan.nets import PerceptualStyleLoss, crop_view
    from baselines.gfpgan.stage import GFPGANStage
    from ugpnet.models.synthesis.stylegan2 import Discriminator
    from ugpnet.training import Critic

    torch.manual_seed(0)
    net = GFPGANv1(TINY_DECODER)
    torch.save({"%08d" % i: {p: [16.0, 16.0, 4.0] for p in ("left_eye", "right_eye", "mouth")}
                for i in range(4)}, tmp_path / "lm.pth")
    boxes = ComponentBoxes(tmp_path / "lm.pth", resolution=32)
    assert boxes.boxes(["00001"]).shape == (1, 3, 4)
    with pytest.raises(ConfigError, match="variant: simple"):
        boxes.boxes(["chelsea_0"])
    D = Discriminator(32, channel_multiplier=1, channel_max=16)
    critics = [Critic(D, torch.optim.Adam(D.parameters()), weight=0.1, r1_gamma=10, r1_every=1)]
    comp = []
    for i in range(3):
        c = FacialComponentDiscriminator()
        comp.append(Critic(c, torch.optim.Adam(c.parameters()), view=crop_view(i, 8),
                           name=f"d_{i}"))
    loss = {"l1": 0.1, "pyramid": 1.0, "pyramid_until": 10, "perceptual": 1.0, "style": 50.0,
            "identity": 10.0, "component_style": 200.0}
    stage = GFPGANStage(net, torch.optim.Adam(net.trainable_parameters()), critics + comp,
                        weights=loss, perceptual=PerceptualStyleLoss({"conv1_2": 0.1,
                                                                      "conv3_4": 1.0}, "vgg16"),
                        arcface=ResNetArcFace().eval(), component_critics=comp, boxes=boxes,
                        ema_beta=0.9, frozen=[net.stylegan_decoder])
    batch = {"lq": torch.rand(2, 3, 32, 32), "gt": torch.rand(2, 3, 32, 32),
             "name": ["00000", "00003"]}
    before = net.final_linear.weight.detach().clone()
    parts = stage.step(batch, 0)
    for k in ("l1", "pyramid", "perceptual", "style", "identity", "component_style",
              "adversarial", "d_loss_d", "r1_d", "d_loss_d_2"):
        assert k in parts and torch.isfinite(torch.tensor(parts[k])), k
    assert not torch.equal(before, net.final_linear.weight)
    assert "pyramid" not in stage.step(batch, 10)  # removed after pyramid_until


# ----------------------------------------------------------------------------- the real DAG
OVERRIDE = """
overrides:
  table1: {methods: [gfpgan], tasks: [sr]}
"""


# one method alone through the DAG; tests/test_dag.py runs every baseline on every task
# through the whole tiny DAG in CI, so this one is for `make test-all`
@pytest.mark.slow
def test_tiny_dag_trains_restores_and_evaluates_gfpgan(tmp_path):
    work = copy_workflow(tmp_path / "w")
    (work / "gf.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "1", "results/table1.csv", "--configfile", "params.yaml",
                   "gf.yaml", "--config", "profile=tiny"], work, env=env_with(REPO), timeout=900)
    assert r.returncode == 0, failure(r, work)
    plan = plan_for(work, configfiles=["gf.yaml"])
    run = Path(plan.stage_dir("gfpgan", "sr", "train"))
    opts = json.loads((run / "options.json").read_text())["options"]
    assert opts["loss_terms"]["identity"] is False and opts["loss_terms"]["perceptual"] is True
    assert opts["perceptual_source"].startswith("vgg16")
    assert opts["input"] == "bicubic_up"
    assert (work / opts["prior"]["file"]).resolve() == \
        Path(plan.pretrained_prior("stylegan2_cm1")).resolve()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(x["d_loss"] > 0 for x in log)
    prior = torch.load(plan.pretrained_prior("stylegan2_cm1"), weights_only=True)["g_ema"]
    final = torch.load(plan.final_model("gfpgan", "sr"), weights_only=True)["weights"]
    for k, v in prior.items():
        assert torch.equal(final[f"stylegan_decoder.{k}"], v), k
    table = (work / "results" / "table1.csv").read_text()
    assert "gfpgan" in table


# ----------------------------------------------------------------------------- paper scale
@pytest.mark.slow
def test_paper_scale_forward_and_backward_on_cpu():
    from baselines.gfpgan import build_net

    net = build_net(cfg_of("paper"), "gfpgan").train()
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    img, pyr = net(x)
    assert img.shape == (1, 3, 512, 512) and pyr[-1].shape == (1, 3, 512, 512)
    (img.square().mean() + sum(p.abs().mean() for p in pyr)).backward()
    assert net.final_linear.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.stylegan_decoder.parameters())
