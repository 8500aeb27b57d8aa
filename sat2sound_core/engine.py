"""The soundscape engine: one point → chip → encoding → heatmaps, captions, concepts, audio.

This is the API the app, the CLI and notebooks share::

    from sat2sound_core.engine import Engine
    engine = Engine(checkpoint="bingmap_withmeta", precision="auto", device="auto",
                    provider=None, gallery=None)           # lazy: loads nothing until used
    analysis = engine.analyze(lat, lon, scale=1, metadata=None, provider=None)   # -> ChipAnalysis
    analysis.chip, analysis.encoding, analysis.metadata, analysis.scale, analysis.checkpoint
    analysis.heatmap("text", TextInputs("birds singing"))   # any registered kind (maps/kinds.py) -> Heatmap
    analysis.word_heatmap(caption, words)       # the official demo's word map       -> Heatmap
    analysis.text_heatmap(query)                # whole-query maps (docs/heatmaps.md) -> Heatmap
    analysis.audio_heatmap(waveform, sr)
    analysis.composed_heatmap(waveform, sr, caption)
    analysis.concept_map(top_k=5)               # per-patch concepts, groups, gallery examples
    analysis.retrieve(k=10, gallery=None)       # -> list[Hit] (image → caption at analysis.scale)
    engine.gallery_audio(hit)                   # -> (samples, sample_rate) | None
    engine.search(text=None, waveform=None, sample_rate=None, k=10)  # audio/text/composed -> gallery
    engine.rank_places(analyses, text=None, waveform=None, sample_rate=None)  # audio/text -> places

Analyses are cached: analysing the same chip pixels again with the same checkpoint, scale, metadata
and precision returns the cached :class:`ChipAnalysis` without re-encoding. Metadata left as None is
filled from the point (lat/lon), the current month and the point's local solar hour, with the
official demo's sources (audio ``yfcc``, caption ``meta``); every field can be overridden, and the
string ``"unknown"`` marks a field unknown.

Imagery comes through :mod:`sat2sound_core.imagery`: when no provider is given and
``SAT2SOUND_TILE_URL`` is set (with ``SAT2SOUND_TILE_ATTRIBUTION`` and ``SAT2SOUND_TILE_MAX_ZOOM``), chips
come from that template instead of the checkpoint's default provider; imagery failures are
:class:`~sat2sound_core.common.errors.ImageryError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from sat2sound_core import imagery
from sat2sound_core.common.errors import InputError, Sat2SoundError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.common.settings import device_or_default, precision_or_default
from sat2sound_core.maps.heatmaps import GridGeometry, Heatmap, grid_geometry, patch_scores, top_codes
from sat2sound_core.maps.kinds import (
    AudioInputs,
    ComposedInputs,
    RegisteredKind,
    TextInputs,
    WordInputs,
    get_kind,
)

if TYPE_CHECKING:
    import torch

    from sat2sound_core.gallery import Gallery
    from sat2sound_core.maps.concepts import ConceptMap
    from sat2sound_core.model.sat2sound import Encoding, Sat2Sound
    from sat2sound_core.preprocess.audio import AudioFile
    from sat2sound_core.preprocess.metadata import Metadata
    from sat2sound_core.retrieval import Hit
    from tiles.chip import Chip
    from tiles.providers import Provider

log = logging.getLogger(__name__)

#: audio samples, (T,) or (C, T) floats in [-1, 1], or an AudioFile (decoded window by window)
Waveform: TypeAlias = "np.ndarray | torch.Tensor | AudioFile"
#: a gallery to retrieve from: a Gallery, an HDF5 path, ``"official"``, or None (the engine's)
GallerySpec: TypeAlias = "Gallery | str | os.PathLike[str] | None"
#: imagery for a fetch: a tiles provider name, a local file, an http(s) template or a provider object
ProviderSpec: TypeAlias = "str | Path | Provider | None"
#: metadata for an analysis: a Metadata, a dict of some of its fields, or None (the point's defaults)
MetadataSpec: TypeAlias = "Metadata | Mapping[str, object] | None"

UNKNOWN = "unknown"
DEFAULT_AUDIO_SOURCE = "yfcc"
DEFAULT_CAPTION_SOURCE = "meta"
_META_FIELDS = ("lat", "lon", "hour", "month", "audio_source", "caption_source")
#: windows averaged for a whole recording at most (spread evenly over it): 32 windows cover 5 min
#: back to back and take ~2.5 s on a 2-core CPU
MAX_RECORDING_WINDOWS = 32


def default_metadata(lat: float, lon: float, now: dt.datetime | None = None,
                     overrides: MetadataSpec = None) -> Metadata:
    """Metadata for a point: the point, the current month and local solar hour there, yfcc/meta sources.

    ``overrides`` (a dict or a Metadata) replaces fields; a value of ``"unknown"`` (or None inside a
    dict) makes that field unknown. The hour is UTC + lon/15 (solar time at the point), which is
    what a recording made "now" at that place would carry.
    """
    from sat2sound_core.preprocess.metadata import Metadata

    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    local = now.astimezone(dt.UTC) + dt.timedelta(hours=float(lon) / 15.0)
    values: dict[str, object] = {
        "lat": float(lat),
        "lon": float(lon),
        "hour": local.hour,
        "month": local.month,
        "audio_source": DEFAULT_AUDIO_SOURCE,
        "caption_source": DEFAULT_CAPTION_SOURCE,
    }
    if overrides is not None:
        if isinstance(overrides, Metadata):
            # a full Metadata replaces the defaults as given (its None fields stay unknown)
            values = {f: getattr(overrides, f) for f in _META_FIELDS}
        elif isinstance(overrides, Mapping):
            unknown = set(overrides) - set(_META_FIELDS)
            if unknown:
                raise InputError(f"unknown metadata field(s) {sorted(unknown)}; valid: {list(_META_FIELDS)}")
            values.update(overrides)
        else:
            raise InputError(f"metadata must be a Metadata or a dict of its fields, got {type(overrides).__name__}")
    values = {k: (None if isinstance(v, str) and v.strip().lower() == UNKNOWN else v) for k, v in values.items()}
    return Metadata(**values)  # type: ignore[arg-type]  # Metadata validates every field itself


def _metadata_key(metadata: Metadata | None) -> tuple[object, ...]:
    if metadata is None:
        return ("none",)
    return tuple(getattr(metadata, f) for f in _META_FIELDS)


def _chip_key(chip: Chip) -> str:
    h = hashlib.sha1()
    img = np.ascontiguousarray(chip.image)
    h.update(str(img.shape).encode())
    h.update(img.tobytes())
    h.update(str(chip.crs).encode())
    h.update(repr(tuple(chip.transform)[:6]).encode())
    return h.hexdigest()


def _as_float_waveform(waveform: Waveform) -> np.ndarray:
    arr = waveform.detach().cpu().numpy() if hasattr(waveform, "detach") else np.asarray(waveform)
    if arr.size == 0:
        raise InputError("the audio clip is empty; give at least a second of sound")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"audio samples must be floats in [-1, 1], got {arr.dtype} (load files with load_audio)")
    if not np.all(np.isfinite(arr)):
        raise InputError("the audio clip contains NaN or infinite samples (corrupt audio?)")
    if float(np.max(np.abs(arr))) == 0.0:
        raise InputError("the audio clip is silent (all samples are zero); choose a clip with sound")
    return arr


@dataclass(eq=False)
class ChipAnalysis:
    """One analysed chip: the chip, its encoding and the patch grid; heatmaps, concept maps and
    retrieval are computed from it on demand.

    ``chip`` is the scale crop the heatmaps lie on; ``source_chip`` the full training-size chip the
    model saw; ``encoding`` the image encoding with token scores; ``metadata`` the metadata used (None
    for nometa checkpoints); ``geometry`` the 14×14 patch grid on ``chip``.
    """

    lat: float
    lon: float
    chip: Chip
    source_chip: Chip
    encoding: Encoding
    metadata: Metadata | None
    scale: int
    checkpoint: str
    precision: str
    geometry: GridGeometry
    engine: Engine = field(repr=False)
    _scores: np.ndarray | None = field(default=None, repr=False)

    # ---- raw views ----------------------------------------------------------------------------
    @property
    def embedding(self) -> np.ndarray:
        """The (1024,) image embedding (un-normalised)."""
        return np.asarray(self.encoding.embedding[0].float().cpu().numpy(), dtype=np.float32)

    @property
    def codebook_weights(self) -> np.ndarray:
        """The (16000,) sparsemax weights of the image embedding."""
        return np.asarray(self.encoding.codebook_weights[0].float().cpu().numpy(), dtype=np.float32)

    @property
    def patch_scores(self) -> np.ndarray:
        """(196, 16000) raw patch·codebook scores (metadata tokens dropped)."""
        if self._scores is None:
            if self.encoding.token_scores is None:
                raise Sat2SoundError("the chip was encoded without token scores; heatmaps need them")
            self._scores = patch_scores(self.encoding.token_scores)
        return self._scores

    def top_concepts(self, n: int = 10) -> list[tuple[int, float]]:
        """The image's n strongest codebook concepts as (code, weight)."""
        return top_codes(self.codebook_weights, n)

    # ---- heatmaps -----------------------------------------------------------------------------
    def heatmap(self, kind: str | RegisteredKind, inputs: object) -> Heatmap:
        """The heatmap of one query on this chip: ``kind`` a registered key (``text``, ``word``, ``audio``,
        ``composed``, ``concept`` or one added with :func:`sat2sound_core.maps.kinds.register`) and
        ``inputs`` that kind's inputs dataclass (e.g. ``TextInputs("birds singing")``)."""
        return get_kind(kind)(self, inputs)

    def word_heatmap(self, caption: str, words: str | Sequence[str]) -> Heatmap:
        """The official demo's word map: each word's token → its strongest code → that code's score
        on every patch, averaged over the words (docs/heatmaps.md)."""
        return self.heatmap("word", WordInputs(caption, (words,) if isinstance(words, str) else tuple(words)))

    def text_heatmap(self, query: str) -> Heatmap:
        """Where a text query lives on the chip: r_p = Σ_c w_query[c] · s_p[c] (docs/heatmaps.md)."""
        return self.heatmap("text", TextInputs(query))

    def audio_heatmap(self, waveform: Waveform, sample_rate: int, start_seconds: float = 0.0,
                      label: str = "audio clip", whole_recording: bool = False) -> Heatmap:
        """Where an audio clip's sound lives on the chip (same relevance as :meth:`text_heatmap`);
        ``whole_recording``: from all its 10-s windows (:meth:`Engine.encode_audio`). The map's query
        text is ``label`` plus what was heard when not the first 10 s (``" (whole recording)"``)."""
        return self.heatmap("audio", AudioInputs(waveform, sample_rate, start_seconds, whole_recording, label))

    def composed_heatmap(self, waveform: Waveform, sample_rate: int, caption: str,
                         start_seconds: float = 0.0, whole_recording: bool = False) -> Heatmap:
        """Map of the composed query l2n(l2n(audio) + l2n(caption)) (weights: docs/heatmaps.md)."""
        return self.heatmap("composed", ComposedInputs(waveform, sample_rate, caption, start_seconds, whole_recording))

    # ---- concepts and retrieval ---------------------------------------------------------------
    def concept_map(self, top_k: int = 5, gallery: GallerySpec = None, n_examples: int = 3) -> ConceptMap:
        """Per-patch top concepts, groups of patches sharing their top concept, and for each group the
        gallery captions that carry it (when a gallery is available)."""
        from sat2sound_core.maps.concepts import concept_map

        g = self.engine._gallery_or_none(gallery) if n_examples > 0 else None
        codebook = self.engine.model.fdt.space_dict.detach() if g is not None else None
        return concept_map(self.patch_scores, self.geometry, top_k=top_k, gallery=g, codebook=codebook,
                           scale=self._gallery_scale(g), n_examples=n_examples,
                           image_weights=self.codebook_weights)

    def _gallery_scale(self, gallery: Gallery | None) -> int:
        if gallery is None or self.scale in gallery.scales:
            return self.scale
        return gallery.scales[0]

    def retrieve(self, k: int = 10, gallery: GallerySpec = None, target: str = "text") -> list[Hit]:
        """Top-k gallery rows for this chip: LLaVA captions at this scale (``target="text"``, the
        official demo) or recordings (``target="audio"``)."""
        from sat2sound_core.retrieval import retrieve

        g = self.engine.get_gallery(gallery)
        return retrieve(g, self.embedding, k=k, scale=self._gallery_scale(g), target=target)

    def describe(self) -> dict[str, object]:
        """A JSON-able summary (for sidecars, exports and logs)."""
        from sat2sound_core.export import _jsonable

        return {
            "lat": self.lat,
            "lon": self.lon,
            "scale": self.scale,
            "checkpoint": self.checkpoint,
            "precision": self.precision,
            "metadata": _jsonable(self.metadata),
            "crs": str(self.geometry.crs),
            "lonlat_bounds": list(self.geometry.lonlat_bounds),
            "provider": str(self.chip.provider),
            "attribution": str(self.chip.attribution),
        }


