"""Restore a folder with a trained method: same file names, PNG, atomic writes, manifest last."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from .errors import DataError
from .io import atomic_write_json, list_images, read_image, sha256_file, to_tensor, to_uint8, write_png
from .methods import load_for_inference, method_cfg
from .training.data import input_mode, make_input_fn


@torch.no_grad()
def restore_folder(cfg: Mapping, method: str, task: str, checkpoint: Path, inp: Path, out: Path,
                   device, intermediate: bool = False, progress: bool = True) -> int:
    model = load_for_inference(cfg, method, task, checkpoint, device)
    to_input = make_input_fn(input_mode(method_cfg(cfg, method), task),
                             cfg["degradations"]["sr"]["scale"])
    files = list_images(inp, "degraded input folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    outputs = {}
    for path in tqdm(files, desc=f"restore {method}/{task}", disable=not progress,
                     dynamic_ncols=True):
        x = to_tensor(to_input(read_image(path))).to(device)
        try:
            if intermediate and hasattr(model, "forward_all"):
                named = model.forward_all(x)
            else:
                named = {"x_hat": model(x)}
        except (RuntimeError, ValueError) as e:
            raise DataError(f"'{path}' ({tuple(x.shape[-2:])} px) does not fit method '{method}' "
                            f"for task '{task}': {e}. Use images of the training resolution "
                            f"({cfg['data']['resolution']} px output).") from None
        for name, img in named.items():
            target = out / f"{path.stem}.png" if name == "x_hat" else out / name / f"{path.stem}.png"
            write_png(target, to_uint8(img))
        outputs[f"{path.stem}.png"] = sha256_file(out / f"{path.stem}.png")
    atomic_write_json(out / "manifest.json", {"method": method, "task": task,
                                              "checkpoint": str(checkpoint), "input": str(inp),
                                              "count": len(outputs), "sha256": outputs})
    return len(outputs)
