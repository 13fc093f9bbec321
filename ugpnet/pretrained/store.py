"""Where pretrained files live and how they are verified: cache dir, torch hub dir, hashes, conversions.

- Cache: ``$UGPNET_CACHE`` (default ``~/.cache/ugpnet``), converted weights in ``weights/``.
- torch hub: ``<torch.hub.get_dir()>/checkpoints``; hub files are named
  ``<name>-<sha256 prefix>.<ext>`` and :func:`hub_file_ok` checks that prefix.
- Hashes: :func:`file_hash` (sha256 or sha1) is memoised per (path, size, mtime) for the process.
- Installed carrier packages are located with :func:`package_dir` without importing them.
- Converted files: a ``torch.save`` dict ``{"format", "state", "meta"}`` loadable with
  ``weights_only=True``; ``meta`` records the carrier and its checksum and ``tensor_sha256`` (a
  digest of the converted tensors, :func:`tensor_digest`), re-checked at every load together with
  the expected tensor shapes. Files are written atomically.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..checkpoints import check_state_shapes, read_checkpoint
from ..errors import CheckpointError
from ..io import atomic_path

CONVERTED_FORMAT = "ugpnet-converted-weights/1"

_lock = threading.RLock()
_memo: dict = {}


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "orthogonal_")


class skipped_init:
    """Context manager: ``torch.nn.init`` fills are no-ops while a network whose every used
    weight is then loaded from a file is constructed (AlexNet's and VGG16's classifiers alone are
    60-120 M parameters whose random init took seconds per process). Held under the store lock;
    callers must load (strictly) or zero every tensor afterwards."""

    def __enter__(self):
        import torch.nn.init as init

        _lock.acquire()
        self._saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS}
        for name in _INIT_FUNCTIONS:
            setattr(init, name, _no_fill)
        return self

    def __exit__(self, *exc):
        import torch.nn.init as init

        for name, fn in self._saved.items():
            setattr(init, name, fn)
        _lock.release()
        return False


def _no_fill(tensor, *args, **kwargs):
    return tensor


# ----------------------------------------------------------------------------------------- paths
def cache_dir() -> Path:
    """``$UGPNET_CACHE`` or ``~/.cache/ugpnet`` (created on demand)."""
    root = os.environ.get("UGPNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ugpnet")
    return Path(root)


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def torch_hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def package_dir(module: str, dist: str) -> Path | None:
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


# ---------------------------------------------------------------------------------------- hashes
def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest (``sha256`` or ``sha1``) of ``path``, memoised per (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = ("hash", algo, str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        if key not in _memo:
            _memo[key] = _hash_file(path, algo)
        return _memo[key]


def hub_file_ok(path: Path) -> bool:
    """torch hub names files ``<name>-<sha256 prefix>.<ext>``; check that prefix."""
    prefix = path.stem.rsplit("-", 1)[-1]
    return file_hash(path, "sha256").startswith(prefix)


def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over sorted keys, dtypes, shapes and raw bytes of a tensor dict."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------ reading, checking
def read_weights(path: str | os.PathLike) -> Any:
    """A pretrained or cached weight file (``weights_only=True``); CheckpointError if unusable."""
    return read_checkpoint(path, "weight file",
                           hint="Delete it; it will be recreated or re-downloaded.")


def check_shapes(state: Mapping[str, torch.Tensor], expected: Mapping[str, Sequence[int]], where,
                 allow_missing: Sequence[str] = (), target: str = "the expected network",
                 hint: str | None = None) -> None:
    """CheckpointError (the one mismatch message) unless ``state`` has the ``expected`` shapes."""
    check_state_shapes(
        state, expected, f"weights from '{where}'", target, allow_missing=allow_missing,
        hint=hint or (f"Delete cached conversions under '{weights_cache_dir()}' and reinstall "
                      f"the weight carrier."))


# ---------------------------------------------------------------------------- converted files
def save_converted(path: Path, state: Mapping[str, torch.Tensor], meta: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": CONVERTED_FORMAT, "state": dict(state), "meta": meta}, tmp)


def load_converted(path: Path, expected_shapes: Mapping[str, Sequence[int]],
                   allow_missing: Sequence[str] = ()) -> tuple[dict, dict]:
    """Load and verify a cached conversion; raise CheckpointError if it is corrupt or wrong."""
    obj = read_weights(path)
    if not isinstance(obj, dict) or obj.get("format") != CONVERTED_FORMAT:
        raise CheckpointError(f"cached weights '{path}' have an unknown format; delete the file and "
                              f"rerun (it will be converted again).")
    state, meta = obj["state"], obj["meta"]
    check_shapes(state, expected_shapes, path, allow_missing)
    if tensor_digest(state) != meta.get("tensor_sha256"):
        raise CheckpointError(f"cached weights '{path}' do not match the checksum recorded when they "
                              f"were converted (file damaged?). Delete it and rerun.")
    return state, meta


def describe(meta: dict, cached: Path) -> dict:
    """The source description returned with converted weights (recorded in result files)."""
    d = {"source": meta["source"], "file": str(cached), "tensor_sha256": meta["tensor_sha256"]}
    for k in ("carrier", "carrier_sha256", "carrier_sha1"):
        if k in meta:
            d[k] = meta[k]
    return d


# ----------------------------------------------------------------------------------- memo
def memoised(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``key`` per process (until :func:`clear_memo`)."""
    with _lock:
        if key not in _memo:
            _memo[key] = compute()
        return _memo[key]


def clear_memo() -> None:
    """Forget in-process results (tests switch ``$UGPNET_CACHE``)."""
    with _lock:
        _memo.clear()
