"""Restore a folder with a trained method: same file names, PNG, atomic writes, manifest last.

Folder protocol (as ``ugpnet degrade``, :func:`ugpnet.io.prepare_staging`): every output of a
run (the result in ``OUT/``, further outputs in ``OUT/<output>/``) is written into a hidden
staging folder ``OUT/.ugpnet-restore-staging-*`` and swapped in whole once every image is done;
the manifest comes last and records the sha256 of every file of every output (``sha256``: the
result, ``intermediate_sha256``: ``{output: {name: sha256}}``). A failed or killed run leaves an
earlier finished folder as it was (under Snakemake, which deletes ``manifest.json`` first: a
folder without manifest); the next run removes its leftovers. ``OUT/.ugpnet-restore`` marks the
folder as ours, so a rerun may replace its images; images of any other origin are refused.

:func:`check_restored` tells whether a folder is what its restore manifest says
(``ugpnet evaluate`` scores nothing else).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from .errors import CheckpointError, ConfigError, DataError
from .io import (MANIFEST, check_separate, commit_staging, index_by_stem, list_images, listing,
                 open_image, prepare_staging, read_image, read_json_or_none, sha256_file,
                 to_tensor, to_uint8, visible_images, write_png)
from .methods import check_task, kind_of, method_cfg
from .provenance import code_version
from .training.data import make_input_fn

TOOL = "ugpnet restore"
MARKER = ".ugpnet-restore"  # kept: the folder is ours (its manifest may be deleted by Snakemake)
STAGING_PREFIX = ".ugpnet-restore-staging-"


def resolve_checkpoint(cfg: Mapping, method: str, task: str, checkpoint: Path | None) -> Path | None:
    """A method's final ``model.pt`` given itself, its stage folder or the method's run folder
    ``RUNS/<method>/<task>``; any other existing path is passed to the kind as is (e.g. an
    official release folder). A method that trains nothing takes no checkpoint."""
    final = kind_of(cfg, method).final_stage(method_cfg(cfg, method), task)
    if final is None:
        if checkpoint is not None:
            raise ConfigError(f"method '{method}' trains nothing and takes no --checkpoint (given: "
                              f"'{checkpoint}'); leave --checkpoint out.")
        return None
    if checkpoint is None:
        raise CheckpointError(f"method '{method}' needs --checkpoint (its trained model.pt or "
                              f"run folder)")
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise CheckpointError(f"--checkpoint '{checkpoint}' does not exist; give the trained "
                              f"model.pt of {method}/{task}, its run folder RUNS/{method}/{task} "
                              f"or a folder of official weights (train it first: the Snakemake "
                              f"workflow, or ugpnet train --method {method} --task {task}).")
    if checkpoint.is_dir():
        final = final.name
        for candidate in (checkpoint / final / "model.pt", checkpoint / "model.pt"):
            if candidate.is_file():
                return candidate
    return checkpoint


def check_label(cfg: Mapping, method: str, task: str, checkpoint: Path) -> None:
    """A ugpnet-bench ``model.pt`` records the method, task, profile and stage it was trained
    for; restoring it as anything else, or restoring an earlier stage's model, is an error
    naming both."""
    if checkpoint is None or not (checkpoint.is_file() and checkpoint.suffix == ".pt"):
        return
    try:  # mmap: reads the small label, not the weights
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the kind's loader
        return
    label = obj.get("label") if isinstance(obj, dict) else None
    if not isinstance(label, dict):
        return
    want = {"method": method, "task": task, "profile": cfg["profile"]}
    wrong = [f"{k} '{label[k]}' (asked: '{v}')" for k, v in want.items()
             if k in label and label[k] != v]
    if wrong:
        raise CheckpointError(f"'{checkpoint}' was trained for {label.get('method')}/"
                              f"{label.get('task')} in profile '{label.get('profile')}', not for "
                              f"{method}/{task} in profile '{cfg['profile']}': "
                              f"{'; '.join(wrong)}. Pass the checkpoint of the method, task and "
                              f"profile you restore with.")
    _check_stage(cfg, method, task, checkpoint, label.get("stage"))


def _check_stage(cfg: Mapping, method: str, task: str, checkpoint: Path, stage) -> None:
    final = kind_of(cfg, method).final_stage(method_cfg(cfg, method), task)
    if final is None or stage is None or stage == final.name:
        return
    run = checkpoint.parent.parent if checkpoint.parent.name == stage else None
    where = (f"{run / final.name / 'model.pt'}) or the run folder {run}" if run else
             f"RUNS/{method}/{task}/{final.name}/model.pt) or the run folder "
             f"RUNS/{method}/{task}")
    raise CheckpointError(f"'{checkpoint}' is the '{stage}' stage's model, not the final model of "
                          f"{method}/{task}; restore with the final stage's model ({where}.")


def _inputs(inp: Path) -> list[Path]:
    """The input images, one per output name, every header read before any work."""
    files = list_images(inp, "degraded input folder")
    index_by_stem(files, f"degraded input folder '{inp}'",
                  hint="both would be restored as '{stem}.png'; rename one of them.")
    for f in files:
        with open_image(f):
            pass
    return files


def _target(stem: str, output: str, primary: str) -> str:
    """Where an output of image ``stem`` goes, relative to the output folder."""
    return f"{stem}.png" if output == primary else f"{output}/{stem}.png"


@torch.no_grad()
def restore_folder(cfg: Mapping, method: str, task: str, checkpoint: Path, inp: Path, out: Path,
                   device, intermediate: bool = False, progress: bool = True,
                   extra: Mapping[str, Path] | None = None,
                   gt_root: Path | None = None) -> int:
    """Restore every image of ``inp`` into ``out`` (same stems, PNG). With ``intermediate`` a
    method with several outputs (UGPNet: x_reg, x_syn) writes them to ``out/<output>/`` too.
    ``out`` must lie apart from ``inp`` and from ``gt_root`` (the configuration's ground truth,
    ``Plan.gt_root()``; the caller passes it, plan being above this module)."""
    check_task(cfg, method, task)
    inp, out = Path(inp), Path(out)
    apart = {"input folder": inp}
    if gt_root is not None:
        apart["ground-truth folder of the configuration"] = Path(gt_root)
    check_separate(out, apart)
    kind = kind_of(cfg, method)
    checkpoint = resolve_checkpoint(cfg, method, task, checkpoint)
    check_label(cfg, method, task, checkpoint)
    model = kind.load(cfg, method, task, checkpoint, device,
                      **({"extra": dict(extra)} if extra else {}))
    to_input = make_input_fn(kind.input_mode(method_cfg(cfg, method), task),
                             cfg["degradations"]["sr"]["scale"])
    files = _inputs(inp)
    primary = kind.outputs[0]
    written = [o for o in kind.outputs if o == primary or intermediate]
    planned = {_target(f.stem, o, primary) for f in files for o in written}
    further = list(kind.outputs[1:])
    staging, stale = prepare_staging(out, planned, tool=TOOL, marker=MARKER,
                                     prefix=STAGING_PREFIX, owns=is_restore_manifest,
                                     subdirs=further)
    try:
        digests = {o: {} for o in written}
        for path in tqdm(files, desc=f"restore {method}/{task}", disable=not progress,
                         dynamic_ncols=True):
            named = _predict(kind, model, method, task, cfg, checkpoint, path,
                             to_tensor(to_input(read_image(path))).to(device), written)
            for name, img in named.items():
                target = staging / _target(path.stem, name, primary)
                write_png(target, to_uint8(img))
                digests[name][f"{path.stem}.png"] = sha256_file(target)
        manifest = _manifest(method, task, checkpoint, inp, written, digests)
        commit_staging(out, staging, sorted(planned), stale, manifest, marker=MARKER,
                       marker_text=f"written by {TOOL}; {MANIFEST} is written last when a run "
                                   f"completes\n", keep_marker=True, subdirs=further)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(files)


def _predict(kind, model, method, task, cfg, checkpoint, path: Path, x, written) -> dict:
    """The outputs in ``written`` of one image, each checked finite before any is written."""
    try:
        named = kind.predict(model, x)
    except (RuntimeError, ValueError) as e:
        raise DataError(f"'{path}' ({tuple(x.shape[-2:])} px) does not fit method '{method}' "
                        f"for task '{task}': {e}. Use images of the training resolution "
                        f"({cfg['data']['resolution']} px output).") from None
    named = {k: v for k, v in named.items() if k in written}
    for name, img in named.items():
        bad = int((~torch.isfinite(img)).sum())
        if bad:
            raise CheckpointError(
                f"method '{method}' produced {bad} non-finite value(s) (NaN/inf) in output "
                f"'{name}' for image '{path}'; nothing was written for it (a NaN would become "
                f"a black PNG). The checkpoint '{checkpoint}' has probably diverged: check its "
                f"training log, retrain or pick an earlier checkpoint. The output folder was not "
                f"changed (an earlier finished restore there is kept).")
    return named


def _manifest(method, task, checkpoint, inp: Path, written, digests) -> dict:
    in_manifest = inp / MANIFEST
    return {
        "tool": TOOL, "method": method, "task": task,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": (sha256_file(checkpoint) if checkpoint and checkpoint.is_file()
                              else None),
        "input": str(inp), "input_manifest": str(in_manifest) if in_manifest.is_file() else None,
        "input_manifest_sha256": sha256_file(in_manifest) if in_manifest.is_file() else None,
        "code": code_version(), "outputs": written, "count": len(digests[written[0]]),
        "sha256": digests[written[0]],
        "intermediate_sha256": {o: digests[o] for o in written[1:]}}


# ------------------------------------------------------------------ is a folder what it says?
def is_restore_manifest(manifest) -> bool:
    """A manifest written by ``ugpnet restore`` (also before it carried ``tool``)."""
    return isinstance(manifest, dict) and (
        manifest.get("tool") == TOOL or {"method", "task", "checkpoint", "sha256"} <= set(manifest))


def find_restore_manifest(folder: str | Path) -> tuple[Path, dict, str] | None:
    """``(manifest path, manifest, output)`` of the restore that wrote ``folder``: its own
    manifest (the result), or its parent's when that lists the folder's name as a further
    output; None when no restore manifest vouches for it."""
    folder = Path(folder)
    own = read_json_or_none(folder / MANIFEST)
    if is_restore_manifest(own):
        return folder / MANIFEST, own, (own.get("outputs") or [None])[0]
    parent = read_json_or_none(folder.parent / MANIFEST)
    if is_restore_manifest(parent) and folder.name in (parent.get("outputs") or [])[1:]:
        return folder.parent / MANIFEST, parent, folder.name
    return None


def mismatch(folder: str | Path, manifest_path: Path, manifest: dict, output) -> str | None:
    """How the images in ``folder`` differ from what ``manifest`` records for ``output`` (names
    and sha256), or None when they are exactly those files."""
    folder = Path(folder)
    outputs = manifest.get("outputs") or [output]
    recorded = manifest.get("sha256") if output == outputs[0] else \
        (manifest.get("intermediate_sha256") or {}).get(output)
    if not isinstance(recorded, dict):
        return (f"{manifest_path} records no sha256 of the files of output '{output}' (a restore "
                f"by an older version)")
    present = set(visible_images(folder))
    parts = []
    extra = sorted(present - set(recorded))
    if extra:
        parts.append(f"{len(extra)} file(s) not in the manifest: {listing(extra)}")
    missing = sorted(set(recorded) - present)
    if missing:
        parts.append(f"{len(missing)} file(s) of the manifest missing: {listing(missing)}")
    changed = sorted(n for n in present & set(recorded)
                     if sha256_file(folder / n) != recorded[n])
    if changed:
        parts.append(f"{len(changed)} file(s) differ from their recorded sha256: "
                     f"{listing(changed)}")
    return "; ".join(parts) or None


def _unfinished(folder: Path) -> bool:
    """A folder of ours (or an output sub-folder of one) whose last run left no manifest."""
    return any((d / MARKER).exists() and not (d / MANIFEST).exists()
               for d in (folder, folder.parent))


def check_restored(folder: str | Path) -> str | None:
    """For ``ugpnet evaluate --pred``: DataError when ``folder`` is an unfinished restore or does
    not hold exactly the files its restore manifest records; a note (to print and record) when
    no restore manifest vouches for it (a user's own folder); None when it matches."""
    folder = Path(folder)
    found = find_restore_manifest(folder)
    if _unfinished(folder):
        raise DataError(f"'{folder}' is an unfinished ugpnet restore (no {MANIFEST}: its last run "
                        f"failed or was interrupted, so its images may come from different runs). "
                        f"{_rerun(folder if (folder / MARKER).exists() else folder.parent)}")
    if found is None:
        return (f"'{folder}' has no restore manifest ({MANIFEST} of {TOOL}): nothing shows which "
                f"checkpoint made these images or that they all come from one run; scored as "
                f"given.")
    wrong = mismatch(folder, *found)
    if wrong:
        raise DataError(f"'{folder}' does not hold the files its restore manifest '{found[0]}' "
                        f"records (a mixed or changed folder): {wrong}. {_rerun(found[0].parent)}")
    return None


def _rerun(out: Path) -> str:
    return f"Rerun ugpnet restore with --out '{out}' (or into a new folder) and evaluate that."
