"""ugpnet prepare: bundled and folder sources, split rules, bad inputs, atomicity."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ugpnet.data import prepare as P
from ugpnet.data import sources as S
from ugpnet.errors import DataError
from ugpnet.io import read_image, sha256_file

RES = 16


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _noise(h, w, seed, c=3):
    rng = np.random.default_rng(seed)
    shape = (h, w, c) if c else (h, w)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _save(path, arr=None, *, size=(24, 24), seed=0, mode=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr is None:
        arr = _noise(size[1], size[0], seed)
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def _png16_rgb(path, arr16):
    """Minimal writer for a 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    h, w, _ = arr16.shape

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n"
                           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def small_totals(monkeypatch):
    """Shrink the paper totals (70,000 FFHQ / 30,000 CelebA-HQ) so the strict path is testable."""
    monkeypatch.setattr(S, "FFHQ_TOTAL", 12)
    monkeypatch.setattr(S, "CELEBAHQ_TOTAL", 10)


def _ffhq(root, n=12, layout="official", size=(24, 24), skip=()):
    root = Path(root)
    for i in range(n):
        if i in skip:
            continue
        sub = root / f"{(i // 5) * 5:05d}" if layout == "official" else root
        _save(sub / f"{i:05d}.png", size=size, seed=i)
    return root


def _celeb(root, ids=range(10), size=(24, 24), ext=".jpg"):
    root = Path(root)
    for i in ids:
        _save(root / f"{i}{ext}", size=size, seed=1000 + i)
    return root


def _folder(tmp_path, out="out", **kw):
    kw.setdefault("resolution", RES)
    kw.setdefault("val_count", 3)
    kw.setdefault("test_count", 4)
    kw.setdefault("progress", False)
    return P.prepare_folder(tmp_path / out, **kw)


def _check_manifest(out):
    out = Path(out)
    man = json.loads((out / "manifest.json").read_text())
    for split in ("train", "val", "test"):
        files = man["splits"][split]["files"]
        assert man["splits"][split]["count"] == len(files) > 0
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(f["name"] for f in files)
        for f in files:
            assert sha256_file(out / split / f["name"]) == f["sha256"]
            img = read_image(out / split / f["name"])
            assert img.shape == (man["resolution"], man["resolution"], 3) and img.dtype == np.uint8
    assert not list(out.glob(".*partial*")) and not list(out.glob(".*old*"))
    return man


# ------------------------------------------------------------------------------------------------
# bundled
# ------------------------------------------------------------------------------------------------

COUNTS = {"train": 6, "val": 2, "test": 3}


def test_bundled_layout_manifest_and_split_by_photo(tmp_path):
    man = P.prepare_bundled(tmp_path / "b", resolution=32, counts=COUNTS, seed=0, progress=False)
    assert man == _check_manifest(tmp_path / "b")
    assert man["source"] == "bundled" and man["resolution"] == 32
    assert {s: man["splits"][s]["count"] for s in COUNTS} == COUNTS
    photos = {s: {f["photo"] for f in man["splits"][s]["files"]} for s in COUNTS}
    # no leakage: each photo in exactly one split, the documented one
    assert not (photos["train"] & photos["val"] or photos["train"] & photos["test"]
                or photos["val"] & photos["test"])
    default = {p.name: p.split for p in S.BUNDLED_PHOTOS}
    for split, names in photos.items():
        assert all(default[n] == split for n in names)
    assert photos["val"] == {"motorcycle"} and photos["test"] == {"astronaut", "coffee"}
    # crops are dealt round-robin over the split's files: 6 train crops over 5 photos
    assert len(photos["train"]) == 5
    # the recorded assignment lists exactly the split's photographs
    for s in COUNTS:
        assigned = {a.split(":")[0] for a in man["bundled"]["assignment"][s]}
        assert assigned == {n for n, sp in default.items() if sp == s}, s
    assert man["bundled"]["excluded"] == []


