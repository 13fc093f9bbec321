"""torch Datasets: fixed pairs and on-the-fly degradation (determinism, crops, flips, epochs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ugpnet.data.datasets import (ImageFolderDataset, OnTheFlyDegradationDataset,
                                  PairedFolderDataset)
from ugpnet.errors import DataError


def _write(folder, name, arr):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / name)


def _noise(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def gt_dir(tmp_path):
    for i in range(6):
        _write(tmp_path / "gt", f"{i:05d}.png", _noise(32, 32, i))
    return tmp_path / "gt"


# module-level degradations so DataLoader workers can use them under any start method
def add_noise(img, rng):
    n = rng.integers(-20, 21, img.shape)
    return np.clip(img.astype(np.int16) + n, 0, 255).astype(np.uint8)


def identity(img, rng):
    return img


def downscale4(img, rng):
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((w // 4, h // 4), Image.Resampling.BICUBIC))


# ------------------------------------------------------------------------------------------------
# PairedFolderDataset
# ------------------------------------------------------------------------------------------------

def test_paired_pairs_by_stem(tmp_path, gt_dir):
    for i in reversed(range(6)):
        _write(tmp_path / "lq", f"{i:05d}.png", _noise(32, 32, 100 + i))
    ds = PairedFolderDataset(tmp_path / "lq", gt_dir)
    assert len(ds) == 6 and ds.names == [f"{i:05d}" for i in range(6)]
    item = ds[2]
    assert item["name"] == "00002"
    assert item["lq"].shape == item["gt"].shape == (3, 32, 32)
    assert item["gt"].dtype == torch.float32 and 0 <= item["gt"].min() <= item["gt"].max() <= 1
    want = torch.from_numpy(_noise(32, 32, 2)).permute(2, 0, 1).float() / 255
    assert torch.equal(item["gt"], want)
    want_lq = torch.from_numpy(_noise(32, 32, 102)).permute(2, 0, 1).float() / 255
    assert torch.equal(item["lq"], want_lq)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["lq"].shape == (4, 3, 32, 32) and list(batch["name"]) == ds.names[:4]


def test_paired_mismatched_sets(tmp_path, gt_dir):
    for i in range(1, 7):
        _write(tmp_path / "lq", f"{i:05d}.png", _noise(32, 32, i))
    with pytest.raises(DataError) as e:
        PairedFolderDataset(tmp_path / "lq", gt_dir)
    msg = str(e.value)
    assert "00006" in msg and "00000" in msg and "only in" in msg


def test_paired_sr_sizes_and_bad_ratio(tmp_path, gt_dir):
    for i in range(6):
        _write(tmp_path / "lr", f"{i:05d}.png", _noise(8, 8, i))
    ds = PairedFolderDataset(tmp_path / "lr", gt_dir)
    assert ds[0]["lq"].shape == (3, 8, 8) and ds[0]["gt"].shape == (3, 32, 32)
    _write(tmp_path / "lr", "00003.png", _noise(8, 5, 0))
    with pytest.raises(DataError, match="00003.png.*integer multiple"):
        ds[3]


def test_paired_missing_folder(tmp_path, gt_dir):
    with pytest.raises(DataError, match="does not exist"):
        PairedFolderDataset(tmp_path / "nope", gt_dir)


# ------------------------------------------------------------------------------------------------
# OnTheFlyDegradationDataset
# ------------------------------------------------------------------------------------------------

def _u8(t):
    return (t.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _chw(a):
    return torch.from_numpy(np.array(a)).permute(2, 0, 1).float() / 255


def _same(a, b):
    return torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])


def test_onthefly_deterministic_per_seed_index_epoch(gt_dir):
    a = OnTheFlyDegradationDataset(gt_dir, add_noise, seed=5, crop=16)
    b = OnTheFlyDegradationDataset(gt_dir, add_noise, seed=5, crop=16)
    c = OnTheFlyDegradationDataset(gt_dir, add_noise, seed=6, crop=16)
    assert len(a) == 6
    # order of access does not matter; repeated access gives the same item
    x3 = a[3]
    _ = a[1]
    assert _same(x3, a[3]) and _same(x3, b[3])
    assert not _same(x3, c[3])
    assert x3["gt"].shape == x3["lq"].shape == (3, 16, 16) and x3["name"] == "00003"
    assert a.epoch == 0
    a.set_epoch(1)
    assert a.epoch == 1 and not _same(x3, a[3])
    b.set_epoch(1)
    assert _same(a[3], b[3])
    a.set_epoch(0)
    assert _same(x3, a[3])


def test_onthefly_crop_and_flip_come_from_gt(gt_dir):
    ds = OnTheFlyDegradationDataset(gt_dir, identity, seed=0, crop=16, flip=True)
    full = torch.from_numpy(_noise(32, 32, 0)).permute(2, 0, 1).float() / 255
    flips = set()
    for e in range(12):
        ds.set_epoch(e)
        item = ds[0]
        assert torch.equal(item["lq"], item["gt"])
        g = item["gt"]
        found = None
        for flipped in (False, True):
            src = full.flip(-1) if flipped else full
            for y in range(17):
                for x in range(17):
                    if torch.equal(src[:, y:y + 16, x:x + 16], g):
                        found = flipped
        assert found is not None, "crop is not a window of the (flipped) GT"
        flips.add(found)
    assert flips == {False, True}
    no_flip = OnTheFlyDegradationDataset(gt_dir, identity, seed=0, crop=None, flip=False)
    assert torch.equal(no_flip[0]["gt"], full)


def test_onthefly_degrade_rng_independent_of_augmentation(gt_dir):
    seen = []

    def probe(img, rng):
        seen.append(rng.random())
        return img

    OnTheFlyDegradationDataset(gt_dir, probe, seed=1, crop=None, flip=False)[2]
    OnTheFlyDegradationDataset(gt_dir, probe, seed=1, crop=16, flip=True)[2]
    assert seen[0] == seen[1]


def test_onthefly_sr_scale_aware(tmp_path, gt_dir):
    ds = OnTheFlyDegradationDataset(gt_dir, downscale4, seed=0, crop=16, scale=4)
    item = ds[0]
    assert item["gt"].shape == (3, 16, 16) and item["lq"].shape == (3, 4, 4)
    assert torch.equal(item["lq"], _chw(downscale4(_u8(item["gt"]), None)))  # LQ of this crop
    with pytest.raises(ValueError, match="multiple of scale"):
        OnTheFlyDegradationDataset(gt_dir, downscale4, seed=0, crop=18, scale=4)
    # whole image that is not a multiple of the scale is trimmed to one
    _write(tmp_path / "odd", "a.png", _noise(30, 35, 0))
    whole = OnTheFlyDegradationDataset(tmp_path / "odd", downscale4, seed=0, crop=None, flip=False,
                                       scale=4)
    item = whole[0]
    assert item["gt"].shape == (3, 28, 32) and item["lq"].shape == (3, 7, 8)
    top_left = _noise(30, 35, 0)[:28, :32]
    assert torch.equal(item["gt"], _chw(top_left))
    assert torch.equal(item["lq"], _chw(downscale4(top_left, None)))
    # wrong output size of degrade_fn is caught
    bad = OnTheFlyDegradationDataset(gt_dir, lambda im, r: im[:5, :5], seed=0, crop=16, scale=4)
    with pytest.raises(ValueError, match="degrade_fn returned 5x5"):
        bad[0]
    bad_type = OnTheFlyDegradationDataset(gt_dir, lambda im, r: im.astype(np.float32), seed=0)
    with pytest.raises(ValueError, match="uint8"):
        bad_type[0]


def test_onthefly_crop_larger_than_image(gt_dir):
    ds = OnTheFlyDegradationDataset(gt_dir, identity, seed=0, crop=64)
    with pytest.raises(DataError, match="smaller than the crop size 64"):
        ds[0]


def test_onthefly_epoch_reaches_persistent_workers(gt_dir):
    ds = OnTheFlyDegradationDataset(gt_dir, add_noise, seed=3, crop=16)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False, num_workers=2,
                                         persistent_workers=True)
    got = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        got.append(torch.cat([b["lq"] for b in loader]))
    ref = OnTheFlyDegradationDataset(gt_dir, add_noise, seed=3, crop=16)
    for epoch in range(2):
        ref.set_epoch(epoch)
        want = torch.stack([ref[i]["lq"] for i in range(len(ref))])
        assert torch.equal(got[epoch], want)
    assert not torch.equal(got[0], got[1])


def test_image_folder_dataset(gt_dir):
    ds = ImageFolderDataset(gt_dir, seed=0, crop=8, flip=True)
    item = ds[1]
    assert set(item) == {"gt", "name"} and item["gt"].shape == (3, 8, 8) and item["name"] == "00001"
    assert torch.equal(item["gt"], ImageFolderDataset(gt_dir, seed=0, crop=8, flip=True)[1]["gt"])
    full = _chw(_noise(32, 32, 1))
    windows = [src[:, y:y + 8, x:x + 8] for src in (full, full.flip(-1))
               for y in range(25) for x in range(25)]
    assert any(torch.equal(item["gt"], w) for w in windows), "crop is not a window of the GT"
    assert torch.equal(ImageFolderDataset(gt_dir)[1]["gt"], full)  # defaults: whole image as is
