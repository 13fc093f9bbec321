"""ugpnet.checkpoints: the one reader, writer, strict loader (and its message) and restricted unpickler."""
import argparse
import io
import os
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from ugpnet.checkpoints import (
    NUMPY_ONLY,
    NVIDIA_NETWORK,
    RestrictedUnpickler,
    check_state_shapes,
    load_state_dict_strict,
    mismatch_message,
    read_checkpoint,
    safe_unpickle_numpy,
    save_checkpoint,
    unwrap_state_dict,
)
from ugpnet.errors import CheckpointError


# ----------------------------------------------------------------------------------- reading
def test_zero_byte_checkpoint_names_file_and_reason(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path, "fusion checkpoint")
    msg = str(e.value)
    assert str(path) in msg and "empty file (0 bytes)" in msg and "fusion checkpoint" in msg


def test_missing_checkpoint_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint("runs/absent.pt", "restoration checkpoint")
    msg = str(e.value)
    assert msg.startswith("restoration checkpoint not found at runs/absent.pt")
    assert str(tmp_path / "runs" / "absent.pt") in msg
    (tmp_path / "adir.pt").mkdir()
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path / "adir.pt")


@pytest.mark.parametrize("payload", [b"not a checkpoint", b"\x80\x02", b"PK\x03\x04garbage"])
def test_unreadable_checkpoint_reason_is_never_empty(tmp_path, payload):
    path = tmp_path / "junk.pth"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    m = re.search(r"cannot be read with torch\.load\(weights_only=True\) \((.*?)\)\. ", msg)
    assert msg.startswith(str(path)) and m and m.group(1).strip(), msg


