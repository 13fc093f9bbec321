"""Tests of ugpnet.losses: exact values of the pixel and GAN losses against independent
computations (skimage PSNR, closed-form gradients), LPIPS loss properties, and the contextual loss
against a literal numpy re-implementation of the official formula plus its purpose (invariance to
spatial misalignment) on real photographs bundled with scikit-image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.losses import (
    LOSSES,
    ContextualLoss,
    L1Loss,
    PSNRLoss,
    StyleGAN2AdversarialLoss,
    contextual_loss_from_features,
    d_logistic_loss,
    d_r1_penalty,
    g_nonsaturating_loss,
    r1_weight,
)
from ugpnet import pretrained
from ugpnet.losses import vgg as vggmod
from ugpnet.pretrained import store as weight_store

PAIR_LOSSES = ["l1", "mse", "charbonnier", "psnr", "lpips", "contextual"]


def _rand(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g).requires_grad_(requires_grad)


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    a = getattr(data, name)()
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0


# ------------------------------------------------------------------------------------ registry
def test_registry_names():
    assert set(PAIR_LOSSES + ["adversarial"]) <= set(LOSSES.names())
    with pytest.raises(ConfigError, match="registered"):
        LOSSES.get("nope")


@pytest.fixture(scope="module")
def lpips_loss():
    return LOSSES.get("lpips")(net="vgg")


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_every_pair_loss_forward_backward(name, request):
    if name == "lpips":  # building LPIPS takes seconds: share one instance
        loss = request.getfixturevalue("lpips_loss")
    else:
        loss = LOSSES.get(name)(**({"contextual": {"patch_size": 16}}.get(name, {})))
    pred = _rand(2, 3, 32, 32, seed=1, requires_grad=True)
    target = _rand(2, 3, 32, 32, seed=2)
    value = loss(pred, target)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    d = (pred - target).detach()
    closed_form = {  # d loss / d pred of the mean-reduced pixel losses, M = number of elements
        "l1": lambda: d.sign() / d.numel(),
        "mse": lambda: 2 * d / d.numel(),
        "charbonnier": lambda: d / torch.sqrt(d ** 2 + 1e-6) / d.numel(),
        "psnr": lambda: (10 / math.log(10) / d.shape[0] * 2 * d / d[0].numel()
                         / ((d ** 2).mean(dim=(1, 2, 3), keepdim=True) + 1e-8)),
    }
    params = list(loss.parameters())
    if name in closed_form:
        torch.testing.assert_close(pred.grad, closed_form[name](), rtol=1e-5, atol=1e-9)
        assert params == []  # a pixel loss has nothing to train
    else:  # the feature network of the loss is frozen: no gradient reaches its weights
        assert params and all(not p.requires_grad and p.grad is None for p in params)


def test_adversarial_registered_forward_backward():
    adv = LOSSES.get("adversarial")(loss_weight=0.3)
    fake = torch.tensor([[-2.0], [0.0], [0.5], [3.0]], requires_grad=True)
    value = adv(fake)
    # 0.3 * mean softplus(-f); d/df = -0.3 * sigmoid(-f) / N
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert value.item() == pytest.approx(0.3 * sum(sp(-f) for f in (-2.0, 0.0, 0.5, 3.0)) / 4)
    value.backward()
    want = [-0.3 / (1 + math.exp(f)) / 4 for f in (-2.0, 0.0, 0.5, 3.0)]
    assert fake.grad.view(-1).tolist() == pytest.approx(want, rel=1e-6)


# --------------------------------------------------------------------------------- pixel losses
def test_l1_exact_and_weighting():
    pred = torch.tensor([0.0, 0.5, 1.0, 0.25]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.5, 0.0, 0.0]).view(1, 1, 2, 2)
    # |d| = 1, 0, 1, 0.25
    assert L1Loss()(pred, target).item() == pytest.approx(2.25 / 4)
    assert L1Loss(reduction="sum")(pred, target).item() == pytest.approx(2.25)
    assert L1Loss(loss_weight=2.0)(pred, target).item() == pytest.approx(2 * 2.25 / 4)
    w = torch.tensor([1.0, 1.0, 0.0, 2.0]).view(1, 1, 2, 2)  # weighted mean: (1 + 0 + 0 + 0.5) / 4
    assert L1Loss()(pred, target, weight=w).item() == pytest.approx(1.5 / 4)
    assert L1Loss(reduction="none")(pred, target).shape == (1, 1, 2, 2)
    with pytest.raises(ConfigError):
        L1Loss(reduction="max")
    with pytest.raises(ValueError):
        L1Loss()(pred, target[..., :1])


def test_charbonnier_and_mse_exact():
    pred = torch.tensor([0.0, 0.3]).view(1, 1, 1, 2)
    target = torch.tensor([0.0, 0.0]).view(1, 1, 1, 2)
    ch = LOSSES.get("charbonnier")(eps=1e-3)(pred, target).item()
    assert ch == pytest.approx((1e-3 + math.sqrt(0.09 + 1e-6)) / 2)
    assert LOSSES.get("mse")()(pred, target).item() == pytest.approx(0.045)


def test_psnr_loss_is_minus_psnr_db():
    from skimage.metrics import peak_signal_noise_ratio

    pred = _rand(3, 3, 16, 16, seed=3).double()
    target = (pred + 0.05 * torch.randn(pred.shape, generator=torch.Generator().manual_seed(4),
                                        dtype=torch.float64)).clamp(0, 1)
    psnrs = [peak_signal_noise_ratio(target[i].numpy(), pred[i].numpy(), data_range=1.0)
             for i in range(3)]
    loss = PSNRLoss()(pred, target).item()
    assert loss == pytest.approx(-np.mean(psnrs), abs=1e-4)  # eps 1e-8 << MSE ~ 2.5e-3
    assert PSNRLoss(loss_weight=0.5)(pred, target).item() == pytest.approx(-0.5 * np.mean(psnrs),
                                                                           abs=1e-4)
    # identical inputs: the minimum, 10*log10(1e-8) = -80 dB
    assert PSNRLoss()(pred, pred).item() == pytest.approx(-80.0, abs=1e-6)
    with pytest.raises(ConfigError):
        PSNRLoss(reduction="sum")


def test_psnr_loss_to_y_matches_skimage_luma():
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio

    pred = _rand(1, 3, 16, 16, seed=5).double()
    target = _rand(1, 3, 16, 16, seed=6).double()
    yp = rgb2ycbcr(pred[0].permute(1, 2, 0).numpy())[..., 0] / 255.0
    yt = rgb2ycbcr(target[0].permute(1, 2, 0).numpy())[..., 0] / 255.0
    ref = peak_signal_noise_ratio(yt, yp, data_range=1.0)
    assert PSNRLoss(to_y=True)(pred, target).item() == pytest.approx(-ref, abs=1e-4)


# ------------------------------------------------------------------------------------- GAN
def test_gan_losses_known_values():
    zero = torch.zeros(5, 1)
    assert g_nonsaturating_loss(zero).item() == pytest.approx(math.log(2))
    assert d_logistic_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [3.0]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert d_logistic_loss(real, fake).item() == pytest.approx(
        (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(3.0)) / 2, rel=1e-6)
    assert g_nonsaturating_loss(fake).item() == pytest.approx((sp(-0.5) + sp(-3.0)) / 2, rel=1e-6)


def test_r1_penalty_closed_form_and_double_backward():
    # D(x) = w * sum(x^2)  =>  dD/dx = 2 w x,  R1 = mean_n 4 w^2 ||x_n||^2,  dR1/dw = 8 w mean||x_n||^2
    x = _rand(3, 3, 4, 4, seed=7).requires_grad_(True)
    w = torch.tensor(0.7, requires_grad=True)
    logits = w * (x ** 2).sum(dim=(1, 2, 3))
    pen = d_r1_penalty(logits, x)
    norms = (x.detach() ** 2).sum(dim=(1, 2, 3))
    assert pen.item() == pytest.approx(4 * 0.49 * norms.mean().item(), rel=1e-5)
    pen.backward()
    assert w.grad.item() == pytest.approx(8 * 0.7 * norms.mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="requires_grad"):
        d_r1_penalty(logits.detach(), x.detach())


def test_r1_lazy_weight_and_schedule():
    assert r1_weight(10.0, 10) == 50.0  # gamma/2 * interval (official UGPNet: 10 / 2 * 10)
    assert r1_weight(10.0, 1) == 5.0
    adv = StyleGAN2AdversarialLoss(r1_gamma=10.0, r1_interval=16)
    assert [s for s in range(40) if adv.r1_due(s)] == [0, 16, 32]
    assert not StyleGAN2AdversarialLoss(r1_gamma=0.0).r1_due(0)
    with pytest.raises(ConfigError):
        r1_weight(1.0, 0)


# ------------------------------------------------------------------------------------ LPIPS
def test_lpips_loss_properties(lpips_loss):
    loss = lpips_loss
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    x = _rand(2, 3, 32, 32, seed=8)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    y = _rand(2, 3, 32, 32, seed=9, requires_grad=True)
    opt = torch.optim.SGD([y], lr=0.1)
    v = loss(y, x)
    assert v.item() > 0.05
    v.backward()
    assert y.grad.abs().sum() > 0
    opt.step()
    loss.train()  # must not unfreeze or switch the network to training mode
    assert not loss.model.training
    assert loss(y, x).item() < v.item()  # a gradient step on the input reduces the loss
    after = loss.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in loss.parameters())
    assert "vgg" in loss.feature_source


def test_lpips_loss_input_scaling_and_resize(lpips_loss):
    a, b = _rand(2, 3, 32, 32, seed=10), _rand(2, 3, 32, 32, seed=11)
    # the lpips package's own [0,1] -> [-1,1] path gives the same value
    ref = lpips_loss.model(a, b, normalize=True).mean().item()
    assert lpips_loss(a, b).item() == pytest.approx(ref, rel=1e-6)
    lpips_loss.resize_px = 48  # official UGPNet: 256 px bicubic
    try:
        r = lpips_loss(a, b)
    finally:
        lpips_loss.resize_px = None
    # = lpips of both images resized to 48 px (bicubic) first; not the full-resolution value
    up = lambda t: torch.nn.functional.interpolate(t, size=(48, 48), mode="bicubic",  # noqa: E731
                                                   align_corners=False)
    assert r.item() == pytest.approx(lpips_loss.model(up(a), up(b), normalize=True).mean().item(),
                                     rel=1e-5)
    assert r.item() != pytest.approx(ref, rel=1e-3)
    with pytest.raises(ConfigError):
        LOSSES.get("lpips")(net="squeeze")


# ------------------------------------------------------------------------------------- VGG
def test_vgg_layer_tables():
    # torchvision indices: VGG19 relu3_4 ends features[:18] (official slice3 = range(9, 18))
    assert pretrained.VGG_LAYERS["vgg19"]["relu3_4"] == 17
    assert pretrained.VGG_LAYERS["vgg19"]["relu5_4"] == 35
    assert pretrained.VGG_LAYERS["vgg16"]["relu3_3"] == 15
    assert pretrained.VGG_LAYERS["vgg16"]["relu5_3"] == 29
    assert pretrained.map_layer("relu3_4", "vgg16") == "relu3_3"
    assert pretrained.map_layer("relu2_2", "vgg16") == "relu2_2"
    assert pretrained.map_layer("relu3_3", "vgg19") == "relu3_3"
    for bad in ("relu2_3", "conv3_1", "relu9_1"):
        with pytest.raises(ConfigError):
            pretrained.map_layer(bad, "vgg19")


def test_vgg16_fallback_matches_metrics_vgg():
    from ugpnet.pretrained import build_vgg16_features

    ext = vggmod.build_vgg_features("relu3_4", backbone="vgg16")
    assert ext.source.startswith("vgg16/relu3_3") and ext.out_channels == 256
    x = _rand(1, 3, 32, 32, seed=12)
    ref = build_vgg16_features(upto=16)((x - ext.mean) / ext.std)
    out = ext(x)
    assert out.shape == (1, 256, 8, 8)
    assert torch.allclose(out, ref, atol=1e-5)


def test_pre_relu_conv_names_end_at_the_conv():
    # BasicSR's and mmagic's perceptual losses read convB_K (torchvision index of reluB_K - 1):
    # VGG16 conv4_3 = features[21] (BasicSR NAMES['vgg16']), VGG19 conv5_4 = features[34]
    pre = vggmod.build_vgg_features("conv4_3", backbone="vgg16")
    post = vggmod.build_vgg_features("relu4_3", backbone="vgg16")
    assert len(pre.features) == 22 and isinstance(pre.features[21], torch.nn.Conv2d)
    assert pre.source.startswith("vgg16/conv4_3")
    x = _rand(1, 3, 32, 32, seed=13)
    a, b = pre(x), post(x)
    assert (a < 0).any()  # before the ReLU: negative responses are kept
    assert torch.allclose(torch.relu(a), b, atol=1e-6)
    # a VGG19 conv name maps to the VGG16 conv at the same place, as the ReLU names do
    assert vggmod.build_vgg_features("conv5_4", backbone="vgg16").source.startswith(
        "vgg16/conv5_3")
    with pytest.raises(ConfigError):
        vggmod.build_vgg_features("conv9_1", backbone="vgg16")


def test_vgg19_from_hub_cache(tmp_path, monkeypatch):
    # a torchvision-layout VGG19 checkpoint (random weights) named like the hub file
    from torchvision.models import vgg as tvvgg

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    ckpt = tmp_path / "checkpoints" / pretrained.vgg.VGG19_FILE
    features = tvvgg.make_layers(tvvgg.cfgs["E"])  # torchvision's vgg19().features (no classifier)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, ckpt)
    # its sha256 does not start with dcbb9e9d: treated as damaged
    with pytest.raises(CheckpointError, match="damaged"):
        vggmod.build_vgg_features("relu3_4", backbone="auto")
    monkeypatch.setattr(weight_store, "file_hash", lambda p, algo="sha256": "dcbb9e9d" + "0" * 56)
    ext = vggmod.build_vgg_features("relu3_4", backbone="auto")
    assert ext.arch == "vgg19" and ext.source.startswith("vgg19/relu3_4 (torchvision")
    x = _rand(1, 3, 16, 16, seed=13)
    ref = features[:18].eval()((x - ext.mean) / ext.std)
    assert torch.allclose(ext(x), ref, atol=1e-5)
    ckpt.unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        vggmod.build_vgg_features("relu3_4", backbone="vgg19")


# ----------------------------------------------------------------------------------- contextual
def _cx_reference(x: np.ndarray, y: np.ndarray, h: float, aggregate: str) -> float:
    """Literal, loop-based numpy reading of the official formula (float64)."""
    p, c = x.shape[:2]
    xs, ys = x.reshape(p, c, -1), y.reshape(p, c, -1)
    mu = ys.mean(axis=(0, 2))[None, :, None]
    losses = []
    for k in range(p):
        a, b = xs[k] - mu[0], ys[k] - mu[0]
        a = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=0, keepdims=True), 1e-12)
        n = a.shape[1]
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                d[i, j] = max(0.0, 1.0 - float(a[:, i] @ b[:, j]))
        dt = d / (d.min(axis=1, keepdims=True) + 1e-5)
        wexp = np.exp((1.0 - dt) / h)
        cx = wexp / wexp.sum(axis=1, keepdims=True)
        m = cx.max(axis=0)
        if aggregate == "mechrez":
            s = m.mean()
        else:
            istar = cx.argmax(axis=0)
            cw = np.exp((1.0 - d[istar, np.arange(n)]) / 0.5)
            s = (m * cw).sum() / cw.sum()
        losses.append(-math.log(s + 1e-5))
    return float(np.mean(losses))


@pytest.mark.parametrize("aggregate", ["ugpnet", "mechrez"])
def test_contextual_matches_reference_formula(aggregate):
    g = torch.Generator().manual_seed(14)
    x = torch.randn(3, 5, 3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(3, 5, 3, 4, generator=g, dtype=torch.float64)
    ours = contextual_loss_from_features(x, y, 0.5, aggregate).item()
    assert ours == pytest.approx(_cx_reference(x.numpy(), y.numpy(), 0.5, aggregate), rel=1e-9)
    ours_h = contextual_loss_from_features(x, y, 0.2, aggregate).item()
    assert ours_h == pytest.approx(_cx_reference(x.numpy(), y.numpy(), 0.2, aggregate), rel=1e-9)


def test_contextual_features_identity_and_permutation_invariance():
    g = torch.Generator().manual_seed(15)
    y = torch.randn(2, 8, 4, 4, generator=g, dtype=torch.float64)
    # identical distinct features: CX = 1 exactly up to the 1e-5 terms => loss ~ -log(1 + 1e-5)
    assert contextual_loss_from_features(y, y).item() == pytest.approx(-math.log(1 + 1e-5), abs=1e-6)
    # any permutation of positions inside each sample: same loss (no alignment needed)
    perm = torch.randperm(16, generator=g)
    x = y.reshape(2, 8, 16)[:, :, perm].reshape(2, 8, 4, 4)
    assert contextual_loss_from_features(x, y).item() == pytest.approx(-math.log(1 + 1e-5), abs=1e-6)
    z = torch.randn(2, 8, 4, 4, generator=g, dtype=torch.float64)
    assert contextual_loss_from_features(z, y).item() > 0.5


def test_grid_patches_order():
    from ugpnet.losses.contextual import grid_patches

    img = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).view(2, 1, 4, 6)
    p = grid_patches(img, 2)  # 2 x 3 grid per image, remainder none
    assert p.shape == (12, 1, 2, 2)
    assert torch.equal(p[0], img[0, :, 0:2, 0:2]) and torch.equal(p[1], img[1, :, 0:2, 0:2])
    assert torch.equal(p[2], img[0, :, 0:2, 2:4])
    assert grid_patches(torch.zeros(1, 3, 5, 7), 2).shape == (6, 3, 2, 2)  # remainder dropped


def _shuffle_blocks_within_patches(img: torch.Tensor, patch: int, block: int) -> torch.Tensor:
    """Reverse the order of the ``block`` tiles inside every ``patch`` tile (content kept)."""
    out = img.clone()
    n = patch // block
    for i0 in range(0, img.shape[2], patch):
        for j0 in range(0, img.shape[3], patch):
            tiles = [(i0 + a * block, j0 + b * block) for a in range(n) for b in range(n)]
            for (di, dj), (si, sj) in zip(tiles, tiles[::-1]):
                out[..., di:di + block, dj:dj + block] = img[..., si:si + block, sj:sj + block]
    return out


@pytest.fixture(scope="module")
def cx_loss():
    return ContextualLoss(patch_size=64)


@pytest.fixture(scope="module")
def photos():
    try:
        ast, cof = _photo("astronaut"), _photo("coffee")
    except Exception as e:  # noqa: BLE001 - data files missing from the skimage install
        pytest.skip(f"scikit-image sample photos unavailable: {e}")
    return ast[..., 100:228, 150:278].contiguous(), cof[..., 100:228, 150:278].contiguous()


def test_contextual_identity_zero(cx_loss, photos):
    x, _ = photos
    assert abs(cx_loss(x, x).item()) < 1e-3
    assert cx_loss.feature_source.startswith(("vgg19/relu3_4", "vgg16/relu3_3"))


def test_contextual_tolerates_misalignment(cx_loss, photos):
    x, other = photos
    shuffled = _shuffle_blocks_within_patches(x, 64, 32)  # same content per patch, moved around
    l1_shuffled = (shuffled - x).abs().mean().item()
    l1_other = (other - x).abs().mean().item()
    assert l1_shuffled > 0.9 * l1_other  # pixel-wise it is as wrong as a different photo
    cx_shuffled, cx_other = cx_loss(shuffled, x).item(), cx_loss(other, x).item()
    assert cx_shuffled < 0.4 * cx_other  # measured: 0.67 vs 3.32 (VGG16 relu3_3)


def test_contextual_monotonic_in_noise(cx_loss, photos):
    x, _ = photos
    g = torch.Generator().manual_seed(16)
    noise = torch.randn(x.shape, generator=g)
    values = [cx_loss((x + s * noise).clamp(0, 1), x).item() for s in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_contextual_patch_size_and_max_patches(cx_loss):
    x, y = _rand(2, 3, 40, 24, seed=17), _rand(2, 3, 40, 24, seed=18)
    xp, _ = cx_loss.patches(x, y)  # patch 64 > 24 px: shrinks to 24, one patch per image
    assert xp.shape == (2, 3, 24, 24)
    small = ContextualLoss(patch_size=8, max_patches=5)
    xp, yp = small.patches(x, y)
    assert xp.shape == yp.shape == (5, 3, 8, 8)
    # the same grid positions are kept in both images: locate each kept pred patch among all the
    # 8x8 grid cells (2 images x 5 x 3) and the target patch must be the target's same cell
    cells = [(n, i, j) for n in range(2) for i in range(0, 40, 8) for j in range(0, 24, 8)]
    seen = set()
    for k in range(5):
        (cell,) = [c for c in cells
                   if torch.equal(xp[k], x[c[0], :, c[1]:c[1] + 8, c[2]:c[2] + 8])]
        n, i, j = cell
        assert torch.equal(yp[k], y[n, :, i:i + 8, j:j + 8]), (k, cell)
        seen.add(cell)
    assert len(seen) == 5  # distinct cells, not one repeated
    with pytest.raises(ConfigError):
        ContextualLoss(aggregate="max")


# ------------------------------------------------------- LPIPS and contextual sharing one trunk
def _fusion_loss(patch, resize_px=None, lpips_net="vgg"):
    from ugpnet.training import weighted_loss

    return weighted_loss({"l1": 1.0, "lpips": 10.0, "contextual": 0.05}, "cpu", {
        "lpips": {"net": lpips_net, "resize_px": resize_px},
        "contextual": {"patch_size": patch, "features": "vgg16_relu3_3"}})


def _separately(fn, pred, target, x_syn):
    """The same weighted sum with every term computed on its own (no shared features)."""
    total = 0.0
    for name, weight, loss in fn.terms:
        total = total + weight * loss(pred, x_syn if name == "contextual" else target)
    return total


def test_lpips_keeps_the_trunk_feature_it_computed(lpips_loss):
    a, b = _rand(2, 3, 32, 32, seed=30), _rand(2, 3, 32, 32, seed=31)
    value, feat = lpips_loss(a, b, keep_pred_layer="relu3_3")
    assert value.item() == pytest.approx(lpips_loss(a, b).item(), rel=1e-7)
    # the LPIPS scaling layer on 2x-1 is the ImageNet normalisation on x: same VGG16 relu3_3
    ref = vggmod.build_vgg_features("relu3_3", backbone="vgg16")(a)
    assert feat.shape == ref.shape == (2, 256, 8, 8)
    assert torch.allclose(feat, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    with pytest.raises(ValueError):
        lpips_loss(a, b, keep_pred_layer="relu3_4")


def test_fusion_loss_shares_the_vgg_trunk_with_the_same_value_and_gradient():
    fn = _fusion_loss(patch=32)
    assert fn.shared_trunk == "relu3_3"
    target, x_syn = _rand(2, 3, 32, 32, seed=32), _rand(2, 3, 32, 32, seed=33)
    p1 = _rand(2, 3, 32, 32, seed=34, requires_grad=True)
    p2 = p1.detach().clone().requires_grad_(True)
    total, parts = fn(p1, target, contextual=x_syn)
    ref = _separately(fn, p2, target, x_syn)
    assert total.item() == pytest.approx(ref.item(), rel=1e-5)
    assert parts["contextual"] > 0 and parts["lpips"] > 0
    total.backward()
    ref.backward()
    err = (p1.grad - p2.grad).abs().max() / p2.grad.abs().max()
    assert err < 1e-4, err


def test_fusion_loss_shares_nothing_where_features_would_differ():
    target, x_syn, pred = (_rand(1, 3, 32, 32, seed=s) for s in (35, 36, 37))
    # patches smaller than the image: a patch's features are not the image's (borders)
    fn = _fusion_loss(patch=16)
    assert fn.shared_trunk == "relu3_3"  # same weights, but per call the grid has 4 patches
    assert fn(pred, target, contextual=x_syn)[0].item() == pytest.approx(
        _separately(fn, pred, target, x_syn).item(), rel=1e-6)
    assert _fusion_loss(patch=32, resize_px=64).shared_trunk is None  # LPIPS resizes first
    assert _fusion_loss(patch=32, lpips_net="alex").shared_trunk is None  # another trunk
    from ugpnet.losses.contextual import shares_trunk

    lp, cx = _fusion_loss(patch=32).terms[1][2], ContextualLoss(patch_size=32,
                                                                 features="vgg16_relu3_3")
    with torch.no_grad():
        cx.vgg.features[0].weight.add_(1e-3)  # other weights: never shared
    assert shares_trunk(lp, cx) is None
    with pytest.raises(ValueError):  # features of a whole image for a grid of several patches
        ContextualLoss(patch_size=16, features="vgg16_relu3_3")(
            pred, x_syn, pred_features=torch.zeros(1, 256, 8, 8))
