"""The gallery file format: one HDF5 file, N rows (one per recording), read and written in this package.

==========================  ==================================================================
``sample_id``               (N,) strings
``audio_caption``           (N,) strings: caption of the recording
``llava_caption_zl{s}``     (N,) strings: LLaVA caption of the satellite image at scale s ∈ {1,3,5}
``text_embedding_zl{s}``    (N, 1024) float: text-path embedding of ``llava_caption_zl{s}``
``audio_embedding``         (N, 1024) float: audio-path embedding of the recording
``audio_raw``               (N,) per-row raw audio (optional; attr ``sample_rate``, default 32000)
``audio_length``            (N,) int: samples of ``audio_raw`` per row (written here; 0 = no audio)
``synth_audio_zl{s}``       per-row (channels, time) or (time,) audio at 44.1 kHz (optional)
==========================  ==================================================================

Root attributes written by this product (all optional when reading): ``checkpoint`` (whose text/audio
path made the embeddings; the official gallery is ``bingmap_withmeta``), ``schema_version``,
``created_by``. Audio cells hold float samples or a whole encoded file (wav/flac/ogg bytes).
"""

from __future__ import annotations

SCALES = (1, 3, 5)
DIM = 1024
SCHEMA_VERSION = 1
OFFICIAL_CHECKPOINT = "bingmap_withmeta"
SYNTH_RATE = 44100
RAW_RATE = 32000
CREATED_BY = "sat2sound-map"

