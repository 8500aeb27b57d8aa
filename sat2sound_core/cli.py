"""``sat2sound``: the soundscape engine from a terminal.

Commands: ``weights list|download``, ``heatmap``, ``retrieve``, ``concepts``, ``gallery build|info``,
``evaluate``.
Every command that needs imagery takes ``--provider`` (a ``tiles`` provider name, a local
GeoTIFF/MBTiles path or an ``http(s)://…/{z}/{x}/{y}`` template; also ``SAT2SOUND_TILE_URL``), and
every command that needs the model takes ``--checkpoint`` (registry name, ``hf-hub:…`` or a file).
Errors print one line (``error: …``) and exit with status 2; progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sat2sound_core.common.progress import ProgressCallback

if TYPE_CHECKING:
    from sat2sound_core.engine import ChipAnalysis, Engine
    from sat2sound_core.gallery import Gallery
    from sat2sound_core.maps.kinds import RegisteredKind
    from sat2sound_core.retrieval import Hit

EXIT_ERROR = 2

_EPILOG = """environment:
  SAT2SOUND_HOME, SAT2SOUND_WEIGHTS_DIR   caches and weights (see README)
  SAT2SOUND_OFFLINE=1 / HF_HUB_OFFLINE=1  never download
  SAT2SOUND_GALLERY                       default gallery file
  SAT2SOUND_TILE_URL                      XYZ template used when --provider is not given
  SAT2SOUND_TILE_ATTRIBUTION, SAT2SOUND_TILE_MAX_ZOOM   attribution/max zoom of that template
  SAT2SOUND_T5_DIR                        local FLAN-T5 folder for the text path
