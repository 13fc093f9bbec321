"""The UGPNet paper's published numbers (``wacv2024.yaml`` beside this file), for the vs-paper
views of Tables 1 and 2. Facts with their source; ``None`` where a value was not transcribed.

:func:`paper_numbers` reads and checks the file; :func:`table1_value` / :func:`table2_value`
return one number or ``None``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import ConfigError

FILE = Path(__file__).with_name("wacv2024.yaml")
TABLE1_METRICS = ("psnr", "ssim", "lpips", "fid")
TABLE2_KEYS = ("params_m", "time_ms")
STATUSES = ("transcribed", "partly_transcribed", "not_transcribed")


@lru_cache(maxsize=4)
def paper_numbers(path: str | None = None) -> dict:
    """The published numbers; ConfigError naming the file and the entry when the layout is off."""
    p = Path(path) if path else FILE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"published numbers {p}: cannot be read ({e})") from None
    for table in ("table1", "table2"):
        block = (data or {}).get(table)
        if not isinstance(block, dict) or block.get("status") not in STATUSES \
                or not isinstance(block.get("values"), dict):
            raise ConfigError(f"published numbers {p}: '{table}' needs `status` (one of "
                              f"{', '.join(STATUSES)}) and `values` (a mapping)")
        if block["status"] != "not_transcribed" and not block.get("transcribed_from"):
            raise ConfigError(f"published numbers {p}: '{table}' has values but no "
                              f"`transcribed_from` (where in the paper they were read)")
    for task, rows in data["table1"]["values"].items():
        for method, cells in (rows or {}).items():
            bad = set(cells or {}) - set(TABLE1_METRICS)
            if bad:
                raise ConfigError(f"published numbers {p}: table1.values.{task}.{method}: "
                                  f"unknown metric(s) {sorted(bad)}; known: {TABLE1_METRICS}")
    for method, cells in data["table2"]["values"].items():
        bad = set(cells or {}) - set(TABLE2_KEYS)
        if bad:
            raise ConfigError(f"published numbers {p}: table2.values.{method}: unknown key(s) "
                              f"{sorted(bad)}; known: {TABLE2_KEYS}")
    return data


def table1_value(task: str, method: str, metric: str, path: str | None = None) -> float | None:
    v = ((paper_numbers(path)["table1"]["values"].get(task) or {}).get(method) or {}).get(metric)
    return None if v is None else float(v)


def table2_value(method: str, key: str, path: str | None = None) -> float | None:
    v = (paper_numbers(path)["table2"]["values"].get(method) or {}).get(key)
    return None if v is None else float(v)