def test_bundled_deterministic_and_split_independent(tmp_path):
    kw = dict(resolution=32, progress=False)
    a = P.prepare_bundled(tmp_path / "a", counts=COUNTS, seed=0, **kw)
    b = P.prepare_bundled(tmp_path / "b", counts=COUNTS, seed=0, **kw)
    c = P.prepare_bundled(tmp_path / "c", counts=COUNTS, seed=1, **kw)
    d = P.prepare_bundled(tmp_path / "d", counts={**COUNTS, "train": 2}, seed=0, **kw)

    def hashes(m, s):
        return [f["sha256"] for f in m["splits"][s]["files"]]

    for s in COUNTS:
        assert hashes(a, s) == hashes(b, s)
    assert hashes(a, "train") != hashes(c, "train")
    # a split's crops do not depend on another split's count
    assert hashes(a, "val") == hashes(d, "val") and hashes(a, "test") == hashes(d, "test")


def test_bundled_crops_are_real_content(tmp_path):
    man = P.prepare_bundled(tmp_path / "b", resolution=32, counts=COUNTS, seed=3, progress=False)
    for s in COUNTS:
        for f in man["splits"][s]["files"]:
            img = read_image(tmp_path / "b" / s / f["name"])
            assert img.astype(np.float32).std() > 3.0, f["name"]
            # recomputed from the recorded geometry: the photo resized (Lanczos) to resized_size,
            # the 32 px window at crop_xy
            src = read_image(S.skimage_data_dir() / f["source_file"])
            w, h = f["resized_size"]
            big = src if (w, h) == (src.shape[1], src.shape[0]) else np.asarray(
                Image.fromarray(src).resize((w, h), Image.Resampling.LANCZOS))
            x, y = f["crop_xy"]
            np.testing.assert_array_equal(img, big[y:y + 32, x:x + 32], err_msg=f["name"])


def test_bundled_large_resolution_excludes_small_photos_or_fails(tmp_path):
    man = P.prepare_bundled(tmp_path / "b", resolution=420, counts={"train": 1, "val": 1,
                                                                    "test": 1},
                            seed=0, progress=False)
    excluded = {e["photo"] for e in man["bundled"]["excluded"]}
    assert {"chelsea", "coffee"} <= excluded          # 300 and 400 px short sides
    assert {f["photo"] for f in man["splits"]["test"]["files"]} == {"astronaut"}
    with pytest.raises(DataError, match="up to 500"):
        P.prepare_bundled(tmp_path / "c", resolution=520, counts={"train": 1, "val": 1,
                                                                  "test": 1}, progress=False)
    assert not (tmp_path / "c" / "manifest.json").exists()


@pytest.mark.parametrize("counts", [{"train": 2, "val": 0, "test": 1}, {"train": 2, "val": 1},
                                    {"train": 1.5, "val": 1, "test": 1}])
def test_bundled_bad_counts(tmp_path, counts):
    with pytest.raises(DataError, match="positive integer"):
        P.prepare_bundled(tmp_path / "b", resolution=32, counts=counts, progress=False)


def test_bundled_custom_assignment_checks_names(tmp_path):
    with pytest.raises(DataError, match="unknown bundled photo"):
        P.prepare_bundled(tmp_path / "b", resolution=32, counts=COUNTS, progress=False,
                          assignment={"lena": "train"})


# ------------------------------------------------------------------------------------------------
# folder: protocol rules
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["official", "flat"])
def test_folder_protocol_rules(tmp_path, small_totals, layout):
    ffhq = _ffhq(tmp_path / "ffhq", layout=layout)
    celeb = _celeb(tmp_path / "celeb")
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    _check_manifest(tmp_path / "out")
    ids = {s: [f["id"] for f in man["splits"][s]["files"]] for s in ("train", "val", "test")}
    assert ids["train"] == list(range(0, 9))          # all but the last val_count ids
    assert ids["val"] == [9, 10, 11]                  # last val_count=3 FFHQ ids
    assert ids["test"] == [6, 7, 8, 9]                # last test_count=4 of CelebA-HQ 0..9
    assert [f["name"] for f in man["splits"]["test"]["files"]] == [f"{i:05d}.png" for i in
                                                                   range(6, 10)]
    assert man["partial"] is False
    if layout == "official":
        assert man["splits"]["train"]["files"][5]["source"] == str(Path("00005") / "00005.png")
    # resized content: equals PIL Lanczos of the (square) source
    src = read_image(ffhq / ("00005" if layout == "official" else "") / "00005.png")
    want = np.asarray(Image.fromarray(src).resize((RES, RES), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "train" / "00005.png"), want)
    assert "val_count=3" in man["folder"]["rules"]["val"]


