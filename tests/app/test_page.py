"""The real page run by Streamlit's AppTest (no browser) against synthetic weights and loopback tiles.

AppTest cannot click a Leaflet map, so these tests enter points through the "lat, lon" search box,
which goes through the same analysis path as a click (``ss.pending`` → engine.analyze).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
MAIN = str(REPO / "app" / "main.py")

pytestmark = pytest.mark.slow


def _app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def _go(at: AppTest, text: str) -> AppTest:
    at.text_input(key="search_text").input(text)
    next(b for b in at.button if b.label == "Go").click()
    at.run()
    assert not at.exception, at.exception
    return at


def _markdown(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def test_search_box_analyses_the_point_and_lists_captions(app_env: dict[str, str]) -> None:
    at = _go(_app(), "45.0, 7.0")
    assert _errors(at) == []
    result = at.session_state["result"]
    assert (result.lat, result.lon) == (45.0, 7.0)
    assert at.session_state["point"].label() == "45.000000, 7.000000"
    # captions of the synthetic gallery, ranked, with scores
    hits = at.session_state["hits"]
    assert len(hits) == 8 and [h.rank for h in hits] == list(range(1, 9))
    md = _markdown(at)
    assert hits[0].caption in md and f"score {hits[0].score:.3f}" in md
    # the default text heatmap lies on the chip's active footprint, which contains the point
    heat = next(v for k, v in at.session_state["heatmaps"].items() if k[1] == "text")
    (s, w), (n, e) = heat.overlay_bounds
    assert s < 45.0 < n and w < 7.0 < e
    assert heat.values.shape == (14, 14)
    # ... and is exactly the active (scale 1) footprint the map draws
    from app import bridge

    footprints = bridge.footprints(result.chip, [1, 3, 5])
    flat = [v for corner in footprints[1] for v in corner]
    assert flat == pytest.approx([v for corner in heat.overlay_bounds for v in corner], abs=1e-9)
    (s3, w3), (n3, e3) = footprints[3]
    assert s3 < s and n < n3 and w3 < w and e < e3


def test_same_point_is_not_reanalysed_but_rerun_button_and_scale_change_are(app_env: dict[str, str]) -> None:
    at = _go(_app(), "45.001, 7.001")
    first = at.session_state["result"]
    _go(at, "45.001, 7.001")
    assert at.session_state["result"] is first  # nothing changed: the stored result is kept
    at.radio(key="ctl_scale").set_value(3).run()
    assert not at.exception
    third = at.session_state["result"]
    assert third.scale == 3 and (third.lat, third.lon) == (45.001, 7.001)
    assert third is not first
    next(b for b in at.button if b.label.startswith("Re-run")).click()
    at.run()
    assert at.session_state["result"].scale == 3 and not _errors(at)
    at.number_input(key="ctl_topk").set_value(3).run()
    assert [h.rank for h in at.session_state["hits"]] == [1, 2, 3]
    assert at.session_state["result"].scale == 3


def test_bad_coordinates_give_a_short_message_with_the_format(app_env: dict[str, str]) -> None:
    at = _go(_app(), "somewhere nice")
    errors = _errors(at)
    assert len(errors) == 1 and "lat, lon" in errors[0]
    assert "Traceback" not in errors[0]
    assert at.session_state["result"] is None


def test_word_and_concept_heatmaps(app_env: dict[str, str]) -> None:
    at = _go(_app(), "45.002, 7.0")
    at.selectbox(key="ctl_kind").set_value("word").run()
    assert not at.exception and _errors(at) == []
    caption = at.selectbox(key="q_caption").value
    word = at.text_input(key="q_words").value
    assert word and word in caption
    heat = next(v for k, v in at.session_state["heatmaps"].items() if k[1] == "word")
    assert heat.kind == "word" and heat.query == word
    # a word that is not in the caption: the engine's message names the caption's tokens
    at.text_input(key="q_words").input("zebra").run()
    errors = _errors(at)
    assert errors and "zebra" in errors[0] and "Traceback" not in errors[0]

    at.selectbox(key="ctl_kind").set_value("concept").run()
    assert not at.exception
    cmap = next(v for k, v in at.session_state["heatmaps"].items() if k[1] == "concept")
    assert cmap.groups and "concept" in _markdown(at)
    assert f"concept {cmap.groups[0].code}" in _markdown(at)


def test_missing_checkpoint_is_a_message_not_a_traceback(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAT2SOUND_APP_CHECKPOINT", str(REPO / "no-such-dir" / "model.ckpt"))
    at = _go(_app(), "45.0, 7.0")
    errors = _errors(at)
    assert any("Analysing the point" in e and "checkpoint" in e.lower() for e in errors), errors
    assert all("Traceback" not in e for e in errors)
    assert at.session_state["result"] is None


def test_offline_status_panel_says_so(app_env: dict[str, str]) -> None:
    at = _app()
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "Offline mode" in warnings and "SAT2SOUND_APP_CHECKPOINT" in warnings
    # the presence checks (torch imports) wait until the expander is opened
    assert "retrieval gallery" not in _markdown(at)
    at.session_state["status_open"] = True  # what opening the expander does
    at.run()
    assert not at.exception, at.exception
    md = _markdown(at)
    assert "retrieval gallery" in md and "TangoFlux" in md
    assert "✅ **checkpoint" in md  # the synthetic checkpoint is on disk


def test_two_sessions_at_once_get_their_own_results(app_env: dict[str, str]) -> None:
    points = {"a": "45.003, 7.0", "b": "44.99, 7.01"}
    apps = {k: _app() for k in points}
    out: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            out[key] = _go(apps[key], points[key]).session_state["result"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in points]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    assert (out["a"].lat, out["a"].lon) == (45.003, 7.0)
    assert (out["b"].lat, out["b"].lon) == (44.99, 7.01)
    assert out["a"].chip.lonlat_bounds != out["b"].chip.lonlat_bounds


def test_missing_gallery_keeps_the_heatmap_and_says_what_to_do(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAT2SOUND_GALLERY", str(tmp_path / "absent.h5"))
    from sat2sound_core.common.settings import get_settings

    get_settings.cache_clear()
    at = _go(_app(), "45.0, 7.0")
    assert at.session_state["result"] is not None
    assert any(k[1] == "text" for k in at.session_state["heatmaps"])  # the map still gets its overlay
    errors = _errors(at)
    assert len(errors) == 1 and errors[0].startswith("Retrieving captions:") and "absent.h5" in errors[0]
    # fewer captions requested: retrieval is retried, the result is kept
    at.number_input(key="ctl_topk").set_value(3).run()
    assert at.session_state["result"] is not None and not at.exception


def test_gallery_audio_and_synthesis_land_in_the_session(app_env: dict[str, str]) -> None:
    at = _go(_app(), "45.0, 7.0")
    hits = at.session_state["hits"]
    with_audio = next(h for h in hits if h.has_audio)
    at.button(key=f"play_{with_audio.rank}").click().run()
    assert not at.exception and _errors(at) == []
    samples, rate = at.session_state["synth_audio"][("gallery", with_audio.rank, with_audio.caption)]
    assert rate == 44100 and len(samples) == 44100  # the gallery's 1-s pre-synthesised tone
    assert len(at.get("audio")) == 1

    at.button(key="synth_1").click().run()
    assert not at.exception and _errors(at) == []
    clip = at.session_state["synth_audio"][("synth", hits[0].caption)]
    assert clip.sample_rate > 0 and clip.samples.shape[-1] > 0
    assert at.session_state["synth_job"] is None
    assert len(at.get("audio")) == 2
    assert clip.metadata["mode"] == "faithful" and clip.metadata["steps"] == 50

    # the fast mode: 25 steps, labelled as such on the player and in the clip's metadata
    at.toggle(key="synth_fast").set_value(True).run()
    at.button(key="synth_1").click().run()
    assert not at.exception and _errors(at) == []
    fast = at.session_state["synth_audio"][("synth", hits[0].caption)]
    assert fast.metadata["steps"] == 25 and fast.metadata["mode"].startswith("fast")
    assert "synthesised (fast, 25 steps)" in [c.value for c in at.caption]


def test_concept_heatmap_after_the_concept_explorer(app_env: dict[str, str]) -> None:
    """The explorer and the concept heatmap share one concept map; opening the explorer first must not
    leave the heatmap without its overlay."""
    at = _go(_app(), "45.002, 7.0")
    at.toggle(key="concept_on").set_value(True).run()
    assert not at.exception and _errors(at) == []
    explored = next(v for k, v in at.session_state["heatmaps"].items() if k[1] == "concept")
    at.selectbox(key="ctl_kind").set_value("concept").run()
    assert not at.exception and _errors(at) == []
    cmap = next(v for k, v in at.session_state["heatmaps"].items() if k[1] == "concept")
    assert cmap is explored  # computed once, shared
    assert f"concept {cmap.groups[0].code}" in _markdown(at)


def test_a_registered_heatmap_kind_is_listed_and_gets_widgets_from_its_inputs(app_env: dict[str, str]) -> None:
    """A kind added with one register call (the test kind of test_kinds.py) appears in the select box,
    gets a widget per field of its inputs dataclass, and its map lands in the session and on the map."""
    from tests.sat2sound_core.maps.test_kinds import code_kind

    with code_kind():
        at = _go(_app(), "45.0, 7.0")
        assert "One codebook code" in at.selectbox(key="ctl_kind").options
        at.selectbox(key="ctl_kind").set_value("code").run()
        assert not at.exception and _errors(at) == []
        at.number_input(key="q_code_code").set_value(7).run()
        assert not at.exception and _errors(at) == []
        heat = at.session_state["heatmaps"][(id(at.session_state["result"]), "code", 7)]
        assert heat.kind == "code" and heat.query == "code 7" and heat.values.shape == (14, 14)
        # text (the first map), code 0 (the field's default) and code 7: three GeoTIFF bands
        assert "GeoTIFF (3 heatmap band(s))" in [b.label for b in at.get("download_button")]
