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


def _texts(at: AppTest) -> list[str]:
    """What ``st.text`` shows (plain text, never Markdown)."""
    return [str(t.value) for t in at.text]


def _everything(at: AppTest) -> str:
    """Every element the page sends to the browser, as its protobuf text (the map's JS included)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        children = getattr(node, "children", None) or {}
        for child in children.values() if isinstance(children, dict) else children:
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


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
    assert hits[0].caption in _texts(at) and f"score {hits[0].score:.3f}" in md
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


# ------------------------------------------------------------------------------------------------
# hostile and broken inputs (issue 17): locks, secrets, server paths, captions


def test_a_slow_tile_server_in_one_session_does_not_delay_another_sessions_click(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session A fetches from a tile server that answers each tile after 2.5 s (7 rounds of 8 tiles: about
    17 s); session B meanwhile re-analyses a place whose tiles are cached. B must finish while A is still
    waiting on the network (before the fix, one lock held over the fetch made B wait for all of A)."""
    import time

    from tests.tiles.tileserver import TileServer

    with TileServer(slow_seconds=2.5) as slow:
        monkeypatch.setenv("SAT2SOUND_TILE_URL", slow.url_template)
        b = _go(_app(), "45.01, 7.02")  # fast for now: B's tiles land in the cache
        assert at_result(b).scale == 1 and _errors(b) == []
        a = _app()
        slow.add_fault("slow", times=None)
        before = slow.request_count
        out: dict[str, Any] = {}

        def run_a() -> None:
            t0 = time.perf_counter()
            try:
                out["a"] = _go(a, "44.7, 7.3").session_state["result"]
            except BaseException as exc:
                out["error"] = exc
            out["a_s"] = time.perf_counter() - t0

        thread = threading.Thread(target=run_a)
        thread.start()
        deadline = time.monotonic() + 60
        while slow.request_count == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.request_count > before, "session A never reached the tile server"
        t0 = time.perf_counter()
        b.radio(key="ctl_scale").set_value(3).run()
        b_s = time.perf_counter() - t0
        requested_while_b_ran = slow.request_count - before
        thread.join(300)
        requested_by_a = slow.request_count - before
        assert not b.exception and _errors(b) == []
        assert at_result(b).scale == 3 and (at_result(b).lat, at_result(b).lon) == (45.01, 7.02)
        # B took a fraction of A's fetch (at least 7 × 2.5 s), and A had tiles left to request when B was done
        assert b_s < 10.0, f"session B ({b_s:.1f} s) waited for session A's fetch ({out.get('a_s')} s)"
        assert requested_while_b_ran < requested_by_a, (requested_while_b_ran, requested_by_a)
        assert "error" not in out, out.get("error")
        assert (out["a"].lat, out["a"].lon) == (44.7, 7.3)


def at_result(at: AppTest) -> Any:
    return at.session_state["result"]


@pytest.mark.parametrize(
    "secret_url",
    ["{base}?api_key=SECRET-TOKEN-42", "http://mapuser:SECRET-TOKEN-42@{hostpath}"],
    ids=["query-key", "userinfo"],
)
def test_a_keyed_tile_url_is_used_for_the_model_but_never_sent_to_the_browser(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tile_server: Any, secret_url: str
) -> None:
    base = tile_server.url_template
    url = secret_url.format(base=base, hostpath=base.removeprefix("http://"))
    monkeypatch.setenv("SAT2SOUND_TILE_URL", url)
    at = _app()
    page = _everything(at)
    assert "SECRET-TOKEN-42" not in page and "mapuser" not in page
    assert "arcgisonline" in page  # the map's JS is in what was searched: the keyless basemap instead
    assert any("keyless basemap" in str(i.value) for i in at.info)
    # the model still reads the keyed server on the server side
    before = tile_server.request_count
    _go(at, "45.02, 7.01")
    assert _errors(at) == [] and at_result(at) is not None
    assert tile_server.request_count > before
    assert "SECRET-TOKEN-42" not in _everything(at)


def test_a_keyless_custom_tile_url_is_the_browsers_basemap(app_env: dict[str, str], tile_server: Any) -> None:
    """The control for the test above: the page search does see the configured template when it is safe."""
    page = _everything(_app())
    assert f"127.0.0.1:{tile_server.port}" in page
    assert "arcgisonline" not in page


def test_the_status_panel_shows_names_and_sizes_not_server_paths(app_env: dict[str, str]) -> None:
    at = _app()
    at.session_state["status_open"] = True
    at.run()
    assert not at.exception, at.exception
    checkpoint = Path(app_env["SAT2SOUND_APP_CHECKPOINT"])
    shown = _everything(at)
    assert checkpoint.name in shown  # named ...
    for private in (str(checkpoint), str(checkpoint.parent), app_env["SAT2SOUND_TANGOFLUX"], app_env["SAT2SOUND_HOME"]):
        assert private not in shown, private  # ... but where it lies on the server is not said


def test_gallery_captions_are_plain_text_not_markdown(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A caption that is Markdown for a remote image and a link is shown as the characters it holds."""
    from sat2sound_core.common.settings import get_settings
    from tests.app import fixtures

    hostile = "![x](http://127.0.0.1:9/track.png) **loud** [click](http://127.0.0.1:9/)"
    gallery = fixtures.write_gallery(tmp_path / "hostile.h5", n=8, caption_texts=(hostile,))
    monkeypatch.setenv("SAT2SOUND_GALLERY", str(gallery))
    get_settings.cache_clear()
    at = _go(_app(), "45.0, 7.0")
    assert _errors(at) == []
    hits = at.session_state["hits"]
    assert hits and all(h.caption.startswith(hostile) for h in hits)
    assert any(t.startswith(hostile) for t in _texts(at))  # shown, as text
    md = _markdown(at) + "\n".join(str(c.value) for c in at.caption)
    assert "track.png" not in md and "](http" not in md  # never as Markdown (st.markdown / st.caption)
    at.toggle(key="concept_on").set_value(True).run()  # the concept explorer's gallery examples too
    assert not at.exception and _errors(at) == []
    md = _markdown(at) + "\n".join(str(c.value) for c in at.caption)
    assert "track.png" not in md
    assert any(t.startswith("• " + hostile) for t in _texts(at))