def test_folder_real_protocol_defaults_in_rules():
    tr, va, notes = S.ffhq_split(range(70_000), 1000, False)
    assert (tr[0], tr[-1], len(tr)) == (0, 68_999, 69_000)
    assert (va[0], va[-1], len(va)) == (69_000, 69_999, 1000) and notes == []
    te, rule, notes = S.celebahq_test_ids(range(30_000), 3000, False)
    assert (te[0], te[-1], len(te)) == (27_000, 29_999, 3000) and "27000" in rule
    # only the 3,000 test images present is enough for the strict rule
    te2, _, notes2 = S.celebahq_test_ids(range(27_000, 30_000), 3000, False)
    assert te2 == te and notes2 == []
    te3, rule3, _ = S.celebahq_test_ids(range(30_000), 3000, False, test_first_id=3000)
    assert (te3[0], te3[-1]) == (3000, 5999) and "test_first_id" in rule3


def test_folder_exact_size_copied_and_nonsquare_centre_cropped(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq", size=(RES, RES))
    # non-square 3*RES x RES: left/right thirds red/blue, centre green → centre crop is all green
    arr = np.zeros((RES, 3 * RES, 3), np.uint8)
    arr[:, :RES] = (255, 0, 0)
    arr[:, RES:2 * RES] = (0, 255, 0)
    arr[:, 2 * RES:] = (0, 0, 255)
    _save(ffhq / "00000" / "00003.png", arr)
    celeb = _celeb(tmp_path / "celeb", size=(RES, RES), ext=".png")
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    out = tmp_path / "out"
    np.testing.assert_array_equal(read_image(out / "train" / "00001.png"),
                                  read_image(ffhq / "00000" / "00001.png"))  # bit-exact copy
    crop = read_image(out / "train" / "00003.png")
    assert (crop == np.array([0, 255, 0], np.uint8)).all()
    entry = man["splits"]["train"]["files"][3]
    assert entry["original_size"] == [3 * RES, RES] and "centre crop" in entry["geometry"]
    assert "geometry" not in man["splits"]["train"]["files"][1]


def test_folder_count_check_and_allow_partial(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq", skip={4})
    celeb = _celeb(tmp_path / "celeb", ids=range(5))           # test ids 6..9 missing
    with pytest.raises(DataError) as e:
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    msg = str(e.value)
    assert "missing 00004" in msg and "--allow-partial" in msg and "70,000 FFHQ" in msg
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(DataError, match="CelebA-HQ.*missing test ids.*--allow-partial"):
        _folder(tmp_path, ffhq_dir=_ffhq(tmp_path / "full"), celebahq_dir=celeb)
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb, allow_partial=True)
    _check_manifest(tmp_path / "out")
    assert man["partial"] is True and man["parameters"]["allow_partial"] is True
    assert [f["id"] for f in man["splits"]["val"]["files"]] == [9, 10, 11]
    assert 4 not in [f["id"] for f in man["splits"]["train"]["files"]]
    assert [f["id"] for f in man["splits"]["test"]["files"]] == [1, 2, 3, 4]
    assert any("partial FFHQ" in n for n in man["folder"]["notes"])


def test_folder_partial_too_few_for_val(tmp_path):
    ffhq = _ffhq(tmp_path / "ffhq", n=3)
    with pytest.raises(DataError, match="not enough for 3 validation"):
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"), allow_partial=True)


# ------------------------------------------------------------------------------------------------
# folder: bad inputs
# ------------------------------------------------------------------------------------------------

def test_missing_empty_unset_folders(tmp_path, small_totals):
    celeb = _celeb(tmp_path / "celeb")
    with pytest.raises(DataError) as e:
        _folder(tmp_path, ffhq_dir=tmp_path / "nope", celebahq_dir=celeb)
    msg = str(e.value)
    assert "FFHQ folder" in msg and "not found" in msg and "00000.png" in msg
    assert "images1024x1024" in msg and "--ffhq DIR" in msg and "data.folder.ffhq" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        _folder(tmp_path, ffhq_dir=tmp_path / "empty", celebahq_dir=celeb)
    with pytest.raises(DataError, match="FFHQ folder is not set.*--ffhq"):
        _folder(tmp_path, ffhq_dir=None, celebahq_dir=celeb)
    with pytest.raises(DataError, match="CelebA-HQ folder .* not found.*--celebahq"):
        _folder(tmp_path, ffhq_dir=_ffhq(tmp_path / "f"), celebahq_dir=tmp_path / "nope")


def test_non_numeric_and_duplicate_names(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    _save(ffhq / "00003.png", seed=9)                  # flat copy of 00000/00003.png
    with pytest.raises(DataError, match="two files for id 3"):
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"))
    (ffhq / "00003.png").unlink()
    _save(ffhq / "thumb_1.png")
    with pytest.raises(DataError, match="not numbers.*thumb_1.png"):
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"))


def test_corrupt_file_midway_leaves_no_manifest(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    celeb = _celeb(tmp_path / "celeb")
    _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)          # a complete prior dataset
    assert (tmp_path / "out" / "manifest.json").exists()
    # truncated PNG in the middle: its header is fine, decoding fails after earlier files were done
    bad = ffhq / "00005" / "00006.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    assert str(bad) in str(e.value) and "corrupt or truncated" in str(e.value)
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".*partial*"))
    # garbage bytes: caught by the header pre-check, still names the file, still no manifest
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="00006.png.*cannot be read"):
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="not prepared"):
        P.read_manifest(out)


