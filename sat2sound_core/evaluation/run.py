"""``evaluate``: a real checkpoint on a dataset split → R@10 % and median rank of every composed variant.

One encoding pass per (checkpoint, dataset, split, scale, metadata, mel index, precision) fills a
resumable :class:`~sat2sound_core.evaluation.cache.EmbeddingCache` (images at the chosen scale with the
official centre crop of the full-size JPEG, audio from the stored mel segment, audio captions through the
model's text path); the variants and both directions are then computed from the cache with no
re-encoding. Rows are read and decoded in a background thread so the model stays busy.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import ProgressCallback, report
from sat2sound_core.evaluation import data as ed
from sat2sound_core.evaluation.cache import CacheKey, EmbeddingCache, Embeddings
from sat2sound_core.evaluation.variants import RunInfo, evaluate_variant, parse_composed, record
from sat2sound_core.preprocess.image import image_to_tensor

if TYPE_CHECKING:
    from sat2sound_core.model.sat2sound import Sat2Sound

T = TypeVar("T")


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate (the checkpoint is passed separately, as a loaded model)."""

    dataset: str
    split: str = "test"
    data: Path | None = None
    scale: int = 1
    task: str = "image-audio"
    composed: tuple[str, ...] = ("none",)
    mel_index: int = 0
    limit: int | None = None
    batch_size: int = 100
    chunk_rows: int = 1000
    metadata: str | None = None  # a subset of the checkpoint's parts (None: all of them)
    recall_at: float = 10.0


@dataclass(frozen=True)
class EncodeStats:
    """How many (modality, chunk) pieces were computed now and how many came from the cache."""

    computed: int
    reused: int


@dataclass(frozen=True)
class EvalReport:
    """The JSON lines of a run, how many rows it used and what the cache did."""

    records: list[dict[str, object]]
    rows: int
    stats: EncodeStats
    cache_folder: Path
    origin: str = ""
    modalities: tuple[str, ...] = field(default=())


def checkpoint_identity(source: str | Path) -> str:
    """A cache id for a checkpoint: a file's resolved path, size and mtime, else the name itself."""
    p = Path(source).expanduser()
    if p.is_file():
        st = p.stat()
        return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return str(source)


def needed_modalities(task: str, composed: tuple[str, ...]) -> tuple[str, ...]:
    """``image`` always; ``audio`` for image-audio; ``text`` for image-text or a composed variant."""
    out = ["image"]
    if task == "image-audio":
        out.append("audio")
    if task == "image-text" or any(c != "none" for c in composed):
        out.append("text")
    return tuple(out)


