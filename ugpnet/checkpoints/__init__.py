"""Checkpoint files: one reader, one atomic writer, one strict loader, one restricted unpickler.

Bottom layer: imports only :mod:`ugpnet.errors`, :mod:`ugpnet.io` and third-party packages; models,
pretrained weights, metrics, losses and training all read checkpoints through it.

Public API::

    read_checkpoint(path, what="checkpoint", *, hint=...) -> object     (.reading)
    save_checkpoint(path, state)                                        (.reading)
    verify_sha256(path, expected, what=..., key=...)                    (.reading)
    unwrap_state_dict(obj, source_name, prefer=WRAPPER_KEYS) -> dict    (.strict)
    strip_prefix(sd, prefix="module.") -> dict                          (.strict)
    load_state_dict_strict(module, sd, source_name, *, hint=...)        (.strict)
    check_state_shapes(state, {key: shape}, source_name, target, ...)   (.strict)
    mismatch_message(source_name, target, missing=, unexpected=, mismatched=, ...) -> str
    shape_mismatch(key, file_shape, model_shape, model_key=None) -> str
    RestrictedUnpickler(file, policy, source)                           (.unpickler)
    UnpicklePolicy; policies NUMPY_ONLY, NVIDIA_NETWORK; PersistentPlaceholder
    safe_unpickle_numpy(path, hint=...) -> object

Formats and policies are documented in the submodules.
"""
from .reading import read_checkpoint, save_checkpoint, verify_sha256
from .strict import (
    WRAPPER_KEYS,
    StateDict,
    check_state_shapes,
    load_state_dict_strict,
    mismatch_message,
    shape_mismatch,
    strip_prefix,
    unwrap_state_dict,
)
from .unpickler import (
    NUMPY_ONLY,
    NVIDIA_NETWORK,
    PersistentPlaceholder,
    RestrictedUnpickler,
    UnpicklePolicy,
    safe_unpickle_numpy,
)

__all__ = [
    "read_checkpoint", "save_checkpoint", "verify_sha256",
    "WRAPPER_KEYS", "StateDict", "check_state_shapes", "load_state_dict_strict", "mismatch_message",
    "shape_mismatch", "strip_prefix", "unwrap_state_dict",
    "NUMPY_ONLY", "NVIDIA_NETWORK", "PersistentPlaceholder", "RestrictedUnpickler", "UnpicklePolicy",
    "safe_unpickle_numpy",
]
