"""Degradations: noise statistics, motion kernels, blur boundary, MATLAB bicubic, determinism,
CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ugpnet.degradations import (bank_manifest_path, bicubic_downsample, bicubic_upsample, blur,
                                 blur_float, degrade_folder, degrade_image, generate_kernel_bank,
                                 image_rng, imresize, kernel_size_for, load_kernel_bank,
                                 load_kernel_bank_with_manifest, poisson_gaussian, add_noise,
                                 sr_input, stable_hash, verify_folder, write_kernel_bank)
from ugpnet.errors import ConfigError, DataError
from ugpnet.io import read_image, sha256_file


# ---------------------------------------------------------------------------------------- noise

@pytest.mark.parametrize("x", [0.5, 0.2])
def test_poisson_gaussian_statistics_match_formula(x):
    rng = np.random.default_rng(0)
    sigma, k = 0.3, 30.0
    y = poisson_gaussian(np.full((1000, 1000), x), rng, sigma=sigma, k=k)
    assert y.dtype == np.float64 and y.shape == (1000, 1000)
    var = x / k + sigma ** 2
    assert abs(y.mean() - x) < 5 * np.sqrt(var / y.size)
    assert abs(y.var() - var) / var < 0.01
    # the data really leave [0, 1]: this is the unclipped function
    assert y.min() < 0 and y.max() > 1


def test_poisson_part_alone_is_quantised_in_steps_of_one_over_k():
    y = poisson_gaussian(np.full((200, 200), 0.5), np.random.default_rng(1), sigma=0.0, k=30.0)
    assert np.allclose(y * 30, np.round(y * 30))
    assert abs(y.var() - 0.5 / 30) / (0.5 / 30) < 0.05


def test_add_noise_clips_and_quantises():
    img = np.full((256, 256, 3), 128, np.uint8)
    out = add_noise(img, np.random.default_rng(2), sigma=0.3, k=30)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.min() == 0 and out.max() == 255  # sigma=0.3 saturates often
    assert abs(out.mean() / 255.0 - 128 / 255.0) < 0.02  # nearly symmetric clipping around 0.5
    again = add_noise(img, np.random.default_rng(2), sigma=0.3, k=30)
    assert np.array_equal(out, again)
    with pytest.raises(ValueError):
        add_noise(img, np.random.default_rng(0), sigma=0.3, k=0)


# -------------------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("res,expected", [(512, 71), (256, 35), (128, 17), (64, 9), (32, 7),
                                          (16, 7), (1024, 143)])
def test_kernel_size_for(res, expected):
    assert kernel_size_for(res) == expected
    assert kernel_size_for(res) % 2 == 1


@pytest.fixture(scope="module")
def bank17():
    return generate_kernel_bank(60, 17, seed=5)


def test_kernels_are_valid_distributions(bank17):
    bank, stats = bank17
    assert bank.shape == (60, 17, 17) and bank.dtype == np.float32
    assert (bank >= 0).all()
    assert np.allclose(bank.sum(axis=(1, 2), dtype=np.float64), 1.0, atol=1e-6)
    nonzero = (bank > 0).reshape(60, -1).sum(axis=1)
    assert (nonzero > 1).all()  # never a delta
    assert np.median(nonzero) >= 10
    # centre of mass on the kernel centre (shift-free blur) unless clamped at the border
    yy, xx = np.mgrid[:17, :17]
    com = np.stack([(bank * yy).sum((1, 2)), (bank * xx).sum((1, 2))], 1)
    assert np.median(np.abs(com - 8.0)) < 0.5
    # the path length scales with K: L = 60/64 * (K - 1) at full exposure
    assert stats["max_trajectory_length_px"] <= 60 / 64 * 16 + 1e-9
    assert stats["min_trajectory_length_px"] >= 0.5 * 60 / 64 * 16 - 0.1


def test_kernel_bank_is_deterministic_and_seed_dependent(bank17):
    bank, _ = bank17
    again, _ = generate_kernel_bank(60, 17, seed=5)
    assert again.tobytes() == bank.tobytes()
    prefix, _ = generate_kernel_bank(7, 17, seed=5)  # kernel i has its own stream
    assert np.array_equal(prefix, bank[:7])
    other, _ = generate_kernel_bank(60, 17, seed=6)
    assert not np.array_equal(other, bank)
    assert (np.abs(other - bank).reshape(60, -1).max(axis=1) > 0).all()


def test_kernel_bank_size_scales_trajectory():
    _, small = generate_kernel_bank(40, 9, seed=0)
    _, large = generate_kernel_bank(40, 71, seed=0)
    ratio = large["mean_trajectory_length_px"] / small["mean_trajectory_length_px"]
    assert ratio == pytest.approx(70 / 8, rel=1e-6)
    assert large["mean_support_px"] > 3 * small["mean_support_px"]


def test_kernel_bank_file_roundtrip_and_checks(tmp_path):
    path = tmp_path / "bank.npy"
    manifest = write_kernel_bank(path, 6, 9, seed=3, resolution=64)
    mpath = bank_manifest_path(path)
    assert mpath == tmp_path / "bank.json" and mpath.is_file()
    on_disk = json.loads(mpath.read_text())
    assert on_disk == manifest
    assert manifest["sha256"] == sha256_file(path)
    assert manifest["n"] == 6 and manifest["size"] == 9 and manifest["seed"] == 3
    assert manifest["generator"]["num_samples"] == 2000
    bank = load_kernel_bank(path)
    assert bank.shape == (6, 9, 9) and bank.dtype == np.float32
    assert np.array_equal(bank, generate_kernel_bank(6, 9, seed=3)[0])
    # tampered file
    bad = bank.copy()
    bad[0] = np.roll(bad[0], 1, axis=0)
    np.save(path, bad)
    with pytest.raises(DataError, match="does not match its manifest"):
        load_kernel_bank(path)
    # missing manifest
    mpath.unlink()
    with pytest.raises(DataError, match="no manifest"):
        load_kernel_bank(path)
    with pytest.raises(DataError, match="does not exist"):
        load_kernel_bank(tmp_path / "nope.npy")


# ----------------------------------------------------------------------------------------- blur

def test_blur_keeps_constant_image_constant_and_size(bank17):
    kernel = bank17[0][3]
    img = np.full((40, 30, 3), 123, np.uint8)
    img[..., 1] = 7
    out = blur(img, kernel)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, img)


def test_blur_of_delta_is_the_unflipped_kernel():
    rng = np.random.default_rng(0)
    kernel = rng.random((7, 7))
    kernel[0, :] = 0
    kernel[:, 6] = 0  # asymmetric: flipping would be visible
    kernel /= kernel.sum()
    x = np.zeros((21, 25, 1))
    x[10, 12, 0] = 1.0
    y = blur_float(x, kernel)
    assert y.shape == x.shape
    np.testing.assert_allclose(y[7:14, 9:16, 0], kernel, atol=1e-12)
    assert np.abs(y).sum() == pytest.approx(1.0, abs=1e-9)


def test_blur_uses_reflect_boundary():
    # left edge of a horizontal 3-tap box blur: reflect padding mirrors column 1 (not column 0)
    kernel = np.zeros((3, 3))
    kernel[1, :] = 1 / 3
    x = np.zeros((3, 4, 1))
    x[:, :, 0] = [10.0, 20.0, 30.0, 40.0]
    y = blur_float(x, kernel)
    np.testing.assert_allclose(y[0, :, 0], [(20 + 10 + 20) / 3, 20, 30, (30 + 40 + 30) / 3])


# ------------------------------------------------------------------------------------------- sr

def test_sr_sizes_constant_and_divisibility():
    img = np.full((64, 48, 3), 77, np.uint8)
    lr = bicubic_downsample(img, 8)
    assert lr.shape == (8, 6, 3) and lr.dtype == np.uint8
    assert (lr == 77).all()
    up = bicubic_upsample(lr, 8)
    assert up.shape == (64, 48, 3) and (up == 77).all()
    assert np.array_equal(sr_input(lr, "lr", 8), lr)
    assert np.array_equal(sr_input(lr, "bicubic_up", 8), up)
    with pytest.raises(ConfigError):
        sr_input(lr, "nearest", 8)
    with pytest.raises(DataError, match="not divisible by the SR scale 8"):
        bicubic_downsample(np.zeros((60, 64, 3), np.uint8), 8)


def test_imresize_matches_basicsr_matlab_imresize():
    """Golden values measured with BasicSR 1.4.2 ``basicsr/utils/matlab_functions.imresize``
    (float32, input scaled to [0, 1] and back) — an independent MATLAB re-implementation."""
    i, j = np.meshgrid(np.arange(16), np.arange(24), indexing="ij")
    x = ((i * 37 + j * j * 5) % 256).astype(np.float64)[:, :, None]
    down = imresize(x, 1 / 8)[:, :, 0]
    ref_down = np.array([[117.1306, 133.1976, 126.7323], [121.7770, 135.4132, 127.7493]])
    np.testing.assert_allclose(down, ref_down, atol=2e-3)

    lr = np.array([[10, 200], [90, 40], [255, 0]], dtype=np.float64)[:, :, None]
    up = imresize(lr, 8.0)[:, :, 0]
    assert up.shape == (24, 16)
    ref_row0 = [-26.8564, -23.4262, -16.5659, -6.2753, 8.2493, 30.8670, 59.9163, 92.8246,
                127.0191, 159.9274, 188.9767, 211.5944, 226.1191, 236.4096, 243.2700, 246.7001]
    ref_col0 = [-26.8564, -25.1450, -21.7221, -16.5878, -9.6893, -0.7731, 10.0516, 22.6160,
                36.7509, 52.2875, 69.0568, 86.8898, 106.1734, 129.5422, 156.0238, 184.0309,
                211.9759, 238.2715, 261.3303, 279.5648, 291.9499, 300.8667, 306.8112, 309.7835]
    np.testing.assert_allclose(up[0], ref_row0, atol=2e-3)
    np.testing.assert_allclose(up[:, 0], ref_col0, atol=2e-3)
    assert up[11, 7] == pytest.approx(67.52447, abs=2e-3)


def test_imresize_reproduces_a_linear_ramp_away_from_borders():
    """Hand-derived: Keys' cubic (a=-0.5) reproduces linear functions, and MATLAB maps output
    pixel i (0-based) to input coordinate i/s + (1/s - 1)/2."""
    ramp = np.tile(np.arange(80, dtype=np.float64) * 3.0 + 5.0, (16, 1))[:, :, None]
    down = imresize(ramp, 1 / 8)  # 16x80 -> 2x10
    assert down.shape == (2, 10, 1)
    # interior outputs (their 32-tap support lies inside the image)
    for i in range(2, 8):
        assert down[0, i, 0] == pytest.approx(3.0 * (8 * i + 3.5) + 5.0, abs=1e-9)
    lr = np.tile(np.arange(10, dtype=np.float64) * 10.0, (10, 1))[:, :, None]
    up = imresize(lr, 8.0)
    for i in range(16, 64):
        assert up[40, i, 0] == pytest.approx(10.0 * (i / 8 - 7 / 16), abs=1e-9)


# ------------------------------------------------------------------------------- folder level

@pytest.fixture()
def gt_dir(tmp_path):
    d = tmp_path / "gt"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.jpg"):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / name, quality=95)
    return d


def _files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def small_bank():
    return generate_kernel_bank(10, 7, seed=0)[0]


@pytest.mark.parametrize("task", ["denoise", "deblur", "sr"])
def test_folder_is_deterministic_names_and_manifest(task, gt_dir, tmp_path, small_bank):
    kw = dict(sigma=0.3, k=30, kernel_bank=small_bank, scale=8, progress=False)
    m1 = degrade_folder(task, 11, gt_dir, tmp_path / "o1", **kw)
    m2 = degrade_folder(task, 11, gt_dir, tmp_path / "o2", **kw)
    f1, f2 = _files(tmp_path / "o1"), _files(tmp_path / "o2")
    assert f1 == f2 and m1 == m2
    assert sorted(f1) == ["a.png", "b.png", "c.png", "manifest.json"]
    assert m1["count"] == 3 and m1["task"] == task and m1["seed"] == 11
    assert json.loads(f1["manifest.json"]) == m1
    for rec in m1["files"]:
        assert rec["sha256"] == sha256_file(tmp_path / "o1" / rec["name"])
        assert rec["source_sha256"] == sha256_file(gt_dir / rec["source"])
    assert verify_folder(tmp_path / "o1") == m1
    out = read_image(tmp_path / "o1" / "a.png")
    assert out.shape == ((4, 4, 3) if task == "sr" else (32, 32, 3))
    # the per-image API with the folder's stream gives the same image
    rng = image_rng(11, task, "a")
    same = degrade_image(task, read_image(gt_dir / "a.png"), rng, sigma=0.3, k=30,
                         kernels=small_bank, scale=8)
    assert np.array_equal(same, out)
    # ... which is the task's degradation (tested on its own above) of the source image
    src = read_image(gt_dir / "a.png")
    if task == "denoise":
        want = add_noise(src, image_rng(11, task, "a"), sigma=0.3, k=30)
    elif task == "deblur":
        (rec,) = [r for r in m1["files"] if r["name"] == "a.png"]
        want = blur(src, small_bank[rec["kernel_index"]])
    else:
        want = bicubic_downsample(src, 8)
    assert np.array_equal(out, want)
    if task != "sr":
        m3 = degrade_folder(task, 12, gt_dir, tmp_path / "o3", **kw)
        assert _files(tmp_path / "o3")["a.png"] != f1["a.png"]
        assert m3["files"][0]["sha256"] != m1["files"][0]["sha256"]


@pytest.mark.parametrize("task", ["deblur", "sr"])
def test_workers_give_identical_results(task, gt_dir, tmp_path, small_bank):
    kw = dict(sigma=0.3, k=30, kernel_bank=small_bank, scale=8, progress=False)
    degrade_folder(task, 3, gt_dir, tmp_path / "w1", workers=1, **kw)
    degrade_folder(task, 3, gt_dir, tmp_path / "w2", workers=2, **kw)
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")


def test_rng_streams_are_per_image_and_task():
    assert stable_hash("abc") == stable_hash("abc") != stable_hash("abd")
    a = image_rng(0, "denoise", "x").random(4)
    assert np.array_equal(a, image_rng(0, "denoise", "x").random(4))
    assert not np.array_equal(a, image_rng(0, "deblur", "x").random(4))
    assert not np.array_equal(a, image_rng(1, "denoise", "x").random(4))
    assert not np.array_equal(a, image_rng(0, "denoise", "y").random(4))


def test_stale_output_folder_is_cleaned_and_foreign_refused(gt_dir, tmp_path):
    out = tmp_path / "out"
    kw = dict(sigma=0.3, k=30, progress=False)
    degrade_folder("denoise", 1, gt_dir, out, **kw)
    (gt_dir / "c.jpg").unlink()  # fewer inputs now; c.png of the earlier run is stale
    (out / "a.png").write_bytes(b"partial garbage")
    m = degrade_folder("denoise", 1, gt_dir, out, **kw)
    assert sorted(_files(out)) == ["a.png", "b.png", "manifest.json"]
    assert verify_folder(out) == m
    assert not (out / ".ugpnet-degrade-partial").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(foreign / "holiday.png")
    with pytest.raises(DataError, match="not written by"):
        degrade_folder("denoise", 1, gt_dir, foreign, **kw)
    assert (foreign / "holiday.png").exists()
    with pytest.raises(DataError, match="input folder"):
        degrade_folder("denoise", 1, gt_dir, gt_dir, **kw)
    (out / "b.png").write_bytes(b"changed")
    with pytest.raises(DataError, match="differs"):
        verify_folder(out)


def test_duplicate_stems_and_sr_divisibility_errors(tmp_path):
    d = tmp_path / "gt"
    d.mkdir()
    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(d / "x.png")
    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(d / "x.bmp")
    with pytest.raises(DataError, match="would both be written"):
        degrade_folder("denoise", 0, d, tmp_path / "o", sigma=0.3, k=30, progress=False)
    (d / "x.bmp").unlink()
    with pytest.raises(DataError, match="x.png.*not divisible"):
        degrade_folder("sr", 0, d, tmp_path / "o", scale=8, progress=False)
    assert not (tmp_path / "o" / "manifest.json").exists()


# ------------------------------------------------------------------------------------------ CLI

def test_cli_kernels_and_degrade_end_to_end(gt_dir, tmp_path, capsys):
    from ugpnet.cli import main

    bank = tmp_path / "k" / "test.npy"
    assert main(["kernels", "--out", str(bank), "--n", "5", "--resolution", "64", "--seed", "4",
                 "--no-progress"]) == 0
    kernels, manifest = load_kernel_bank_with_manifest(bank)
    assert kernels.shape == (5, 9, 9) and manifest["resolution"] == 64
    assert np.array_equal(kernels, generate_kernel_bank(5, kernel_size_for(64), seed=4)[0])
    out = tmp_path / "blurred"
    assert main(["degrade", "--task", "deblur", "--seed", "9", "--in", str(gt_dir), "--out",
                 str(out), "--kernels", str(bank), "--workers", "2", "--no-progress"]) == 0
    m = verify_folder(out)
    assert m["params"]["kernel_bank"]["sha256"] == manifest["sha256"]
    assert all(0 <= rec["kernel_index"] < 5 for rec in m["files"])
    api = degrade_folder("deblur", 9, gt_dir, tmp_path / "api", kernel_bank=bank, progress=False)
    assert _files(out) == _files(tmp_path / "api") and api == m
    capsys.readouterr()
    # deblur without a bank, or with a bank that does not match its manifest: clear errors
    assert main(["degrade", "--task", "deblur", "--seed", "9", "--in", str(gt_dir), "--out",
                 str(tmp_path / "x")]) == 2
    assert "--kernels" in capsys.readouterr().err
    np.save(bank, kernels[::-1].copy())
    assert main(["degrade", "--task", "deblur", "--seed", "9", "--in", str(gt_dir), "--out",
                 str(tmp_path / "x"), "--kernels", str(bank)]) == 2
    assert "does not match its manifest" in capsys.readouterr().err


def test_cli_defaults_come_from_params_yaml(gt_dir, tmp_path, repo_root):
    from ugpnet.cli import main
    from ugpnet.config import load_config

    cfg = load_config(params=str(repo_root / "params.yaml"), profile="smoke")["degradations"]
    out = tmp_path / "noisy"
    assert main(["--params", str(repo_root / "params.yaml"), "--profile", "smoke", "degrade",
                 "--task", "denoise", "--in", str(gt_dir), "--out", str(out),
                 "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == cfg["seed"]
    assert m["params"] == {"sigma": cfg["denoise"]["sigma"], "k": cfg["denoise"]["k"]}
    # flags override the file
    assert main(["--params", str(repo_root / "params.yaml"), "degrade", "--task", "denoise",
                 "--in", str(gt_dir), "--out", str(out), "--sigma", "0.1", "--seed", "5",
                 "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 5 and m["params"]["sigma"] == 0.1
    assert m["params"]["k"] == cfg["denoise"]["k"]


def test_cli_works_with_flags_only_without_params_file(gt_dir, tmp_path, monkeypatch, capsys):
    import ugpnet.config as config
    from ugpnet.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UGPNET_PARAMS", raising=False)
    monkeypatch.setattr(config, "REPO_PARAMS", tmp_path / "absent.yaml")
    assert main(["degrade", "--task", "sr", "--seed", "0", "--scale", "8", "--in", str(gt_dir),
                 "--out", str(tmp_path / "lr"), "--no-progress"]) == 0
    assert np.array_equal(read_image(tmp_path / "lr" / "b.png"),
                          bicubic_downsample(read_image(gt_dir / "b.png"), 8))
    capsys.readouterr()
    assert main(["degrade", "--task", "denoise", "--seed", "0", "--in", str(gt_dir),
                 "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "--sigma" in err and "--k" in err and "no params.yaml" in err
    assert main(["kernels", "--out", str(tmp_path / "b.npy"), "--n", "3", "--size", "7",
                 "--seed", "1", "--no-progress"]) == 0
    assert np.array_equal(load_kernel_bank(tmp_path / "b.npy"), generate_kernel_bank(3, 7, seed=1)[0])


def test_degradations_are_bit_identical_to_the_reference_arithmetic():
    """The in-place fast paths (noise, blur quantisation) give exactly the bytes of the plain
    expressions they replaced (issue 9: degraded sets must not change)."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    # denoise, reference: Poisson(k x)/k + N(0, sigma^2), clip, round
    x = img.astype(np.float64) / 255.0
    r = np.random.default_rng(5)
    y = r.poisson(30.0 * x).astype(np.float64) / 30.0 + 0.0
    y = y + r.normal(0.0, 0.3, size=x.shape)
    want = np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    assert np.array_equal(add_noise(img, np.random.default_rng(5), sigma=0.3, k=30.0), want)
    # deblur, reference: reflect pad, fftconvolve 'valid', clip, round
    k = generate_kernel_bank(1, 9, seed=3)[0][0].astype(np.float64)
    k = k / k.sum()
    pad = np.pad(x, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    yb = fftconvolve(pad, k[:, :, None], mode="valid", axes=(0, 1))
    want = np.round(np.clip(yb, 0.0, 1.0) * 255.0).astype(np.uint8)
    assert np.array_equal(blur(img, k), want)
