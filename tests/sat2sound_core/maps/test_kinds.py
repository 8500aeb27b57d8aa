"""The registry of heatmap kinds: one object per kind, seen by the engine, the CLI and the app.

``CODE_KIND`` is a test kind (the raw score map of one codebook code) added with one ``register`` call;
the other test files (CLI end to end, the app page) use it through :func:`code_kind`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from sat2sound_core.common.errors import ConfigError, InputError
from sat2sound_core.maps import kinds
from sat2sound_core.maps.heatmaps import Heatmap, make_heatmap

NOW = dt.datetime(2026, 5, 17, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CodeInputs:
    """One codebook code."""

    code: int = 0


def _code_map(analysis, inputs: CodeInputs) -> Heatmap:
    return make_heatmap(analysis.patch_scores[:, inputs.code], analysis.geometry, f"code {inputs.code}", "code",
                        code=inputs.code)


CODE_KIND = kinds.HeatmapKind(
    key="code", label="One codebook code", inputs=CodeInputs, compute=_code_map,
    cli=kinds.CliOption("--code", metavar="C", parse=lambda value, _: CodeInputs(int(value)),
                        help="the raw score map of codebook code C (repeatable)"),
)


@contextlib.contextmanager
def code_kind() -> Iterator[kinds.HeatmapKind[CodeInputs]]:
    """The test kind registered for the block, unregistered after it."""
    kinds.register(CODE_KIND)
    try:
        yield CODE_KIND
    finally:
        kinds.unregister(CODE_KIND.key)


@pytest.fixture(scope="module")
def analysis():
    from sat2sound_core.engine import Engine
    from tests.fixtures.chips import make_chip
    from tests.fixtures.tiny_model import tiny_model

    return Engine(checkpoint="tiny", model=tiny_model()).analyze_chip(make_chip(), scale=1, now=NOW)


def test_the_built_in_kinds_in_order_with_labels_inputs_and_cli_flags() -> None:
    assert kinds.kind_keys()[:5] == ("text", "word", "audio", "composed", "concept")
    labels = {k.key: k.label for k in kinds.list_kinds()}
    assert labels["audio"] == "Uploaded audio clip" and labels["composed"] == "Audio clip + caption"
    flags = {k.key: k.cli.flag for k in kinds.list_kinds() if k.cli is not None}
    assert flags == {"text": "--text", "word": "--word", "audio": "--audio", "composed": "--compose"}
    assert kinds.get_kind("word").inputs is kinds.WordInputs
    assert kinds.get_kind(kinds.TEXT) is kinds.TEXT
    with pytest.raises(InputError, match="unknown heatmap kind 'sound'; use one of text, word"):
        kinds.get_kind("sound")
    with pytest.raises(InputError, match="registered already"):
        kinds.register(kinds.TEXT)
    with pytest.raises(InputError, match="metavar and parse"):
        kinds.CliOption("--x", help="x", metavar="X")


def test_a_kind_checks_its_inputs_type(analysis) -> None:
    with pytest.raises(InputError, match="the text heatmap takes TextInputs, got WordInputs"):
        analysis.heatmap("text", kinds.WordInputs("a river", ("river",)))


def test_the_documented_shortcuts_are_the_registry_kinds(analysis) -> None:
    np.testing.assert_array_equal(analysis.text_heatmap("birds singing").values,
                                  analysis.heatmap("text", kinds.TextInputs("birds singing")).values)
    word = analysis.heatmap("word", kinds.WordInputs("birds near the river", ("birds", "river")))
    assert word.kind == "word" and word.query == "birds, river"
    np.testing.assert_array_equal(word.values, analysis.word_heatmap("birds near the river", ["birds", "river"]).values)
    top = analysis.concept_map(n_examples=0).groups[0].code
    concept = analysis.heatmap("concept", kinds.ConceptInputs())
    assert concept.kind == "concept" and concept.query == f"concept {top}"
    np.testing.assert_array_equal(concept.values.reshape(-1), analysis.patch_scores[:, top])
    assert analysis.heatmap("concept", kinds.ConceptInputs(7)).query == "concept 7"
    with pytest.raises(InputError, match="concept 64 does not exist"):
        analysis.heatmap("concept", kinds.ConceptInputs(64))


def test_audio_maps_say_what_of_the_recording_was_heard(analysis) -> None:
    rate = 32000
    t = np.arange(12 * rate) / rate
    wav = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert analysis.audio_heatmap(wav, rate, label="audio clip a.wav").query == "audio clip a.wav"
    assert analysis.audio_heatmap(wav, rate, label="audio clip a.wav", whole_recording=True).query == (
        "audio clip a.wav (whole recording)")
    assert analysis.audio_heatmap(wav, rate, 1.5).query == "audio clip (10 s from 1.5 s)"
    assert analysis.composed_heatmap(wav, rate, "rain", whole_recording=True).query == "audio + rain (whole recording)"


def test_a_new_kind_is_one_object_seen_by_engine_cli_and_app(analysis) -> None:
    from app import config
    from sat2sound_core.cli import build_parser, heatmap_queries

    argv = ["heatmap", "--lat", "1", "--lon", "2", "--out", "x", "--code", "3", "--text", "birds", "--code", "5"]
    with code_kind():
        assert "code" in kinds.kind_keys()
        # the engine's API
        h = analysis.heatmap("code", CodeInputs(3))
        assert h.kind == "code" and h.query == "code 3" and h.details == {"code": 3}
        np.testing.assert_array_equal(h.values.reshape(-1), analysis.patch_scores[:, 3])
        # the CLI: a flag with its help; its values become inputs, in the registry's order of kinds
        parser = build_parser()
        sub = parser._subparsers._group_actions[0].choices["heatmap"]
        assert "--code C" in sub.format_help() and "codebook code C" in sub.format_help()
        queries = heatmap_queries(parser.parse_args(argv))
        assert [(k.key, i) for k, i in queries] == [("text", kinds.TextInputs("birds")), ("code", CodeInputs(3)),
                                                     ("code", CodeInputs(5))]
        bands = [analysis.heatmap(k, i) for k, i in queries]
        assert [b.query for b in bands] == ["birds", "code 3", "code 5"]
        # the app's settings accept it as the default heatmap
        assert config.from_env({"SAT2SOUND_APP_HEATMAP": "code"}).heatmap_kind == "code"
    assert "code" not in kinds.kind_keys()
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    with pytest.raises(InputError, match="unknown heatmap kind 'code'"):
        analysis.heatmap("code", CodeInputs(3))
    with pytest.raises(ConfigError, match="SAT2SOUND_APP_HEATMAP='code'; use one of text, word"):
        config.from_env({"SAT2SOUND_APP_HEATMAP": "code"})


def test_a_switch_kind_adds_one_map_with_default_inputs(analysis) -> None:
    from sat2sound_core.cli import build_parser, heatmap_queries

    @dataclass(frozen=True)
    class Flat:
        value: float = 1.0

    flat = kinds.HeatmapKind(
        key="flat", label="Flat", inputs=Flat,
        compute=lambda a, i: make_heatmap(np.full(196, i.value), a.geometry, "flat", "flat"),
        cli=kinds.CliOption("--flat", help="a flat map"),
    )
    kinds.register(flat)
    try:
        args = build_parser().parse_args(["heatmap", "--lat", "1", "--lon", "2", "--out", "x", "--flat"])
        (kind, inputs), = heatmap_queries(args)
        assert kind is flat and inputs == Flat()
        assert float(analysis.heatmap(kind, inputs).values.max()) == 1.0
    finally:
        kinds.unregister("flat")
