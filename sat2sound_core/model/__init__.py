"""Sat2Sound network modules: config, metadata, towers, codebook and the :class:`Sat2Sound` model.

Only the light, always-present modules are imported here; loading, preprocessing and the text
encoder live in sibling modules (``loading``, ``image``, ``audio``, ``text``).
"""

from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.metadata import Metadata
from sat2sound_core.model.sat2sound import Encoding, Sat2Sound

__all__ = ["Encoding", "Metadata", "ModelConfig", "Sat2Sound"]
