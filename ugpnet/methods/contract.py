"""The method contract: what every method kind declares, and what the host does with it.

A *method kind* (``regression``, ``ugpnet``, a baseline such as GFP-GAN, your own) is one class,
registered by name with :func:`~ugpnet.methods.registry.register_kind`. A params.yaml entry
``methods.<name>: {kind: <kind>, tasks: [...], ...}`` makes a *method* of it. The kind declares:

- ``stages(mcfg, task)``: its training stages in order, each a :class:`Stage` that says what it
  reads (:class:`Data`, :class:`Previous`, :class:`Prior` (a named prior of ``priors:``),
  :class:`UserFile`, :class:`MethodModel`) and how its checkpoint is selected on the validation
  split. Every stage writes ``<runs>/<method>/<task>/<stage>/model.pt`` (a stage declared
  ``shared`` is trained once for every task: ``<runs>/<method>/shared/<stage>/``); the last
  stage's file is the method's model.
- ``schema``: the JSON schema of a ``methods.<name>`` entry of this kind (``kind`` and ``tasks``
  are checked by the host; ``$defs`` of ``ugpnet/schemas/params.schema.yaml`` may be referenced).
- ``stage_config(cfg, method, task, stage)``: the configuration slice that defines a stage's
  result (the workflow reruns a stage exactly when this slice or one of its inputs changes).
  ``train_stage`` then sees only the keys this function read (``ctx.cfg``), so the slice cannot
  miss a key the training uses.
- ``train_stage(ctx)``: train one stage from a :class:`StageContext` (inputs already resolved
  to files) and return its summary.
- ``build(cfg, method, task)`` / ``load(cfg, method, task, checkpoint, device)``: the model with
  fresh or trained weights; ``predict(model, x)`` returns ``{output: image}`` for the names in
  ``outputs`` (the first is the method's result; UGPNet also writes ``x_reg`` and ``x_syn``).
- ``family``: ``"regression"`` or ``"generative"`` (how the tables group methods), or
  ``"reference"`` for a row that trains nothing (the degraded input itself).

A kind with no stages (``stages`` returns ``()``) has no checkpoint: ``load`` gets ``None``.

The host (``ugpnet.plan``, the CLI, the one generic training rule of the workflow) never names a
kind or a stage: it asks the kind. Nothing here imports torch models; kinds do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from ..errors import ConfigError

FAMILIES = ("reference", "regression", "generative")
SELECT_METRICS = ("psnr", "ssim", "lpips", "final")


# ----------------------------------------------------------------------------- what a stage reads
@dataclass(frozen=True)
class Data:
    """The prepared data: GT manifest (``gt``), the degraded validation split (``val``) and, for
    deblurring, the training kernel bank (``kernels``)."""


@dataclass(frozen=True)
class Previous:
    """The model of an earlier stage of the same method and task (input name: the stage)."""

    stage: str

    @property
    def name(self) -> str:
        return self.stage


@dataclass(frozen=True)
class Prior:
    """A named generative prior ``priors.<prior>`` of params.yaml: its ``checkpoint`` or, when
    that is null, the prior the DAG pretrains with its ``pretrain`` recipe
    (``<runs>/priors/<id>/model.pt``; priors of the same settings share one file). Input name
    ``name`` (default ``prior``; an official G/D pair adds ``<name>_d``). A kind reads the
    prior's architecture with :func:`ugpnet.methods.prior_architecture` (never its checkpoint
    path: the file is the input)."""

    prior: str
    name: str = "prior"

    def __post_init__(self):
        if not (isinstance(self.prior, str) and self.prior.isidentifier()):
            raise ValueError(f"Prior({self.prior!r}): the prior's name (a key of priors: in "
                             f"params.yaml) must be an identifier")


@dataclass(frozen=True)
class UserFile:
    """A file the user names at ``methods.<method>.<key>.<task>`` (e.g. official weights), or,
    with ``per_task=False``, at ``methods.<method>.<key>`` (one file for every task, e.g. an
    ArcFace network a loss term reads; such a file may be read by a shared stage).

    Optional by default: a null entry means the stage does without it. A path that does not
    exist is refused when the plan is built, with a message naming the key, the path and
    ``hint`` (what the file is and where to get it)."""

    key: str
    name: str = ""
    optional: bool = True
    per_task: bool = True
    hint: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", self.key)


@dataclass(frozen=True)
class MethodModel:
    """The final model of another method named at ``methods.<method>.<key>.<task>`` (e.g. UGPNet's
    restoration backbone starts from the trained NAFNet baseline). Optional by default."""

    key: str
    name: str = ""
    optional: bool = True

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", self.key)


Need = Data | Previous | Prior | UserFile | MethodModel


SHARED = "shared"  # the task folder of a stage trained once for every task of its method


@dataclass(frozen=True)
class Stage:
    """One training stage: its name, what it reads, how its checkpoint is chosen on val.

    ``select``: ``psnr``/``ssim`` (highest), ``lpips`` (lowest) or ``final`` (the last
    iteration, as the official UGPNet synthesis stage).

    ``shared``: the stage does not depend on the task (e.g. VQFR's codebook, learnt from clean
    faces): it is trained once, in ``<runs>/<method>/shared/<stage>/``, and every task's later
    stages read that one model. It gets ``ctx.task = None``; its ``Data()`` is the clean ground
    truth alone (training and validation pairs have ``lq = gt``); it may read priors and other
    shared stages and ``UserFile(..., per_task=False)``, not per-task files (``UserFile``,
    ``MethodModel``) nor per-task stages. A kind
    declares it the same way for every task."""

    name: str
    reads: tuple[Need, ...] = (Data(),)
    select: str = "psnr"
    shared: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"stage name {self.name!r} must be an identifier")
        if self.select not in SELECT_METRICS:
            raise ValueError(f"stage {self.name!r}: select must be one of {SELECT_METRICS}")
        object.__setattr__(self, "reads", tuple(self.reads))
        names = [n.name for n in self.reads if not isinstance(n, Data)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stage {self.name!r} reads two inputs named {twice}: give each "
                             f"Prior/Previous/UserFile/MethodModel its own name")
        if self.shared:
            per_task = [n for n in self.reads if isinstance(n, MethodModel)
                        or (isinstance(n, UserFile) and n.per_task)]
            if per_task:
                raise ValueError(f"shared stage {self.name!r} reads per-task files {per_task}: "
                                 f"a stage trained once for every task cannot")


# ----------------------------------------------------------------------------- a stage to train
@dataclass
class StageContext:
    """Everything ``train_stage`` gets: config, names, resolved input files, output folder.

    ``identity`` (the stage's configuration slice without operational keys + the content digest
    of every input), ``label`` (method, task, stage, kind, profile, experiment) and ``restart``
    are filled in by the plan and used by :func:`ugpnet.methods.new_run`. ``precision`` is the
    resolved ``train_precision`` (``fp32`` or ``bf16``); a kind passes it to its stage objects
    (``SupervisedStage(..., precision=ctx.precision)``, ``AdversarialStage(...,
    precision=ctx.precision)``) or wraps its own forward passes and losses in
    ``ugpnet.training.autocast(ctx.precision, ctx.device)`` (a no-op for fp32).

    ``cfg`` is a read-only *view* of the configuration limited to what the kind's
    ``stage_config`` read for this stage (its identity slice) plus the operational keys: reading
    any other key raises :class:`~ugpnet.errors.UndeclaredConfigRead`, so a setting that changes
    the result but would not rerun the stage fails loudly (:mod:`ugpnet.methods.identity`).
    ``task`` is None for a shared stage (:attr:`Stage.shared`). ``validation``: the checkpoint
    selection settings (``validation:`` of params.yaml), part of the identity when not the
    defaults. ``logging``: what the run shows while it trains (``logging:`` of params.yaml:
    loss curves, validation grids, TensorBoard; :mod:`ugpnet.training.visuals`), never part of
    the identity."""

    cfg: Mapping[str, Any]
    method: str
    task: str | None
    stage: Stage
    inputs: Mapping[str, Path]
    data_dir: Path
    out: Path
    device: Any = "cpu"
    progress: bool = True
    restart: bool = False
    identity: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    operational: dict = field(default_factory=dict)
    precision: str = "fp32"
    validation: dict = field(default_factory=dict)
    logging: dict = field(default_factory=dict)

    @property
    def mcfg(self) -> Mapping[str, Any]:
        return self.cfg["methods"][self.method]

    def input(self, name: str) -> Path:
        if name not in self.inputs:
            raise ConfigError(f"stage '{self.stage.name}' of method '{self.method}' has no input "
                              f"'{name}' (inputs: {sorted(self.inputs)})")
        return Path(self.inputs[name])

    def optional_input(self, name: str) -> Path | None:
        p = self.inputs.get(name)
        return None if p is None else Path(p)


# ----------------------------------------------------------------------------- the kind
class MethodKind:
    """Base class of every method kind (see the module docstring for the contract).

    Subclasses set ``family``, ``outputs`` and ``schema`` and implement ``stages``,
    ``train_stage``, ``build`` and ``load``; the rest has sensible defaults.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "regression"
    outputs: ClassVar[tuple[str, ...]] = ("x_hat",)
    schema: ClassVar[Mapping[str, Any] | str | Path] = {"type": "object"}

    # -- declaration
    def stages(self, mcfg: Mapping[str, Any], task: str) -> Sequence[Stage]:
        raise NotImplementedError

    def stage(self, mcfg: Mapping[str, Any], task: str, name: str) -> Stage:
        stages = list(self.stages(mcfg, task))
        for s in stages:
            if s.name == name:
                return s
        raise ConfigError(f"a method of kind '{self.name}' has stages "
                          f"{[s.name for s in stages]} for task '{task}', not '{name}'")

    def final_stage(self, mcfg: Mapping[str, Any], task: str) -> Stage | None:
        stages = list(self.stages(mcfg, task))
        return stages[-1] if stages else None

    def stage_config(self, cfg: Mapping[str, Any], method: str, task: str,
                     stage: str) -> dict:
        """The configuration slice that defines ``stage``'s result (default: the whole method
        entry, the task's degradation and the data settings; ``task`` is None for a shared
        stage). ``cfg`` records what is read here: ``train_stage`` may read exactly that (and
        the operational keys), see :mod:`ugpnet.methods.identity`."""
        out = {"method": cfg["methods"][method], "data": cfg["data"]}
        if task is not None:
            out["degradations"] = cfg["degradations"][task]
        return out

    def check_stage(self, cfg: Mapping[str, Any], method: str, task: str, stage: str,
                    inputs: Mapping[str, str]) -> None:
        """Refuse a configuration that cannot train ``stage`` (raise ConfigError naming the key).
        Called by the plan for every stage when the DAG is built; default: nothing to check."""

    def input_mode(self, mcfg: Mapping[str, Any], task: str) -> str:
        """How the method receives its input: ``lq`` (same size as the output), or for SR ``lr``
        (the small image) or ``bicubic_up`` (upsampled back), from ``sr_input``."""
        if task != "sr":
            return "lq"
        if "sr_input" not in mcfg:
            raise ConfigError(f"a method of kind '{self.name}' runs the sr task but its params "
                              f"entry has no sr_input: set it to lr (the small image) or "
                              f"bicubic_up (upsampled back to the output size)")
        return mcfg["sr_input"]

    # -- training and inference
    def train_stage(self, ctx: StageContext) -> dict:
        raise NotImplementedError

    def build(self, cfg: Mapping[str, Any], method: str, task: str):
        raise NotImplementedError

    def load(self, cfg: Mapping[str, Any], method: str, task: str, checkpoint: Path, device,
             extra: Mapping[str, Path] | None = None):
        """The trained model; ``extra``: named weight files given beside the checkpoint
        (``ugpnet restore --weights NAME=PATH``), for kinds that read official releases."""
        raise NotImplementedError

    def predict(self, model, x) -> dict:
        """``{output name: image [N,3,H,W] in [0,1]}``; the first entry is the result."""
        return {self.outputs[0]: model(x)}

    def benchmark_stage(self, cfg: Mapping[str, Any], method: str, task: str, stage: str,
                        device):
        """For ``ugpnet bench --train``: ``(stage object, one batch, note)`` built with random
        weights and no files (the stage object as :func:`ugpnet.training.run_stage` drives it),
        or ``None`` when the stage trains nothing. Kinds without it are reported as such."""
        raise NotImplementedError

    def deviations(self, cfg: Mapping[str, Any], method: str, task: str) -> list[str]:
        """Short labels of how ``method`` departs from its authors' recipe for ``task`` in this
        configuration (e.g. a loss term left out because its external network is not given).
        The tables print them beside the method's row and in Table 1's footnote, with the
        options beyond the paper. Shortened schedules are not listed (every small profile
        shortens them and the table says so). Default: none."""
        return []

    def parameter_breakdown(self, model) -> dict[str, int]:
        """Parameters per named part (``ugpnet params``); default: the whole model."""
        return {self.name or type(self).__name__: sum(p.numel() for p in model.parameters())}

    # -- checks run when a kind is registered
    @classmethod
    def check_declaration(cls) -> None:
        if cls.family not in FAMILIES:
            raise ValueError(f"method kind {cls.__name__}: family must be one of {FAMILIES}")
        if not cls.outputs or len(set(cls.outputs)) != len(cls.outputs) or \
                not all(isinstance(o, str) and o.isidentifier() for o in cls.outputs):
            raise ValueError(f"method kind {cls.__name__}: outputs must be distinct identifiers")


def replace_stage(stage: Stage, **changes) -> Stage:
    return dataclasses.replace(stage, **changes)
