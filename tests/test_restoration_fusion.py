"""UGPNet restoration module (R', R_se, R_mg) and fusion module.

Golden values: UGPNet paper / issue figures — UGPNet-NAFNet (deblur) restoration module 17.34 M
(NAFNet 17.11 M + structure encoder and merging net), fusion module 0.63 M.
"""
import pytest
import torch
import torch.nn.functional as F

from ugpnet.models.backbones import BACKBONES, NAFNet, RRDBNet
from ugpnet.models.blocks import ConvBlock, ResBlock, ToImage
from ugpnet.models.fusion import FusionModule
from ugpnet.models.restoration import RestorationModule, check_shapes

from backbone_configs import GOPRO_NAFNET, SIDD_NAFNET, TINY, n_params  # noqa: E402


def test_paper_scale_restoration_parameter_count():
    r = RestorationModule(NAFNet(**GOPRO_NAFNET), check=False)
    assert abs(n_params(r) / 1e6 - 17.34) / 17.34 < 0.005, n_params(r)
    # R_se + R_mg of the official ResidualEncoder(chan=32): ConvBlocks 3->32, 32->64, 64->64, ToImage
    assert n_params(r.structure_encoder) + n_params(r.merging_net) == 224259


def test_sidd_restoration_adds_the_same_modules():
    with torch.device("meta"):
        r = RestorationModule(NAFNet(**SIDD_NAFNET), check=False)
    assert n_params(r) - n_params(r.backbone) == 224259


def test_paper_scale_fusion_parameter_count():
    f = FusionModule(syn_channels=64, reg_channels=64, num_blocks=8, channels=64)
    assert abs(n_params(f) / 1e6 - 0.63) / 0.63 < 0.005, n_params(f)


def test_block_layouts():
    b = ConvBlock(3, 8)
    assert [tuple(c.weight.shape) for c in b.conv] == [(8, 3, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3)]
    assert all(c.bias is not None for c in b.conv) and b.bn is None
    x = torch.randn(1, 3, 8, 8)
    ref = x
    for c in b.conv:
        ref = F.leaky_relu(c(ref), 0.2)
    torch.testing.assert_close(b(x), ref)
    t = ToImage(8)
    z = torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(t(z), F.leaky_relu(t.conv(z), 0.2))  # official ends with LReLU
    r = ResBlock(4)
    z = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(r(z), torch.relu(z + r.conv2(torch.relu(r.conv1(z)))))


@pytest.mark.parametrize("name", ["nafnet", "hinet", "unet"])
def test_residual_restoration_shapes(name):
    torch.manual_seed(0)
    bb = BACKBONES.get(name)(**TINY[name])
    r = RestorationModule(bb).eval()
    assert r.kind == "residual" and r.feature_channels == 64 and r.scale == 1
    assert r.structure_encoder.out_channels == bb.feature_channels
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        x_reg, f_reg = r(x)
    assert x_reg.shape == (2, 3, 32, 32) and f_reg.shape == (2, 64, 32, 32)
    with torch.no_grad():  # x_reg = R_mg(R'(x) + R_se(x)); f_reg is R_mg's last feature
        feat = bb(x, return_feature=True)[1] + r.structure_encoder(x)
        for block in r.merging_net.blocks:
            feat = block(feat)
        torch.testing.assert_close(f_reg, feat)
        torch.testing.assert_close(x_reg, r.merging_net.to_image(feat))


def test_direct_restoration_is_pass_through():
    torch.manual_seed(0)
    bb = RRDBNet(**TINY["rrdbnet"])
    r = RestorationModule(bb).eval()
    assert r.structure_encoder is None and r.merging_net is None
    assert r.kind == "direct" and r.scale == 8 and r.feature_channels == 16
    assert n_params(r) == n_params(bb)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        x_reg, f_reg = r(x)
        y, f = bb(x, return_feature=True)
    assert torch.equal(x_reg, y) and torch.equal(f_reg, f) and x_reg.shape == (1, 3, 64, 64)


def test_wrong_feature_channels_fail_at_build_time():
    bb = NAFNet(**TINY["nafnet"])
    bb._feature_channels = 12  # the backbone lies about its feature width
    with pytest.raises(ValueError, match=r"backbone 'nafnet' returns features of shape "
                                         r"\(1, 8, 32, 32\) but structure_encoder gives "
                                         r"\(1, 12, 32, 32\); set feature_channels correctly"):
        RestorationModule(bb)
    with pytest.raises(ValueError, match="structure_encoder gives"):
        RestorationModule(NAFNet(**TINY["nafnet"]), se_channels=16)


def test_check_shapes_helper():
    r = RestorationModule(NAFNet(**TINY["nafnet"]), check=False)
    r.train()
    x_reg, f_reg = check_shapes(r, 32)
    assert r.training  # mode restored
    assert x_reg.shape == (1, 3, 32, 32) and f_reg.shape == (1, 64, 32, 32)
    (y,) = check_shapes(NAFNet(**TINY["nafnet"]), (16, 48))
    assert y.shape == (1, 3, 16, 48)


def test_fusion_forward_and_assertions():
    torch.manual_seed(0)
    f = FusionModule(syn_channels=32, reg_channels=64, num_blocks=2).eval()
    f_syn, f_reg = torch.randn(2, 32, 16, 16), torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        out = f(f_syn, f_reg)
        ref = f.out_conv(f.body(f.in_conv(f_syn) + f_reg))
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="f_syn"):
        f(torch.randn(2, 64, 16, 16), f_reg)
    with pytest.raises(ValueError, match="f_reg"):
        f(f_syn, torch.randn(2, 32, 16, 16))
    with pytest.raises(ValueError, match="spatial"):
        f(f_syn, torch.randn(2, 64, 8, 8))
    with pytest.raises(ValueError, match="reg_channels must equal channels"):
        FusionModule(reg_channels=32, channels=64)


@pytest.mark.slow
def test_paper_scale_restoration_forward_backward():
    torch.manual_seed(0)
    r = RestorationModule(NAFNet(**GOPRO_NAFNET, tlc_train_size=(64, 64)))
    x = torch.rand(1, 3, 128, 128)
    x_reg, f_reg = r(x)
    f = FusionModule()
    out = f(torch.randn(1, 64, 128, 128), f_reg)
    (x_reg.mean() + out.mean()).backward()
    assert out.shape == (1, 3, 128, 128)
    for p in (r.structure_encoder.conv[0].weight, r.merging_net.to_image.conv.weight,
              f.in_conv.weight, f.out_conv.weight):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