def test_code_in_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_namespace_allowed_and_save_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, {"w": torch.arange(3.0), "args": argparse.Namespace(size=32)})
    got = read_checkpoint(path)
    assert torch.equal(got["w"], torch.arange(3.0)) and got["args"].size == 32
    # a failing save leaves the previous file intact and no temporary file behind
    with pytest.raises(Exception):
        save_checkpoint(path, {"f": lambda: 0})
    assert torch.equal(read_checkpoint(path)["w"], torch.arange(3.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_unwrap_prefers_params_ema_and_strips_module():
    ema, raw = torch.ones(1), torch.zeros(1)
    sd = unwrap_state_dict({"params": {"a": raw}, "params_ema": {"module.module.a": ema}})
    assert list(sd) == ["a"] and sd["a"] is ema
    with pytest.raises(CheckpointError, match="no state dict found"):
        unwrap_state_dict({"optimizer": {"lr": 1.0}}, "opt.pth")


# ----------------------------------------------------------------------------- strict loading
class _Net(nn.Module):
    def __init__(self, width=4, n=12):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(n))


def test_strict_loader_lists_missing_unexpected_and_mismatched():
    net = _Net()
    sd = net.state_dict()
    del sd["convs.0.weight"], sd["convs.1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["convs.2.weight"] = torch.zeros(8, 4, 1, 1)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(net, sd, "run/model.pt")
    lines = str(e.value).split("\n  ")
    assert lines[0] == "run/model.pt does not fit _Net (24 entries in the model, 23 in the file)"
    assert lines[1] == "missing (2): convs.0.weight, convs.1.bias"
    assert lines[2] == "unexpected (1): extra.weight"
    assert lines[3] == "shape mismatch (1): convs.2.weight: file (8, 4, 1, 1) vs model (4, 4, 1, 1)"
    assert len(lines) == 5 and "params.yaml" in lines[4]  # the hint


def test_strict_loader_lists_only_the_first_ten():
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(_Net(n=12), {}, "empty.pth")
    missing = [ln for ln in str(e.value).split("\n  ") if ln.startswith("missing")][0]
    assert missing.startswith("missing (24): convs.0.weight, convs.0.bias,")
    assert missing.endswith(", ... (14 more)") and missing.count(",") == 10


def test_strict_loader_loads_and_tolerates_missing_bn_counters():
    src = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    dst = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_state_dict_strict(dst, sd, "old.pth")
    assert torch.equal(dst[0].weight, src[0].weight)


def test_one_message_format_for_all_loaders(tmp_path):
    """The StyleGAN2 key-map loader and the shape-table check use the same message as the strict
    loader: same header, same category labels."""
    from ugpnet.models.synthesis import Generator, load_stylegan2

    g = Generator(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16, basecode_size=8)
    torch.save({"params_ema": {"constant_input.weight": torch.zeros(1, 16, 4, 4),
                               "style_mlp.1.weight": torch.zeros(3, 3), "bogus": torch.zeros(1)}},
               tmp_path / "g.pth")
    with pytest.raises(CheckpointError) as e:
        load_stylegan2(tmp_path / "g.pth", g)
    lines = str(e.value).split("\n  ")
    assert re.fullmatch(r".*g\.pth does not fit our generator as a BasicSR checkpoint "
                        r"\(\d+ entries in the model, 3 in the file\)", lines[0])
    assert [ln.split(" (")[0] for ln in lines[1:4]] == ["missing", "unexpected", "shape mismatch"]
    assert lines[2] == "unexpected (1): bogus"
    assert lines[3] == ("shape mismatch (1): style_mlp.1.weight: file (3, 3) vs model "
                        "mapping.fc0.weight (16, 16)")
    with pytest.raises(CheckpointError) as e:
        check_state_shapes({"a": torch.zeros(2)}, {"a": (3,), "b": (1,)}, "w.pt", "a table")
    assert str(e.value) == mismatch_message(
        "w.pt", "a table", missing=["b"], mismatched=["a: file (2,) vs model (3,)"], n_model=2,
        n_file=1)


# ------------------------------------------------------------------------------ unpickler
class _SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("policy", [NUMPY_ONLY, NVIDIA_NETWORK], ids=lambda p: p.name)
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_unpickler_refuses_os_system_under_both_policies(tmp_path, policy, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": [_SystemCall(marker)]}, protocol=protocol))
    with open(path, "rb") as f, pytest.raises(CheckpointError) as e:
        RestrictedUnpickler(f, policy, source=str(path)).load()
    msg = str(e.value)
    assert msg.startswith(str(path)) and re.search(r"refusing to load.*'(posix|os)\.system'", msg)
    assert policy.name in msg
    assert not marker.exists()


@pytest.mark.parametrize("policy", [NUMPY_ONLY, NVIDIA_NETWORK], ids=lambda p: p.name)
def test_python2_builtins_eval_is_refused(tmp_path, policy):
    blob = b"c__builtin__\neval\n(S'1+1'\ntR."  # protocol 0, Python 2 module name
    with pytest.raises(CheckpointError, match=r"'builtins\.eval'"):
        RestrictedUnpickler(io.BytesIO(blob), policy, source="p2.pkl").load()


def test_policies_differ_on_nvidia_classes():
    blob = b"\x80\x02ctraining.networks\nGenerator\n)\x81."  # training.networks.Generator()
    un = RestrictedUnpickler(io.BytesIO(blob), NVIDIA_NETWORK, source="net.pkl")
    obj = un.load()
    assert type(obj).qualname == "training.networks.Generator"
    assert un.placeholders == {"training.networks.Generator"}
    with pytest.raises(CheckpointError, match="numpy-only"):
        RestrictedUnpickler(io.BytesIO(blob), NUMPY_ONLY, source="w.ckpt").load()
    private = b"\x80\x02ctraining.networks\n_helper\n)\x81."  # private names are never placeholders
    with pytest.raises(CheckpointError, match="refusing"):
        RestrictedUnpickler(io.BytesIO(private), NVIDIA_NETWORK, source="net.pkl").load()


def test_numpy_only_reads_arrays_and_refuses_object_arrays(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": [np.arange(4, dtype=np.float32)], "n": 3}))
    got = safe_unpickle_numpy(good)
    np.testing.assert_array_equal(got["a"][0], np.arange(4))
    assert got["a"][0].dtype == np.float32 and got["n"] == 3
    bad = tmp_path / "obj.ckpt"
    bad.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object)))
    with pytest.raises(CheckpointError, match=r"weight file '.*obj\.ckpt' cannot be read safely.*object"):
        safe_unpickle_numpy(bad, hint="Reinstall x.")
    torch_pickle = tmp_path / "t.ckpt"
    torch_pickle.write_bytes(pickle.dumps(torch.zeros(2)))
    with pytest.raises(CheckpointError, match="refusing to load"):
        safe_unpickle_numpy(torch_pickle)


# --------------------------------------------------------------- safetensors, hashes
def test_safetensors_files_are_read_and_damaged_ones_named(tmp_path):
    from safetensors.torch import save_file  # a dependency: always tested

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.float16)}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    got = read_checkpoint(path)
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-7])  # truncated by a kill or a full disk
    with pytest.raises(CheckpointError, match=rf"{cut}: not a readable safetensors file \(\w+"):
        read_checkpoint(cut)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors: .*empty file \(0 bytes\)"):
        read_checkpoint(empty)


def test_verify_sha256_names_the_file_and_the_key(tmp_path):
    import hashlib

    from ugpnet.checkpoints import verify_sha256

    path = tmp_path / "g.pt"
    path.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    verify_sha256(path, good.upper(), "the StyleGAN2 checkpoint", "stylegan2.checkpoint_sha256")
    verify_sha256(path, None)  # no hash configured: nothing checked
    verify_sha256(tmp_path / "absent.pt", good)  # absent: the reader says so, not the hash
    with pytest.raises(CheckpointError, match=rf"{path}: the StyleGAN2 checkpoint has sha256 "
                                              rf"{good}, but stylegan2\.checkpoint_sha256 says "
                                              rf"{'0' * 64}: the file is damaged"):
        verify_sha256(path, "0" * 64, "the StyleGAN2 checkpoint", "stylegan2.checkpoint_sha256")
