"""The ablations of UGPNet's networks (ugpnet/models/options.py ABLATIONS; docs/ABLATIONS.md):
modules registered by name, chosen by method-level keys of a ``methods.<m>`` entry of kind ugpnet.

- ``restoration_head: none`` (Table 3 (a)): x_reg and f_reg are the backbone's own image and
  last feature, no R_se/R_mg parameters; refused with a restoration skip.
- ``fusion_input: images`` (Table 3 (b)): the fusion combines x_reg and x_syn.
- ``map2style: per_latent`` (pSp, beyond the paper): one map2style per W+ latent.

At their official values the keys leave every stage identity of the default ``ugpnet`` unchanged;
each non-official value changes exactly the stages that build what it changes.
"""
import pytest
import torch
import torch.nn.functional as F

from ugpnet.config import resolve_files
from ugpnet.errors import ConfigError
from ugpnet.methods import kind_of
from ugpnet.methods.identity import RestrictedView
from ugpnet.models.backbones import NAFNet, RRDBNet
from ugpnet.models.build import (build_restoration, build_synthesis, build_ugpnet,
                                 map2style_design, prior_architecture)
from ugpnet.models.fusion import FUSIONS, FusionModule, ImageFusionModule
from ugpnet.models.options import ABLATIONS, beyond_paper, strip_official
from ugpnet.models.restoration import RESTORATION_HEADS, RestorationModule
from ugpnet.models.synthesis import Generator, Map2Style, SynthesisEncoder
from ugpnet.models.synthesis.encoder import MAP2STYLES, PerLatentMap2Style
from ugpnet.models.ugpnet import parameter_breakdown
from ugpnet.plan import Plan
from ugpnet.training.run import OPERATIONAL_KEYS

from backbone_configs import TINY, n_params  # noqa: E402

STAGES = ("restoration", "synthesis", "fusion")
# each ablation's non-official value, the --set lines it needs, and the stages it changes
VARIANTS = {
    "restoration_head": (["methods.ugpnet.restoration_head=none",
                          "methods.ugpnet.restoration_skip.denoise=none"], set(STAGES)),
    "fusion_input": (["methods.ugpnet.fusion_input=images"], {"fusion"}),
    "map2style": (["methods.ugpnet.map2style=per_latent"], {"synthesis", "fusion"}),
}


@pytest.fixture
def cfg_of(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)

    def make(*sets, profile="tiny"):
        return resolve_files(["params.yaml"], profile, sets=list(sets))

    return make


# ----------------------------------------------------------------------------- registries
@pytest.mark.parametrize("registry,known", [(RESTORATION_HEADS, "none, se_mg"),
                                            (FUSIONS, "features, images"),
                                            (MAP2STYLES, "per_latent, shared")])
def test_registries_name_the_known_modules(registry, known):
    with pytest.raises(ConfigError, match=f"registered: {known}$"):
        registry.get("bogus")
    assert ", ".join(registry.names()) == known


def test_unknown_names_fail_at_build_time():
    with pytest.raises(ConfigError, match="unknown restoration head 'bogus'"):
        RestorationModule(NAFNet(**TINY["nafnet"]), head="bogus")
    with pytest.raises(ConfigError, match="unknown restoration head 'bogus'"):  # direct too
        RestorationModule(RRDBNet(**TINY["rrdbnet"]), head="bogus")
    g = Generator(size=32, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=16,
                  basecode_size=8)
    with pytest.raises(ConfigError, match="unknown map2style 'bogus'"):
        SynthesisEncoder.for_generator(g, channel_max=16, map2style="bogus")


# ----------------------------------------------------------------------------- (a) no R_se, R_mg
def test_head_none_is_the_backbone_itself():
    torch.manual_seed(0)
    bb = NAFNet(**TINY["nafnet"])
    r = RestorationModule(bb, head="none").eval()
    assert r.structure_encoder is None and r.merging_net is None
    assert n_params(r) == n_params(bb)
    assert all(k.startswith("backbone.") for k in r.state_dict())
    assert r.feature_channels == bb.feature_channels
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        x_reg, f_reg = r(x)
        image, feat = bb(x, return_feature=True)
    assert torch.equal(x_reg, image) and torch.equal(f_reg, feat)
    assert f_reg.shape == (2, bb.feature_channels, 16, 16)