"""


# --------------------------------------------------------------------------------------------------
# parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", "-c", default="bingmap_withmeta",
                   help="registry name (see `sat2sound weights list`), hf-hub:REPO/PATH, or a .ckpt/.safetensors "
                        "file (default: %(default)s)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                   help="matrix-math precision (default: SAT2SOUND_PRECISION or auto)")
    g.add_argument("--device", default=None, help="torch device: auto, cpu, cuda, cuda:N (default: SAT2SOUND_DEVICE)")


def _add_point_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("place")
    g.add_argument("--lat", type=float, required=True, help="latitude in degrees (-85.05 … 85.05)")
    g.add_argument("--lon", type=float, required=True, help="longitude in degrees (-180 … 180)")
    g.add_argument("--scale", type=int, default=1, choices=(1, 3, 5),
                   help="footprint: centre crop of scale × 300 px (bingmap) or × 256 px (sentinel) (default: 1)")
    g.add_argument("--provider", default=None,
                   help="imagery: a tiles provider name, a local GeoTIFF/COG/MBTiles path, or an "
                        "http(s) {z}/{x}/{y} template (default: SAT2SOUND_TILE_URL or the checkpoint's default)")
    m = p.add_argument_group("metadata (withmeta checkpoints; default: from the point, now, yfcc/meta)")
    m.add_argument("--hour", default=None, help="local hour 0-23 of the imagined recording, or 'unknown'")
    m.add_argument("--month", default=None, help="month 1-12, or 'unknown'")
    m.add_argument("--audio-source", default=None, help="yfcc, iNat, aporee, freesound, or 'unknown'")
    m.add_argument("--caption-source", default=None, help="meta, qwen, pengi, or 'unknown'")
    m.add_argument("--no-location", action="store_true", help="do not give the model the lat/lon")


def _add_gallery_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", "-g", default=None,
                   help="gallery HDF5 file or 'official' (default: SAT2SOUND_GALLERY or the official demo gallery, "
                        "downloaded on first use)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sat2sound`` command (all sub-commands)."""
    parser = argparse.ArgumentParser(
        prog="sat2sound",
        description="Sat2Sound soundscape maps from the command line: heatmaps of where sounds live in a "
                    "satellite chip, soundscape captions and audio retrieved for a place, concept maps, galleries.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress details to stderr")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # weights
    w = sub.add_parser("weights", help="list or download model weights and the demo gallery",
                       description="List the official checkpoints (and whether they are on this machine) or "
                                   "download them.")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    wsub.add_parser("list", help="list checkpoints, sizes and local availability",
                    description="List the official Sat2Sound checkpoints, the demo gallery and the FLAN-T5 text "
                                "encoder, with their sizes and whether a local copy exists.")
    wd = wsub.add_parser("download", help="download checkpoints (and optionally the gallery)",
                         description="Download official checkpoints into SAT2SOUND_WEIGHTS_DIR (resumable).")
    wd.add_argument("names", nargs="*", help="checkpoint names (default: bingmap_withmeta)")
    wd.add_argument("--gallery", action="store_true", help="also download the official demo gallery")
    wd.add_argument("--all", action="store_true", help="download all six checkpoints")

    # heatmap
    h = sub.add_parser("heatmap", help="heatmaps of sound queries on the chip around a point -> COG + PNG",
                       description="Fetch the chip around a point, encode it and write one Cloud-Optimized GeoTIFF "
                                   "band per query (band description = the query) plus a PNG preview per query.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  sat2sound heatmap --lat 38.63 --lon -90.2 --text 'birds singing' "
                              "--word 'cars on a busy road:cars' --out stl")
    _add_point_options(h)
    _add_model_options(h)
    q = h.add_argument_group("queries (at least one)")
    _add_heatmap_kind_options(q)
    q.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                   help="where the 10-s window of each audio file starts (default: %(default)s)")
    q.add_argument("--whole-recording", action="store_true",
                   help="use all 10-s windows of each audio file (mean of their normalised embeddings; "
                        "at most 32, spread over the recording) instead of one window")
    q.add_argument("--concepts", action="store_true", help="add a band with each patch's top concept id")
    o = h.add_argument_group("output")
    o.add_argument("--out", "-o", required=True,
                   help="output prefix: writes PREFIX.tif and PREFIX_<n>.png (folders must exist; a folder DIR/ "
                        "means DIR/heatmap)")
    o.add_argument("--size", type=int, default=None,
                   help="upsample GeoTIFF bands to SIZE×SIZE pixels, 1 … 4096 (default: the 14×14 patch grid)")
    o.add_argument("--png-size", type=int, default=448,
                   help="PNG preview size in pixels, 16 … 4096 (default: %(default)s)")
    o.add_argument("--no-png", action="store_true", help="skip the PNG previews")

    # retrieve
    r = sub.add_parser("retrieve", help="top-k soundscape captions (and audio) for a point",
                       description="Retrieve the gallery captions closest to the chip around a point (the official "
                                   "retrieval demo), optionally writing their audio and a CSV/JSON of the hits.")
    _add_point_options(r)
    _add_model_options(r)
    _add_gallery_option(r)
    r.add_argument("-k", type=int, default=10, help="number of hits (default: %(default)s)")
    r.add_argument("--target", choices=("text", "audio"), default="text",
                   help="search LLaVA captions at this scale (text) or recordings (audio) (default: text)")
    r.add_argument("--audio-out", type=Path, default=None, metavar="DIR",
                   help="write each hit's audio as DIR/hit_<rank>.wav with a JSON sidecar")
    r.add_argument("--out", "-o", type=Path, default=None, help="write the hits to a .csv or .json file")

    # concepts
    c = sub.add_parser("concepts", help="per-patch soundscape concepts and their groups for a point",
                       description="Group the chip's patches by their most activated codebook concept and list "
                                   "gallery captions that carry each concept (paper Fig. 6).")
    _add_point_options(c)
    _add_model_options(c)
    _add_gallery_option(c)
    c.add_argument("--top-k", type=int, default=5, help="concepts kept per patch (default: %(default)s)")
    c.add_argument("--examples", type=int, default=3, help="gallery captions per concept; 0 = none (default: 3)")
    c.add_argument("--out", "-o", type=Path, default=None, help="write the concept map as .json or .tif")

    # gallery
    g = sub.add_parser("gallery", help="build a gallery from a CSV, or describe one",
                       description="Galleries are HDF5 files in the official demo schema.")
    gsub = g.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    gb = gsub.add_parser(
        "build", help="build a gallery from a CSV of captions and optional audio files",
        description="Embed the captions (and audio) of a CSV with the checkpoint's text/audio path and write a "
                    "gallery file. CSV columns: caption (required; or caption_zl1/caption_zl3/caption_zl5), audio "
                    "(optional path, relative to the CSV), audio_caption, sample_id (optional).")
    gb.add_argument("csv", type=Path, help="the CSV file")
    gb.add_argument("out", type=Path, help="the gallery file to write (.h5)")
    _add_model_options(gb)
    gi = gsub.add_parser("info", help="size, scales, audio and checkpoint of a gallery",
                         description="Describe a gallery file (reads only its layout).")
    gi.add_argument("path", help="gallery file, or 'official'")
    gi.add_argument("--json", action="store_true", help="print JSON")
    _add_evaluate_parser(sub)
    _add_probe_parser(sub)
    return parser


