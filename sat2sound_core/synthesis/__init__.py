"""TangoFlux soundscape synthesis: caption → 44.1-kHz stereo clip (non-commercial weights).

``load_synthesizer(source, device, precision)`` returns a :class:`Synthesizer`; its ``synthesize``
makes :class:`Audio` clips (cached on disk). Show :data:`LICENCE_NOTE` wherever synthesis is enabled.
"""

from __future__ import annotations

from sat2sound_core.synthesis.audio import Audio
from sat2sound_core.synthesis.synthesizer import (
    FAST_STEPS,
    LICENCE_NOTE,
    PAPER_GUIDANCE,
    PAPER_STEPS,
    Synthesizer,
    load_synthesizer,
)
from sat2sound_core.synthesis.tokenizer import CaptionTruncatedWarning

__all__ = [
    "FAST_STEPS",
    "LICENCE_NOTE",
    "PAPER_GUIDANCE",
    "PAPER_STEPS",
    "Audio",
    "CaptionTruncatedWarning",
    "Synthesizer",
    "load_synthesizer",
]
