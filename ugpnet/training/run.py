"""A run folder: identity, resume, logs, checkpoint selection on the validation split.

A run folder (``runs/<profile>/<experiment>/<method>/<task>/<stage>/``) holds:

- ``options.json``  its identity (hash + what it hashes), descriptive options, code version
- ``last.pt``       the full state for resuming (model(s), optimiser(s), scheduler, iteration,
                    data position, RNG states), written atomically
- ``best.pt``       the weights selected on the VALIDATION split so far (never the test split)
- ``log.jsonl``     one line per ``log_every`` iterations (losses, lr, seconds per iteration)
- ``val.jsonl``     one line per validation (metrics on the val split)
- ``model.pt``      the selected weights + summary, written LAST: its presence means done
- ``.lock``         held while a trainer works here (:mod:`.lock`)
- ``loss_curves.png``, ``val_grids/iter_<N>.png``, ``tensorboard/``  what it shows while it
                    trains (:mod:`.visuals`): side files, moved aside with the state, dropped by
                    a fresh start, the grids after the checkpoint dropped by a resume
- ``superseded-<hash>/``  the state of an earlier run of this stage with another identity

**Identity.** What defines the result: the stage's configuration slice without operational keys
(workers, logging, checkpoint interval, threads, device, decoded-image cache) and the *content* digest of every file
it reads (:func:`ugpnet.provenance.input_digest`). Same identity and a ``last.pt``: resume.
Another identity (or ``--restart``): the old state is moved to ``superseded-<old hash>/`` with a
message, never deleted.

**A finished stage is never resumed.** Its ``summary.json`` is written last of all; a trainer
that finds one (``model.pt`` removed by ``snakemake -R``/``--forcerun`` or by hand, or unreadable)
was asked to train the stage again, e.g. after a code fix: it moves the old state aside and
trains from scratch, instead of re-exporting the old weights under the new code version. A run
killed before its summary (also between the last ``last.pt`` and ``model.pt``) resumes.

**Who trained it.** Every attempt is a *segment* (its code version, the iterations it trained),
kept in ``last.pt`` (``trained_by``) across resumes. ``model.pt``'s summary lists the segments
that trained the exported (selected) weights and names the last of them as ``code``, so an
export never carries a code version that did not train it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoints import read_checkpoint, save_checkpoint
from ..errors import CheckpointError
from ..io import atomic_path, atomic_write_json
from ..provenance import code_version, describe_code, digest_of
from .lock import RunLock
from .visuals import LOSS_CURVES, VISUAL_FILES, drop_grids_after, logging_settings, remove_visuals

# options that change how a run goes, not what it produces: never part of an identity
# (checkpoint_sha256 only verifies a file whose content digest is already part of the identity)
OPERATIONAL_KEYS = frozenset({"num_workers", "log_every", "ckpt_every", "threads", "device",
                              "progress", "checkpoint_sha256", "decoded_cache"})
STATE_FILES = ("last.pt", "best.pt", "log.jsonl", "val.jsonl", "model.pt", "summary.json")
FINISHED_MARK = "summary.json"  # written last by a finished run (after model.pt)
DEFAULT_VALIDATION = {"lpips_net": "alex", "psnr_cap_db": 100.0, "lpips": "always"}


class JsonlLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def write(self, record: Mapping) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill
                continue
        return out

    def truncate_after(self, it: int) -> None:
        """Drop records beyond iteration ``it`` (after a resume from an older checkpoint)."""
        keep = [r for r in self.read() if r.get("iter", 0) <= it]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))


def strip_operational(obj: Any) -> Any:
    """``obj`` without :data:`OPERATIONAL_KEYS` at any depth."""
    if isinstance(obj, Mapping):
        return {k: strip_operational(v) for k, v in obj.items() if k not in OPERATIONAL_KEYS}
    if isinstance(obj, (list, tuple)):
        return [strip_operational(v) for v in obj]
    return obj


def operational_of(obj: Any, prefix: str = "") -> dict:
    """The :data:`OPERATIONAL_KEYS` values in ``obj`` by dotted path (recorded, not hashed)."""
    out: dict = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in OPERATIONAL_KEYS:
                out[prefix + k] = v
            else:
                out.update(operational_of(v, f"{prefix}{k}."))
    return out


def identity_changes(old: Any, new: Any, prefix: str = "", limit: int = 6) -> list[str]:
    """Human-readable differences between two identities (``a.b: old -> new``)."""
    out: list[str] = []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in sorted(set(old) | set(new)):
            if k not in old:
                out.append(f"{prefix}{k}: added")
            elif k not in new:
                out.append(f"{prefix}{k}: removed")
            elif old[k] != new[k]:
                out += identity_changes(old[k], new[k], f"{prefix}{k}.", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    if prefix.startswith("inputs."):
        return [f"{prefix[:-1]}: content changed"]
    return [f"{prefix[:-1]}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]


def finished_model(model: str | os.PathLike, identity_hash: str) -> dict | None:
    """The summary of ``model`` when it exists, is readable and was made with this identity (a
    finished stage to keep); else None (the stage trains)."""
    model = Path(model)
    if not model.is_file():
        return None
    try:
        obj = torch.load(model, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is not a finished stage
        return None
    if not isinstance(obj, dict) or obj.get("identity_hash") != identity_hash:
        return None
    return dict(obj.get("summary") or {})


def segment(code: Mapping | None, first: int, last: int, **note) -> dict:
    """One training attempt: its code version and the iterations ``first`` < it <= ``last``."""
    return {"code": code, "from_iter": int(first), "to_iter": int(last), **note}


def segments_upto(segments: list[Mapping], it: int) -> list[dict]:
    """The segments that trained iterations 1..``it`` (the last one cut at ``it``)."""
    return [{**s, "to_iter": min(s["to_iter"], it)} for s in segments
            if s["from_iter"] < min(s["to_iter"], it)]


class Run:
    """The run folder of one stage (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike, options: Mapping, select_metric: str = "psnr",
                 identity: Mapping | None = None, label: Mapping | None = None,
                 restart: bool = False, validation: Mapping | None = None,
                 operational: Mapping | None = None, logging: Mapping | None = None):
        """``select_metric``: psnr/ssim (highest on val), lpips (lowest) or final (last).
        ``identity``: what defines the result (default: ``options``); ``label``: method, task,
        stage, profile... recorded in ``model.pt``; ``restart``: supersede any earlier state;
        ``logging``: ``logging:`` of params.yaml (curves, grids, TensorBoard: never part of the
        identity, :mod:`.visuals`)."""
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.options = dict(options)
        self.identity = dict(identity if identity is not None else options)
        self.hash = digest_of(self.identity)
        self.label = dict(label or {})
        self.restart = restart
        self.validation = {**DEFAULT_VALIDATION, **dict(validation or {})}
        self.operational = dict(operational or {})
        self.logging = logging_settings(logging)
        self.select_metric = select_metric
        self.higher_is_better = select_metric in ("psnr", "ssim")
        self.log = JsonlLog(self.dir / "log.jsonl")
        self.val_log = JsonlLog(self.dir / "val.jsonl")
        self.lock = RunLock(self.dir)
        self.best_value: float | None = None
        self.best_iter: int | None = None
        self.t0 = time.time()
        self.past: list[dict] = []  # segments of earlier attempts (from last.pt)
        self.current = segment(code_version(), 0, 0)  # this attempt

    @property
    def final_path(self) -> Path:
        return self.dir / "model.pt"

    def say(self, message: str) -> None:
        print(f"[{self.dir}] {message}", flush=True)

    # ------------------------------------------------------------------ identity and resume
    def _recorded(self) -> dict:
        try:
            return json.loads((self.dir / "options.json").read_text())
        except (OSError, ValueError):
            return {}

    def supersede(self, reason: str, old_hash: str | None) -> Path | None:
        """Move every state file (and the visuals drawn from it) aside to
        ``superseded-<old hash>/``; return that folder."""
        present = [n for n in STATE_FILES + ("options.json",) + VISUAL_FILES
                   if (self.dir / n).exists()]
        if not any(n in STATE_FILES for n in present):
            return None
        base = self.dir / f"superseded-{old_hash or 'unknown'}"
        dest, k = base, 1
        while dest.exists():
            k += 1
            dest = Path(f"{base}-{k}")
        dest.mkdir()
        for name in present:
            shutil.move(str(self.dir / name), str(dest / name))
        self.say(f"{reason}; the earlier run's state ({', '.join(present)}) was moved to "
                 f"{dest} and this stage starts afresh.")
        return dest

    def _why_afresh(self, old: Mapping) -> str | None:
        """Why the state in the folder must not be resumed (None: resume it if there is one)."""
        if self.restart:
            return "--restart"
        if old.get("identity_hash") != self.hash:
            changes = identity_changes(old.get("identity", {}), self.identity) if old else []
            return ("the stage's identity changed (" + "; ".join(changes) + ")" if changes else
                    "the folder holds state without a readable options.json")
        if (self.dir / FINISHED_MARK).exists():
            return (f"the stage had finished ({FINISHED_MARK}) and is trained again (its model.pt "
                    f"was removed, e.g. by snakemake -R/--forcerun after a code change, or is "
                    f"unreadable): a finished stage is retrained from scratch, never resumed and "
                    f"re-exported under another code version")
        return None

    def start(self) -> dict | None:
        """Take the lock, settle identity, write ``options.json``; return the resume state from
        ``last.pt`` when it belongs to this identity and the run had not finished, else None."""
        self.lock.acquire()
        for tmp in self.dir.iterdir():  # temp files of writes a kill cut short (we hold the lock)
            if tmp.is_file() and any(tmp.name.startswith(f".{n}.")
                                     for n in STATE_FILES + ("options.json", LOSS_CURVES)):
                tmp.unlink()
        old = self._recorded()
        why = self._why_afresh(old)
        if why:
            self.supersede(why, old.get("identity_hash"))
        resume = None
        last = self.dir / "last.pt"
        if last.exists():
            resume = read_checkpoint(last, "resume state (last.pt)")
            if resume.get("identity_hash") != self.hash:
                raise CheckpointError(f"{last} belongs to another identity than its options.json; "
                                      f"rerun with --restart to start this stage afresh.")
            self.best_value = resume.get("best_value")
            self.best_iter = resume.get("best_iter")
            self.log.truncate_after(resume["iter"])
            self.val_log.truncate_after(resume["iter"])
            drop_grids_after(self.dir, resume["iter"])  # drawn after the checkpoint
            self._resume_segments(resume, old)
            self.say(f"resuming from iteration {resume['iter']} (identity {self.hash})")
        else:
            partial = [n for n in ("best.pt", "log.jsonl", "val.jsonl") if (self.dir / n).exists()]
            for name in partial:
                (self.dir / name).unlink()
            partial += remove_visuals(self.dir)  # drawn from the dropped logs
            if partial:
                self.say(f"no checkpoint yet: starting at iteration 0 ({', '.join(partial)} of "
                         f"the interrupted attempt dropped)")
        atomic_write_json(self.dir / "options.json", {
            "identity_hash": self.hash, "identity": self.identity, "label": self.label,
            "options": self.options, "operational": self.operational, "code": code_version(),
            "torch": torch.__version__})
        return resume

    def close(self) -> None:
        self.lock.release()

    # ------------------------------------------------------------------ who trained it
    def _resume_segments(self, resume: Mapping, old: Mapping) -> None:
        it = int(resume["iter"])
        self.past = [dict(s) for s in resume.get("trained_by") or []] or [
            segment(old.get("code"), 0, it, recorded_by="options.json of the last attempt (the "
                                                     "run predates trained_by)")]
        self.current = segment(self.current["code"], it, it)
        earlier = {describe_code(s["code"]) for s in self.past if s.get("code")}
        if earlier - {describe_code(self.current["code"])}:
            self.say(f"note: iterations 1-{it} were trained by {', '.join(sorted(earlier))}; "
                     f"this attempt runs {describe_code(self.current['code'])}. The model will "
                     f"list every code version that trained it (summary: trained_by).")

    def reached(self, it: int) -> None:
        """This attempt has trained up to iteration ``it``."""
        self.current["to_iter"] = max(self.current["to_iter"], int(it))

    def trained_by(self, upto: int | None = None) -> list[dict]:
        """The segments (code version, iterations) that trained iterations 1..``upto`` (default:
        all of them so far)."""
        segments = self.past + [dict(self.current)]
        return segments_upto(segments, self.current["to_iter"] if upto is None else upto)

    def provenance(self, upto: int) -> dict:
        """``code`` (the last code version that trained the weights of iteration ``upto``; for
        weights exported as initialised, the code that built them) and ``trained_by``."""
        segments = self.trained_by(upto)
        return {"code": segments[-1]["code"] if segments else self.current["code"],
                "trained_by": segments}

    # ------------------------------------------------------------------ selection
    def is_better(self, value: float) -> bool:
        if self.best_value is None or not math.isfinite(self.best_value):
            return True
        return value > self.best_value if self.higher_is_better else value < self.best_value

    def validated(self, it: int, metrics: Mapping[str, float], weights: Mapping) -> bool:
        """Record val metrics; keep ``best.pt`` if the selection metric improved."""
        if self.select_metric == "final":  # the last validated iteration is the selection
            value, better = float(it), True
        else:
            value = float(metrics[self.select_metric])
            better = self.is_better(value)
        self.reached(it)
        if better:
            self.best_value, self.best_iter = value, it
            save_checkpoint(self.dir / "best.pt", {"iter": it, "weights": dict(weights),
                                                    "val": dict(metrics)})
        self.val_log.write({"iter": it, **metrics, "selected": better})
        return better

    def save_last(self, it: int, state: Mapping) -> None:
        self.reached(it)
        save_checkpoint(self.dir / "last.pt", {"iter": it, "identity_hash": self.hash,
                                                "best_value": self.best_value,
                                                "best_iter": self.best_iter,
                                                "trained_by": self.trained_by(it), **state})

    def finish(self, extra: Mapping | None = None) -> dict:
        """Write ``model.pt`` from ``best.pt`` (selected on val) and a summary; return summary."""
        best = read_checkpoint(self.dir / "best.pt", "selected weights (best.pt)")
        if self.best_iter is not None and best["iter"] != self.best_iter:
            raise CheckpointError(f"{self.dir / 'best.pt'} holds iteration {best['iter']} but the "
                                  f"run selected {self.best_iter}; rerun with --restart.")
        summary = {"selected_iter": best["iter"], "select_metric": self.select_metric,
                   "val": best["val"], "identity_hash": self.hash, **self.label,
                   **self.provenance(best["iter"]), "seconds": round(time.time() - self.t0, 1),
                   **(extra or {})}
        save_checkpoint(self.final_path, {"weights": best["weights"], "summary": summary,
                                          "label": self.label, "identity_hash": self.hash,
                                          "options": json.dumps(self.options, default=str)})
        atomic_write_json(self.dir / "summary.json", summary)
        return summary
