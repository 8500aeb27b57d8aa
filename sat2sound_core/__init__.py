"""Sat2Sound core library: model, preprocessing, heatmaps, retrieval, synthesis, export.

Importable without Streamlit. The public names below are the stable API the app, the CLI, notebooks
and outside fidelity checks use; they are imported lazily so ``import sat2sound_core`` stays cheap
(:func:`sat2sound_core.common.lazy.lazy_exports`); type checkers see the imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sat2sound_core.common.lazy import lazy_exports

if TYPE_CHECKING:
    from sat2sound_core.common.settings import Settings, get_settings
    from sat2sound_core.model.sat2sound import Encoding, Sat2Sound
    from sat2sound_core.preprocess.audio import load_audio, log_mel, log_mel_windows
    from sat2sound_core.preprocess.image import image_to_tensor
    from sat2sound_core.preprocess.metadata import Metadata
    from sat2sound_core.synthesis import Audio, Synthesizer, load_synthesizer
    from sat2sound_core.weights.loading import load_model

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_model": "sat2sound_core.weights.loading",
    "Sat2Sound": "sat2sound_core.model.sat2sound",
    "Encoding": "sat2sound_core.model.sat2sound",
    "image_to_tensor": "sat2sound_core.preprocess.image",
    "log_mel": "sat2sound_core.preprocess.audio",
    "log_mel_windows": "sat2sound_core.preprocess.audio",
    "load_audio": "sat2sound_core.preprocess.audio",
    "Metadata": "sat2sound_core.preprocess.metadata",
    "load_synthesizer": "sat2sound_core.synthesis",
    "Synthesizer": "sat2sound_core.synthesis",
    "Audio": "sat2sound_core.synthesis",
    "Settings": "sat2sound_core.common.settings",
    "get_settings": "sat2sound_core.common.settings",
}

__all__ = [
    "Audio",
    "Encoding",
    "Metadata",
    "Sat2Sound",
    "Settings",
    "Synthesizer",
    "__version__",
    "get_settings",
    "image_to_tensor",
    "load_audio",
    "load_model",
    "load_synthesizer",
    "log_mel",
    "log_mel_windows",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
