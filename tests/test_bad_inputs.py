"""Issue 10, data rows: bad inputs give one clear message (file + fix), exit 2, no traceback, and
nothing already computed is lost (docs/RELIABILITY.md, "Data, images and evaluation")."""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ugpnet.cli import main
from ugpnet.errors import DataError
from ugpnet.io import read_image, write_png


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_header_png(path: Path, w: int = 50000, h: int = 50000) -> Path:
    """A PNG whose header claims ``w x h`` (8-bit RGB) with a few bytes of data."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0,
                                                                          0, 0))
                     + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))
    return path


def real_big_png(path: Path, side: int) -> Path:
    """A real, valid ``side x side`` greyscale PNG (all black: compresses to ~side²/1000 bytes)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)] + [comp.flush()]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8,
                                                                          0, 0, 0, 0))
                     + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))
    return path


def bomb_header_bmp(path: Path, w: int = 50000, h: int = 50000) -> Path:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path.write_bytes(b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16)
    return path


def _folder(d: Path, n: int = 3, size: int = 32, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_png(d / f"im{i}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return d


def _one_clean_error(capsys, rc, *must):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    for m in must:
        assert m in err, err
    return err


# ----------------------------------------------------------------------- row 1: pixel limit
@pytest.mark.parametrize("make", [bomb_header_png, bomb_header_bmp])
def test_read_image_refuses_a_bomb_header_before_decoding(tmp_path, make):
    p = make(tmp_path / ("bomb.png" if make is bomb_header_png else "bomb.bmp"))
    with pytest.raises(DataError) as e:
        read_image(p)
    msg = str(e.value)
    assert str(p) in msg and "UGPNET_MAX_PIXELS" in msg and "not decoded" in msg


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    p = tmp_path / "wide.png"
    write_png(p, np.zeros((10, 200, 3), np.uint8))
    monkeypatch.setenv("UGPNET_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="wide.png.*UGPNET_MAX_PIXELS=2000"):
        read_image(p)
    monkeypatch.setenv("UGPNET_MAX_PIXELS", "2000")
    assert read_image(p).shape == (10, 200, 3)


def test_real_large_png_is_refused_by_our_limit_below_pillows(tmp_path, monkeypatch):
    # a valid 3000x3000 PNG (~9 KB) under a 4 MP limit: refused from the header, never decoded
    monkeypatch.setenv("UGPNET_MAX_PIXELS", str(4_000_000))
    p = real_big_png(tmp_path / "big.png", 3000)
    with pytest.raises(DataError, match="big.png.*3000x3000"):
        read_image(p)


@pytest.mark.long
def test_real_20000_square_png_of_a_megabyte_is_refused(tmp_path):
    p = real_big_png(tmp_path / "huge.png", 20000)
    assert p.stat().st_size < 2_000_000
    with pytest.raises(DataError, match="huge.png.*20000x20000"):
        read_image(p)


def test_degrade_and_evaluate_cli_name_the_bomb(tmp_path, capsys):
    gt = _folder(tmp_path / "gt")
    bomb_header_png(gt / "im9.png")
    rc = main(["degrade", "--task", "denoise", "--seed", "1", "--sigma", "0.1", "--k", "30",
               "--in", str(gt), "--out", str(tmp_path / "o"), "--no-progress"])
    _one_clean_error(capsys, rc, "im9.png", "UGPNET_MAX_PIXELS")
    rc = main(["degrade", "--task", "denoise", "--seed", "1", "--sigma", "0.1", "--k", "30",
               "--in", str(gt), "--out", str(tmp_path / "o2"), "--no-progress", "--workers", "2"])
    _one_clean_error(capsys, rc, "im9.png", "UGPNET_MAX_PIXELS")
    pred = _folder(tmp_path / "pred", seed=1)
    bomb_header_png(pred / "im9.png")
    rc = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--metrics", "psnr",
               "--out", str(tmp_path / "m.json"), "--no-progress"])
    _one_clean_error(capsys, rc, "im9.png", "UGPNET_MAX_PIXELS")


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_names_the_bomb(tmp_path, workers, monkeypatch):
    from ugpnet.data import prepare as P
    from ugpnet.data import sources as S

    monkeypatch.setattr(S, "FFHQ_TOTAL", 12)
    monkeypatch.setattr(S, "CELEBAHQ_TOTAL", 10)
    ffhq = tmp_path / "ffhq"
    for i in range(12):
        _folder(ffhq / f"{(i // 5) * 5:05d}", n=0)
        write_png(ffhq / f"{(i // 5) * 5:05d}" / f"{i:05d}.png",
                  np.full((24, 24, 3), i, np.uint8))
    bomb_header_png(ffhq / "00005" / "00007.png")
    celeb = tmp_path / "celeb"
    celeb.mkdir()
    for i in range(10):
        Image.fromarray(np.full((24, 24, 3), i, np.uint8)).save(celeb / f"{i}.jpg")
    with pytest.raises(DataError, match="00007.png.*UGPNET_MAX_PIXELS"):
        P.prepare_folder(tmp_path / "out", ffhq_dir=ffhq, celebahq_dir=celeb, resolution=16,
                         val_count=3, test_count=4, workers=workers, progress=False)


# -------------------------------------------------------------- row 2: evaluate --out checked
@pytest.mark.parametrize("kind", ["folder", "parent_is_file"])
def test_evaluate_out_is_checked_before_any_metric(tmp_path, capsys, monkeypatch, kind):
    from ugpnet.metrics import evaluate as ev

    gt, pred = _folder(tmp_path / "gt"), _folder(tmp_path / "pred", seed=1)
    if kind == "folder":
        out = tmp_path / "exists"
        out.mkdir()
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "m.json"
    called = []
    monkeypatch.setattr(ev, "psnr", lambda *a: called.append(1) or 1.0)
    rc = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--metrics", "psnr",
               "--out", str(out), "--no-progress"])
    _one_clean_error(capsys, rc, "--out")
    assert not called  # refused before the first metric was computed


