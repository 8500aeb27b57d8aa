"""Sat2Sound network modules: config, metadata, towers, codebook and the :class:`Sat2Sound` model.

Loading, preprocessing and the text encoder live in sibling modules (``loading``, ``image``, ``audio``,
``text``). The names below are imported lazily, so reading a light sibling such as ``registry`` does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sat2sound_core.common.lazy import lazy_exports

if TYPE_CHECKING:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Encoding, Sat2Sound
    from sat2sound_core.preprocess.metadata import Metadata

_LAZY = {
    "Encoding": "sat2sound_core.model.sat2sound",
    "Metadata": "sat2sound_core.preprocess.metadata",
    "ModelConfig": "sat2sound_core.model.config",
    "Sat2Sound": "sat2sound_core.model.sat2sound",
}

__all__ = ["Encoding", "Metadata", "ModelConfig", "Sat2Sound"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
