"""The registry of heatmap kinds: each kind is one :class:`HeatmapKind` object, read by every front end.

A kind bundles its ``key`` (also :attr:`Heatmap.kind` and the GeoTIFF band tag), a ``label`` for
people, its ``inputs`` dataclass (the typed query: a text, a caption and words, an audio clip …), how
the ``sat2sound heatmap`` command takes it (:class:`CliOption`), and ``compute(analysis, inputs)``,
which makes the :class:`~sat2sound_core.maps.heatmaps.Heatmap` on one analysed chip
(:class:`~sat2sound_core.engine.ChipAnalysis`). The engine (:meth:`ChipAnalysis.heatmap`), the CLI's
flags and the app's select box and widgets all list :func:`list_kinds`, so a new kind is one
:func:`register` call with one new object (see ``tests/sat2sound_core/maps/test_kinds.py``).

The built-in kinds, in this order: ``text``, ``word``, ``audio``, ``composed``, ``concept``. What each
map means is in ``docs/heatmaps.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from sat2sound_core.common.errors import InputError
from sat2sound_core.maps.concepts import concept_heatmap
from sat2sound_core.maps.heatmaps import (
    Array,
    composed_weights,
    make_heatmap,
    query_relevance,
    top_codes,
    word_heatmap_values,
)

if TYPE_CHECKING:
    from sat2sound_core.engine import ChipAnalysis, Waveform
    from sat2sound_core.maps.heatmaps import Heatmap

InputsT = TypeVar("InputsT")


@dataclass(frozen=True)
class CliQueryOptions:
    """Options of ``sat2sound heatmap`` shared by the queries that take audio (``--start``,
    ``--whole-recording``)."""

    start_seconds: float = 0.0
    whole_recording: bool = False


@dataclass(frozen=True)
class CliOption(Generic[InputsT]):
    """How ``sat2sound heatmap`` takes a kind: ``flag`` (and ``short``) with ``help``.

    With a ``metavar`` the option takes a value and may be repeated; ``parse(value, options)`` turns each
    value into the kind's inputs. Without one it is a switch that adds one map with the inputs'
    defaults.
    """

    flag: str
    help: str
    metavar: str | None = None
    short: str | None = None
    parse: Callable[[str, CliQueryOptions], InputsT] | None = None

    def __post_init__(self) -> None:
        if (self.metavar is None) != (self.parse is None):
            raise InputError(f"{self.flag}: an option with a value needs both metavar and parse; a switch neither")


@dataclass(frozen=True)
class HeatmapKind(Generic[InputsT]):
    """One kind of heatmap: key, label for people, inputs dataclass, CLI option, compute function."""

    key: str
    label: str
    inputs: type[InputsT]
    compute: Callable[[ChipAnalysis, InputsT], Heatmap]
    cli: CliOption[InputsT] | None = None
    description: str = ""

    def __call__(self, analysis: ChipAnalysis, inputs: InputsT) -> Heatmap:
        """The heatmap of ``inputs`` on ``analysis`` (the inputs must be this kind's dataclass)."""
        if not isinstance(inputs, self.inputs):
            raise InputError(
                f"the {self.key} heatmap takes {self.inputs.__name__}, got {type(inputs).__name__}"
            )
        return self.compute(analysis, inputs)


#: a registered kind, whatever its inputs dataclass (what the registry holds and front ends pass around)
RegisteredKind: TypeAlias = "HeatmapKind[Any]"

# the registry: key -> kind, in registration order (the order front ends list them)
_KINDS: dict[str, RegisteredKind] = {}


def register(kind: HeatmapKind[InputsT]) -> HeatmapKind[InputsT]:
    """Add a kind to the registry (its key must be new); returns it."""
    if kind.key in _KINDS:
        raise InputError(f"a heatmap kind {kind.key!r} is registered already")
    if not kind.key.isidentifier():
        raise InputError(f"heatmap kind keys are lower-case words, got {kind.key!r}")
    _KINDS[kind.key] = kind
    return kind


def unregister(key: str) -> None:
    """Remove a kind from the registry (tests register kinds of their own)."""
    _KINDS.pop(key, None)


def list_kinds() -> tuple[RegisteredKind, ...]:
    """Every registered kind, in registration order (the built-ins first)."""
    return tuple(_KINDS.values())


def kind_keys() -> tuple[str, ...]:
    """The registered kinds' keys, in registration order."""
    return tuple(_KINDS)


def get_kind(kind: str | RegisteredKind) -> RegisteredKind:
    """The registered kind with this key (a kind object is returned as is); unknown keys raise
    :class:`InputError` listing the valid ones."""
    if isinstance(kind, HeatmapKind):
        return kind
    found = _KINDS.get(kind)
    if found is None:
        raise InputError(f"unknown heatmap kind {kind!r}; use one of {', '.join(_KINDS)}")
    return found


# --------------------------------------------------------------------------------------------------
# inputs of the built-in kinds


@dataclass(frozen=True)
class TextInputs:
    """A text query, e.g. ``"birds singing"``."""

    query: str


@dataclass(frozen=True)
class WordInputs:
    """A caption and one or more words of it (the official demo's word map)."""

    caption: str
    words: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class AudioInputs:
    """An audio clip (``waveform`` (T,) or (C, T) floats at ``sample_rate``): its 10-s window from
    ``start_seconds``, or with ``whole_recording`` all its 10-s windows; ``label`` names it in the
    heatmap's query text."""

    waveform: Waveform
    sample_rate: int
    start_seconds: float = 0.0
    whole_recording: bool = False
    label: str = "audio clip"


@dataclass(frozen=True, eq=False)
class ComposedInputs:
    """An audio clip composed with a caption (``l2n(l2n(audio) + l2n(caption))``)."""

    waveform: Waveform
    sample_rate: int
    caption: str
    start_seconds: float = 0.0
    whole_recording: bool = False


@dataclass(frozen=True)
class ConceptInputs:
    """One codebook concept; None: the concept that leads the largest group of patches."""

    code: int | None = None


def window_note(start_seconds: float, whole_recording: bool) -> str:
    """How much of a recording a map heard, for its query text: ``""`` for the first 10 s,
    ``" (whole recording)"``, or ``" (10 s from 15 s)"``."""
    if whole_recording:
        return " (whole recording)"
    if start_seconds:
        return f" (10 s from {start_seconds:g} s)"
    return ""


# --------------------------------------------------------------------------------------------------
# compute functions of the built-in kinds


def _whole_query_map(analysis: ChipAnalysis, weights: Array, label: str, kind: str) -> Heatmap:
    """The map of a whole query (text, audio, composed): r_p = Σ_c w[c]·s_p[c], with its top 5 codes."""
    return make_heatmap(query_relevance(analysis.patch_scores, weights), analysis.geometry, label, kind,
                        top_codes=top_codes(weights, 5))


def _text(analysis: ChipAnalysis, inputs: TextInputs) -> Heatmap:
    query = inputs.query
    if not isinstance(query, str) or not query.strip():
        raise InputError("the text query is empty: describe a sound, e.g. 'birds singing'")
    w = analysis.engine.encode_text(query).codebook_weights[0]
    return _whole_query_map(analysis, w, query, "text")


def _word(analysis: ChipAnalysis, inputs: WordInputs) -> Heatmap:
    caption = inputs.caption
    if not isinstance(caption, str) or not caption.strip():
        raise InputError("the caption is empty: write the caption the words come from")
    tokens, text_scores = analysis.engine.caption_token_scores(caption)
    values, matches = word_heatmap_values(analysis.patch_scores, text_scores, tokens, list(inputs.words))
    label = ", ".join(m.word for m in matches)
    return make_heatmap(
        values, analysis.geometry, label, "word", caption=caption,
        matches=[{"word": m.word, "token": m.token, "token_index": m.token_index, "code": m.code}
                 for m in matches],
    )


def _audio(analysis: ChipAnalysis, inputs: AudioInputs) -> Heatmap:
    enc = analysis.engine.encode_audio(inputs.waveform, inputs.sample_rate, inputs.start_seconds,
                                       whole_recording=inputs.whole_recording)
    w = enc.codebook_weights[0]
    label = inputs.label + window_note(inputs.start_seconds, inputs.whole_recording)
    return _whole_query_map(analysis, w, label, "audio")


def _composed(analysis: ChipAnalysis, inputs: ComposedInputs) -> Heatmap:
    caption = inputs.caption
    if not isinstance(caption, str) or not caption.strip():
        raise InputError("the caption of the composed query is empty")
    a = analysis.engine.encode_audio(inputs.waveform, inputs.sample_rate, inputs.start_seconds,
                                     whole_recording=inputs.whole_recording)
    c = analysis.engine.encode_text(caption)
    w = composed_weights(a.codebook_weights[0], a.embedding[0], c.codebook_weights[0], c.embedding[0])
    label = f"audio + {caption}" + window_note(inputs.start_seconds, inputs.whole_recording)
    return _whole_query_map(analysis, w, label, "composed")


def _concept(analysis: ChipAnalysis, inputs: ConceptInputs) -> Heatmap:
    code = inputs.code
    if code is None:
        cmap = analysis.concept_map(n_examples=0)  # the groups only: no gallery needed
        if not cmap.groups:
            raise InputError("the concept map has no concept groups for this chip")
        code = cmap.groups[0].code
    return concept_heatmap(analysis.patch_scores, analysis.geometry, int(code))


# --------------------------------------------------------------------------------------------------
# how the CLI reads the built-in kinds


def _split(value: str, what: str) -> tuple[str, str]:
    """``LEFT:RIGHT`` of a CLI value; CAPTION:WORDS splits at the last colon, FILE:CAPTION at the first."""
    left, sep, right = value.rpartition(":") if what == "CAPTION:WORDS" else value.partition(":")
    if not sep or not left.strip() or not right.strip():
        raise InputError(f"expected {what}, got {value!r}")
    return left.strip(), right.strip()


def read_audio_file(path: str) -> tuple[Waveform, int]:
    """Samples and sample rate of an audio file named on the command line."""
    from sat2sound_core.preprocess.audio import open_audio

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"audio file {p} does not exist")
    audio = open_audio(str(p))  # read window by window when a map needs it (bounded memory)
    return audio, audio.sample_rate


