"""Methods: the contract every method kind implements, the registry, and the built-in kinds.

Public API for kinds (baselines under ``baselines/<name>/`` and plugins use only these)::

    from ugpnet.methods import (MethodKind, Stage, StageContext, Data, Previous, Prior,
                                UserFile, MethodModel, register_kind)
    from ugpnet.methods import (data_options, final_weights, loaders, new_run,
                                prior_architecture)

with ``ugpnet.training`` (the loop, ``SupervisedStage``, ``AdversarialStage``, losses, optimisers,
the precision context ``autocast``), ``ugpnet.losses``, ``ugpnet.models.build`` and
``ugpnet.checkpoints``.

See :mod:`ugpnet.methods.contract` for what a kind declares. Built-in kinds: ``input``
(:mod:`.reference`, the degraded input as a table row), ``regression`` (:mod:`.regression`) and
``ugpnet`` (:mod:`.ugpnet`).
"""
from ..models.build import prior_architecture
from .common import (bench_precision, data_options, final_weights, loaders, new_run,
                     random_batch)
from .contract import (SHARED, Data, MethodKind, MethodModel, Previous, Prior, Stage,
                       StageContext, UserFile)
from .registry import METHOD_KINDS, check_task, get_kind, kind_of, method_cfg, register_kind

# explicit registration of the built-in kinds
from . import reference as _reference  # noqa: E402,F401
from . import regression as _regression  # noqa: E402,F401
from . import ugpnet as _ugpnet  # noqa: E402,F401

__all__ = [
    "SHARED", "Data", "METHOD_KINDS", "MethodKind", "MethodModel", "Previous", "Prior", "Stage",
    "StageContext", "UserFile", "bench_precision", "check_task", "data_options",
    "final_weights", "get_kind", "kind_of", "loaders", "method_cfg", "new_run",
    "prior_architecture", "random_batch", "register_kind",
]