def _add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser(
        "evaluate", help="R@10%% and median rank of a checkpoint on a GeoSound/SoundingEarth split, next to the paper",
        description="Encode a dataset split with the checkpoint (resumable cache under SAT2SOUND_HOME/evaluation), "
                    "compute every composed variant in both directions, write one JSON line per variant in the "
                    "official schema and print a table next to the paper's rows (SAT2SOUND_REFERENCE).")
    _add_model_options(e)
    e.add_argument("--dataset", "-d", default="GeoSound", help="GeoSound or SoundingEarth (MVRL/…) (default: %(default)s)")
    e.add_argument("--split", default="test", help="train, validation (val) or test (default: %(default)s)")
    e.add_argument("--data", type=Path, default=None,
                   help="local copy: a save_to_disk folder or a folder of Parquet files (default: stream from the Hub)")
    e.add_argument("--scale", type=int, default=1, help="zoom level 1, 3 or 5 (default: 1)")
    e.add_argument("--task", choices=("image-audio", "image-text"), default="image-audio",
                   help="what the images are matched with (default: %(default)s)")
    e.add_argument("--composed", default="none",
                   help="comma-separated variants: none, query, audio (one encoding pass) (default: %(default)s)")
    e.add_argument("--metadata", default=None,
                   help="evaluate a withmeta checkpoint with only these parts, e.g. asource_time (the official "
                        "way: the fuser is rebuilt without the other parts' embedders) (default: all of its parts)")
    e.add_argument("--mel-index", type=int, default=0, help="which stored 10-s mel segment, 0..4 (default: 0)")
    e.add_argument("--limit", type=int, default=None, help="only the first N rows")
    e.add_argument("--batch-size", type=int, default=100, help="rows per model call (default: %(default)s)")
    e.add_argument("--out", type=Path, default=None, help="write the JSON lines to this .jsonl file")
    e.add_argument("--reference", type=Path, default=None,
                   help="folder with the paper's retrieval_tables.csv (default: SAT2SOUND_REFERENCE or "
                        "../shared/reference)")


