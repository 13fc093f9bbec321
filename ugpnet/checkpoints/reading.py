"""Reading and writing checkpoint files: one safe reader, one atomic writer.

:func:`read_checkpoint` reads ``.pt``/``.pth`` with ``torch.load(map_location="cpu",
weights_only=True)``; ``argparse.Namespace`` is allowed too (rosinality's training checkpoints keep
their options under ``args``). ``.safetensors`` files are read with the ``safetensors`` package.
Every failure is a :class:`~ugpnet.errors.CheckpointError` that names the file and gives a non-empty
reason: a missing file says where it was looked for, a zero-byte file says ``empty file (0 bytes)``.

:func:`save_checkpoint` writes with ``torch.save`` to a temporary file next to the target and
renames it, so a killed job never leaves a half-written checkpoint that looks finished.
"""
from __future__ import annotations

import argparse
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..io import atomic_path, sha256_file

DEFAULT_HINT = "Only plain tensor checkpoints are accepted; re-save it as a state dict."


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (never empty)."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _where(path: Path) -> str:
    resolved = path.expanduser().absolute()
    return str(path) if str(resolved) == str(path) else f"{path} (looked for {resolved})"


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint", *, hint: str = DEFAULT_HINT) -> Any:
    """The object stored in ``path`` (see module docstring); CheckpointError naming the file.

    ``what`` names the file in messages (``"pretrained NAFNet weights"``); ``hint`` ends the message
    when the file exists but cannot be read."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found at {_where(path)}")
    if not path.is_file():
        raise CheckpointError(f"{what} at {path} is not a file (a folder?)")
    size = path.stat().st_size
    if size == 0:
        fix = "Re-create or re-download it." if hint == DEFAULT_HINT else hint
        raise CheckpointError(f"{path}: cannot read {what}: empty file (0 bytes); the file was "
                              f"truncated or never written. {fix}".rstrip())
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package "
                                  f"(pip install safetensors)") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
            raise CheckpointError(f"{path}: not a readable safetensors file ({_reason(e)}). "
                                  f"{hint}".rstrip()) from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unpickling/format problem clearly
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) "
                              f"({_reason(e)}). {hint}".rstrip()) from e


NEARLY_FULL_BYTES = 16 << 20  # free space below which a failed write is reported as a full disk


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomic ``torch.save`` of ``dict(state)`` (temporary file + rename).

    torch reports a full disk as a bare ``RuntimeError`` (``unexpected pos ...``); that is turned
    into ``OSError(ENOSPC)`` naming the file (the CLI prints it as one message, exit 2). The
    temporary file is removed and an earlier ``path`` is left as it was."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(dict(state), tmp)
    except (RuntimeError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if free is not None and free < NEARLY_FULL_BYTES:
            raise OSError(errno.ENOSPC, f"No space left on device ({free} bytes free)",
                          str(path)) from None
        raise CheckpointError(f"{path}: cannot be written ({_reason(e)}).") from e


_VERIFIED: dict = {}


def verify_sha256(path: str | os.PathLike, expected: str | None, what: str = "checkpoint",
                  key: str = "its sha256") -> None:
    """CheckpointError unless the file ``path`` has the sha256 ``expected`` (nothing to do when
    ``expected`` is None or the file is absent: the reader reports that). Memoised per
    (path, size, mtime) for the process."""
    if not expected:
        return
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return
    memo = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    if memo not in _VERIFIED:
        _VERIFIED[memo] = sha256_file(path)
    got = _VERIFIED[memo]
    if got.lower() != str(expected).lower():
        raise CheckpointError(f"{path}: {what} has sha256 {got}, but {key} says {expected}: the "
                              f"file is damaged or not the one configured. Re-download or re-copy "
                              f"it, or correct the hash.")
