"""The command-line entry point: every listed command is built, and a command whose module does not
import makes the CLI fail loudly instead of silently disappearing from it."""
import importlib

import pytest

import ugpnet.commands
from ugpnet import cli


def _subcommands(parser):
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_every_listed_command_is_built():
    assert _subcommands(cli.build_parser()) == set(cli.COMMANDS)


def test_missing_command_module_fails_loudly(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "bogus", "no_such_command_xyz")
    with pytest.raises(ModuleNotFoundError, match="ugpnet.commands.no_such_command_xyz"):
        cli.build_parser()
    # the other commands do not run either: a broken install must be noticed, not papered over
    with pytest.raises(ModuleNotFoundError, match="no_such_command_xyz"):
        cli.main(["params", "--help"])


@pytest.mark.parametrize("missing", ["ugpnet.commands._no_such_helper_xyz", "no_such_dependency_xyz"])
def test_command_module_with_broken_import_fails_loudly(tmp_path, monkeypatch, missing):
    """A command module that exists but imports something missing (one of our own modules or a
    third-party package) propagates the ModuleNotFoundError."""
    (tmp_path / "broken_cmd_xyz.py").write_text(
        f'import {missing}\nHELP = "broken"\n\ndef add_arguments(p):\n    pass\n\n'
        f"def run(args):\n    return 0\n")
    monkeypatch.setattr(ugpnet.commands, "__path__", [*ugpnet.commands.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    monkeypatch.setitem(cli.COMMANDS, "broken", "broken_cmd_xyz")
    with pytest.raises(ModuleNotFoundError) as e:
        cli.main(["broken"])
    assert e.value.name == missing