def test_head_none_means_the_pass_through_for_a_direct_backbone():
    torch.manual_seed(0)
    a = RestorationModule(RRDBNet(**TINY["rrdbnet"]), head="se_mg").eval()
    torch.manual_seed(0)
    b = RestorationModule(RRDBNet(**TINY["rrdbnet"]), head="none").eval()
    assert a.state_dict().keys() == b.state_dict().keys()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(a(x), b(x)))


def test_head_none_refuses_a_restoration_skip(cfg_of):
    with pytest.raises(ValueError, match="takes no skip"):
        RestorationModule(NAFNet(**TINY["nafnet"]), head="none", skip="backbone")
    cfg = cfg_of("methods.ugpnet.restoration_head=none",
                 "methods.ugpnet.restoration_skip.denoise=input")
    both = r"restoration_head is 'none'.*restoration_skip for task 'denoise' is 'input'"
    with pytest.raises(ConfigError, match=both):
        build_ugpnet(cfg, "ugpnet", "denoise")
    for stage in STAGES:  # the plan refuses it before anything trains
        with pytest.raises(ConfigError, match=both):
            Plan.of(cfg).stage_inputs("ugpnet", "denoise", stage)
    build_ugpnet(cfg, "ugpnet", "sr")  # sr's skip is none: accepted


# ----------------------------------------------------------------------------- (b) image fusion
def test_image_fusion_shapes_parameters_and_init():
    torch.manual_seed(0)
    f = ImageFusionModule(syn_channels=8, reg_channels=16, channels=16, num_blocks=2)
    x_syn, x_reg = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = f(f_syn=None, f_reg=None, x_reg=x_reg, x_syn=x_syn)
    assert out.shape == (2, 3, 16, 16)
    with torch.no_grad():  # x_hat = Conv_out(R_fusion(Conv_syn(x_syn) + Conv_reg(x_reg)))
        ref = f.out_conv(f.body(f.syn_conv(x_syn) + f.reg_conv(x_reg)))
    torch.testing.assert_close(out, ref)
    assert f.out_conv.weight.abs().sum() > 0  # official (random) initialisation
    with pytest.raises(ValueError, match="image fusion expects x_syn"):
        f(x_reg=x_reg)
    with pytest.raises(ValueError, match="expected x_reg"):
        f(x_syn=x_syn, x_reg=x_reg[:, :, :8])
    # paper width: the feature fusion's body and out conv, two 3->64 convs for its 64->64 in conv
    paper = ImageFusionModule(num_blocks=8, channels=64)
    assert n_params(paper) == 596163
    assert n_params(paper) - n_params(FusionModule(num_blocks=8, channels=64)) \
        == 2 * (3 * 64 * 9 + 64) - (64 * 64 * 9 + 64)


def test_image_fusion_gradient_reaches_both_images():
    torch.manual_seed(0)
    f = ImageFusionModule(channels=8, num_blocks=1)
    x_syn, x_reg = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    F.l1_loss(f(x_reg=x_reg, x_syn=x_syn), torch.rand(1, 3, 8, 8)).backward()
    assert f.syn_conv.weight.grad.abs().sum() > 0
    assert f.reg_conv.weight.grad.abs().sum() > 0


