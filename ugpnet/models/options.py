"""Options beyond the paper and ablations: named, opt-in departures from the official networks.

Each is a key in params.yaml whose official value is the default, so that with every option at
its official value the networks are the official ones bit for bit (tests/test_options.py). A
profile may turn them on (the offline ``smoke`` profile does, to make a short CPU run mean
something); the tables then name them beside the rows that ran with them, so no one mistakes
such a row for the paper's network.

- ``xreg_skip`` (``methods.<ugpnet>.fusion.xreg_skip``): ``x_hat = x_reg + Conv(...)``, the
  fusion's last conv zero-initialised (:mod:`.fusion`).
- ``restoration_skip`` (``methods.<ugpnet>.restoration_skip.<task>``): ``none | input |
  backbone``, a zero-initialised global residual of the restoration module (:mod:`.restoration`).
- ``bicubic_residual`` (``backbones.rrdbnet.<task>.bicubic_residual``): RRDBNet adds the
  degradation's own bicubic upsampling of its input (:mod:`.backbones.rrdbnet`).

Ablations (:data:`ABLATIONS`) are the same mechanism for the paper's own ablations and ours:
method-level keys of a ``methods.<m>`` entry of kind ``ugpnet`` (docs/ABLATIONS.md), each a
module registered by name.

- ``restoration_head`` (``se_mg | none``): ``none`` is Table 3 (a), without R_se and R_mg
  (:data:`.restoration.RESTORATION_HEADS`).
- ``fusion_input`` (``features | images``): ``images`` is Table 3 (b), the fusion of x_reg and
  x_syn instead of f_reg and f_syn (:data:`.fusion.FUSIONS`).
- ``map2style`` (``shared | per_latent``): ``per_latent`` is pSp's one map2style per W+ latent
  against UGPNet's one shared map2style (:data:`.synthesis.encoder.MAP2STYLES`).

At its official value an option or ablation is left out of a stage's identity, so runs made
before it existed keep their identity and are not retrained. Keys are matched by name at any
depth: each name must be unique in params.yaml.
"""
from __future__ import annotations

from typing import Any, Mapping

# key -> (official value, how a table names a non-official value)
BEYOND_PAPER: dict[str, tuple[Any, str]] = {
    "xreg_skip": (False, "fusion x_reg skip"),
    "restoration_skip": ("none", "restoration skip = {value}"),
    "bicubic_residual": (False, "RRDBNet bicubic residual"),
}

# key -> (official value, how a table names each non-official value: {value: label}, with
# "<key> = {value}" for a value a plugin registered)
ABLATIONS: dict[str, tuple[Any, dict[Any, str]]] = {
    "restoration_head": ("se_mg", {"none": "without R_se, R_mg"}),
    "fusion_input": ("features", {"images": "image fusion"}),
    "map2style": ("shared", {"per_latent": "map2style per latent"}),
}


def is_official(key: str, value: Any) -> bool:
    for table in (BEYOND_PAPER, ABLATIONS):
        if key in table:
            return value == table[key][0]
    return False


def label(key: str, value: Any) -> str:
    """How a table names ``key`` at the non-official ``value``."""
    if key in BEYOND_PAPER:
        return BEYOND_PAPER[key][1].format(value=value)
    return ABLATIONS[key][1].get(value, f"{key} = {value}")


def strip_official(obj: Any) -> Any:
    """``obj`` without the :data:`BEYOND_PAPER` and :data:`ABLATIONS` keys that hold their
    official value (any depth)."""
    if isinstance(obj, Mapping):
        return {k: strip_official(v) for k, v in obj.items() if not is_official(k, v)}
    if isinstance(obj, (list, tuple)):
        return [strip_official(v) for v in obj]
    return obj


def beyond_paper(obj: Any) -> list[str]:
    """How a table names every :data:`BEYOND_PAPER` or :data:`ABLATIONS` key in ``obj`` (any
    depth) that is not at its official value, in first-seen order without repeats."""
    out: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, Mapping):
            for k, v in o.items():
                if (k in BEYOND_PAPER or k in ABLATIONS) and not is_official(k, v) \
                        and not isinstance(v, Mapping):
                    name = label(k, v)
                    if name not in out:
                        out.append(name)
                else:
                    walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return out
