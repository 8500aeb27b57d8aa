"""The page: sidebar controls, map, results, downloads. UI and per-session state only.

Every computation is a call into :mod:`sat2sound_core` (engine, render, export, synthesis) or
:mod:`tiles`; this module decides what to show and keeps each session's results in
``st.session_state`` (never in shared objects), so concurrent sessions cannot see each other's work.
Errors the product raises on purpose are shown as their message (it names the fix); anything else is
logged with its traceback on the server and shown as one short line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st
from streamlit_folium import st_folium

from app import bridge, inputs, resources
from app import config as app_config
from app.inputs import AUTO, UNKNOWN, Point
from app.jobs import Job, remaining_text
from app.map_view import Basemap, Footprint, Legend, Overlay, build_layers, build_map, zoom_for_span
from sat2sound_core.common.errors import Sat2SoundError
from sat2sound_core.common.progress import Cancelled
from sat2sound_core.common.settings import get_settings
from sat2sound_core.maps import kinds
from sat2sound_core.maps.kinds import RegisteredKind

if TYPE_CHECKING:
    import numpy as np

    from sat2sound_core.maps.heatmaps import Heatmap

log = logging.getLogger(__name__)

AUDIO_SOURCES = (AUTO, UNKNOWN, "yfcc", "iNat", "aporee", "freesound")
CAPTION_SOURCES = (AUTO, UNKNOWN, "meta", "qwen", "pengi")
MONTHS = (AUTO, UNKNOWN, *[str(m) for m in range(1, 13)])
HOURS = (AUTO, UNKNOWN, *[str(h) for h in range(24)])
OVERLAY_SIZE = 224
SYNTH_SECONDS = 10.0


@dataclass(frozen=True)
class Controls:
    """What the sidebar currently says."""

    checkpoint: str
    provider: str
    scale: int
    precision: str
    month: str
    hour: str
    audio_source: str
    caption_source: str
    kind: str
    opacity: float
    top_k: int

    def analysis_key(self, point: Point) -> tuple[Any, ...]:
        """Everything that changes the engine's result for a click."""
        return (point, self.checkpoint, self.provider, self.scale, self.precision, self.metadata())

    def metadata(self) -> dict[str, Any]:
        """Metadata overrides for the engine (lat/lon come from the click; see inputs.metadata_overrides)."""
        return inputs.metadata_overrides(
            month=self.month, hour=self.hour, audio_source=self.audio_source, caption_source=self.caption_source
        )


