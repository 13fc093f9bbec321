"""The decoded-image cache (ugpnet.data.decoded): the same training items, decoded once, built
atomically, a new cache for changed data, and a clear error for mixed sizes."""
import pickle

import numpy as np
import pytest

from ugpnet.data import datasets
from ugpnet.data.decoded import DecodedImages, cache_path
from ugpnet.errors import ConfigError
from ugpnet.io import write_png as write_image
from ugpnet.training.run import OPERATIONAL_KEYS


def _folder(path, n=5, size=16, odd=None):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        side = odd if (odd and i == n - 1) else size
        write_image(path / f"{i:03d}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return path


def _noise(img, rng):
    return np.clip(img.astype(int) + rng.integers(-9, 10, img.shape), 0, 255).astype(np.uint8)


def test_items_with_the_cache_are_the_items_without_it(tmp_path):
    gt = _folder(tmp_path / "gt")
    plain = datasets.OnTheFlyDegradationDataset(gt, _noise, seed=3, crop=8)
    cached = datasets.OnTheFlyDegradationDataset(gt, _noise, seed=3, crop=8,
                                                 decoded_cache=tmp_path / "cache")
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            assert (a["gt"] == b["gt"]).all() and (a["lq"] == b["lq"]).all()
    assert "decoded_cache" in OPERATIONAL_KEYS  # where images are kept changes no identity


def test_the_cache_is_decoded_once_and_pickles_small(tmp_path, monkeypatch):
    gt = _folder(tmp_path / "gt")
    first = datasets.OnTheFlyDegradationDataset(gt, _noise, seed=3, decoded_cache=tmp_path / "c")
    files = sorted((tmp_path / "c").iterdir())
    assert [f.suffix for f in files] == [".lock", ".npy"]  # no temp file left
    import ugpnet.data.decoded as decoded

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(decoded, "read_image", no_decoding)
    monkeypatch.setattr(datasets, "read_image", no_decoding)
    again = datasets.OnTheFlyDegradationDataset(gt, _noise, seed=3, decoded_cache=tmp_path / "c")
    assert (again[2]["gt"] == first[2]["gt"]).all()
    assert len(pickle.dumps(again.decoded)) < 1000  # a path, not the array, goes to workers


def test_changed_data_makes_a_new_cache(tmp_path):
    gt = _folder(tmp_path / "gt")
    files = sorted(gt.iterdir())
    before = cache_path(files, tmp_path / "c")
    write_image(files[0], np.zeros((16, 16, 3), np.uint8))
    assert cache_path(files, tmp_path / "c") != before


def test_a_failed_build_leaves_nothing_that_looks_finished(tmp_path):
    gt = _folder(tmp_path / "gt", odd=12)
    with pytest.raises(ConfigError, match=r"needs training images of one size: '.*004.png' is 12x12"):
        DecodedImages(sorted(gt.iterdir()), tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.npy")) and not list((tmp_path / "c").glob(".*tmp"))