def _prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced in a background thread, up to ``depth`` ahead (errors re-raised here)."""
    q: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((False, None))
        except BaseException as exc:  # handed to the consumer
            q.put((False, exc))

    thread = threading.Thread(target=work, name="sat2sound-eval-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                if isinstance(value, BaseException):
                    raise value
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()


@dataclass(frozen=True)
class _Prepared:
    start: int
    images: torch.Tensor | None
    mels: torch.Tensor | None
    captions: list[str]
    batch: ed.EvalBatch


def _prepare(batch: ed.EvalBatch, scale: int, sat_type: str, want: tuple[str, ...]) -> _Prepared:
    images = None
    if "image" in want:
        tensors = []
        for row in batch.rows:
            assert row.image is not None
            try:
                pil = Image.open(io.BytesIO(row.image))
                pil.load()
            except OSError as exc:
                raise InputError(f"row {row.index} ({row.sample_id}): the image bytes do not decode ({exc})") from None
            tensors.append(image_to_tensor(pil, scale, sat_type))
        images = torch.stack(tensors)
    mels = torch.from_numpy(batch.mels) if "audio" in want else None
    return _Prepared(batch.start, images, mels, batch.captions, batch)


def _encode(model: Sat2Sound, prepared: _Prepared, want: tuple[str, ...], scale: int) -> dict[str, Embeddings]:
    out: dict[str, Embeddings] = {}
    with torch.inference_mode():
        if "image" in want and prepared.images is not None:
            meta = prepared.batch.metadata if model.config.has_metadata else None
            out["image"] = model.encode_image(prepared.images, scales=scale, metadata=meta).embedding.float().cpu().numpy()
        if "audio" in want and prepared.mels is not None:
            out["audio"] = model.encode_audio(prepared.mels).embedding.float().cpu().numpy()
        if "text" in want:
            out["text"] = model.encode_text(prepared.captions).embedding.float().cpu().numpy()
    return out


def _count_rows(source: ed.SplitSource, limit: int | None) -> int:
    if source.num_rows is not None:
        return source.num_rows if limit is None else min(source.num_rows, limit)
    n = 0
    for _ in source.rows:
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def run_evaluation(model: Sat2Sound, request: EvalRequest, *, checkpoint: str, cache_root: Path,
                   ckpt_path: str = "", expr: str = "", offline: bool = False,
                   progress: ProgressCallback | None = None) -> EvalReport:
    """Encode (or reuse) the split's embeddings and return one official JSON line per composed variant.

    ``checkpoint`` is the cache id of the weights (:func:`checkpoint_identity`); ``ckpt_path`` and
    ``expr`` fill the official fields of the same names. Raising from ``progress`` (e.g.
    :class:`~sat2sound_core.common.progress.Cancelled`) stops between batches; finished chunks stay cached.
    """
    spec = ed.dataset_spec(request.dataset)
    split = ed.canonical_split(request.split)
    mel_index = ed.check_mel_index(request.mel_index)
    composed = parse_composed(request.composed, request.task)
    metadata_label = model.config.metadata_type
    if request.metadata is not None:
        from sat2sound_core.evaluation.subset import with_metadata_subset

        model = with_metadata_subset(model, request.metadata)
        metadata_label = request.metadata.strip()
    cfg = model.config
    if request.scale not in cfg.allowed_scales:
        raise InputError(f"--scale {request.scale} is not available for {cfg.sat_type}; use one of "
                         f"{list(cfg.allowed_scales)}")
    if request.limit is not None and request.limit < 1:
        raise InputError(f"--limit must be at least 1, got {request.limit}")
    if request.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {request.batch_size}")
    label = Path(ckpt_path).name if ckpt_path else checkpoint
    want = needed_modalities(request.task, composed)
    full = ed.ColumnPlan(spec, cfg.sat_type, "image" in want, "audio" in want, "text" in want,
                         cfg.metadata_type, checkpoint=label, task=request.task)
    _ = full.image_column  # imagery that does not match the dataset fails here, before any reading
    available = ed.available_columns(spec, split, request.data)
    columns = ed.check_columns(available, full) if available is not None else list(full.columns())
    source = ed.open_split(spec, split, columns, request.data, offline=offline)
    rows = _count_rows(source, request.limit)
    if rows == 0:
        raise InputError(f"the {spec.name} {split} split at {source.origin} has no rows; check --data/--split")

    key = CacheKey(checkpoint, spec.name, split, request.scale, cfg.metadata_type, mel_index, model.precision)
    cache = EmbeddingCache(cache_root, key, request.chunk_rows)
    computed = reused = 0
    done = 0
    report(progress, 0, rows, f"encoding {spec.name} {split}")
    for lo, hi in cache.chunks(rows):
        missing = tuple(m for m in want if not cache.has(m, lo, hi))
        reused += len(want) - len(missing)
        if not missing:
            done += hi - lo
            report(progress, done, rows, "cached")
            continue
        plan = ed.ColumnPlan(spec, cfg.sat_type, "image" in missing, "audio" in missing, "text" in missing,
                             cfg.metadata_type if "image" in missing else "none", checkpoint=label, task=request.task)
        part_source = ed.open_split(spec, split, list(plan.columns()), request.data, offline=offline) \
            if list(plan.columns()) != columns else source
        pieces: dict[str, list[Embeddings]] = {m: [] for m in missing}
        batches = ed.iter_batches(part_source, plan, request.batch_size, start=lo, stop=hi, mel_index=mel_index)
        for prepared in _prefetch(_prepare(b, request.scale, cfg.sat_type, missing) for b in batches):
            for m, emb in _encode(model, prepared, missing, request.scale).items():
                pieces[m].append(emb)
            done += len(prepared.batch)
            report(progress, done, rows, f"rows {lo}..{hi - 1}")
        for m in missing:
            got = np.concatenate(pieces[m]) if pieces[m] else np.zeros((0, 0), np.float32)
            if got.shape[0] != hi - lo:
                raise InputError(f"the split gave {got.shape[0]} rows for {lo}..{hi - 1}; it changed while reading")
            cache.save(m, lo, hi, got)
            computed += 1

    loaded = {m: cache.load(m, rows) for m in want}
    info = RunInfo(spec.name, cfg.sat_type, request.scale, metadata_label, mel_index, ckpt_path or checkpoint,
                   expr or label, request.task)
    records = [record(info, evaluate_variant(v, loaded["image"], loaded.get("audio"), loaded.get("text"), request.recall_at))
               for v in composed]
    return EvalReport(records, rows, EncodeStats(computed, reused), cache.folder, source.origin, want)
