"""Degrade one image (training, on the fly) or a whole folder (fixed val/test inputs).

Determinism: image ``stem`` of a folder degraded with ``seed`` for ``task`` uses its own stream
``numpy.random.default_rng(SeedSequence([seed, TASK_IDS[task], stable_hash(stem)]))``, where
``stable_hash`` is the first 128 bits of sha256(stem) (never Python's salted ``hash``). Outputs
therefore do not depend on processing order or the number of worker processes, and the same seed
gives bit-identical PNG files and manifest.

Folder protocol: outputs keep the input names as PNG (``stem + '.png'``), each written atomically;
``manifest.json`` (written last, atomically) is the "done" marker and records the sha256 of every
output and all parameters. New outputs are written into a hidden staging folder
(``.ugpnet-degrade-staging-*``) inside the output folder; a finished earlier run there (its
manifest and images) stays valid until every new image is done. Then a hidden
``.ugpnet-degrade-partial`` marker is written, the old manifest removed, the new images renamed
into place, stale images of earlier runs deleted and the new manifest written. A failed run removes
its staging folder; the leftovers of a killed one (staging folder, hidden temp files) are removed by
the next run. Only a folder that carries our marker or manifest is cleaned; any other folder with
foreign images is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError
from .motion import check_kernels, load_kernel_bank_with_manifest
from .noise import add_noise
from .resize import bicubic_downsample, resize_library_info

TASKS = ("denoise", "deblur", "sr")
TASK_IDS = {"denoise": 1, "deblur": 2, "sr": 3}
MANIFEST = "manifest.json"
PARTIAL_MARKER = ".ugpnet-degrade-partial"
TOOL = "ugpnet degrade"


def stable_hash(stem: str) -> int:
    """Process-independent 128-bit integer of a file stem (sha256 of its UTF-8 bytes)."""
    return int.from_bytes(hashlib.sha256(stem.encode("utf-8")).digest()[:16], "little")


def image_rng(seed: int, task: str, stem: str) -> np.random.Generator:
    """The per-image random stream of the folder protocol (see module docstring)."""
    _check_task(task)
    return np.random.default_rng(np.random.SeedSequence([int(seed), TASK_IDS[task],
                                                         stable_hash(stem)]))


def output_name(path: str | os.PathLike) -> str:
    """Output file name of an input image: its stem + '.png'."""
    return Path(path).stem + ".png"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown degradation task '{task}'; choose one of {', '.join(TASKS)}")


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 \
            or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got "
                         f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")


def _degrade(task: str, img_u8: np.ndarray, rng: np.random.Generator, *, sigma=None, k=None,
             kernels=None, scale=None, name: str = "image") -> tuple[np.ndarray, dict]:
    _check_task(task)
    _check_image(img_u8)
    if task == "denoise":
        if sigma is None or k is None:
            raise ValueError("denoise needs sigma and k")
        return add_noise(img_u8, rng, sigma=float(sigma), k=float(k)), {}
    if task == "deblur":
        from .motion import blur

        if kernels is None:
            raise ValueError("deblur needs kernels (a kernel bank [N, K, K] or one kernel [K, K])")
        kernels = np.asarray(kernels)
        if kernels.ndim == 2:
            return blur(img_u8, kernels), {}
        index = int(rng.integers(len(kernels)))
        return blur(img_u8, kernels[index]), {"kernel_index": index}
    if scale is None:
        raise ValueError("sr needs scale")
    return bicubic_downsample(img_u8, int(scale), name=name), {}


def degrade_image(task: str, img_u8: np.ndarray, rng: np.random.Generator, *, sigma=None, k=None,
                  kernels=None, scale=None) -> np.ndarray:
    """Degrade one uint8 RGB image with the random stream ``rng``; returns uint8.

    denoise: Poisson-Gaussian noise (``sigma``, ``k``); deblur: a kernel drawn from ``kernels``
    (``[N, K, K]``: index ``rng.integers(N)``; a single ``[K, K]`` kernel is used as is);
    sr: ``scale``x MATLAB-bicubic downsampling (output ``scale`` times smaller).
    """
    return _degrade(task, img_u8, rng, sigma=sigma, k=k, kernels=kernels, scale=scale)[0]


# ----------------------------------------------------------------------------------------------
# folder level

_WORKER_KERNELS: np.ndarray | None = None


def _init_worker(kernels) -> None:
    global _WORKER_KERNELS
    _WORKER_KERNELS = kernels


def _process_one(job: tuple) -> dict:
    from ..io import read_image, sha256_file, write_png

    task, seed, src, dst, params = job
    src, dst = Path(src), Path(dst)
    img = read_image(src)
    rng = image_rng(seed, task, src.stem)
    out, info = _degrade(task, img, rng, sigma=params.get("sigma"), k=params.get("k"),
                         kernels=_WORKER_KERNELS, scale=params.get("scale"), name=f"'{src}'")
    write_png(dst, out)
    rec = {"name": dst.name, "source": src.name, "source_sha256": sha256_file(src),
           "sha256": sha256_file(dst)}
    rec.update(info)
    return rec


def _is_ours(manifest_path: Path) -> bool:
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8")).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False


STAGING_PREFIX = ".ugpnet-degrade-staging-"


def _prepare_out_dir(in_dir: Path, out_dir: Path, planned: set[str]) -> tuple[Path, list[Path]]:
    """Check ``out_dir`` (refuse foreign content), remove leftovers of killed runs, and make the
    hidden staging folder the new outputs are written into → ``(staging, stale images)``
    (:func:`ugpnet.io.prepare_staging`).

    Nothing of a finished earlier run is touched here: its manifest and images stay valid until
    :func:`_commit` swaps the complete new set in."""
    from ..io import prepare_staging

    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output '{out_dir}' exists and is not a folder.")
    if out_dir.resolve() == in_dir.resolve():
        raise DataError(f"output folder '{out_dir}' is the input folder; choose another --out.")
    return prepare_staging(out_dir, planned, tool=TOOL, marker=PARTIAL_MARKER,
                           prefix=STAGING_PREFIX, owns=lambda m: m.get("tool") == TOOL)


def _commit(out_dir: Path, staging: Path, stale: list[Path], manifest: dict) -> None:
    """Swap the complete new outputs in: mark unfinished, drop the old manifest, rename every new
    image into place (fast renames in one folder), remove stale images, write the manifest last
    (:func:`ugpnet.io.commit_staging`)."""
    from ..io import commit_staging

    commit_staging(out_dir, staging, [rec["name"] for rec in manifest["files"]], stale, manifest,
                   marker=PARTIAL_MARKER,
                   marker_text="ugpnet degrade in progress; manifest.json is written when done\n")


def _resolve_kernels(kernel_bank) -> tuple[np.ndarray, dict]:
    if kernel_bank is None:
        raise DataError("deblur needs a kernel bank: make one with 'ugpnet kernels --out "
                        "FILE.npy ...' and pass it (--kernels FILE.npy).")
    if isinstance(kernel_bank, (str, os.PathLike)):
        bank, manifest = load_kernel_bank_with_manifest(kernel_bank)
        return bank, {"path": str(kernel_bank), "sha256": manifest["sha256"],
                      "n": int(bank.shape[0]), "size": int(bank.shape[1]),
                      "seed": manifest.get("seed")}
    bank = np.ascontiguousarray(np.asarray(kernel_bank, dtype=np.float32))
    check_kernels(bank, "kernel bank array")
    return bank, {"path": None, "sha256": hashlib.sha256(bank.tobytes()).hexdigest(),
                  "n": int(bank.shape[0]), "size": int(bank.shape[1]), "seed": None}


def degrade_folder(task: str, seed: int, in_dir, out_dir, *, sigma: float | None = None,
                   k: float | None = None, kernel_bank=None, scale: int | None = None,
                   workers: int = 1, progress: bool = True) -> dict:
    """Degrade every image of ``in_dir`` into ``out_dir`` (PNG, same stems); return the manifest.

    ``kernel_bank`` (deblur): a ``.npy`` path written by ``ugpnet kernels`` (checked against its
    manifest) or an array ``[N, K, K]``. ``workers > 1`` uses a process pool; the result is
    identical to ``workers=1``.
    """
    from ..io import index_by_stem, list_images

    _check_task(task)
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    seed = int(seed)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    params: dict = {}
    kernels = None
    if task == "denoise":
        if sigma is None or k is None:
            raise ValueError("denoise needs sigma and k")
        from .noise import _check

        _check(float(sigma), float(k))
        params = {"sigma": float(sigma), "k": float(k)}
    elif task == "deblur":
        kernels, bank_info = _resolve_kernels(kernel_bank)
        params = {"kernel_bank": bank_info, "convolution": "fft, reflect padding, same size"}
    else:
        if scale is None:
            raise ValueError("sr needs scale")
        if int(scale) != scale or int(scale) < 1:
            raise ValueError(f"SR scale must be a positive integer, got {scale}")
        params = {"scale": int(scale), "resize": resize_library_info()}

    by_stem = index_by_stem(list_images(in_dir, "input image folder"), f"input image folder '{in_dir}'",
                            hint="they would both be written as '{stem}.png'; rename one of them.")
    names = {output_name(f): f for f in by_stem.values()}
    from ..io import open_image

    for f in names.values():  # headers only (pixel limit, unreadable files) before any work
        with open_image(f):
            pass
    staging, stale = _prepare_out_dir(in_dir, out_dir, set(names))
    try:
        records = _run_jobs(task, seed, names, staging, params, kernels, workers, progress)
        manifest = {
            "tool": TOOL,
            "task": task,
            "seed": seed,
            "params": params,
            "rng": "per image: numpy.random.default_rng(SeedSequence([seed, task_id, "
                   "int.from_bytes(sha256(stem)[:16], 'little')]))",
            "task_id": TASK_IDS[task],
            "input_dir": str(in_dir),
            "count": len(records),
            "numpy_version": np.__version__,
            "files": records,
        }
        _commit(out_dir, staging, stale, manifest)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _run_jobs(task, seed, names, staging, params, kernels, workers, progress) -> list[dict]:
    job_params = {key: params[key] for key in ("sigma", "k", "scale") if key in params}
    jobs = [(task, seed, str(src), str(staging / name), job_params) for name, src in names.items()]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=f"degrade {task}", dynamic_ncols=True,
               disable=not progress or not sys.stderr.isatty())
    records: list[dict] = []
    if workers == 1 or len(jobs) == 1:
        _init_worker(kernels)
        try:
            for job in jobs:
                records.append(_process_one(job))
                bar.update(1)
        finally:
            _init_worker(None)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork on Linux: cheap, and workers only run numpy/scipy (no torch threads to inherit);
        # elsewhere spawn (results are the same: each image has its own random stream)
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        chunk = max(1, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                 mp_context=mp.get_context(method), initializer=_init_worker,
                                 initargs=(kernels,)) as ex:
            for rec in ex.map(_process_one, jobs, chunksize=chunk):
                records.append(rec)
                bar.update(1)
    bar.close()
    return records


def verify_folder(out_dir) -> dict:
    """Re-check a degraded folder against its manifest (sha256 of every file); return it."""
    from ..io import sha256_file

    out_dir = Path(out_dir)
    mpath = out_dir / MANIFEST
    if not mpath.is_file() or not _is_ours(mpath):
        raise DataError(f"'{out_dir}' has no {MANIFEST} from {TOOL}: the degradation did not "
                        f"finish. Re-run ugpnet degrade.")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    for rec in manifest["files"]:
        p = out_dir / rec["name"]
        if not p.is_file() or sha256_file(p) != rec["sha256"]:
            raise DataError(f"'{p}' is missing or differs from {mpath}; re-run ugpnet degrade.")
    return manifest

