"""What made a file: the code version, and content digests of the files a job read.

- :func:`code_version`: the package version and, in a git checkout, the commit and whether the
  working tree differs from it (``dirty``; only the package, workflow and config files count).
  Recorded in every run, restoration, evaluation and table. Code changes do not rerun finished
  work by themselves (see docs/RUNS.md); the record says which code made each result.
- :func:`input_digest`: the identity of a file a stage reads, by *content*: a manifest without
  its creation time, a finished stage's weights without its timing summary, other files by
  sha256. Memoised by (path, size, mtime).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

# manifest keys that say when, not what
VOLATILE_KEYS = frozenset({"created_unix", "created", "seconds", "elapsed", "timestamp"})
_REPO = Path(__file__).resolve().parents[1]
_TRACKED = ("ugpnet", "baselines", "workflow", "Snakefile", "pyproject.toml")


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """``{"package": version, "git_commit": sha or None, "git_dirty": bool or None}``."""
    from . import __version__

    out: dict[str, Any] = {"package": __version__, "git_commit": None, "git_dirty": None}
    if not (_REPO / ".git").exists():
        return out
    try:
        commit = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--",
                                 *_TRACKED], check=True, capture_output=True, text=True,
                                timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    out["git_commit"] = commit or None
    out["git_dirty"] = bool(status.strip())
    return out


def describe_code(version: dict | None = None) -> str:
    v = version or code_version()
    if not v.get("git_commit"):
        return f"ugpnet-bench {v.get('package')}"
    return (f"ugpnet-bench {v.get('package')} @ {v['git_commit'][:10]}"
            f"{' (dirty)' if v.get('git_dirty') else ''}")


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in sorted(obj.items()) if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_digest(weights: dict) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name]
        if not torch.is_tensor(t):
            h.update(f"{name}|{t!r}|".encode())
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(weights[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# checkpoint entries that describe how a file was made, not what it holds
CHECKPOINT_VOLATILE = frozenset({"summary", "options", "label", "code"}) | VOLATILE_KEYS


def _checkpoint_digest(obj: dict) -> str:
    """Digest of a checkpoint's tensors and plain values, without its timing/description."""
    import torch

    h = hashlib.sha256()
    for key in sorted(obj, key=str):
        if key in CHECKPOINT_VOLATILE:
            continue
        value = obj[key]
        h.update(f"[{key}]".encode())
        if isinstance(value, dict) and all(torch.is_tensor(v) for v in value.values()):
            h.update(_weights_digest(value).encode())
        elif torch.is_tensor(value):
            h.update(_weights_digest({"": value}).encode())
        else:
            h.update(json.dumps(_canonical(value), sort_keys=True, default=str).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    p = Path(path)
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "sha256:" + _sha256(p)
        blob = json.dumps(_canonical(data), sort_keys=True, separators=(",", ":")).encode()
        return "json:" + hashlib.sha256(blob).hexdigest()
    if p.suffix in (".pt", ".pth"):
        import torch

        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - not a torch file we can read: hash the bytes
            obj = None
        if isinstance(obj, dict):
            return "tensors:" + _checkpoint_digest(obj)
    return "sha256:" + _sha256(p)


def input_digest(path: str | os.PathLike) -> str:
    """Content identity of ``path`` (see the module docstring); a folder digests its manifest."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    st = p.stat()
    return _digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


def digest_of(obj: Any) -> str:
    """Short stable hash of a JSON-able object (configuration slices, identities)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _find_manifest(folder: Path, key: str) -> Path | None:
    """``manifest.json`` in ``folder`` or its parent that has ``key`` (e.g. a restore manifest
    for an output sub-folder such as ``x_reg/``)."""
    for candidate in (folder / "manifest.json", folder.parent / "manifest.json"):
        try:
            if key in json.loads(candidate.read_text(encoding="utf-8")):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def evaluation_provenance(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                          gt_manifest: str | os.PathLike | None = None) -> dict:
    """Where an evaluation's inputs came from: the checkpoint and degraded-input manifest that
    the restore manifest of ``pred_dir`` names (with their sha256), the GT manifest's sha256, and
    the code version."""
    out: dict[str, Any] = {"code": code_version()}
    restore = _find_manifest(Path(pred_dir), "checkpoint")
    if restore is not None:
        rec = json.loads(restore.read_text(encoding="utf-8"))
        out["restore_manifest"] = str(restore)
        out["restore_manifest_sha256"] = _sha256(restore)
        for key in ("method", "task", "checkpoint", "checkpoint_sha256", "input_manifest",
                    "input_manifest_sha256", "code"):
            if key in rec:
                out[key if key != "code" else "restore_code"] = rec[key]
    gm = Path(gt_manifest) if gt_manifest else _find_manifest(Path(gt_dir), "splits")
    if gm is not None and gm.is_file():
        out["gt_manifest"] = str(gm)
        out["gt_manifest_sha256"] = _sha256(gm)
    return out


def file_sha256(path: str | os.PathLike) -> str:
    return _sha256(Path(path))
