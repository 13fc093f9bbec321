"""Regression backbones: registry, parameter counts at paper scale, shapes, TLC.

Golden parameter counts are the published figures: NAFNet paper / UGPNet paper Table
(NAFNet GoPro-width32 17.11 M, SIDD-width32 29.16 M), HINet (GoPro 88.67 M, SIDD-0.5x 22.18 M),
ESRGAN RRDBNet x4 16.70 M, and UGPNet's 68.96 M total for RRDBNet x8 minus its synthesis
(51.59 M) and fusion (0.63 M) modules = 16.74 M for RRDBNet x8.
"""
import pytest
import torch
import torch.nn.functional as F

from ugpnet.errors import ConfigError
from ugpnet.models.backbones import BACKBONES, HINet, NAFNet, RRDBNet, UNet
from ugpnet.models.backbones.nafnet import ChannelPool

from backbone_configs import GOPRO_NAFNET, SIDD_NAFNET, TINY, n_params  # noqa: E402


def meta_count(cls, **kw) -> int:
    with torch.device("meta"):
        return n_params(cls(**kw))


def test_registry_names_and_kinds():
    assert BACKBONES.names() == ["hinet", "nafnet", "rrdbnet", "unet"]
    with pytest.raises(ConfigError, match="registered: hinet, nafnet, rrdbnet, unet"):
        BACKBONES.get("swinir")
    for name, kw in TINY.items():
        net = BACKBONES.get(name)(**kw)
        assert net.kind == ("direct" if name == "rrdbnet" else "residual")
        assert net.scale == (8 if name == "rrdbnet" else 1)


@pytest.mark.parametrize("cls,kw,millions", [
    (NAFNet, GOPRO_NAFNET, 17.11),
    (NAFNet, SIDD_NAFNET, 29.16),
    (HINet, dict(wf=64, hin_position_left=3, hin_position_right=4), 88.67),
    (HINet, dict(wf=32), 22.18),
    (RRDBNet, dict(num_feat=64, num_block=23, num_grow_ch=32, scale=8), 16.74),
    (RRDBNet, dict(num_feat=64, num_block=23, num_grow_ch=32, scale=4), 16.70),
])
def test_paper_scale_parameter_counts(cls, kw, millions):
    n = meta_count(cls, **kw)
    assert abs(n / 1e6 - millions) / millions < 0.005, (cls.__name__, kw, n)


def test_tlc_does_not_change_parameters():
    assert meta_count(NAFNet, **GOPRO_NAFNET) == meta_count(NAFNet, tlc_train_size=(256, 256),
                                                            **GOPRO_NAFNET)


def test_unet_parameter_count_is_stable():
    # our own config; the count follows from the layer list in the docstring
    c = 32
    chans = [c * 2 ** i for i in range(5)]
    conv = lambda i, o, k=3: i * o * k * k + o  # noqa: E731
    expected = 0
    in_ch = 3
    for ch in chans[:-1]:
        expected += conv(in_ch, ch) + conv(ch, ch)
        in_ch = ch
    expected += conv(chans[3], chans[4]) + conv(chans[4], chans[4])
    for i in reversed(range(4)):
        expected += conv(chans[i + 1], chans[i], 2) + conv(2 * chans[i], chans[i]) + conv(chans[i], chans[i])
    expected += conv(c, 3)
    assert meta_count(UNet, base_channels=32, depth=4) == expected


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("size", [(32, 48), (20, 36)])
def test_forward_shapes_and_features(name, size):
    torch.manual_seed(0)
    net = BACKBONES.get(name)(**TINY[name]).eval()
    h, w = size
    if name == "rrdbnet":
        h, w = h // 4, w // 4
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = net(x)
        y2, f = net(x, return_feature=True)
    s = net.scale
    assert y.shape == (2, 3, h * s, w * s)
    assert torch.equal(y, y2)
    assert f.shape == (2, net.feature_channels, h * s, w * s)
    assert torch.isfinite(y).all() and torch.isfinite(f).all()