# ------------------------------------------------------------------------------------------------
# errors


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show errors from the block as one short message (with the fix), never a traceback."""
    try:
        yield
    except Cancelled:
        st.info(f"{what}: cancelled.")
    except Sat2SoundError as exc:
        st.error(f"{what}: {exc}")
    except MemoryError:
        st.error(f"{what}: out of memory. Close other sessions or choose precision bf16 / a smaller scale.")
    except Exception as exc:
        log.exception("%s failed", what)
        st.error(f"{what} failed unexpectedly ({type(exc).__name__}: {exc}). The server log has details.")


def _state() -> Any:
    ss = st.session_state
    for key, default in (
        ("point", None),
        ("pending", None),
        ("result", None),
        ("result_key", None),
        ("hits", []),
        ("heatmaps", {}),
        ("synth_job", None),
        ("synth_audio", {}),
    ):
        if key not in ss:
            ss[key] = default
    return ss


# ------------------------------------------------------------------------------------------------
# sidebar


def _sidebar(cfg: app_config.AppConfig) -> Controls:
    sb = st.sidebar
    sb.header("Model")
    names = list(app_config.CHECKPOINTS)
    default_ckpt = cfg.checkpoint
    if default_ckpt not in names:
        names.insert(0, default_ckpt)  # a local file given through SAT2SOUND_APP_CHECKPOINT
    checkpoint = sb.selectbox(
        "Checkpoint",
        names,
        index=names.index(default_ckpt),
        format_func=lambda n: n if n in app_config.CHECKPOINTS else f"{Path(n).name} (local file)",
        key="ctl_checkpoint",
    )
    sb.caption(app_config.CHECKPOINTS.get(checkpoint, "A local checkpoint file (SAT2SOUND_APP_CHECKPOINT)."))
    precision = sb.selectbox(
        "Precision",
        ("auto", "fp32", "bf16"),
        index=("auto", "fp32", "bf16").index(get_settings().precision),
        help="auto: bf16 on CPUs with AVX512-BF16/AMX and on GPUs that support it, else fp32.",
        key="ctl_precision",
    )

    sb.header("Imagery")
    choices = bridge.provider_choices(cfg)
    provider = sb.selectbox(
        "Provider", list(choices), format_func=lambda k: choices[k].label, key="ctl_provider"
    )
    sb.caption(choices[provider].terms)
    scales = bridge.allowed_scales(checkpoint)
    scale = sb.radio(
        "Scale", scales, horizontal=True, key="ctl_scale",
        help="Chip size: 1, 3 or 5 times the training tile (the map shows all three footprints).",
    )

    sb.header("Metadata")
    sb.caption(
        "Latitude/longitude come from the click. 'auto': this month, the solar hour at the point, "
        "sources yfcc/meta (as the official demo). 'unknown' leaves a field out."
    )
    c1, c2 = sb.columns(2)
    month = c1.selectbox("Month", MONTHS, key="ctl_month")
    hour = c2.selectbox("Hour", HOURS, key="ctl_hour")
    audio_source = sb.selectbox("Audio source", AUDIO_SOURCES, key="ctl_asource")
    caption_source = sb.selectbox("Caption source", CAPTION_SOURCES, key="ctl_tsource")

    sb.header("Display")
    keys = list(kinds.kind_keys())
    kind = sb.selectbox(
        "Heatmap", keys, index=keys.index(cfg.heatmap_kind) if cfg.heatmap_kind in keys else 0,
        format_func=_kind_label, key="ctl_kind",
    )
    opacity = sb.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="ctl_opacity")
    top_k = int(sb.number_input("Captions to show", 1, 50, cfg.top_k, key="ctl_topk"))
    return Controls(
        checkpoint=checkpoint,
        provider=provider,
        scale=int(scale or scales[0]),
        precision=precision,
        month=month,
        hour=hour,
        audio_source=audio_source,
        caption_source=caption_source,
        kind=kind,
        opacity=float(opacity),
        top_k=top_k,
    )


# ------------------------------------------------------------------------------------------------
# weights and galleries


def _status_panel(box: Any, ctl: Controls) -> None:
    """Fill the "Weights and galleries" expander when it is open.

    The presence checks import torch and transformers (through the checkpoint registry and the text
    encoder's locator), a second or more on a cold process; run on the first page load they would
    compete with the map's first paint. So the expander reruns the page when opened and the panel is
    computed only then. The offline notice is cheap and always written.
    """
    with box, guard("Weights status"):
        from app import status

        status.render_offline_notice()
        if box.open:
            with st.spinner("Checking what is on disk…"):
                resources.import_heavy_modules()
                status.render(ctl.checkpoint, offline_notice=False)
        else:
            st.caption("Open to see which weights and galleries are on disk and download the rest.")


# ------------------------------------------------------------------------------------------------
# requests: click, search, re-run


def _on_map_change() -> None:
    value = st.session_state.get("map") or {}
    point = inputs.point_from_click(value.get("last_clicked"))
    if point is not None:
        st.session_state.pending = point


def _search_bar(ss: Any) -> None:
    with st.form("search", clear_on_submit=False, border=False):
        c1, c2, c3 = st.columns([5, 1, 2], vertical_alignment="bottom")
        text = c1.text_input("Go to coordinates", placeholder="lat, lon  e.g. 52.5163, 13.3777", key="search_text")
        go = c2.form_submit_button("Go")
        again = c3.form_submit_button("Re-run at the stored point", disabled=ss.point is None)
    if go:
        try:
            ss.pending = inputs.parse_latlon(text)
        except Sat2SoundError as exc:
            st.error(str(exc))
    if again and ss.point is not None:
        ss.pending = ss.point
        ss.result_key = None  # force a fresh analysis even if nothing changed


def _analyze(ss: Any, cfg: app_config.AppConfig, ctl: Controls) -> None:
    """Run the engine for a pending point (or for the stored point when a control changed)."""
    point = ss.pending
    if point is None and ss.point is not None and ss.result_key not in (None, ctl.analysis_key(ss.point)):
        point = ss.point  # scale/checkpoint/metadata changed: redo the stored click
    ss.pending = None
    if point is None:
        if ss.result is not None and len(ss.hits) != ctl.top_k:
            _retrieve(ss, ctl)  # only the number of captions changed
        return
    ss.point = point
    key = ctl.analysis_key(point)
    if key == ss.result_key and ss.result is not None:
        return
    settings = get_settings()
    with guard("Analysing the point"), st.spinner(f"Fetching imagery and listening at {point.label()}…"):
        shared = resources.get_engine(ctl.checkpoint, ctl.precision, settings.device, settings.gallery)
        t0 = time.perf_counter()
        engine = shared.obj
        # the imagery fetch waits on the network: never under the model lock (another session's click
        # must not wait for this session's tile server); only the encoding is serialised
        chip = engine.fetch_chip(point.lat, point.lon, provider=bridge.engine_provider(ctl.provider))
        with shared.use():
            result = engine.analyze_chip(
                chip, scale=ctl.scale, metadata=ctl.metadata() or None, lat=point.lat, lon=point.lon
            )
        if ss.result is not result:
            ss.synth_audio = {}  # clips belong to the previous place's captions
        ss.result, ss.result_key = result, key
        ss.heatmaps, ss.hits = {}, []
        log.info("analysed %s in %.2f s", point.label(), time.perf_counter() - t0)
        _retrieve(ss, ctl)
    if ss.result_key != key:
        ss.result = None  # failed: do not keep showing an older place's result
        ss.result_key = None


def _retrieve(ss: Any, ctl: Controls) -> None:
    """Top-k gallery captions of the current result (the gallery may be missing: say so, keep the map)."""
    ss.hits = []
    with guard("Retrieving captions"):
        # retrieval is a matrix product against the gallery (the engine loads it once, under its own
        # lock, possibly downloading it): no model lock
        ss.hits = list(ss.result.retrieve(ctl.top_k))


# ------------------------------------------------------------------------------------------------
# heatmaps


def _kind_label(key: str) -> str:
    """The registered kind's label for people (the key itself for a kind no longer registered)."""
    try:
        return kinds.get_kind(key).label
    except Sat2SoundError:
        return key


@dataclass(frozen=True)
class HeatmapRequest:
    """What the heatmap widgets ask for: the kind, a hashable description of the query (the session's
    cache key, so an unchanged query is not recomputed) and how to build the kind's inputs (called only
    when the map is not cached yet, e.g. to decode an uploaded clip once)."""

    kind: RegisteredKind
    key: tuple[Hashable, ...]
    build: Callable[[], object]


def _heatmap_inputs(ss: Any, ctl: Controls) -> HeatmapRequest | None:
    """Widgets for the chosen heatmap kind; returns the request, or None while it is incomplete.

    The built-in kinds have widgets of their own (a caption picked from the retrieved ones, an audio
    upload); any other registered kind gets one widget per field of its inputs dataclass.
    """
    kind = kinds.get_kind(ctl.kind)
    widgets = _KIND_WIDGETS.get(kind.key)
    return widgets(ss, kind) if widgets is not None else _field_widgets(kind)


def _text_widgets(ss: Any, kind: RegisteredKind) -> HeatmapRequest | None:
    q = st.text_input("Text query", value="birds chirping in trees", key="q_text").strip()
    return HeatmapRequest(kind, (kind.key, q), lambda: kinds.TextInputs(q)) if q else None


def _word_widgets(ss: Any, kind: RegisteredKind) -> HeatmapRequest | None:
    captions = [h.caption for h in ss.hits]
    if not captions:
        st.caption("Click the map first: the words come from a retrieved caption.")
        return None
    cap = st.selectbox("Caption", captions, key="q_caption")
    text = st.text_input("Word(s) from the caption (comma separated)", value=_first_word(cap), key="q_words")
    if not text.strip():
        return None
    words = tuple(inputs.parse_words(text))
    return HeatmapRequest(kind, (kind.key, cap, words), lambda: kinds.WordInputs(cap, words))


def _audio_upload() -> tuple[str, bytes, bool] | None:
    up = st.file_uploader(
        "Audio clip", type=list(inputs.AUDIO_TYPES), key="q_audio",
        help=f"A few seconds is enough; at most {inputs.MAX_AUDIO_BYTES // 2**20} MB.",
    )
    whole = st.checkbox(
        "Whole recording", value=True, key="q_whole",
        help="The model hears 10 s at a time. On: a longer recording is heard as all its 10-s windows "
             "(their average, at most 32 spread over it). Off: only its first 10 s.",
    )
    if up is None:
        return None
    inputs.check_audio_upload(up.name, up.size)
    return up.name, up.getvalue(), bool(whole)


def _audio_widgets(ss: Any, kind: RegisteredKind) -> HeatmapRequest | None:
    upload = _audio_upload()
    if upload is None:
        return None
    name, data, whole = upload

    def build() -> kinds.AudioInputs:
        wav, sr = bridge.decode_audio(data)
        return kinds.AudioInputs(wav, sr, whole_recording=whole, label=f"audio clip {name}")

    return HeatmapRequest(kind, (kind.key, name, hashlib.sha1(data).hexdigest(), whole), build)


def _composed_widgets(ss: Any, kind: RegisteredKind) -> HeatmapRequest | None:
    upload = _audio_upload()
    if upload is None:
        return None
    name, data, whole = upload
    captions = [h.caption for h in ss.hits]
    default = captions[0] if captions else "birds chirping near a river"
    cap = st.text_input("Caption to compose with", value=default, key="q_comp_caption").strip()
    if not cap:
        return None

    def build() -> kinds.ComposedInputs:
        wav, sr = bridge.decode_audio(data)
        return kinds.ComposedInputs(wav, sr, cap, whole_recording=whole)

    return HeatmapRequest(kind, (kind.key, name, hashlib.sha1(data).hexdigest(), cap, whole), build)


def _concept_widgets(ss: Any, kind: RegisteredKind) -> HeatmapRequest | None:
    # "concept" alone is the session slot of the ConceptMap itself (app/concepts.py): the map of its
    # largest group's concept is kept beside it
    return HeatmapRequest(kind, ("concept-top",), kinds.ConceptInputs)


_KIND_WIDGETS: dict[str, Callable[[Any, RegisteredKind], HeatmapRequest | None]] = {
    "text": _text_widgets,
    "word": _word_widgets,
    "audio": _audio_widgets,
    "composed": _composed_widgets,
    "concept": _concept_widgets,
}

# field annotations of an inputs dataclass the generic widgets can ask for
_FIELD_TYPES = {"str": str, "float": float, "int": int, "bool": bool}


def _field_widgets(kind: RegisteredKind) -> HeatmapRequest | None:
    """One widget per field of a kind's inputs dataclass (str, float, int or bool fields)."""
    values: dict[str, Hashable] = {}
    for f in dataclasses.fields(kind.inputs):
        typ = f.type if isinstance(f.type, type) else _FIELD_TYPES.get(str(f.type))
        default = f.default if f.default is not dataclasses.MISSING else None
        label, key = f.name.replace("_", " ").capitalize(), f"q_{kind.key}_{f.name}"
        if typ is str:
            values[f.name] = st.text_input(label, value=default or "", key=key).strip()
        elif typ is bool:
            values[f.name] = bool(st.checkbox(label, value=bool(default), key=key))
        elif typ is float:
            values[f.name] = float(st.number_input(label, value=float(default or 0.0), key=key))
        elif typ is int:
            values[f.name] = int(st.number_input(label, value=int(default or 0), step=1, key=key))
        else:
            st.caption(f"The {kind.label} heatmap takes a {f.type} ({f.name}), which this page cannot ask for.")
            return None
    return HeatmapRequest(kind, (kind.key, *values.values()), lambda: kind.inputs(**values))


def _first_word(caption: str) -> str:
    for w in caption.replace(",", " ").split():
        if len(w) > 3 and w.isalpha():
            return w.lower()
    return ""


def _compute_heatmap(ss: Any, ctl: Controls, request: HeatmapRequest) -> Heatmap:
    """The Heatmap for ``request`` on the current result, memoised in this session.

    Every heatmap made for the current result stays in ``ss.heatmaps`` (keyed by result and query) so
    the GeoTIFF download can hold all of them as bands. With the concept kind the session's ConceptMap
    is made too: the concept explorer and the GeoTIFF's concept band show the chip the map comes from.
    """
    cache_key = (id(ss.result), *request.key)
    cached: Heatmap | None = ss.heatmaps.get(cache_key)
    if cached is not None:
        return cached
    settings = get_settings()
    shared = resources.get_engine(ctl.checkpoint, ctl.precision, settings.device, settings.gallery)
    if request.kind.key == "concept":
        from app import concepts

        concepts.concept_map(ss, ctl)
    with shared.use():
        heat: Heatmap = ss.result.heatmap(request.kind, request.build())
    ss.heatmaps[cache_key] = heat
    return heat


# ------------------------------------------------------------------------------------------------
# map


def _overlay_rgba(ss: Any, heat: Heatmap) -> np.ndarray:
    """The heatmap's map image, made once per heatmap (reruns that do not change it reuse it)."""
    cached = ss.get("overlay_cache")
    if cached is not None and cached[0] is heat:
        rgba: np.ndarray = cached[1]
        return rgba
    rgba = heat.to_rgba(OVERLAY_SIZE)
    ss.overlay_cache = (heat, rgba)
    return rgba


def _draw_map(ss: Any, cfg: app_config.AppConfig, ctl: Controls, heat: Heatmap | None) -> None:
    """The map: a base map that stays mounted in the browser, plus this result's layers swapped in.

    The base map (basemap only, at the start view) gives the same component key on every run, so a
    click never remounts the iframe; marker, footprints, overlay and legend travel as one
    FeatureGroup, and ``center``/``zoom`` move the view to a new click (see app/map_view.py).
    """
    basemap: Basemap = bridge.basemap(cfg, ctl.provider, ctl.checkpoint)
    base_url_path = str(st.get_option("server.baseUrlPath") or "")
    point = ss.point
    footprints: list[Footprint] = []
    overlay = None
    legend = None
    zoom = None
    if ss.result is not None and point is not None:
        chip = ss.result.chip
        for scale, bounds in bridge.footprints(chip, bridge.allowed_scales(ctl.checkpoint)).items():
            footprints.append(Footprint(scale=scale, bounds=bounds, active=scale == ctl.scale))
        active = next((f for f in footprints if f.active), None)
        if active is not None:
            zoom = zoom_for_span(bridge.span_m(active.bounds))
        if heat is not None:
            hm = heat
            overlay = Overlay(rgba=_overlay_rgba(ss, hm), bounds=hm.overlay_bounds, label=hm.query)
            legend = Legend(title=f"{_kind_label(hm.kind)}: {hm.query}"[:80],
                            vmin=float(hm.values.min()), vmax=float(hm.values.max()))
    m = build_map(basemap, center=Point(cfg.start_lat, cfg.start_lon), zoom=13, base_url_path=base_url_path)
    layers = build_layers(point=point, footprints=footprints, overlay=overlay, legend=legend,
                          opacity=ctl.opacity, base_url_path=base_url_path)
    st_folium(
        m,
        key="map",
        height=560,
        use_container_width=True,
        returned_objects=["last_clicked"],
        on_change=_on_map_change,
        feature_group_to_add=layers,
        center=(point.lat, point.lon) if point is not None else None,
        zoom=zoom,
    )
    st.caption(f"Imagery: {basemap.attribution}. Click anywhere on the map to analyse that place.")
    if basemap.notice:
        st.info(basemap.notice)


# ------------------------------------------------------------------------------------------------
# results


def _results(ss: Any, ctl: Controls, heat: Heatmap | None) -> None:
    result = ss.result
    if result is None:
        st.info("Click the map (or type 'lat, lon' and press Go) to hear a place.")
        return
    st.subheader(f"{ss.point.label()} · scale {ctl.scale}")
    with guard("Showing the chip"):
        st.image(_chip_png(ss, heat), caption=bridge.chip_caption(result.chip), width="stretch")
    tab_caps, tab_concepts, tab_dl = st.tabs(["Captions", "Concepts", "Downloads"])
    with tab_caps:
        _captions(ss, ctl)
    with tab_concepts, guard("Concept explorer"):
        _concepts(ss, ctl)
    with tab_dl, guard("Preparing downloads"):
        _downloads(ss, ctl, heat)


def _chip_png(ss: Any, heat: Heatmap | None) -> bytes:
    """The chip preview (patch grid, heatmap blended in), drawn once per result and heatmap."""
    cached = ss.get("chip_cache")
    if cached is not None and cached[0] is ss.result and cached[1] is heat:
        return bytes(cached[2])
    png = bridge.chip_with_grid(ss.result.chip, heat)
    ss.chip_cache = (ss.result, heat, png)
    return png


def _captions(ss: Any, ctl: Controls) -> None:
    if not ss.hits:
        st.caption("No captions (is a gallery configured? see 'Weights and galleries').")
        return
    settings = get_settings()
    with guard("Synthesis licence"):
        from sat2sound_core.synthesis import LICENCE_NOTE

        st.caption(f"Synthesise uses TangoFlux. {LICENCE_NOTE}")
    fast = st.toggle(
        "Fast synthesis (25 steps)", key="synth_fast",
        help="Half the denoising steps of the paper's setting (25 instead of 50): about half the time. On a "
             "2-core CPU a 10-s clip takes about 2.5 min instead of about 5; on a GPU the paper's setting "
             "already takes about 2 s. The clip and its JSON sidecar are labelled 'fast'.",
    )
    for hit in ss.hits:
        with st.container(border=True):
            # the caption comes from the gallery file: plain text, never Markdown (a caption could
            # load remote images or links); rank and score are ours
            st.markdown(f"**{hit.rank}.** `score {hit.score:.3f}`")
            st.text(hit.caption)
            c1, c2 = st.columns(2)
            if hit.has_audio and c1.button("Play gallery audio", key=f"play_{hit.rank}"):
                with guard("Gallery audio"):
                    shared = resources.get_engine(ctl.checkpoint, ctl.precision, settings.device, settings.gallery)
                    audio = shared.obj.gallery_audio(hit)  # a file read: no model lock
                    if audio is None:
                        st.info("This gallery row has no audio.")
                    else:
                        ss.synth_audio[("gallery", hit.rank, hit.caption)] = audio
            if c2.button("Synthesise", key=f"synth_{hit.rank}", disabled=_synth_running(ss)):
                _start_synthesis(ss, hit.caption, fast)
            gal = ss.synth_audio.get(("gallery", hit.rank, hit.caption))
            if gal is not None:
                bridge.play(gal, label="gallery")
            gen = ss.synth_audio.get(("synth", hit.caption))
            if gen is not None:
                faithful = gen.metadata.get("mode", "faithful") == "faithful"
                bridge.play(gen, label="synthesised" if faithful else "synthesised (fast, 25 steps)")
    _synthesis_progress(ss)


def _synth_running(ss: Any) -> bool:
    job: Job | None = ss.synth_job
    return job is not None and not job.finished


def _start_synthesis(ss: Any, caption: str, fast: bool = False) -> None:
    settings = get_settings()
    with guard("Synthesis"):
        shared = resources.get_synthesizer(settings.tangoflux, settings.device, settings.precision)

        def run(progress: Any) -> Any:
            with shared.use() as synth:
                return synth.synthesize(caption, duration=SYNTH_SECONDS, progress=progress, fast=fast)

        ss.synth_job = Job(label=caption).start(run)


def _synthesis_progress(ss: Any) -> None:
    job: Job | None = ss.synth_job
    if job is None:
        return
    if not job.finished:
        st.caption(f"Synthesising: “{job.label}”")
        bar = st.progress(job.fraction)
        if st.button("Cancel synthesis", key="synth_cancel"):
            job.cancel()
        # Another click interrupts this loop (Streamlit reruns the page); the job keeps running and
        # the next run picks it up again. Only "Cancel synthesis" stops it.
        while not job.finished:
            bar.progress(job.fraction, text=(job.message or "denoising…") + remaining_text(job.eta_seconds))
            time.sleep(0.2)
        st.rerun()
    ss.synth_job = None
    if isinstance(job.error, Cancelled) or job.token.cancelled:
        st.info("Synthesis cancelled.")
    elif job.error is not None:
        with guard("Synthesis"):
            raise job.error
    else:
        ss.synth_audio[("synth", job.label)] = job.result
        st.rerun()


def _concepts(ss: Any, ctl: Controls) -> None:
    from app import concepts

    concepts.render(ss, ctl)


def _downloads(ss: Any, ctl: Controls, heat: Heatmap | None) -> None:
    from app import downloads

    downloads.render(ss, ctl, heat)


# ------------------------------------------------------------------------------------------------


def render() -> None:
    """Draw the whole page for this session."""
    try:
        cfg = app_config.from_env()
    except Sat2SoundError as exc:
        st.error(f"Configuration: {exc}")
        st.stop()
    ss = _state()
    ctl = _sidebar(cfg)
    status_box = st.sidebar.expander("Weights and galleries", key="status_open", on_change="rerun")
    st.markdown("### Sat2Sound soundscape map")
    left, right = st.columns([3, 2], gap="medium")
    heat = None
    with left:
        _search_bar(ss)
        _analyze(ss, cfg, ctl)
        request = None
        with guard("Heatmap input"):
            request = _heatmap_inputs(ss, ctl)
        if ss.result is not None and request is not None:
            with guard("Heatmap"):
                heat = _compute_heatmap(ss, ctl, request)
        with guard("Map"):
            _draw_map(ss, cfg, ctl, heat)
    with right:
        _results(ss, ctl, heat)
    _status_panel(status_box, ctl)
    # the map is on its way to the browser: torch & co. load in the background for the first click
    resources.start_warmup()
