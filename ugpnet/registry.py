"""Name → class/function registries (BasicSR idea, without the hidden folder scan).

Entries are added by explicit ``@REGISTRY.register()`` decorators in modules that the package
imports explicitly, so ``grep`` finds every registration.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, object] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or obj.__name__.lower()  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str):
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; registered: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
