"""The CPU fast paths (channels-last, in-place activations and residual sums, layer norm as one
kernel) compute the same math as a straightforward reference written here.

Each reference below is the plain formula of its module, run NCHW-contiguous with out-of-place
ops (the layout and op order the models used before the fast paths). The fast path must agree
within 1e-5 relative (max |fast - ref| / max |ref|), with and without autograd, and must not
modify its inputs.
"""
import pytest
import torch
import torch.nn.functional as F

from ugpnet.models.backbones import NAFNet
from ugpnet.models.blocks import ConvBlock, ResBlock, ToImage
from ugpnet.models.fusion import FusionModule
from ugpnet.models.restoration import RestorationModule
from ugpnet.models.synthesis import build_synthesis_module
from ugpnet.models.ugpnet import UGPNet

REL = 1e-5
CL = torch.channels_last


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()


# ---------------------------------------------------------------- references (plain math, NCHW)
def _reference_layer_norm2d(ln, x):
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    y = (x - mu) / (var + ln.eps).sqrt()
    return y * ln.weight.view(1, -1, 1, 1) + ln.bias.view(1, -1, 1, 1)


def _reference_gate(x):
    a, b = x.chunk(2, dim=1)
    return a * b


def _reference_nafblock(blk, inp):
    x = _reference_layer_norm2d(blk.norm1, inp)
    x = _reference_gate(blk.conv2(blk.conv1(x)))
    x = blk.conv3(x * blk.sca[1](blk.sca[0](x)))
    y = inp + x * blk.beta
    x = blk.conv5(_reference_gate(blk.conv4(_reference_layer_norm2d(blk.norm2, y))))
    return y + x * blk.gamma


def _reference_nafnet(net, x):
    h, w = x.shape[-2:]
    m = net.size_multiple
    inp = F.pad(x.contiguous(), (0, (-w) % m, 0, (-h) % m))
    f = net.intro(inp)
    skips = []
    for enc, down in zip(net.encoders, net.downs):
        for blk in enc:
            f = _reference_nafblock(blk, f)
        skips.append(f)
        f = down(f)
    for blk in net.middle_blks:
        f = _reference_nafblock(blk, f)
    for dec, up, skip in zip(net.decoders, net.ups, reversed(skips)):
        f = up(f) + skip
        for blk in dec:
            f = _reference_nafblock(blk, f)
    image = net.ending(f) + inp
    return image[..., :h, :w], f[..., :h, :w]


def _reference_convblock(b, x):
    for i, conv in enumerate(b.conv):
        x = conv(x)
        if b.bn is not None:
            x = b.bn[i](x)
        x = F.leaky_relu(x, 0.2)
    if b.downscale > 1:
        x = F.avg_pool2d(x, b.downscale, b.downscale)
    return x


def _reference_resblock(r, x):
    return F.relu(x + r.conv2(F.relu(r.conv1(x))))


def _reference_fusion(f, f_syn, f_reg):
    x = f.in_conv(f_syn.contiguous()) + f_reg.contiguous()
    for blk in f.body:
        x = _reference_resblock(blk, x)
    return f.out_conv(x)


def _reference_restoration(r, x):
    x = x.contiguous()
    _, feat = _reference_nafnet(r.backbone, x)
    f = feat + _reference_convblock(r.structure_encoder, x)
    for blk in r.merging_net.blocks:
        f = _reference_convblock(blk, f)
    return F.leaky_relu(r.merging_net.to_image.conv(f), 0.2), f


