"""The manifest of a prepared dataset (``OUT/manifest.json``) and the atomic writer of the splits.

``manifest.json`` (format ``ugpnet-gt/1``) lists, per split, every file name and its sha256, with
the source, resolution, parameters, geometry and conversions of the run. It is the done-marker
(the Snakemake target): it is written last, atomically.

Atomicity (:func:`write_dataset`): the old ``manifest.json`` is deleted first (an interrupted
rewrite never looks done; a manifest that is not ours is an error, so a foreign folder is never
overwritten); each split is written into a hidden temporary folder inside ``OUT`` and renamed into
place only after **all** splits succeeded; leftovers of an interrupted run (``.<split>.partial-*``,
``.<split>.old-*``) are removed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from ..errors import DataError
from ..io import atomic_write_json, make_temp_dir, sha256_file
from .sources import SPLITS

MANIFEST = "manifest.json"
FORMAT = "ugpnet-gt/1"


def tool_version() -> str:
    """``ugpnet.__version__`` (recorded as ``created_by``)."""
    try:
        from .. import __version__
        return str(__version__)
    except Exception:  # pragma: no cover
        return "unknown"


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The manifest of a prepared dataset; DataError if preparation has not finished."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"'{path}' not found: the dataset in '{out_dir}' is not prepared (or its "
                        f"preparation did not finish). Run `ugpnet prepare --out {out_dir}`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"'{path}' is not valid JSON ({e}); re-run `ugpnet prepare`.") from None


def verify_manifest(out_dir: str | os.PathLike, check_hashes: bool = True) -> dict:
    """Check that every file listed in the manifest exists (and matches its sha256)."""
    out = Path(out_dir)
    man = read_manifest(out)
    for split, info in man["splits"].items():
        listed = {f["name"] for f in info["files"]}
        on_disk = {p.name for p in (out / split).glob("*.png")} if (out / split).is_dir() else set()
        if listed != on_disk:
            diff = sorted(listed ^ on_disk)[:5]
            raise DataError(f"'{out / split}' does not match its manifest (e.g. {diff}); re-run "
                            f"`ugpnet prepare --out {out}`.")
        if check_hashes:
            for f in info["files"]:
                if sha256_file(out / split / f["name"]) != f["sha256"]:
                    raise DataError(f"'{out / split / f['name']}' changed after preparation "
                                    f"(sha256 mismatch); re-run `ugpnet prepare --out {out}`.")
    return man



def clean_leftovers(out: Path) -> None:
    """Remove the temporary split folders an interrupted run left in ``out``."""
    for split in SPLITS:
        for p in out.glob(f".{split}.partial-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in out.glob(f".{split}.old-*"):
            shutil.rmtree(p, ignore_errors=True)


def invalidate_manifest(out: Path) -> None:
    """Delete OUT/manifest.json (our own only) so an unfinished rewrite never looks done."""
    man_path = out / MANIFEST
    if not (man_path.exists() or man_path.is_symlink()):
        return
    try:
        fmt = json.loads(man_path.read_text(encoding="utf-8")).get("format", "")
    except (OSError, ValueError, AttributeError):
        fmt = FORMAT  # unreadable: a broken manifest of ours, or garbage; either way not "done"
    if not str(fmt).startswith(FORMAT.split("/")[0] + "/"):
        raise DataError(f"'{man_path}' exists but is not a `ugpnet prepare` manifest; choose an "
                        f"empty or dedicated --out folder (prepare replaces its train/, val/ and "
                        f"test/ subfolders).")
    man_path.unlink()


def write_dataset(out_dir: str | os.PathLike,
                   produce: Callable[[str, Path], list[dict]],
                   manifest: dict, finish: Callable[[dict], None] | None = None) -> dict:
    """Run ``produce(split, tmp_folder) -> entries`` per split, swap folders, write manifest."""
    out = Path(out_dir)
    invalidate_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / MANIFEST
    clean_leftovers(out)
    tmp: dict[str, Path] = {}
    try:
        entries: dict[str, list[dict]] = {}
        for split in SPLITS:
            tmp[split] = make_temp_dir(out, f".{split}.partial-")
            entries[split] = produce(split, tmp[split])
            if not entries[split]:
                raise DataError(f"split '{split}' would be empty; nothing was written.")
        for split in SPLITS:
            final = out / split
            if final.exists() or final.is_symlink():
                old = make_temp_dir(out, f".{split}.old-")
                os.replace(final, old / split)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp[split], final)
        manifest["splits"] = {
            split: {"count": len(entries[split]), "files": entries[split]} for split in SPLITS}
        manifest["created_unix"] = int(time.time())
        if finish is not None:
            finish(manifest)
        atomic_write_json(man_path, manifest)
    finally:
        for p in tmp.values():
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
    return manifest

