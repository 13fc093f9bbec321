"""Options beyond the paper: named, opt-in departures from the official networks.

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

At its official value an option is left out of a stage's identity, so runs made before the
option existed keep their identity and are not retrained.
"""
from __future__ import annotations

from typing import Any, Mapping

# key -> (official value, how a table names a non-official value)
BEYOND_PAPER: dict[str, tuple[Any, str]] = {
    "xreg_skip": (False, "fusion x_reg skip"),
    "restoration_skip": ("none", "restoration skip = {value}"),
    "bicubic_residual": (False, "RRDBNet bicubic residual"),
}


def is_official(key: str, value: Any) -> bool:
    return key in BEYOND_PAPER and value == BEYOND_PAPER[key][0]


def strip_official(obj: Any) -> Any:
    """``obj`` without the :data:`BEYOND_PAPER` keys that hold their official value (any depth)."""
    if isinstance(obj, Mapping):
        return {k: strip_official(v) for k, v in obj.items() if not is_official(k, v)}
    if isinstance(obj, (list, tuple)):
        return [strip_official(v) for v in obj]
    return obj


def beyond_paper(obj: Any) -> list[str]:
    """How a table names every :data:`BEYOND_PAPER` key in ``obj`` (any depth) that is not at
    its official value, in first-seen order without repeats."""
    out: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, Mapping):
            for k, v in o.items():
                if k in BEYOND_PAPER and not is_official(k, v) and not isinstance(v, Mapping):
                    label = BEYOND_PAPER[k][1].format(value=v)
                    if label not in out:
                        out.append(label)
                else:
                    walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return out