# ------------------------------------------------- rows 3, 4: conversions and disguised JPEG
def test_evaluate_records_converted_and_disguised_predictions(tmp_path):
    from ugpnet.metrics import evaluate_dirs

    gt = _folder(tmp_path / "gt", n=3)
    pred = tmp_path / "pred"
    pred.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(pred / "im0.png")
    rgba = np.dstack([rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                      np.full((32, 32), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(pred / "im1.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
        pred / "im2.png", format="JPEG", quality=90)  # JPEG data named .png
    res = evaluate_dirs(pred, gt, metrics="psnr", progress=False)
    notes = " | ".join(res["protocol"]["notes"])
    assert "2 prediction file(s) were converted" in notes
    assert "im0.png (grayscale replicated to RGB)" in notes
    assert "im1.png (fully opaque alpha channel dropped)" in notes
    assert "prediction im2.png is JPEG data" in notes
    assert set(res["per_image"]) == {"im0", "im1", "im2"}  # recorded, still scored


def test_evaluate_has_no_notes_for_plain_png(tmp_path):
    from ugpnet.metrics import evaluate_dirs

    res = evaluate_dirs(_folder(tmp_path / "p", seed=1), _folder(tmp_path / "g"), metrics="psnr",
                        progress=False)
    assert res["protocol"]["notes"] == []


# -------------------------------------------------------- row 5: killed rerun of degrade
def _degrade(in_dir, out, seed=1, **kw):
    from ugpnet.degradations import degrade_folder

    return degrade_folder("denoise", seed, in_dir, out, sigma=0.1, k=30.0, progress=False, **kw)


def test_failed_rerun_keeps_the_finished_output_valid(tmp_path, monkeypatch):
    from ugpnet.degradations import apply, verify_folder

    gt = _folder(tmp_path / "gt", n=4)
    out = tmp_path / "out"
    m1 = _degrade(gt, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = apply._process_one
    calls = []

    def dies_on_third(job):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a killed / interrupted rerun
        return real(job)

    monkeypatch.setattr(apply, "_process_one", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        _degrade(gt, out, seed=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, no leftovers
    assert verify_folder(out) == m1


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    gt = _folder(tmp_path / "gt", n=2)
    out = tmp_path / "out"
    _degrade(gt, out)
    # what SIGKILL leaves: a staging folder and a 0-byte temp PNG of an atomic write
    (out / ".ugpnet-degrade-staging-x1y2").mkdir()
    (out / ".ugpnet-degrade-staging-x1y2" / "im0.png").write_bytes(b"")
    (out / ".im0.png.abc123.png").write_bytes(b"")
    m = _degrade(gt, out)
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png", "manifest.json"]
    assert m["count"] == 2


# ------------------------------------------------------------------ row 6: FID stats cache
def test_cache_command_lists_and_prunes(tmp_path, monkeypatch, capsys):
    from ugpnet.metrics import fid as fidm

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "cache" / "weights"
    weights.mkdir(parents=True)
    (weights / "alex.pt").write_bytes(b"w" * 10)
    root = fidm.stats_cache_dir()
    root.mkdir()
    now = time.time()
    for i, (age_days, size) in enumerate([(40, 3000), (10, 2000), (1, 1000)]):
        p = root / f"k{i}.npz"
        p.write_bytes(b"x" * size)
        os.utime(p, (now - age_days * 86400,) * 2)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "3 entries, 0.0 MB" in out and "k0.npz" in out
    assert main(["cache", "prune", "--older-than", "30"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["k1.npz", "k2.npz"]
    assert main(["cache", "prune", "--max-size", "0.0015"]) == 0  # 1.5 KB: oldest goes first
    assert sorted(p.name for p in root.iterdir()) == ["k2.npz"]
    assert main(["cache", "prune", "--all"]) == 0
    assert list(root.iterdir()) == [] and (weights / "alex.pt").exists()  # weights never pruned
    capsys.readouterr()
    rc = main(["cache", "prune"])
    _one_clean_error(capsys, rc, "--older-than")


def test_cache_size_limit_applies_on_write(tmp_path, monkeypatch):
    from ugpnet.metrics import fid as fidm

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UGPNET_FID_CACHE_MAX_MB", "0.0001")  # 100 bytes: only the newest stays
    rng = np.random.default_rng(0)
    for i in range(3):
        s = np.cov(rng.normal(size=(10, 4)), rowvar=False)
        fidm._save_stats(fidm.stats_cache_path(f"key{i}"), s.mean(0), s, 10)
        time.sleep(0.01)
    assert [e["path"].name for e in fidm.cache_entries()] == ["key2.npz"]


# -------------------------------------------------------------------- row 7: NaN in restore
def test_restore_nan_output_is_an_error_naming_the_image(tmp_path, capsys):
    import torch

    from ugpnet.checkpoints import save_checkpoint
    from ugpnet.config import load_config
    from ugpnet.models.build import build_ugpnet

    torch.manual_seed(0)
    model = build_ugpnet(load_config(profile="tiny"), "ugpnet", "denoise")
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    run = tmp_path / "runs" / "ugpnet" / "denoise"
    save_checkpoint(run / "fusion" / "model.pt", {"weights": state, "summary": {}})
    inp = tmp_path / "in"
    write_png(inp / "face.png", np.full((32, 32, 3), 128, np.uint8))
    out = tmp_path / "out"
    rc = main(["--profile", "tiny", "restore", "--method", "ugpnet", "--task", "denoise",
               "--checkpoint", str(run), "--in", str(inp), "--out", str(out), "--no-progress"])
    _one_clean_error(capsys, rc, "face.png", "NaN")
    assert not (out / "face.png").exists() and not (out / "manifest.json").exists()


# ----------------------------------------------------------------------- row 9: determinism
def test_degraded_sets_identical_across_runs_and_workers(tmp_path):
    from ugpnet.degradations import degrade_folder, generate_kernel_bank

    gt = _folder(tmp_path / "gt", n=5, size=32)
    bank = generate_kernel_bank(6, 7, seed=0)[0]
    for task, kw in (("denoise", dict(sigma=0.2, k=20.0)), ("deblur", dict(kernel_bank=bank)),
                     ("sr", dict(scale=4))):
        outs = []
        for run, workers in ((1, 1), (2, 1), (3, 2)):
            d = tmp_path / f"{task}{run}"
            m = degrade_folder(task, 7, gt, d, workers=workers, progress=False, **kw)
            outs.append(({p.name: p.read_bytes() for p in sorted(d.iterdir())}, m))
        assert outs[0] == outs[1] == outs[2], task


def test_evaluation_of_the_same_outputs_is_bit_identical(tmp_path, monkeypatch):
    from ugpnet.metrics import evaluate_dirs

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    gt, pred = _folder(tmp_path / "gt", n=4), _folder(tmp_path / "pred", n=4, seed=9)
    a = evaluate_dirs(pred, gt, metrics="psnr,ssim", progress=False)
    b = evaluate_dirs(pred, gt, metrics="psnr,ssim", progress=False)
    assert json.dumps(a["per_image"]) == json.dumps(b["per_image"])
    assert json.dumps(a["mean"]) == json.dumps(b["mean"])


def test_degrade_checks_every_header_before_any_work(tmp_path, capsys, monkeypatch):
    from ugpnet.degradations import apply

    gt = _folder(tmp_path / "gt")
    (gt / "zz.png").write_bytes(b"not an image")
    monkeypatch.setattr(apply, "_process_one", lambda job: pytest.fail("work started"))
    rc = main(["degrade", "--task", "denoise", "--seed", "1", "--sigma", "0.1", "--k", "30",
               "--in", str(gt), "--out", str(tmp_path / "o"), "--no-progress"])
    _one_clean_error(capsys, rc, "zz.png", "corrupt or truncated")


@pytest.mark.long
def test_evaluation_with_lpips_and_fid_is_bit_identical_cache_miss_then_hit(tmp_path, monkeypatch):
    import torch

    from ugpnet import pretrained
    from ugpnet.metrics import evaluate_dirs

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    pretrained.clear_memo()
    torch.set_num_threads(1)
    gt, pred = _folder(tmp_path / "gt", n=4, size=64), _folder(tmp_path / "pred", n=4, size=64,
                                                                seed=9)
    a = evaluate_dirs(pred, gt, progress=False)  # GT statistics and factor computed, stored
    b = evaluate_dirs(pred, gt, progress=False)  # ... and read back
    assert not a["protocol"]["fid"]["reference_stats_cache_hit"]
    assert b["protocol"]["fid"]["reference_stats_cache_hit"]
    assert json.dumps(a["per_image"]) == json.dumps(b["per_image"])
    assert json.dumps(a["mean"]) == json.dumps(b["mean"])
    pretrained.clear_memo()