def test_prior_manifest_removed_even_when_validation_fails(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    celeb = _celeb(tmp_path / "celeb")
    _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    with pytest.raises(DataError):
        _folder(tmp_path, ffhq_dir=tmp_path / "missing", celebahq_dir=celeb)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_foreign_manifest_is_not_deleted(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not a `ugpnet prepare` manifest"):
        P.prepare_bundled(out, resolution=32, counts=COUNTS, progress=False)
    assert (out / "manifest.json").exists()


def test_conversions_recorded_and_transparent_rejected(tmp_path, small_totals, capsys):
    ffhq = _ffhq(tmp_path / "ffhq")
    sub = ffhq / "00000"
    _save(sub / "00000.png", _noise(24, 24, 1, c=0), mode="L")                    # grayscale
    Image.fromarray((_noise(24, 24, 2, c=0).astype(np.uint16) * 257)).save(sub / "00001.png")
    rgba = np.concatenate([_noise(24, 24, 3), np.full((24, 24, 1), 255, np.uint8)], axis=2)
    _save(sub / "00002.png", rgba)                                                # opaque RGBA
    _png16_rgb(sub / "00003.png", _noise(24, 24, 4).astype(np.uint16) * 257)      # 16-bit RGB
    Image.fromarray(_noise(24, 24, 5)).convert("P").save(sub / "00004.png")        # palette
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"))
    conv = man["conversions"]
    assert conv["grayscale replicated to RGB"]["count"] == 1
    assert conv["16-bit grayscale converted to 8-bit and replicated to RGB"]["count"] == 1
    assert conv["fully opaque alpha channel dropped"]["count"] == 1
    assert conv["16-bit per channel converted to 8-bit"]["count"] == 1
    assert conv["palette converted to RGB"]["count"] == 1
    files = man["splits"]["train"]["files"]
    assert files[0]["conversions"] == ["grayscale replicated to RGB"]
    assert str(sub / "00002.png") in conv["fully opaque alpha channel dropped"]["files"]
    assert "grayscale replicated to RGB: 1 image(s)" in capsys.readouterr().err
    g = read_image(tmp_path / "out" / "train" / "00000.png")
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    # every converted image: the 8-bit RGB reading of its source (test_io), Lanczos-resized
    for i in range(5):
        src = read_image(sub / f"{i:05d}.png")
        want = np.asarray(Image.fromarray(src).resize((RES, RES), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(read_image(tmp_path / "out" / "train" / f"{i:05d}.png"),
                                      want, err_msg=f"{i:05d}.png")
    # a transparent pixel: error naming the file
    rgba[3, 3, 3] = 0
    _save(sub / "00002.png", rgba)
    with pytest.raises(DataError, match="00002.png.*transparent"):
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_too_small_errors_unless_upscale(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    _save(ffhq / "00005" / "00007.png", size=(RES + 8, RES - 2))
    with pytest.raises(DataError) as e:
        _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"))
    msg = str(e.value)
    assert "00007.png" in msg and f"{RES + 8}x{RES - 2}" in msg and f"at least {RES} px" in msg
    assert "--upscale" in msg
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=_celeb(tmp_path / "c"), upscale=True)
    entry = man["splits"]["train"]["files"][7]
    assert "upscale" in entry["geometry"] and man["parameters"]["upscale"] is True
    _check_manifest(tmp_path / "out")


def test_rerun_overwrites_cleanly(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    celeb = _celeb(tmp_path / "celeb")
    _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb)
    (tmp_path / "out" / "train" / "stale.png").write_bytes(b"x")
    man = _folder(tmp_path, ffhq_dir=ffhq, celebahq_dir=celeb, resolution=8, val_count=5)
    _check_manifest(tmp_path / "out")                 # no stale file, new size, new split sizes
    assert man["splits"]["val"]["count"] == 5 and man["resolution"] == 8
    assert P.verify_manifest(tmp_path / "out")["resolution"] == 8
    (tmp_path / "out" / "val" / "00009.png").write_bytes(b"tampered")
    with pytest.raises(DataError, match="sha256 mismatch"):
        P.verify_manifest(tmp_path / "out")


def test_workers_give_identical_output(tmp_path, small_totals):
    ffhq = _ffhq(tmp_path / "ffhq")
    celeb = _celeb(tmp_path / "celeb")
    a = _folder(tmp_path, "a", ffhq_dir=ffhq, celebahq_dir=celeb, workers=1)
    b = _folder(tmp_path, "b", ffhq_dir=ffhq, celebahq_dir=celeb, workers=2)
    for s in ("train", "val", "test"):
        assert [f["sha256"] for f in a["splits"][s]["files"]] == \
               [f["sha256"] for f in b["splits"][s]["files"]]


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def test_cli_bundled_and_folder_errors(tmp_path, repo_root, capsys, small_totals):
    from ugpnet.cli import main

    params = str(repo_root / "params.yaml")
    out = tmp_path / "gt"
    rc = main(["--params", params, "--profile", "tiny", "prepare", "--out", str(out),
               "--resolution", "24", "--seed", "2", "--no-progress"])
    assert rc == 0
    man = _check_manifest(out)
    assert man["resolution"] == 24 and man["parameters"]["seed"] == 2
    assert "train" in capsys.readouterr().out

    rc = main(["--params", params, "--profile", "tiny", "prepare", "--source", "folder",
               "--out", str(tmp_path / "f"), "--ffhq", str(tmp_path / "missing")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "FFHQ folder" in err and "not found" in err and "--ffhq DIR" in err

    ffhq = _ffhq(tmp_path / "ffhq", skip={2})
    celeb = _celeb(tmp_path / "celeb")
    common = ["--params", params, "--profile", "tiny", "prepare", "--source", "folder", "--out",
              str(tmp_path / "f"), "--ffhq", str(ffhq), "--celebahq", str(celeb), "--resolution",
              str(RES), "--val-count", "2", "--test-count", "3", "--no-progress"]
    assert main(common) == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert main(common + ["--allow-partial"]) == 0
    man = _check_manifest(tmp_path / "f")
    assert man["partial"] is True and man["splits"]["test"]["count"] == 3
    assert "PARTIAL" in capsys.readouterr().out