def _add_probe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe", help="linear-probe accuracy of frozen embeddings on a labelled dataset, next to the paper (Tables 15-16)",
        description="Embed a labelled dataset with the frozen checkpoint (images without metadata, or audio's first "
                    "10 s), fit a logistic regression on the L2-normalised, standardised embeddings and report the "
                    "accuracy on the dataset's train/test split or over stratified k folds, with a confusion matrix.")
    _add_model_options(p)
    p.add_argument("data", type=Path, help="image folder ROOT/<class>/<image> (or ROOT/train|test/<class>/…), or a "
                                           "CSV of audio files (BirdCLEF train_metadata.csv: primary_label, filename)")
    p.add_argument("--audio-root", type=Path, default=None, help="folder the CSV's filenames are relative to "
                                                                "(default: the CSV's folder)")
    p.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold when there is no split (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: %(default)s)")
    p.add_argument("--benchmark", default=None, help="the paper's benchmark name, e.g. EuroSAT, BirdCLEF-2022 "
                                                     "(default: the folder's or CSV's name)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per model call (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="folder for confusion.png and probe.json")
    p.add_argument("--reference", type=Path, default=None,
                   help="folder with the paper's probing_tables.csv (default: SAT2SOUND_REFERENCE or ../shared/reference)")


def _add_heatmap_kind_options(group: argparse._ArgumentGroup) -> None:
    """One option per registered heatmap kind that has a CLI form (sat2sound_core.maps.kinds)."""
    from sat2sound_core.maps.kinds import list_kinds

    for kind in list_kinds():
        if kind.cli is None:
            continue
        names = [kind.cli.flag] + ([kind.cli.short] if kind.cli.short else [])
        if kind.cli.metavar is None:
            group.add_argument(*names, dest=_dest(kind), action="store_true", help=kind.cli.help)
        else:
            group.add_argument(*names, dest=_dest(kind), action="append", default=[], metavar=kind.cli.metavar,
                               help=kind.cli.help)


def _dest(kind: RegisteredKind) -> str:
    return f"heatmap_{kind.key}"


def heatmap_queries(args: argparse.Namespace) -> list[tuple[RegisteredKind, object]]:
    """The heatmaps a parsed ``sat2sound heatmap`` command line asks for: (kind, inputs), kinds in the
    registry's order, each kind's queries in the order given (audio files are read here)."""
    from sat2sound_core.maps.kinds import CliQueryOptions

    options = CliQueryOptions(start_seconds=args.start, whole_recording=args.whole_recording)
    out: list[tuple[RegisteredKind, object]] = []
    for kind, values in _given_queries(args):
        parse = kind.cli.parse if kind.cli is not None else None
        for value in values:
            out.append((kind, parse(value, options) if parse is not None else kind.inputs()))
    return out


def _given_queries(args: argparse.Namespace) -> list[tuple[RegisteredKind, list[str]]]:
    from sat2sound_core.maps.kinds import list_kinds

    given: list[tuple[RegisteredKind, list[str]]] = []
    for kind in list_kinds():
        if kind.cli is None or not hasattr(args, _dest(kind)):
            continue
        value = getattr(args, _dest(kind))
        values = [""] if value is True else [] if value is False else list(value)
        if values:
            given.append((kind, values))
    return given


def _query_flags() -> str:
    from sat2sound_core.maps.kinds import list_kinds

    flags = [k.cli.flag for k in list_kinds() if k.cli is not None] + ["--concepts"]
    return ", ".join(flags[:-1]) + " or " + flags[-1]


# --------------------------------------------------------------------------------------------------
# argument checks (all before the model loads or a tile is fetched)

#: largest GeoTIFF band (``--size``) and PNG preview (``--png-size``) in pixels per side
MAX_RASTER_SIZE = 4096
#: prefix used when ``heatmap --out`` names a folder
DEFAULT_PREFIX = "heatmap"


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range numbers and unusable output paths of a parsed command line, naming the fix;
    runs before anything slow (model loading, tile fetching), so a typo fails at once."""
    from sat2sound_core.common.errors import InputError

    if hasattr(args, "lat") and hasattr(args, "lon"):
        from tiles.errors import TilesError
        from tiles.mercator import validate_point

        try:
            validate_point(args.lat, args.lon)
        except TilesError as exc:
            raise InputError(f"{exc} (--lat/--lon)") from None
    for name, low in (("size", 1), ("png_size", 16)):
        value = getattr(args, name, None)
        if value is not None and not low <= value <= MAX_RASTER_SIZE:
            raise InputError(f"--{name.replace('_', '-')} must be between {low} and {MAX_RASTER_SIZE} pixels, got {value}")
    if getattr(args, "examples", 0) < 0:
        raise InputError(f"--examples must be 0 (none) or more, got {args.examples}")
    if getattr(args, "top_k", 1) < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    if getattr(args, "k", 1) < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    start = getattr(args, "start", 0.0)
    if not (start >= 0 and start < float("inf")):
        raise InputError(f"--start must be a number of seconds >= 0, got {start}")
    if args.command in ("retrieve", "concepts") and args.out is not None and Path(args.out).expanduser().is_dir():
        raise InputError(f"--out {args.out} is a folder; give a file name ending in "
                         f"{'.csv or .json' if args.command == 'retrieve' else '.json or .tif'}")
    if args.command == "heatmap":
        heatmap_prefix(args.out)


def heatmap_prefix(value: str) -> Path:
    """The output prefix of ``heatmap --out``: ``DIR/`` or an existing folder means ``DIR/heatmap``
    (never ``DIR.tif`` beside the folder); the prefix's folder must exist."""
    from sat2sound_core.common.errors import InputError

    out = Path(value).expanduser()
    if value.endswith(("/", "\\")) or out.is_dir():
        if not out.is_dir():
            raise InputError(f"output folder {out} does not exist; create it or choose another --out")
        return out / DEFAULT_PREFIX
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist; create it or choose another --out")
    return out


# --------------------------------------------------------------------------------------------------
# helpers


def _progress(args: argparse.Namespace, desc: str) -> ProgressCallback | None:
    if args.quiet:
        return None
    from sat2sound_core.common.progress import tqdm_progress

    return tqdm_progress(desc)


def _engine(args: argparse.Namespace, gallery: str | Path | Gallery | None = None) -> Engine:
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.engine import Engine

    settings = get_settings()
    return Engine(
        checkpoint=args.checkpoint,
        precision=args.precision or settings.precision,
        device=args.device or settings.device,
        provider=getattr(args, "provider", None),
        gallery=gallery,
        progress=_progress(args, "model"),
    )


def _metadata(args: argparse.Namespace) -> dict[str, object] | None:
    out: dict[str, object] = {}
    for name in ("hour", "month"):
        value = getattr(args, name)
        if value is not None:
            out[name] = value if value.strip().lower() == "unknown" else _int_arg(value, name)
    if args.audio_source is not None:
        out["audio_source"] = args.audio_source
    if args.caption_source is not None:
        out["caption_source"] = args.caption_source
    if args.no_location:
        out["lat"] = "unknown"
        out["lon"] = "unknown"
    return out or None


def _int_arg(value: str, name: str) -> int:
    from sat2sound_core.common.errors import InputError

    try:
        return int(value)
    except ValueError:
        raise InputError(f"--{name} must be an integer or 'unknown', got {value!r}") from None


def _analyze(args: argparse.Namespace, engine: Engine) -> ChipAnalysis:
    _ = engine.model  # load first so the progress bar is about the model, not the chip
    return engine.analyze(args.lat, args.lon, scale=args.scale, metadata=_metadata(args))


def _print_hits(hits: Sequence[Hit]) -> None:
    if not hits:
        print("no hits (the gallery has no rows for this query)")
        return
    for h in hits:
        audio = "♪" if h.has_audio else " "
        print(f"{h.rank:>3}  {h.score:+.4f} {audio} [row {h.row}] {h.caption}")


# --------------------------------------------------------------------------------------------------
# commands


def cmd_weights(args: argparse.Namespace) -> int:
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.gallery import official_gallery_path
    from sat2sound_core.weights.hub import fetch
    from sat2sound_core.weights.inventory import inventory
    from sat2sound_core.weights.registry import list_checkpoints, resolve_source

    settings = get_settings()
    if args.weights_command == "list":
        print(f"weights folder: {settings.weights}{'  (offline)' if settings.is_offline else ''}")
        print(f"{'name':<28} {'size':>12}  {'local':<5}  description")
        for item in inventory():
            print(f"{item.name:<28} {item.size_text:>12}  {'yes' if item.present else 'no':<5}  {item.description}")
            detail = str(item.path) if item.path is not None else f"from {item.source}"
            print(f"{'':<28} {'':>12}  {'':<5}  {detail}{f'; licence: {item.licence}' if item.licence else ''}")
        return 0
    names = list(args.names) or ["bingmap_withmeta"]
    if args.all:
        names = [i.name for i in list_checkpoints() if i.sat_type is not None]
    for name in names:
        resolved = resolve_source(name, settings.hf_repo)
        path = fetch(resolved, settings.weights, settings.is_offline, progress=_progress(args, name))
        print(f"{name}: {path}")
    if args.gallery:
        print(f"gallery: {official_gallery_path(progress=_progress(args, 'gallery'))}")
    return 0


def cmd_heatmap(args: argparse.Namespace) -> int:
    from sat2sound_core.common.errors import InputError
    from sat2sound_core.export import write_geotiff, write_png

    if not (_given_queries(args) or args.concepts):
        raise InputError(f"give at least one query: {_query_flags()}")
    out = heatmap_prefix(args.out)
    queries = heatmap_queries(args)
    engine = _engine(args)
    result = _analyze(args, engine)
    heatmaps = [result.heatmap(kind, inputs) for kind, inputs in queries]
    cmap = result.concept_map(n_examples=0) if args.concepts else None
    tif = write_geotiff(out.with_name(out.name + ".tif"), heatmaps, result.chip, concept_map=cmap,
                        checkpoint=result.checkpoint, scale=result.scale, metadata=result.metadata, size=args.size)
    print(f"wrote {tif} ({len(heatmaps)} heatmap band(s){' + concept_id' if cmap is not None else ''})")
    if not args.no_png:
        for i, hm in enumerate(heatmaps, start=1):
            png = write_png(out.with_name(f"{out.name}_{i}.png"), hm, size=args.png_size,
                            base=result.chip.image)
            print(f"wrote {png}  [{hm.query}]")
    print(f"imagery: {result.chip.attribution}")
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from sat2sound_core.common.errors import InputError
    from sat2sound_core.export import write_audio, write_hits

    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    if args.audio_out is not None and not args.audio_out.is_dir():
        if args.audio_out.exists():
            raise InputError(f"--audio-out {args.audio_out} is a file; give a folder (hit_<rank>.wav are written in it)")
        raise InputError(f"--audio-out folder {args.audio_out} does not exist; create it first")
    engine = _engine(args, gallery=args.gallery)
    result = _analyze(args, engine)
    hits = result.retrieve(k=args.k, target=args.target)
    _print_hits(hits)
    if args.out is not None:
        print(f"wrote {write_hits(args.out, hits, result.describe())}")
    if args.audio_out is not None:
        for h in hits:
            clip = engine.gallery_audio(h)
            if clip is None:
                continue
            samples, rate = clip
            wav, _ = write_audio(args.audio_out / f"hit_{h.rank}.wav", samples, rate,
                                 {**h.as_dict(), "query": result.describe()})
            print(f"wrote {wav}")
    return 0


def cmd_concepts(args: argparse.Namespace) -> int:
    from sat2sound_core.common.errors import InputError
    from sat2sound_core.export import write_bytes, write_geotiff

    engine = _engine(args, gallery=args.gallery)
    result = _analyze(args, engine)
    cmap = result.concept_map(top_k=args.top_k, n_examples=args.examples)
    for g in cmap.groups:
        print(f"concept {g.code:>5}: {len(g.cells):>3} patches ({100 * g.fraction:.0f}%), mean score {g.mean_score:+.3f}")
        for ex in g.examples:
            print(f"      · {ex}")
    if args.out is not None:
        suffix = args.out.suffix.lower()
        if suffix == ".json":
            doc = {
                "context": result.describe(),
                "labels": cmap.labels.tolist(),
                "groups": [{"code": g.code, "cells": [list(c) for c in g.cells], "fraction": g.fraction,
                            "mean_score": g.mean_score, "examples": list(g.examples)} for g in cmap.groups],
            }
            print(f"wrote {write_bytes(args.out, json.dumps(doc, indent=1).encode())}")
        elif suffix in (".tif", ".tiff"):
            print(f"wrote {write_geotiff(args.out, [], result.chip, concept_map=cmap, checkpoint=result.checkpoint, scale=result.scale, metadata=result.metadata)}")
        else:
            raise InputError(f"unsupported output {args.out.name}; use .json or .tif")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sat2sound_core.gallery import build_gallery, resolve_gallery

    if args.gallery_command == "info":
        info = resolve_gallery(args.path).info()
        if args.json:
            print(json.dumps(asdict(info), indent=1))
        else:
            print(f"path:        {info.path}")
            print(f"rows:        {info.rows}")
            print(f"scales:      {', '.join(map(str, info.scales)) or '-'}")
            print(f"checkpoint:  {info.checkpoint}")
            print(f"audio:       embeddings {'yes' if info.has_audio_embedding else 'no'}, raw {'yes' if info.has_raw_audio else 'no'}, "
                  f"synthesised at scales {', '.join(map(str, info.synth_audio_scales)) or '-'}")
            print(f"size:        {info.size_bytes / 1e6:.1f} MB")
        return 0
    engine = _engine(args)
    out = build_gallery(args.csv, args.out, engine.model, engine.checkpoint_name, progress=_progress(args, "gallery"))
    print(f"wrote {out} ({resolve_gallery(out).rows} rows, embeddings from {engine.checkpoint_name})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sat2sound_core.evaluation.cli import evaluate

    return evaluate(args, _progress(args, "evaluate"), _progress(args, "model"))


def cmd_probe(args: argparse.Namespace) -> int:
    from sat2sound_core.evaluation.cli import probe

    return probe(args, _progress(args, "probe"), _progress(args, "model"))


_COMMANDS = {"weights": cmd_weights, "heatmap": cmd_heatmap, "retrieve": cmd_retrieve, "concepts": cmd_concepts,
             "gallery": cmd_gallery, "evaluate": cmd_evaluate,
             "probe": cmd_probe}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sat2sound`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from sat2sound_core.accel.allocator import tune_allocator
    from sat2sound_core.common.errors import Sat2SoundError

    tune_allocator()
    try:
        check_args(args)
        with warnings.catch_warnings():
            if not args.verbose:  # numpy's divide/invalid RuntimeWarnings are not messages for the user
                warnings.simplefilter("ignore", RuntimeWarning)
            return _COMMANDS[args.command](args)
    except Sat2SoundError as exc:  # imagery errors arrive as ImageryError (sat2sound_core.imagery)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # unreadable input files, full disks …
        print(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
