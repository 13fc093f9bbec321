"""Finding the state dict inside a checkpoint and loading it strictly, with one error format.

Wrappers (:func:`unwrap_state_dict`): ``params_ema`` > ``params`` > ``state_dict`` > ``model`` >
``net`` (first present wins, nested wrappers are followed) and any number of leading ``module.``
(DataParallel) prefixes are removed.

Every "this file does not fit" error in the package is built by :func:`mismatch_message`::

    <source> does not fit <target> (<n> entries in the model, <m> in the file)
      missing (<count>): key, key, ... (<k> more)
      unexpected (<count>): key, ...
      shape mismatch (<count>): key: file (16, 3, 3, 3) vs model (8, 3, 3, 3), ...
      <hint>

(only the non-empty categories, the first :data:`~ugpnet.io.LISTED` keys of each).
:func:`load_state_dict_strict` (a module), :func:`check_state_shapes` (a table of expected shapes)
and the StyleGAN2 key-map loader all report through it.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import listing

StateDict = Dict[str, torch.Tensor]

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")
DEFAULT_FIT_HINT = ("check that the file is for this model and its constructor arguments "
                    "(params.yaml backbones.<name>.<task>)")


# --------------------------------------------------------------------------- unwrapping
def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> StateDict:
    """Remove any number of leading ``prefix`` from every key that has it."""
    out = {}
    for k, v in sd.items():
        while k.startswith(prefix):
            k = k[len(prefix):]
        out[k] = v
    return out


def unwrap_state_dict(obj: Any, source_name: str = "checkpoint",
                      prefer: Sequence[str] = WRAPPER_KEYS) -> StateDict:
    """The tensor dict inside ``obj`` (see module doc for the wrapper order), ``module.`` removed."""
    seen = 0
    while not _is_tensor_dict(obj):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{source_name}: expected a state dict, got "
                                  f"{type(obj).__name__}")
        key = next((k for k in prefer if k in obj and isinstance(obj[k], Mapping)), None)
        if key is None:
            tops = sorted(map(str, obj))[:10]
            raise CheckpointError(
                f"{source_name}: no state dict found (looked for {', '.join(prefer)} or a plain "
                f"name -> tensor dict); top-level keys: {tops}")
        obj = obj[key]
        seen += 1
        if seen > 4:
            raise CheckpointError(f"{source_name}: state dict nested too deeply")
    return strip_prefix(dict(obj))


# --------------------------------------------------------------------------- the one message
def _shape(s) -> str:
    return s if isinstance(s, str) else str(tuple(s))


def shape_mismatch(key: str, file_shape, model_shape, model_key: str | None = None) -> str:
    """One ``shape mismatch`` entry: ``key: file (a, b) vs model [model_key] (c, d)``.

    ``file_shape`` may be a description (``"a list (not a tensor)"``)."""
    dst = f" {model_key}" if model_key and model_key != key else ""
    return f"{key}: file {_shape(file_shape)} vs model{dst} {_shape(model_shape)}"


def mismatch_message(source_name: str, target: str, *, missing: Sequence[str] = (),
                     unexpected: Sequence[str] = (), mismatched: Sequence[str] = (),
                     n_model: int | None = None, n_file: int | None = None,
                     hint: str = DEFAULT_FIT_HINT) -> str:
    """The one "does not fit" message (format in the module docstring)."""
    head = f"{source_name} does not fit {target}"
    if n_model is not None and n_file is not None:
        head += f" ({n_model} entries in the model, {n_file} in the file)"
    parts = [head]
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("shape mismatch", mismatched)):
        keys = list(keys)
        if keys:
            parts.append(f"{label} ({len(keys)}): {listing(keys)}")
    if hint:
        parts.append(hint)
    return "\n  ".join(parts)


def check_state_shapes(state: Mapping[str, torch.Tensor], expected: Mapping[str, Sequence[int]],
                       source_name: str, target: str, *, allow_missing: Sequence[str] = (),
                       hint: str = DEFAULT_FIT_HINT) -> None:
    """CheckpointError (:func:`mismatch_message`) unless ``state`` has exactly the keys of
    ``expected`` (``{key: shape}``, in its order) with those shapes; ``allow_missing`` keys may be
    absent."""
    allowed = set(allow_missing)
    missing = [k for k in expected if k not in state and k not in allowed]
    unexpected = [k for k in state if k not in expected]
    mismatched = [shape_mismatch(k, tuple(state[k].shape), tuple(expected[k])) for k in expected
                  if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if missing or unexpected or mismatched:
        raise CheckpointError(mismatch_message(
            source_name, target, missing=missing, unexpected=unexpected, mismatched=mismatched,
            n_model=len(expected), n_file=len(state), hint=hint))


def load_state_dict_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], source_name: str,
                           *, hint: str = DEFAULT_FIT_HINT) -> None:
    """Load ``sd`` into ``module`` requiring identical keys and shapes; otherwise raise a
    CheckpointError naming ``source_name`` and listing (the first 10) missing keys, unexpected
    keys and shape mismatches. Missing BatchNorm ``num_batches_tracked`` counters are tolerated."""
    own = module.state_dict()
    sd = dict(sd)
    check_state_shapes(sd, {k: tuple(v.shape) for k, v in own.items()}, source_name,
                       type(module).__name__, hint=hint,
                       allow_missing=[k for k in own if k.endswith("num_batches_tracked")])
    for k in own:
        if k not in sd:  # num_batches_tracked
            sd[k] = own[k]
    module.load_state_dict(sd, strict=True)
