"""Issue 18: the train schema requires every key the training code reads as ``train["KEY"]``.

A train block without ``val_every`` used to pass ``ugpnet check`` and the job died with a
KeyError after its first iteration. The schema's ``$defs/train`` now lists every such key as
required, and a scan of the code keeps the two in step; keys read with ``train.get(KEY, default)``
stay optional and the schema's ``default`` says the code's default.
"""
import ast
import copy
from pathlib import Path

import pytest

from ugpnet.cli import main
from ugpnet.config import _schema, load_params_file, resolve, resolve_files
from ugpnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# the code that trains: every train block reaches it as a mapping named `train` (or as
# `<stage>["train"]`), the project's convention
TRAINING_CODE = [REPO / "ugpnet", REPO / "baselines", REPO / "bench"]


def _train_def() -> dict:
    return _schema()["$defs"]["train"]


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return node


def _is_train_block(node) -> bool:
    """``train`` or ``<anything>["train"]``."""
    if isinstance(node, ast.Name):
        return node.id == "train"
    return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and node.slice.value == "train")


def train_reads() -> tuple[dict, dict]:
    """(``train["KEY"]`` reads: key -> places, ``train.get("KEY"[, default])``: key -> defaults)."""
    subscripts: dict = {}
    gets: dict = {}
    for root in TRAINING_CODE:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
                if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
                        and _is_train_block(node.value) and isinstance(node.slice, ast.Constant)
                        and isinstance(node.slice.value, str)):
                    subscripts.setdefault(node.slice.value, []).append(where)
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "get" and _is_train_block(node.func.value)
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    default = _literal(node.args[1]) if len(node.args) > 1 else None
                    gets.setdefault(node.args[0].value, []).append((default, where))
    return subscripts, gets


def test_the_scan_sees_the_training_loop():
    subscripts, gets = train_reads()
    # the reads this issue is about (loop.py, common.py, methods/common.py): the scan is not blind
    assert {"total_iters", "batch_size", "lr", "val_every", "ckpt_every"} <= set(subscripts)
    assert {"log_every", "num_workers", "lr_schedule"} <= set(gets)


def test_every_key_read_with_brackets_is_required_by_the_schema():
    subscripts, _ = train_reads()
    required = set(_train_def()["required"])
    missing = {key: places for key, places in subscripts.items() if key not in required}
    assert not missing, (f"read as train[KEY] but not required by $defs/train in "
                         f"ugpnet/schemas/params.schema.yaml: {missing}")


def test_every_key_read_is_a_train_key_and_optional_ones_document_their_default():
    subscripts, gets = train_reads()
    props = _train_def()["properties"]
    required = set(_train_def()["required"])
    unknown = sorted((set(subscripts) | set(gets)) - set(props))
    assert not unknown, f"read from a train block but not in $defs/train: {unknown}"
    for key, uses in gets.items():
        if key in required:
            continue
        spec = props[key]
        assert "default" in spec and "description" in spec, key
        for default, where in uses:
            value = list(default) if isinstance(default, tuple) else default
            assert value == spec["default"], (key, where, default, spec["default"])
    # and an optional key nobody reads would be dead configuration
    for key in set(props) - required:
        assert key in gets, f"$defs/train.{key} is optional but no code reads it"


@pytest.fixture(scope="module")
def raw(repo_root):
    return load_params_file(repo_root / "params.yaml")


@pytest.mark.parametrize("key", ["val_every", "ckpt_every"])
def test_a_train_block_without_a_loop_key_is_refused_naming_it(raw, key):
    bad = copy.deepcopy(raw)
    del bad["defaults"]["methods"]["nafnet"]["train"][key]
    with pytest.raises(ConfigError, match=rf"methods\.nafnet\.train: '{key}' is a required "
                                          rf"property"):
        resolve(bad, "paper")
    bad = copy.deepcopy(raw)
    del bad["defaults"]["methods"]["ugpnet"]["stages"]["fusion"]["train"][key]
    with pytest.raises(ConfigError, match=rf"methods\.ugpnet\.stages\.fusion\.train: '{key}' "
                                          rf"is a required property"):
        resolve(bad, "paper")


NEW_METHOD = """
overrides:
  methods:
    nafnet_b:
      kind: regression
      backbone: nafnet
      tasks: [denoise]
      loss: {psnr: 1.0}
      train: {total_iters: 10, batch_size: 2, lr: 1.0e-3}
"""


def test_ugpnet_check_refuses_a_new_method_without_val_every_and_ckpt_every(tmp_path, capsys):
    mine = tmp_path / "b.yaml"
    mine.write_text(NEW_METHOD)
    params = str(REPO / "params.yaml")
    with pytest.raises(ConfigError) as e:
        resolve_files([params, mine], "smoke")
    for key in ("val_every", "ckpt_every"):
        assert f"methods.nafnet_b.train: '{key}' is a required property [in {mine}]" in str(e.value)
    assert main(["check", "--params", params, "--configfile", str(mine), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "methods.nafnet_b.train: 'val_every' is a required property" in err
    assert "Traceback" not in err
