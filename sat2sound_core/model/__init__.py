"""Sat2Sound network modules: config, metadata, towers, codebook and the :class:`Sat2Sound` model.

Loading, preprocessing and the text encoder live in sibling modules (``loading``, ``image``, ``audio``,
``text``). The names below are imported lazily, so reading a light sibling such as ``registry`` does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.metadata import Metadata
    from sat2sound_core.model.sat2sound import Encoding, Sat2Sound

_LAZY = {
    "Encoding": "sat2sound_core.model.sat2sound",
    "Metadata": "sat2sound_core.model.metadata",
    "ModelConfig": "sat2sound_core.model.config",
    "Sat2Sound": "sat2sound_core.model.sat2sound",
}

__all__ = ["Encoding", "Metadata", "ModelConfig", "Sat2Sound"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sat2sound_core.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