class Engine:
    """Lazy facade over model, imagery, gallery and caches (see the module docstring).

    ``checkpoint``: a registry name, ``hf-hub:…`` or a local path (anything ``load_model`` takes);
    ``model``: an already built :class:`~sat2sound_core.Sat2Sound` to use instead (tests, notebooks);
    ``provider``: a ``tiles`` provider name or object (default: ``SAT2SOUND_TILE_URL`` when set, else
    the checkpoint's default); ``gallery``: a :class:`~sat2sound_core.gallery.Gallery`, a path,
    ``"official"`` or None (``SAT2SOUND_GALLERY`` or the official demo gallery, fetched on first use).
    ``cache_size`` analysed chips are kept (about 20 MB each: the source chip and the patch scores).
    Thread-safe: the app may call it from several sessions.
    """

    def __init__(
        self,
        checkpoint: str | Path = "bingmap_withmeta",
        precision: str | None = None,
        device: str | None = None,
        provider: ProviderSpec = None,
        gallery: GallerySpec = None,
        model: Sat2Sound | None = None,
        cache_size: int = 16,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.checkpoint = str(checkpoint)
        self.precision = precision_or_default(precision, "auto")  # None: SAT2SOUND_PRECISION when set
        self.device = device_or_default(device, "auto")
        self.provider = provider
        self._gallery_spec = gallery
        self._model = model
        self._lock = threading.RLock()
        self._results: OrderedDict[tuple[object, ...], ChipAnalysis] = OrderedDict()
        self._texts: OrderedDict[str, Encoding] = OrderedDict()
        self._tokens: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._cache_size = int(cache_size)
        self._gallery: Gallery | None = None
        self._other_galleries: dict[str, Gallery] = {}
        self._progress = progress
        self.stats = {"encodes": 0, "cache_hits": 0, "text_encodes": 0}

    # ---- model --------------------------------------------------------------------------------
    @property
    def model(self) -> Sat2Sound:
        """The Sat2Sound model (loaded on first use)."""
        with self._lock:
            if self._model is None:
                from sat2sound_core import load_model

                report(self._progress, 0, 1, f"loading {self.checkpoint}")
                self._model = load_model(self.checkpoint, device=self.device, precision=self.precision)
                report(self._progress, 1, 1, "model ready")
            return self._model

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded already."""
        return self._model is not None

    @property
    def checkpoint_name(self) -> str:
        """The model's config name when loaded (registry name), else the checkpoint given."""
        if self._model is not None:
            return str(getattr(self._model.config, "name", self.checkpoint) or self.checkpoint)
        return self.checkpoint

    @property
    def sat_type(self) -> str:
        """Imagery type of the checkpoint: bingmap, sentinel or googleEarth (loads the model)."""
        return str(self.model.config.sat_type)

    @property
    def has_metadata(self) -> bool:
        """Whether the checkpoint takes metadata (withmeta)."""
        return str(self.model.config.metadata_type) != "none"

    @property
    def model_precision(self) -> str:
        """The precision the loaded model runs in (fp32 or bf16)."""
        return str(getattr(self.model, "precision", self.precision))

    # ---- imagery ------------------------------------------------------------------------------
    def resolve_provider(self, provider: ProviderSpec = None) -> ProviderSpec:
        """The provider for a fetch: the argument, the engine's, ``SAT2SOUND_TILE_URL``, or None
        (the imagery type's default)."""
        chosen = provider if provider is not None else self.provider
        if chosen is not None:
            return chosen
        return imagery.custom_provider()

    def fetch_chip(self, lat: float, lon: float, provider: ProviderSpec = None) -> Chip:
        """The training-size chip around the point for this checkpoint's imagery type (the chip
        geometries are named like the checkpoints' ``sat_type``)."""
        return imagery.fetch_chip(lat, lon, self.sat_type, provider=self.resolve_provider(provider))

    # ---- analysis -----------------------------------------------------------------------------
    def analyze(self, lat: float, lon: float, scale: int = 1, metadata: MetadataSpec = None,
                provider: ProviderSpec = None, now: dt.datetime | None = None) -> ChipAnalysis:
        """Fetch the chip around (lat, lon) and encode it at ``scale`` (cached; see module docstring)."""
        chip = self.fetch_chip(lat, lon, provider)
        return self.analyze_chip(chip, scale=scale, metadata=metadata, lat=lat, lon=lon, now=now)

    def analyze_chip(self, chip: Chip, scale: int = 1, metadata: MetadataSpec = None, lat: float | None = None,
                     lon: float | None = None, now: dt.datetime | None = None) -> ChipAnalysis:
        """Encode an already fetched source chip (full training size) at ``scale``."""
        from sat2sound_core import image_to_tensor

        model = self.model
        if lat is None or lon is None:
            lat, lon = _chip_center(chip)
        if not isinstance(scale, int) or isinstance(scale, bool):
            raise InputError(f"scale must be an integer (1, 3 or 5), got {scale!r}")
        meta = default_metadata(lat, lon, now, metadata) if self.has_metadata else None
        if not self.has_metadata and metadata is not None:
            log.info("checkpoint %s has no metadata input; ignoring the metadata given", self.checkpoint_name)
        key = (_chip_key(chip), self.checkpoint, self.checkpoint_name, scale, _metadata_key(meta),
               self.model_precision, str(model.device))
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                self.stats["cache_hits"] += 1
                return hit
        crop = imagery.crop(chip, scale)
        tensor = image_to_tensor(np.asarray(chip.image), scale, self.sat_type)
        encoding = model.encode_image(tensor[None], scales=scale, metadata=meta, return_token_scores=True)
        analysis = ChipAnalysis(
            lat=float(lat), lon=float(lon), chip=crop, source_chip=chip, encoding=encoding, metadata=meta,
            scale=scale, checkpoint=self.checkpoint_name, precision=self.model_precision,
            geometry=grid_geometry(crop), engine=self,
        )
        with self._lock:
            self.stats["encodes"] += 1
            self._results[key] = analysis
            while len(self._results) > self._cache_size:
                self._results.popitem(last=False)
        return analysis

    # ---- queries ------------------------------------------------------------------------------
    def encode_text(self, text: str) -> Encoding:
        """Encoding of one caption (cached per text)."""
        with self._lock:
            if text in self._texts:
                self._texts.move_to_end(text)
                return self._texts[text]
        enc = self.model.encode_text([text])
        with self._lock:
            self.stats["text_encodes"] += 1
            self._texts[text] = enc
            while len(self._texts) > 256:
                self._texts.popitem(last=False)
        return enc

    def caption_tokens(self, caption: str) -> list[str]:
        """The FLAN-T5 token strings of a caption, as the text path sees them."""
        tok = getattr(self.model.text_encoder, "tokenizer", None)
        if tok is None:
            raise Sat2SoundError("the text encoder has no tokenizer; word heatmaps need one")
        ids = tok(caption)["input_ids"]
        return list(tok.convert_ids_to_tokens(ids))

    def caption_token_scores(self, caption: str) -> tuple[list[str], np.ndarray]:
        """(tokens, (L, K) raw text token·codebook scores) of one caption (cached)."""
        with self._lock:
            if caption in self._tokens:
                return self._tokens[caption]
        tokens = self.caption_tokens(caption)
        token_scores = self.model.encode_text([caption], return_token_scores=True).token_scores
        if token_scores is None:
            raise Sat2SoundError("the text encoder returned no token scores; word heatmaps need them")
        scores = np.asarray(token_scores[0].float().cpu().numpy(), dtype=np.float32)
        if scores.shape[0] < len(tokens):
            raise Sat2SoundError(f"text encoder returned {scores.shape[0]} token rows for {len(tokens)} tokens")
        scores = scores[: len(tokens)]
        with self._lock:
            self._tokens[caption] = (tokens, scores)
            while len(self._tokens) > 64:
                self._tokens.popitem(last=False)
        return tokens, scores

    def encode_audio(self, waveform: Waveform, sample_rate: int, start_seconds: float = 0.0,
                     whole_recording: bool = False) -> Encoding:
        """Encoding of an audio clip (``waveform`` (T,) or (C, T) floats): its 10-s window from
        ``start_seconds``, or with ``whole_recording`` the mean of its 10-s windows' normalised
        embeddings (:meth:`Sat2Sound.encode_recording`; back to back, the last one aligned to the end,
        at most :data:`MAX_RECORDING_WINDOWS` spread over the recording)."""
        import torch

        from sat2sound_core import log_mel
        from sat2sound_core.preprocess.audio import AudioFile, log_mel_windows

        arr: np.ndarray | AudioFile
        if isinstance(waveform, AudioFile):  # read window by window (bounded memory)
            arr, sample_rate = waveform, waveform.sample_rate
        else:
            arr = _as_float_waveform(waveform)
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise InputError(f"sample rate must be a positive integer, got {sample_rate!r}")
        duration = arr.duration if isinstance(arr, AudioFile) else arr.shape[-1] / float(sample_rate)
        if duration < 0.5:
            raise InputError(f"the audio clip is too short ({duration:.2f} s); give at least 0.5 s of sound")
        if whole_recording:
            windows = log_mel_windows(arr, int(sample_rate), max_windows=MAX_RECORDING_WINDOWS)
            return self.model.encode_recording(windows.mels)
        mel = log_mel(arr, int(sample_rate), start_seconds)
        return self.model.encode_audio(torch.as_tensor(mel)[None])

    # ---- audio and text as queries --------------------------------------------------------------
    def query_embedding(self, text: str | None = None, waveform: Waveform | None = None,
                        sample_rate: int | None = None,
                        start_seconds: float = 0.0, whole_recording: bool = False) -> np.ndarray:
        """L2-normalised embedding of a text, an audio clip, or both composed (l2n(l2n(a) + l2n(c)))."""
        from sat2sound_core.retrieval import compose, l2n

        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InputError("the text query is empty")
        if waveform is None and text is None:
            raise InputError("give a text, an audio clip, or both")
        a = None
        if waveform is not None:
            if sample_rate is None:
                raise InputError("give the audio clip's sample rate")
            a = self.encode_audio(waveform, int(sample_rate), start_seconds, whole_recording=whole_recording).embedding[0]
        c = self.encode_text(text).embedding[0] if text is not None else None
        if a is not None and c is not None:
            return compose(a, c).reshape(-1)
        query = a if a is not None else c
        assert query is not None  # checked above: a text, an audio clip or both
        return l2n(query).reshape(-1)

    def search(self, text: str | None = None, waveform: Waveform | None = None, sample_rate: int | None = None,
               k: int = 10, scale: int = 1, target: str = "text", gallery: GallerySpec = None,
               whole_recording: bool = False) -> list[Hit]:
        """Gallery rows for a text and/or audio query (audio → caption, audio → audio, composed …)."""
        from sat2sound_core.retrieval import retrieve

        q = self.query_embedding(text, waveform, sample_rate, whole_recording=whole_recording)
        return retrieve(self.get_gallery(gallery), q, k=k, scale=scale, target=target)

    def rank_places(self, results: Sequence[ChipAnalysis], text: str | None = None, waveform: Waveform | None = None,
                    sample_rate: int | None = None, whole_recording: bool = False) -> list[tuple[ChipAnalysis, float]]:
        """Audio/text → image: analysed places ordered by cosine between their image embedding and the
        query (best first)."""
        from sat2sound_core.retrieval import rank_embeddings

        if not results:
            raise InputError("no analysed places to rank; analyse one or more points first")
        q = self.query_embedding(text, waveform, sample_rate, whole_recording=whole_recording)
        order, scores = rank_embeddings(q, np.stack([r.embedding for r in results]))
        return [(results[int(i)], float(s)) for i, s in zip(order, scores, strict=True)]

    # ---- gallery ------------------------------------------------------------------------------
    def get_gallery(self, gallery: GallerySpec = None) -> Gallery:
        """The gallery to retrieve from, with embeddings for this checkpoint (recomputed + cached when
        the file's embeddings come from another checkpoint)."""
        from sat2sound_core.gallery import resolve_gallery

        if gallery is not None:
            # galleries named by a path are kept per absolute path; Gallery objects are used as given
            key = os.path.abspath(os.fspath(gallery)) if isinstance(gallery, str | os.PathLike) else None
            with self._lock:
                cached = self._other_galleries.get(key) if key is not None else None
            if cached is not None:
                return cached
            g = resolve_gallery(gallery).for_checkpoint(self.model, self.checkpoint_name)
            if key is not None:
                with self._lock:
                    self._other_galleries[key] = g
            return g
        with self._lock:
            if self._gallery is None:
                g = resolve_gallery(self._gallery_spec)
                self._gallery = g.for_checkpoint(self.model, self.checkpoint_name, progress=self._progress)
            return self._gallery

    def _gallery_or_none(self, gallery: GallerySpec) -> Gallery | None:
        try:
            return self.get_gallery(gallery)
        except Sat2SoundError as exc:
            log.warning("no gallery for concept examples: %s", exc)
            return None

    def gallery_audio(self, hit: Hit, gallery: GallerySpec = None) -> tuple[np.ndarray, int] | None:
        """Playable audio of a retrieved hit: the gallery's pre-synthesised clip at the hit's scale,
        else the raw recording; None when the row has none."""
        g = self.get_gallery(gallery)
        return g.audio(int(hit.row), int(hit.scale))

    def clear_results(self) -> None:
        """Forget analysed chips (the next analyze re-encodes); query encodings stay cached."""
        with self._lock:
            self._results.clear()

    def clear_cache(self) -> None:
        """Forget analysed chips and cached query encodings."""
        with self._lock:
            self._results.clear()
            self._texts.clear()
            self._tokens.clear()


def _chip_center(chip: Chip) -> tuple[float, float]:
    west, south, east, north = chip.lonlat_bounds
    return (south + north) / 2.0, (west + east) / 2.0