# ---------------------------------------------------------------- helpers
def _randomise_nafnet_scales(net, seed=0):
    """beta/gamma start at zero (every block is then the identity): give them random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("beta", "gamma")) or ".norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name.endswith("weight") else 0.0))


def _tiny_nafnet(tlc=None):
    torch.manual_seed(0)
    net = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 2, 1], dec_blk_nums=[1, 1, 1],
                 tlc_train_size=tlc)
    _randomise_nafnet_scales(net)
    return net.eval()


def _tiny_ugpnet():
    torch.manual_seed(0)
    bb = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    _randomise_nafnet_scales(bb)
    restoration = RestorationModule(bb)
    synthesis = build_synthesis_module(size=32, style_dim=32, n_mlp=2, channel_multiplier=1,
                                       channel_max=32, basecode_size=8)
    fusion = FusionModule(syn_channels=synthesis.generator.feature_channels, num_blocks=2)
    return UGPNet(restoration, synthesis, fusion).eval()


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("grad", [False, True])
def test_layer_norm2d_channels_last_matches_reference(grad):
    net = _tiny_nafnet()
    ln = net.encoders[0][0].norm1
    x = torch.randn(2, 8, 9, 7)
    with torch.set_grad_enabled(grad):
        fast = ln(x.contiguous(memory_format=CL))
        ref = _reference_layer_norm2d(ln, x)
    assert fast.is_contiguous(memory_format=CL)
    assert rel_err(fast, ref) <= REL


@pytest.mark.parametrize("tlc", [None, (16, 16)])
@pytest.mark.parametrize("mode", ["inference", "no_grad", "grad"])
def test_nafnet_fast_path_matches_reference(tlc, mode):
    net = _tiny_nafnet(tlc)
    x = torch.rand(2, 3, 30, 36)  # not a multiple of 8: exercises the padding and the crop
    x0 = x.clone()
    ctx = {"inference": torch.inference_mode(), "no_grad": torch.no_grad(),
           "grad": torch.enable_grad()}[mode]
    with ctx:
        img, feat = net(x, return_feature=True)
    with torch.no_grad():
        ref_img, ref_feat = _reference_nafnet(net, x)
    assert torch.equal(x, x0), "the fast path modified its input"
    assert img.is_contiguous() and feat.stride(1) == 1  # feat: a crop of a channels-last map
    assert rel_err(img, ref_img) <= REL
    assert rel_err(feat, ref_feat) <= REL


def test_nafnet_fast_path_gradients_match_reference():
    net = _tiny_nafnet((16, 16)).train()
    x = torch.rand(1, 3, 32, 32)
    img, feat = net(x, return_feature=True)
    (img.square().mean() + feat.mean()).backward()
    fast = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    ref_img, ref_feat = _reference_nafnet(net, x)
    (ref_img.square().mean() + ref_feat.mean()).backward()
    for n, p in net.named_parameters():
        assert rel_err(fast[n], p.grad) <= 1e-4, n  # gradients sum many more rounded terms


def test_nafnet_channels_last_off_is_the_reference_layout():
    net = _tiny_nafnet()
    net.channels_last = False
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        img, feat = net(x, return_feature=True)
        ref_img, ref_feat = _reference_nafnet(net, x)
    assert feat.is_contiguous()
    assert rel_err(img, ref_img) <= REL and rel_err(feat, ref_feat) <= REL


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_blocks_in_place_match_reference(grad, fmt):
    torch.manual_seed(0)
    cb, cbn, ti, rb = ConvBlock(3, 8), ConvBlock(8, 8, batch_norm=True, downscale=2), ToImage(8), ResBlock(8)
    cbn.eval()
    x = torch.randn(2, 3, 12, 10).contiguous(memory_format=fmt)
    z = torch.randn(2, 8, 12, 10).contiguous(memory_format=fmt)
    x0, z0 = x.clone(), z.clone()
    with torch.set_grad_enabled(grad):
        pairs = [(cb(x), _reference_convblock(cb, x.contiguous())),
                 (cbn(z), _reference_convblock(cbn, z.contiguous())),
                 (ti(z), F.leaky_relu(ti.conv(z.contiguous()), 0.2)),
                 (rb(z), _reference_resblock(rb, z.contiguous()))]
    assert torch.equal(x, x0) and torch.equal(z, z0), "a block modified its input"
    for fast, ref in pairs:
        assert rel_err(fast, ref) <= REL


@pytest.mark.parametrize("grad", [False, True])
def test_fusion_fast_path_matches_reference(grad):
    torch.manual_seed(0)
    f = FusionModule(syn_channels=16, num_blocks=3)
    with torch.no_grad():
        for p in f.parameters():  # non-zero biases too
            p.add_(torch.randn_like(p) * 0.05)
    f_syn = torch.randn(1, 16, 20, 20).contiguous(memory_format=CL)
    f_reg = torch.randn(1, 64, 20, 20).contiguous(memory_format=CL)
    s0, r0 = f_syn.clone(), f_reg.clone()
    with torch.set_grad_enabled(grad):
        fast = f(f_syn, f_reg)
    with torch.no_grad():
        ref = _reference_fusion(f, f_syn, f_reg)
    assert torch.equal(f_syn, s0) and torch.equal(f_reg, r0)
    assert rel_err(fast, ref) <= REL


@pytest.mark.parametrize("mode", ["inference", "grad"])
def test_ugpnet_fast_path_matches_reference(mode):
    m = _tiny_ugpnet()
    x = torch.rand(1, 3, 32, 32)
    x0 = x.clone()
    ctx = torch.inference_mode() if mode == "inference" else torch.enable_grad()
    with ctx:
        out = m.forward_all(x)
    with torch.no_grad():
        x_reg, f_reg = _reference_restoration(m.restoration, x)
        x_syn, f_syn = m.synthesis(x_reg)
        x_hat = _reference_fusion(m.fusion, f_syn, f_reg)
    assert torch.equal(x, x0)
    for name, ref in (("x_reg", x_reg), ("x_syn", x_syn), ("x_hat", x_hat)):
        assert out[name].is_contiguous(), name
        assert rel_err(out[name], ref) <= REL, name
