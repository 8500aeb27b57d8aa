"""Lazy public names for a package: ``import sat2sound_core`` stays cheap (no torch) until a name is used.

The one lazy-export helper of the core (``sat2sound_core`` and ``sat2sound_core.model`` use it). ``tiles``
follows the same pattern in its own ``__init__`` because it must not import the core.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, mapping: Mapping[str, str], namespace: dict[str, object], names: list[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``mapping`` maps each public name to the module defining it; the first access imports that module
    and stores the value in ``namespace`` (the package's ``globals()``), so later accesses are plain
    lookups. ``names`` is what ``dir()`` lists (the package's ``__all__``).
    """

    def __getattr__(name: str) -> object:
        module = mapping.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
