"""Restore a folder with a trained method: same file names, PNG, atomic writes, manifest last."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from .errors import CheckpointError, DataError
from .io import atomic_write_json, list_images, read_image, sha256_file, to_tensor, to_uint8, write_png
from .methods import check_task, kind_of, method_cfg
from .provenance import code_version
from .training.data import make_input_fn


def resolve_checkpoint(cfg: Mapping, method: str, task: str, checkpoint: Path | None) -> Path | None:
    """A method's final ``model.pt`` given itself, its stage folder or the method's run folder
    ``RUNS/<method>/<task>``; any other path is passed to the kind as is (e.g. an official
    release folder)."""
    final = kind_of(cfg, method).final_stage(method_cfg(cfg, method), task)
    if final is None:  # a method that trains nothing has no checkpoint
        return None
    if checkpoint is None:
        raise CheckpointError(f"method '{method}' needs --checkpoint (its trained model.pt or "
                              f"run folder)")
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        final = final.name
        for candidate in (checkpoint / final / "model.pt", checkpoint / "model.pt"):
            if candidate.is_file():
                return candidate
    return checkpoint


def check_label(cfg: Mapping, method: str, task: str, checkpoint: Path) -> None:
    """A ugpnet-bench ``model.pt`` records the method, task and profile it was trained for;
    restoring it as anything else is an error naming both."""
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


@torch.no_grad()
def restore_folder(cfg: Mapping, method: str, task: str, checkpoint: Path, inp: Path, out: Path,
                   device, intermediate: bool = False, progress: bool = True,
                   extra: Mapping[str, Path] | None = None) -> int:
    """Restore every image of ``inp`` into ``out`` (same stems, PNG). With ``intermediate`` a
    method with several outputs (UGPNet: x_reg, x_syn) writes them to ``out/<output>/`` too."""
    check_task(cfg, method, task)
    kind = kind_of(cfg, method)
    checkpoint = resolve_checkpoint(cfg, method, task, checkpoint)
    check_label(cfg, method, task, checkpoint)
    model = kind.load(cfg, method, task, checkpoint, device,
                      **({"extra": dict(extra)} if extra else {}))
    to_input = make_input_fn(kind.input_mode(method_cfg(cfg, method), task),
                             cfg["degradations"]["sr"]["scale"])
    files = list_images(inp, "degraded input folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    primary = kind.outputs[0]
    outputs = {}
    for path in tqdm(files, desc=f"restore {method}/{task}", disable=not progress,
                     dynamic_ncols=True):
        x = to_tensor(to_input(read_image(path))).to(device)
        try:
            named = kind.predict(model, x)
        except (RuntimeError, ValueError) as e:
            raise DataError(f"'{path}' ({tuple(x.shape[-2:])} px) does not fit method '{method}' "
                            f"for task '{task}': {e}. Use images of the training resolution "
                            f"({cfg['data']['resolution']} px output).") from None
        named = {k: v for k, v in named.items() if k == primary or intermediate}
        for name, img in named.items():  # check every output before writing any of them
            bad = int((~torch.isfinite(img)).sum())
            if bad:
                raise CheckpointError(
                    f"method '{method}' produced {bad} non-finite value(s) (NaN/inf) in output "
                    f"'{name}' for image '{path}'; nothing was written for it (a NaN would become "
                    f"a black PNG). The checkpoint '{checkpoint}' has probably diverged: check its "
                    f"training log, retrain or pick an earlier checkpoint. Images restored before "
                    f"this one are kept; the folder has no manifest.json until a run completes.")
        for name, img in named.items():
            target = out / f"{path.stem}.png" if name == primary else out / name / f"{path.stem}.png"
            write_png(target, to_uint8(img))
        outputs[f"{path.stem}.png"] = sha256_file(out / f"{path.stem}.png")
    written = [o for o in kind.outputs if o == primary or intermediate]
    in_manifest = inp / "manifest.json"
    atomic_write_json(out / "manifest.json", {
        "method": method, "task": task, "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and checkpoint.is_file() else None,
        "input": str(inp), "input_manifest": str(in_manifest) if in_manifest.is_file() else None,
        "input_manifest_sha256": sha256_file(in_manifest) if in_manifest.is_file() else None,
        "code": code_version(), "outputs": written, "count": len(outputs), "sha256": outputs})
    return len(outputs)
