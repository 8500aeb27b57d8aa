"""Lazy public names for a package: ``import sat2sound_core`` stays cheap (no torch) until a name is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, mapping: Mapping[str, str], namespace: dict[str, Any], names: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``mapping`` maps each public name to the module defining it; the first access imports that module
    and stores the value in ``namespace`` (the package's ``globals()``), so later accesses are plain
    lookups. ``names`` is what ``dir()`` lists (the package's ``__all__``).
    """

    def __getattr__(name: str) -> Any:
        module = mapping.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
