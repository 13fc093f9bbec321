"""UGPNet synthesis module: F-encoder, ONE shared map2style, generator assembly."""

import time

import pytest
import torch
import torch.nn.functional as F

from ugpnet.models.synthesis import (
    FEncoder,
    Generator,
    Map2Style,
    SynthesisEncoder,
    SynthesisModule,
    build_synthesis_module,
)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def tiny_module(**kw):
    args = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16, basecode_size=8,
                encoder_channel_max=16)
    args.update(kw)
    return build_synthesis_module(**args)


def analytic_fencoder_params(channels_by_read_res, read_res):
    """[conv3x3(+bias) + BN(2 params)] x 3 per block, plus a 1x1 conv (+bias)."""
    total, cin = 0, 3
    for r in read_res:
        c = channels_by_read_res[r]
        total += (cin * c * 9 + c) + 2 * (c * c * 9 + c) + 3 * 2 * c
        cin = c
    return total + cin * cin + cin


def test_paper_scale_parameter_counts():
    """Published (UGPNet issue): synthesis 51.59 M = F-encoder 8.13 M + map2style 13.18 M + G 30.28 M."""
    m = build_synthesis_module()
    g, fe, m2s = n_params(m.generator), n_params(m.encoder.f_encoder), n_params(m.encoder.map2style)
    for count, published in ((g, 30.28), (fe, 8.13), (m2s, 13.18), (n_params(m), 51.59)):
        assert abs(count / 1e6 - published) / published < 0.005, (count, published)
    # exact analytic counts from the official architecture description
    official = {512: 16, 256: 32, 128: 64, 64: 128, 32: 256, 16: 512}
    assert fe == analytic_fencoder_params(official, [512, 256, 128, 64, 32, 16])
    # map2style: conv 128->512 stride 2, 4 x conv 512->512 stride 2, 12 linear heads 512->512
    assert m2s == (128 * 512 * 9 + 512) + 4 * (512 * 512 * 9 + 512) + 12 * (512 * 512 + 512)
    assert len(m.encoder.map2style.heads) == 12 and m.encoder.map2style.num_latents == 16
    assert m.encoder.f_encoder.style_feature_channels == 128
    assert m.encoder.f_encoder.basecode_channels == 512


def test_map2style_head_layout_matches_official_wmodule():
    """Official Wmodule: w1 = linear[0](x) copied 5 times (dummies for the skipped layers), then
    linear[1..] -> 16 latents for 512 px / basecode 16."""
    torch.manual_seed(0)
    m = Map2Style(in_channels=8, style_dim=6, num_latents=16, spatial_size=8, first_used_latent=4)
    assert len(m.convs) == 3 and len(m.heads) == 12
    feat = torch.randn(2, 8, 8, 8)
    w = m(feat)
    assert w.shape == (2, 16, 6)
    x = feat
    for conv in m.convs:
        x = F.leaky_relu(conv(x), 0.01)
    x = x.flatten(1)
    for i in range(5):
        torch.testing.assert_close(w[:, i], m.heads[0](x))
    for h in range(1, 12):
        torch.testing.assert_close(w[:, 4 + h], m.heads[h](x))
    with pytest.raises(ValueError, match="map2style expects"):
        m(torch.randn(1, 8, 16, 16))


def test_fencoder_shapes_and_eval_bn_folding():
    torch.manual_seed(0)
    fe = FEncoder(input_size=64, basecode_size=8, channels={64: 4, 32: 8, 16: 8, 8: 16}, style_feature_size=16)
    x = torch.rand(2, 3, 64, 64)
    fe.train()
    basecode, feat = fe(x)  # updates BN running stats
    assert basecode.shape == (2, 16, 8, 8) and feat.shape == (2, 8, 16, 16)
    for bn in fe.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.normal_()
            bn.bias.data.normal_()
    fe.eval()
    with torch.no_grad():
        folded, _ = fe(x)
        # reference: unfolded conv -> BN(eval) -> lrelu, avg-pool
        h = x
        for block in fe.blocks:
            for conv, bn in zip(block.convs, block.norms):
                h = F.leaky_relu(bn(conv(h)), 0.2)
            if block.down:
                h = F.avg_pool2d(h, 2)
        ref = fe.out_conv(h)
    torch.testing.assert_close(folded, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="F-encoder expects"):
        fe(torch.rand(1, 3, 32, 32))


def test_tiny_synthesis_module_forward_backward():
    torch.manual_seed(0)
    m = tiny_module()
    x = torch.rand(2, 3, 32, 32)
    x_syn, f_syn = m(x)
    assert x_syn.shape == (2, 3, 32, 32) and f_syn.shape == (2, m.generator.feature_channels, 32, 32)
    (x_syn.mean() + f_syn.mean()).backward()

    def finite_and_nonzero(t):
        return t is not None and bool(torch.isfinite(t).all()) and t.abs().sum().item() > 0

    # E (F-encoder and map2style) and G are all on the path from x to x_syn
    assert finite_and_nonzero(m.encoder.f_encoder.blocks[0].convs[0].weight.grad)
    assert finite_and_nonzero(m.encoder.map2style.heads[-1].weight.grad)
    assert finite_and_nonzero(m.generator.convs[-1].conv.weight.grad)
    # W+ comes from map2style, not from G's own mapping network, and G starts at F
    assert all(p.grad is None for p in m.generator.mapping.parameters())
    assert m.generator.const.grad is None
    # output mapping: x_syn = (G(E(x)) + 1) / 2, E sees x in [0, 1] unchanged
    m.eval()
    with torch.no_grad():
        basecode, wplus = m.encoder(x)
        img, f = m.generator.synthesize(basecode, wplus, noise="const")
        x_syn2, f_syn2 = m(x)
    torch.testing.assert_close(x_syn2, (img + 1) / 2)
    torch.testing.assert_close(f_syn2, f)


def test_synthesis_module_checks():
    m = tiny_module()
    with pytest.raises(ValueError, match="expects x_reg"):
        m(torch.rand(1, 3, 64, 64))
    g_other = Generator(size=32, style_dim=16, n_mlp=2, channel_max=16, basecode_size=16)
    with pytest.raises(ValueError, match="do not fit"):
        SynthesisModule(g_other, m.encoder)
    with pytest.raises(ValueError, match="map2style expects"):
        SynthesisEncoder(m.encoder.f_encoder, Map2Style(in_channels=3, style_dim=16, num_latents=8, spatial_size=16))


def test_small_profile_configs_build():
    # smoke-profile style: 64-px prior with basecode 8 or 16
    for b in (8, 16):
        m = build_synthesis_module(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64,
                                   basecode_size=b, encoder_channel_max=64)
        with torch.no_grad():
            x_syn, f_syn = m(torch.rand(1, 3, 64, 64))
        assert x_syn.shape == (1, 3, 64, 64) and f_syn.shape == (1, 64, 64, 64)


@pytest.mark.slow
def test_paper_scale_forward_512_cpu():
    torch.manual_seed(0)
    m = build_synthesis_module().eval()
    x = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        t0 = time.perf_counter()
        x_syn, f_syn = m(x)
        elapsed = time.perf_counter() - t0
    assert x_syn.shape == (1, 3, 512, 512) and f_syn.shape == (1, 64, 512, 512)
    assert torch.isfinite(x_syn).all() and torch.isfinite(f_syn).all()
    print(f"paper-scale synthesis forward: {elapsed:.2f} s")