def test_residual_backbones_end_with_a_conv_on_the_feature():
    """image = x + ending(feature) (NAFNet, UNet) / last(feature) (HINet) on unpadded sizes."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    for name, ending in (("nafnet", "ending"), ("unet", "ending"), ("hinet", "last")):
        net = BACKBONES.get(name)(**TINY[name]).eval()
        with torch.no_grad():
            y, f = net(x, return_feature=True)
            torch.testing.assert_close(y, x + getattr(net, ending)(f))


def test_rrdbnet_feature_is_before_conv_last():
    net = RRDBNet(**TINY["rrdbnet"]).eval()
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        y, f = net(x, return_feature=True)
        torch.testing.assert_close(y, net.conv_last(f))
    assert net.feature_channels == 16 and y.shape == (1, 3, 48, 40)


def test_nafnet_gopro_keys_match_official_names():
    net = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 2], dec_blk_nums=[1, 1, 1, 1])
    keys = set(net.state_dict())
    # names from the official NAFNet_arch.py
    for k in ["intro.weight", "ending.bias", "encoders.3.1.conv2.weight", "encoders.0.0.sca.1.weight",
              "encoders.0.0.norm1.weight", "encoders.0.0.beta", "decoders.0.0.gamma",
              "downs.3.weight", "ups.0.0.weight", "middle_blks.0.conv5.bias"]:
        assert k in keys, k
    assert "ups.0.0.bias" not in keys


def test_tlc_kernel_sizes_follow_the_official_rule():
    net = NAFNet(tlc_train_size=(256, 256), width=8, middle_blk_num=1,
                 enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])
    # NAFNetLocal: base_size = 1.5 * train size; kernel = feature_at_train * base // train
    assert net.encoders[0][0].sca[0].kernel_size == (384, 384)
    assert net.encoders[3][0].sca[0].kernel_size == (48, 48)
    assert net.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert net.decoders[0][0].sca[0].kernel_size == (48, 48)
    assert net.decoders[3][0].sca[0].kernel_size == (384, 384)


def test_tlc_local_pool_matches_box_filter():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 11, 14, dtype=torch.float64)
    pool = ChannelPool((5, 6))
    box = F.avg_pool2d(x, (5, 6), stride=1)  # valid windows, then replicate to full size
    ref = F.pad(box, (2, 3, 2, 2), mode="replicate")
    torch.testing.assert_close(pool(x), ref)
    torch.testing.assert_close(ChannelPool((11, 20))(x), x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(ChannelPool(None)(x), x.mean((2, 3), keepdim=True))


def test_tlc_equals_global_at_train_size_and_differs_beyond():
    torch.manual_seed(0)
    kw = TINY["nafnet"]
    net = NAFNet(**kw).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    tlc = NAFNet(tlc_train_size=(32, 32), **kw).eval()
    tlc.load_state_dict(net.state_dict())
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(tlc(x), net(x))
        x = torch.rand(1, 3, 96, 64)
        assert (tlc(x) - net(x)).abs().max() > 1e-4


def test_hinet_stage2_intro_option():
    torch.manual_seed(0)
    a = HINet(wf=8, stage2_intro="conv_02").eval()
    b = HINet(wf=8, stage2_intro="conv_01").eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        a.conv_02.load_state_dict(a.conv_01.state_dict())
        torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ValueError, match="stage2_intro"):
        HINet(wf=8, stage2_intro="conv_03")


def test_rrdbnet_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=3)


@pytest.mark.slow
@pytest.mark.parametrize("cls,kw,size", [
    (NAFNet, GOPRO_NAFNET, 128),
    (NAFNet, SIDD_NAFNET, 128),
    (HINet, dict(wf=64, hin_position_left=3, hin_position_right=4), 128),
    (HINet, dict(wf=32), 128),
    (RRDBNet, dict(scale=8), 16),
    (UNet, dict(base_channels=32, depth=4), 128),
])
def test_paper_scale_forward_backward(cls, kw, size):
    torch.manual_seed(0)
    net = cls(**kw)
    x = torch.rand(1, 3, size, size)
    y, f = net(x, return_feature=True)
    (y.mean() + f.mean()).backward()
    assert y.shape[-1] == size * net.scale
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # (zero-initialised layer scales may leave some branches at exactly zero at step 0)
    first, last = grads[0], grads[-1]
    assert first.abs().sum() > 0 and last.abs().sum() > 0
