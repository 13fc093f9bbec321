"""Property-based tests (hypothesis) of the image reader, the degradations and the metrics.

Example counts are kept small (seconds in total); shapes are tiny. Documented properties:
- ``read_image``: any L / RGB / opaque RGBA / I;16 / 16-bit RGB / 1-bit PNG → uint8 ``[H, W, 3]``
  with the documented conversion (replicate, ``round(v / 257)``, drop opaque alpha); a
  transparent alpha is a DataError.
- degradations: uint8 output of the documented size, same seed → same bytes.
- metrics: PSNR of identical images is ``inf`` (no cap), symmetric; SSIM <= 1, = 1 for identical
  images, symmetric; LPIPS >= 0, 0 for identical images, symmetric.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from ugpnet.errors import DataError
from ugpnet.io import read_image

FAST = settings(max_examples=15, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

sizes = st.tuples(st.integers(1, 12), st.integers(1, 12))


def _u8(shape):
    return arrays(np.uint8, shape, elements=st.integers(0, 255))


@st.composite
def image_files(draw):
    h, w = draw(sizes)
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "RGBA-transparent", "I;16", "RGB16", "1"]))
    if mode == "L":
        a = draw(_u8((h, w)))
        return mode, a, np.repeat(a[..., None], 3, axis=2)
    if mode == "RGB":
        a = draw(_u8((h, w, 3)))
        return mode, a, a
    if mode.startswith("RGBA"):
        a = draw(_u8((h, w, 4)))
        a[..., 3] = 255
        if mode == "RGBA-transparent":
            a[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1)), 3] = draw(
                st.integers(0, 254))
            return mode, a, None
        return mode, a, a[..., :3]
    if mode in ("I;16", "RGB16"):
        shape = (h, w) if mode == "I;16" else (h, w, 3)
        a = draw(arrays(np.uint16, shape, elements=st.integers(0, 65535)))
        if mode == "I;16":
            a[0, 0] = max(int(a[0, 0]), 256)  # a real 16-bit image (values above 255)
        want = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
        return mode, a, want if want.ndim == 3 else np.repeat(want[..., None], 3, axis=2)
    a = draw(arrays(np.bool_, (h, w)))
    want = np.where(a, 255, 0).astype(np.uint8)
    return mode, a, np.repeat(want[..., None], 3, axis=2)


def _save(path, mode, a):
    if mode == "RGB16":
        import png

        png.Writer(a.shape[1], a.shape[0], greyscale=False, bitdepth=16).write(
            open(path, "wb"), a.reshape(a.shape[0], -1).tolist())
    elif mode == "I;16":
        Image.fromarray(a.astype(np.uint16)).save(path)
    elif mode == "1":
        Image.fromarray(a).convert("1").save(path)
    else:
        Image.fromarray(a, mode[:4]).save(path)


@FAST
@given(image_files())
def test_read_image_any_mode(tmp_path_factory, spec):
    mode, a, want = spec
    p = tmp_path_factory.mktemp("img") / "x.png"
    _save(p, mode, a)
    if want is None:
        with pytest.raises(DataError, match="transparent"):
            read_image(p)
        return
    got = read_image(p)
    assert got.dtype == np.uint8 and got.shape == a.shape[:2] + (3,)
    assert np.array_equal(got, want), mode


# ------------------------------------------------------------------------------ degradations
@st.composite
def degradation_cases(draw):
    task = draw(st.sampled_from(["denoise", "deblur", "sr"]))
    scale = draw(st.sampled_from([1, 2, 4]))
    h = draw(st.integers(1, 6)) * (scale if task == "sr" else 1) + (0 if task == "sr" else 4)
    w = draw(st.integers(1, 6)) * (scale if task == "sr" else 1) + (0 if task == "sr" else 4)
    img = draw(_u8((h, w, 3)))
    return task, img, draw(st.integers(0, 2**32)), scale, draw(st.floats(0, 0.5)), \
        draw(st.floats(1, 100))


@pytest.fixture(scope="module")
def bank():
    from ugpnet.degradations import generate_kernel_bank

    return generate_kernel_bank(4, 3, seed=0)[0]


@FAST
@given(degradation_cases())
def test_degradations_shape_range_determinism(bank, case):
    from ugpnet.degradations import degrade_image

    task, img, seed, scale, sigma, k = case
    kw = dict(sigma=sigma, k=k, kernels=bank, scale=scale)
    a = degrade_image(task, img, np.random.default_rng(seed), **kw)
    b = degrade_image(task, img.copy(), np.random.default_rng(seed), **kw)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    h, w = img.shape[:2]
    assert a.shape == ((h // scale, w // scale, 3) if task == "sr" else img.shape)


@FAST
@given(_u8((8, 8, 3)), st.integers(0, 2**32), st.floats(0.01, 0.5), st.floats(1, 100))
def test_poisson_gaussian_float_range_and_clip(img, seed, sigma, k):
    from ugpnet.degradations import add_noise, poisson_gaussian

    y = poisson_gaussian(img / 255.0, np.random.default_rng(seed), sigma=sigma, k=k)
    assert y.dtype == np.float64 and np.isfinite(y).all()
    out = add_noise(img, np.random.default_rng(seed), sigma=sigma, k=k)
    assert np.array_equal(out, np.round(np.clip(y, 0, 1) * 255).astype(np.uint8))


# ----------------------------------------------------------------------------------- metrics
pairs = st.integers(11, 24).flatmap(
    lambda n: st.tuples(_u8((n, n, 3)), _u8((n, n, 3))))


@FAST
@given(pairs)
def test_psnr_ssim_properties(pair):
    from ugpnet.metrics import psnr, ssim

    a, b = pair
    assert psnr(a, a.copy()) == float("inf")
    assert ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-12)
    if not np.array_equal(a, b):
        assert psnr(a, b) == psnr(b, a) and np.isfinite(psnr(a, b))
    s = ssim(a, b)
    assert -1.0 - 1e-9 <= s <= 1.0 + 1e-9
    assert s == pytest.approx(ssim(b, a), abs=1e-9)


@pytest.fixture(scope="module")
def lpips_alex():
    import torch

    torch.set_num_threads(1)
    from ugpnet.metrics import LPIPSMetric

    return LPIPSMetric("alex", "cpu")


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.tuples(_u8((64, 64, 3)), _u8((64, 64, 3))))
def test_lpips_properties(lpips_alex, pair):
    a, b = pair
    d = lpips_alex(a, b)
    assert d >= 0.0 and np.isfinite(d)
    assert lpips_alex(a, a.copy()) == pytest.approx(0.0, abs=1e-6)
    assert d == pytest.approx(lpips_alex(b, a), rel=1e-4, abs=1e-6)
