"""A stage's identity covers what it reads: the configuration views behind that guarantee.

A kind's ``stage_config(cfg, method, task, stage)`` is written by hand: it names the slice of
params.yaml that defines a stage's result (what the workflow reruns on). Nothing would check it
against what ``train_stage`` reads, so a missed key would silently skip a rerun. Two views close
that gap (hand-written: no library offers a read-recording, path-restricted mapping):

- :class:`RecordingView`: the plan calls ``stage_config`` on it; every key read is recorded by its
  path (a sub-mapping put whole into the slice counts as read throughout).
- :class:`RestrictedView`: what ``train_stage`` gets as ``ctx.cfg``: reading a key outside the
  recorded paths (and the operational keys, which change how a run goes, not what it makes)
  raises :class:`~ugpnet.errors.UndeclaredConfigRead`. Listing keys (``in``, iteration) and
  stepping into a sub-mapping are free; reading a value (or asking for an absent key) is not.

Both are read-only ``Mapping``s; :func:`to_plain` turns a slice into plain dicts and lists.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

from ..errors import UndeclaredConfigRead

Path_ = tuple


class _View(Mapping):
    """A read-only mapping over ``_data`` at key path ``_path``."""

    _data: Mapping
    _path: Path_

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'.'.join(map(str, self._path)) or '<root>'})"


class RecordingView(_View):
    """``cfg`` read-only, recording the path of every value read into ``paths``."""

    def __init__(self, data: Mapping, paths: set | None = None, path: Path_ = ()):
        self._data, self._path = data, path
        self.paths = paths if paths is not None else set()

    def __getitem__(self, key):
        path = self._path + (key,)
        try:
            value = self._data[key]
        except KeyError:
            self.paths.add(path)  # read and absent: its absence is part of the slice
            raise
        if isinstance(value, Mapping):
            return RecordingView(value, self.paths, path)
        self.paths.add(path)
        return value


def to_plain(obj: Any) -> Any:
    """``obj`` with every Mapping (views included) as a dict and every tuple as a list; a view
    read whole is recorded whole (its absent keys too: a default the code falls back to)."""
    if isinstance(obj, RecordingView):
        obj.paths.add(obj._path)
    if isinstance(obj, Mapping):
        return {k: to_plain(obj[k]) for k in obj}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _covered(path: Path_, allowed: frozenset) -> bool:
    """``path`` is a recorded path or lies inside one (a sub-mapping recorded whole)."""
    return any(path[:len(a)] == a for a in allowed)


class RestrictedView(_View):
    """``cfg`` read-only, readable only along ``allowed`` paths and at ``free`` keys (any depth);
    ``who`` names the reader in the error."""

    def __init__(self, data: Mapping, allowed, who: str, free=frozenset(), path: Path_ = ()):
        self._data, self._path, self._who = data, path, who
        self._allowed = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
        self._free = frozenset(free)

    def _check(self, key) -> None:
        path = self._path + (key,)
        if key in self._free or _covered(path, self._allowed):
            return
        raise UndeclaredConfigRead(
            f"{self._who} read params key '{'.'.join(map(str, path))}', which its kind's "
            f"stage_config does not include: a change of it would not rerun the stage. Read it in "
            f"stage_config too (it then enters the stage's identity), or do not read it.")

    def __getitem__(self, key):
        path = self._path + (key,)
        if key in self._data and isinstance(self._data[key], Mapping):  # navigating: free
            return RestrictedView(self._data[key], self._allowed, self._who, self._free, path)
        self._check(key)  # a value (or an absent key) is read: it must be declared
        return self._data[key]

    def __contains__(self, key) -> bool:  # listing is free here (RecordingView records it)
        return key in self._data