def test_image_fusion_xreg_skip_starts_at_x_reg_and_learns():
    torch.manual_seed(0)
    f = ImageFusionModule(channels=8, num_blocks=2, xreg_skip=True)
    x_syn, x_reg, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert torch.equal(f(x_reg=x_reg, x_syn=x_syn), x_reg)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3)
    before = F.l1_loss(f(x_reg=x_reg, x_syn=x_syn), gt).item()
    for _ in range(5):
        loss = F.l1_loss(f(x_reg=x_reg, x_syn=x_syn), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.l1_loss(f(x_reg=x_reg, x_syn=x_syn), gt).item() < before
    assert f.syn_conv.weight.abs().sum() > 0 and f.reg_conv.weight.abs().sum() > 0


def test_feature_fusion_keywords_are_the_positional_call():
    torch.manual_seed(0)
    f = FusionModule(syn_channels=8, channels=16, reg_channels=16, num_blocks=1).eval()
    f_syn, f_reg, x_reg = torch.randn(1, 8, 8, 8), torch.randn(1, 16, 8, 8), torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(f(f_syn, f_reg, x_reg),
                           f(f_syn=f_syn, f_reg=f_reg, x_reg=x_reg, x_syn=torch.rand(1, 3, 8, 8)))


# ----------------------------------------------------------------------------- map2style per latent
def test_per_latent_map2style_gives_the_shared_layout():
    torch.manual_seed(0)
    kw = dict(in_channels=8, style_dim=6, num_latents=16, spatial_size=8, first_used_latent=4)
    shared, per = Map2Style(**kw), PerLatentMap2Style(**kw)
    assert per.num_heads == shared.num_heads == 12 and len(per.blocks) == 12
    assert all(len(b.heads) == 1 and b.num_latents == 1 for b in per.blocks)
    feat = torch.randn(3, 8, 8, 8)
    w = per(feat)
    assert w.shape == shared(feat).shape == (3, 16, 6)
    for i in range(5):  # block 0 fills entries 0..first_used_latent (the generator skips 0..3)
        assert torch.equal(w[:, i], per.blocks[0](feat)[:, 0])
    for i in range(1, 12):
        assert torch.equal(w[:, 4 + i], per.blocks[i](feat)[:, 0])
    # structure: one CNN and one head per used latent against one CNN and all heads
    cnn = n_params(shared.convs)
    assert n_params(per) == 12 * n_params(per.blocks[0]) == n_params(shared) + 11 * cnn


def test_map2style_parameters_at_paper_scale():
    """UGPNet claims its shared map2style needs ~10 % of pSp's per-latent parameters. Measured
    here (512 px, basecode 16, 12 used W+ entries; meta device, no memory):

    - map2style: shared 13,181,440 vs per latent 123,506,688 (12 x 10,292,224): 10.67 %;
    - whole encoder E (F-encoder 8,133,408 + map2style): 21,314,848 vs 131,640,096: 16.19 %.

    So the claim holds for map2style itself. Smoke prior (64 px, style 128, 8 used entries):
    map2style 796,288 vs 5,445,632 (14.62 %), encoder 1,209,984 vs 5,859,328 (20.65 %).
    Only the structural facts are asserted."""
    with torch.device("meta"):
        g = Generator(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512,
                      basecode_size=16)
        shared = SynthesisEncoder.for_generator(g)
        per = SynthesisEncoder.for_generator(g, map2style="per_latent")
    m_s, m_p = shared.map2style, per.map2style
    assert n_params(shared.f_encoder) == n_params(per.f_encoder) == 8133408
    assert n_params(m_s) == 13181440  # tests/test_synthesis.py: the published 13.18 M
    n = m_s.num_heads
    assert n == len(m_p.blocks) == g.num_latents - g.first_used_latent == 12
    one_head = 512 * 512 + 512
    assert n_params(m_p) == n * (n_params(m_s.convs) + one_head)
    assert n_params(m_p) == n * n_params(m_s) - (n - 1) * n * one_head
    ratio, enc_ratio = n_params(m_s) / n_params(m_p), n_params(shared) / n_params(per)
    assert round(ratio, 4) == 0.1067 and round(enc_ratio, 4) == 0.1619


# ----------------------------------------------------------------------------- config and identity
def test_labels_and_stripping():
    sl = {"restoration_head": "se_mg", "map2style": "shared", "fusion_input": "features",
          "fusion": {"num_blocks": 2}}
    assert strip_official(sl) == {"fusion": {"num_blocks": 2}} and beyond_paper(sl) == []
    on = {"restoration_head": "none", "fusion_input": "images", "map2style": "per_latent"}
    assert strip_official(on) == on
    assert beyond_paper(on) == ["without R_se, R_mg", "image fusion", "map2style per latent"]
    assert set(ABLATIONS) == set(VARIANTS)


def test_default_identities_are_unchanged(cfg_of):
    plan = Plan.of(cfg_of())
    explicit = Plan.of(cfg_of("methods.ugpnet.restoration_head=se_mg",
                              "methods.ugpnet.fusion_input=features",
                              "methods.ugpnet.map2style=shared"))
    for task in ("denoise", "sr"):
        for stage in STAGES:
            sl = plan.stage_config("ugpnet", task, stage)
            assert not set(ABLATIONS) & set(sl), (task, stage)
            assert "restoration_head" in plan.stage_slice("ugpnet", task, stage)[0]  # read
            assert explicit.stage_config("ugpnet", task, stage) == sl
    assert plan.options_beyond_paper("ugpnet", "denoise") == []


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_each_ablation_changes_the_stages_that_build_it(cfg_of, key):
    sets, changed = VARIANTS[key]
    base = Plan.of(cfg_of(*[s for s in sets if "restoration_skip" in s]))
    plan = Plan.of(cfg_of(*sets))
    for stage in STAGES:
        a, b = base.stage_config("ugpnet", "denoise", stage), plan.stage_config("ugpnet", "denoise", stage)
        if stage in changed:
            assert {k: v for k, v in b.items() if k != key} == a and key in b, stage
        else:
            assert b == a, stage
    assert plan.options_beyond_paper("ugpnet", "denoise") == [ABLATIONS[key][1][
        sets[0].split("=")[1]]]


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_each_stage_builds_from_what_its_identity_read(cfg_of, key):
    """What train_stage builds, through the view it gets (reads outside its slice fail)."""
    cfg = cfg_of(*VARIANTS[key][0])
    plan = Plan.of(cfg)
    for stage in STAGES:
        _, read = plan.stage_slice("ugpnet", "denoise", stage)
        view = RestrictedView(cfg, read, who=stage, free=OPERATIONAL_KEYS)
        build_restoration(view, "ugpnet", "denoise")
        m = view["methods"]["ugpnet"]
        if stage == "synthesis":
            sg = prior_architecture(view, m.get("prior", "stylegan2"))
            build_synthesis(sg, m.get("randomize_noise", False), map2style_design(m))
        if stage == "fusion":
            build_ugpnet(view, "ugpnet", "denoise")


# ----------------------------------------------------------------------------- whole UGPNet
@pytest.mark.parametrize("key", sorted(VARIANTS))
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_ugpnet_of_each_variant_runs(cfg_of, key, task):
    cfg = cfg_of(*VARIANTS[key][0])
    torch.manual_seed(0)
    model = build_ugpnet(cfg, "ugpnet", task).eval()
    size = cfg["data"]["resolution"]
    x = torch.rand(2, 3, size // (8 if task == "sr" else 1), size // (8 if task == "sr" else 1))
    with torch.no_grad():
        out = model.forward_all(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, 3, size, size) for k in out}
    parts = parameter_breakdown(model)
    assert parts["restoration"] + parts["synthesis"] + parts["fusion"] == n_params(model)
    residual = model.restoration.kind == "residual"
    if key == "restoration_head":
        assert "restoration.structure_encoder" not in parts and "restoration.merging_net" not in parts
        assert parts["restoration"] == parts["restoration.backbone"]
        assert model.fusion.channels == model.restoration.backbone.feature_channels
        if residual:
            with torch.no_grad():
                xc = x.contiguous(memory_format=torch.channels_last)
                assert torch.equal(out["x_reg"], model.restoration.backbone(xc))
    else:
        assert ("restoration.merging_net" in parts) == residual
    assert isinstance(model.fusion, ImageFusionModule if key == "fusion_input" else FusionModule)
    m2s = model.synthesis.encoder.map2style
    assert isinstance(m2s, PerLatentMap2Style if key == "map2style" else Map2Style)


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_benchmark_stage_of_each_variant(cfg_of, key):
    cfg = cfg_of(*VARIANTS[key][0])
    kind = kind_of(cfg, "ugpnet")
    for stage in sorted(VARIANTS[key][1] - {"restoration"}) or ["restoration"]:
        s, batch, _ = kind.benchmark_stage(cfg, "ugpnet", "denoise", stage, "cpu")
        s.step(batch, 0)


def test_an_official_synmodule_is_refused_by_the_per_latent_encoder(tmp_path):
    """No official release has per-latent map2style heads: one message naming the key, not a
    key-map failure deep inside."""
    from ugpnet.errors import CheckpointError
    from ugpnet.models.synthesis.loading import load_official_synmodule

    sg = {"size": 32, "style_dim": 16, "n_mlp": 1, "channel_multiplier": 1, "channel_max": 16,
          "basecode_size": 8, "encoder_channel_max": 16}
    path = tmp_path / "synmodule.pth"
    torch.save({"generator": {}, "fencoder": {}, "wmodule": {}}, path)
    with pytest.raises(CheckpointError, match=r"ONE shared map2style.*map2style: shared"):
        load_official_synmodule(path, build_synthesis(sg, map2style="per_latent"))