def _cli_word(value: str, options: CliQueryOptions) -> WordInputs:
    caption, words = _split(value, "CAPTION:WORDS")
    return WordInputs(caption, tuple(w.strip() for w in words.split(",") if w.strip()))


def _cli_audio(value: str, options: CliQueryOptions) -> AudioInputs:
    samples, rate = read_audio_file(value)
    return AudioInputs(samples, rate, options.start_seconds, options.whole_recording,
                       label=f"audio: {Path(value).name}")


def _cli_composed(value: str, options: CliQueryOptions) -> ComposedInputs:
    path, caption = _split(value, "FILE:CAPTION")
    samples, rate = read_audio_file(path)
    return ComposedInputs(samples, rate, caption, options.start_seconds, options.whole_recording)


# --------------------------------------------------------------------------------------------------
# the built-in kinds

TEXT = register(HeatmapKind(
    key="text", label="Text query", inputs=TextInputs, compute=_text,
    description="where a text query's sound lives: r_p = Σ_c w_query[c] · s_p[c]",
    cli=CliOption("--text", short="-t", metavar="QUERY", parse=lambda value, _: TextInputs(value),
                  help="a text query, e.g. 'birds singing' (repeatable)"),
))
WORD = register(HeatmapKind(
    key="word", label="Word in a caption", inputs=WordInputs, compute=_word,
    description="the official demo's word map: each word's token → its strongest code → that code's score",
    cli=CliOption("--word", metavar="CAPTION:WORDS", parse=_cli_word,
                  help="the official demo's word map: a caption and comma-separated words of it, "
                       "e.g. 'a river with birds:river,birds' (repeatable)"),
))
AUDIO = register(HeatmapKind(
    key="audio", label="Uploaded audio clip", inputs=AudioInputs, compute=_audio,
    description="where an audio clip's sound lives (the same relevance as a text query)",
    cli=CliOption("--audio", metavar="FILE", parse=_cli_audio,
                  help="an audio file (wav/flac/ogg/mp3) as query (repeatable)"),
))
COMPOSED = register(HeatmapKind(
    key="composed", label="Audio clip + caption", inputs=ComposedInputs, compute=_composed,
    description="the composed query l2n(l2n(audio) + l2n(caption))",
    cli=CliOption("--compose", metavar="FILE:CAPTION", parse=_cli_composed,
                  help="a composed query: audio file plus caption, e.g. 'rain.wav:rain on a roof' (repeatable)"),
))
CONCEPT = register(HeatmapKind(
    key="concept", label="Concept map", inputs=ConceptInputs, compute=_concept,
    description="the raw score map of one codebook concept (default: the one leading the largest patch group); "
                "the CLI writes the whole concept map as a band instead (--concepts)",
))
