"""Rows of the evaluation datasets (``MVRL/GeoSound``, ``MVRL/SoundingEarth``) as the official code reads them.

Rows come through the ``datasets`` library, from a local copy (``save_to_disk`` folder or a folder of
Parquet shards) or streamed from the Hub, with only the columns a run needs (``mel_features`` alone is
~12.7 GB for GeoSound test). Each row is decoded into an :class:`EvalRow`: the full-size JPEG bytes of
the checkpoint's imagery, one stored 10-s mel segment (never recomputed from the raw audio), the audio
caption, and :class:`~sat2sound_core.preprocess.metadata.Metadata` whose sources come from the row itself
and whose month/hour come from the row's date parsed as the official ``get_clean_date`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sat2sound_core.common.errors import InputError
from sat2sound_core.model.config import metadata_tokens_for
from sat2sound_core.preprocess.metadata import Metadata

if TYPE_CHECKING:
    import datasets

MEL_SEGMENTS = 5  # stored 10-s segments per row: mel_features is (5, 1, 1001, 64)
MEL_SHAPE = (1001, 64)
SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"val": "validation", "valid": "validation"}
Row = Mapping[str, object]


@dataclass(frozen=True)
class DatasetSpec:
    """What one evaluation dataset holds: its Hub repo, imagery columns, date column and split sizes."""

    name: str
    repo: str
    image_columns: Mapping[str, str]  # sat_type -> column of full-size JPEG bytes
    date_column: str
    source_column: str | None  # None: every row has ``fixed_source``
    fixed_source: str | None
    rows: Mapping[str, int]  # split -> rows (the paper's galleries are the whole test split)

    def image_column(self, sat_type: str, checkpoint: str = "the checkpoint") -> str:
        """The imagery column for ``sat_type``; :class:`InputError` when this dataset has none."""
        if sat_type not in self.image_columns:
            fits = [n for n, s in DATASETS.items() if sat_type in s.image_columns]
            raise InputError(
                f"{checkpoint} sees {sat_type} imagery but {self.name} holds only "
                f"{', '.join(self.image_columns)}; evaluate it on {' or '.join(fits) or 'a dataset with that imagery'}, "
                f"or pick a {'/'.join(self.image_columns)} checkpoint for {self.name}")
        return self.image_columns[sat_type]

    def mel_gb(self, split: str) -> float | None:
        """Size in GB of the split's ``mel_features`` column (float32 (5, 1, 1001, 64) per row)."""
        n = self.rows.get(split)
        return None if n is None else n * MEL_SEGMENTS * MEL_SHAPE[0] * MEL_SHAPE[1] * 4 / 1e9


DATASETS: dict[str, DatasetSpec] = {
    "GeoSound": DatasetSpec(
        name="GeoSound", repo="MVRL/GeoSound",
        image_columns={"bingmap": "bingmap_image", "sentinel": "sentinel_image"},
        date_column="date", source_column="source", fixed_source=None, rows={"test": 9931}),
    "SoundingEarth": DatasetSpec(
        name="SoundingEarth", repo="MVRL/SoundingEarth",
        image_columns={"googleEarth": "googleearth_image"},
        date_column="date_recorded", source_column=None, fixed_source="aporee", rows={"test": 5801}),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``GeoSound``/``SoundingEarth`` (or ``MVRL/…``; case-insensitive)."""
    key = name.split("/")[-1].lower()
    for spec in DATASETS.values():
        if spec.name.lower() == key:
            return spec
    raise InputError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} (or MVRL/<name>)")


def canonical_split(split: str) -> str:
    """``train``, ``validation`` (also ``val``) or ``test``."""
    s = _SPLIT_ALIASES.get(split.strip().lower(), split.strip().lower())
    if s not in SPLITS:
        raise InputError(f"unknown split {split!r}; use train, validation (val) or test")
    return s


def check_mel_index(mel_index: int) -> int:
    """``mel_index`` validated against the five stored segments."""
    if isinstance(mel_index, bool) or not isinstance(mel_index, int) or not 0 <= mel_index < MEL_SEGMENTS:
        raise InputError(f"--mel-index {mel_index!r} is outside 0..{MEL_SEGMENTS - 1}: each row stores "
                         f"{MEL_SEGMENTS} 10-s mel segments (the paper uses index 0)")
    return mel_index


# ------------------------------------------------------------------ dates


@dataclass(frozen=True)
class ParsedDate:
    """Month and hour of a recording date, with the official validity flags."""

    month: int | None
    hour: int | None

    @property
    def month_valid(self) -> bool:
        return self.month is not None

    @property
    def time_valid(self) -> bool:
        return self.hour is not None


_TRUNCATE = re.compile(r"(am|pm|gmt)", re.IGNORECASE)


def clean_date(text: str) -> str:
    """The official ``get_clean_date`` clean-up: everything after the first am/pm or "gmt" is dropped."""
    m = _TRUNCATE.search(text)
    return text[: m.end()] if m else text


def parse_date(value: object, source: str | None) -> ParsedDate:
    """Month and hour of ``value`` as the official dataloader derives them.

    The text is cleaned (:func:`clean_date`) and parsed with ``dateutil.parser.parse``; when that fails
    month and hour are both invalid. freesound rows never have a valid hour.
    """
    from dateutil import parser

    if value is None or not str(value).strip():
        return ParsedDate(None, None)
    try:
        when = parser.parse(clean_date(str(value)))
    except (ValueError, OverflowError, TypeError):
        return ParsedDate(None, None)
    hour = None if source == "freesound" else int(when.hour)
    return ParsedDate(int(when.month), hour)


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class EvalRow:
    """One decoded row: what the encoders need, nothing more (absent parts are None)."""

    index: int
    sample_id: str
    image: bytes | None  # full-size JPEG (or PNG) bytes of the checkpoint's imagery
    mel: npt.NDArray[np.float32] | None  # (1001, 64): the chosen stored segment
    caption: str | None
    metadata: Metadata
    date: ParsedDate


@dataclass(frozen=True)
class EvalBatch:
    """Consecutive rows ``start .. start+len-1`` of a split."""

    start: int
    rows: tuple[EvalRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def images(self) -> list[bytes]:
        return [r.image for r in self.rows if r.image is not None]

    @property
    def mels(self) -> npt.NDArray[np.float32]:
        return np.stack([r.mel for r in self.rows if r.mel is not None]).astype(np.float32, copy=False)

    @property
    def captions(self) -> list[str]:
        return [r.caption if r.caption is not None else "" for r in self.rows]

    @property
    def metadata(self) -> list[Metadata]:
        return [r.metadata for r in self.rows]


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns a run reads and why (for the error when a copy lacks one)."""

    spec: DatasetSpec
    sat_type: str
    image: bool
    mel: bool
    caption: bool
    metadata_type: str
    checkpoint: str = "the checkpoint"
    task: str = "image-audio"

    @property
    def purpose(self) -> str:
        return f"checkpoint {self.checkpoint} (metadata {self.metadata_type}), task {self.task}"

    @property
    def image_column(self) -> str:
        return self.spec.image_column(self.sat_type, f"checkpoint {self.checkpoint}")

    def columns(self) -> dict[str, str]:
        """column -> why it is needed."""
        need: dict[str, str] = {}
        if self.image:
            need[self.image_column] = f"{self.sat_type} imagery"
        if self.mel:
            need["mel_features"] = "the stored audio segments"
        if self.caption:
            need["audio_caption"] = "the audio caption (text side / composed queries)"
        tokens = metadata_tokens_for(self.metadata_type)
        if "latlong" in tokens:
            need["latitude"] = need["longitude"] = "the latlong metadata"
        if "month" in tokens or "time" in tokens:
            need[self.spec.date_column] = "the month/hour metadata"
        if "time" in tokens and self.spec.source_column is not None:
            need[self.spec.source_column] = "freesound rows have no valid hour"
        if "asource" in tokens and self.spec.source_column is not None:
            need[self.spec.source_column] = "the audio-source metadata"
        if "tsource" in tokens:
            need["audio_caption_source"] = "the caption-source metadata"
        return need


def check_columns(available: Iterable[str], plan: ColumnPlan) -> list[str]:
    """The needed columns, or :class:`InputError` naming the missing ones and what needs them."""
    have = set(available)
    need = plan.columns()
    missing = [c for c in need if c not in have]
    if missing:
        why = "; ".join(f"{c} ({need[c]})" for c in missing)
        raise InputError(f"the {plan.spec.name} copy lacks column(s) {why}, needed by {plan.purpose}. "
                         f"Re-export it with those columns (it has: {', '.join(sorted(have)) or 'none'})")
    return list(need)


def _image_bytes(value: object, column: str, index: int) -> bytes:
    if isinstance(value, Mapping):
        data = value.get("bytes")
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        path = value.get("path")
        if isinstance(path, str) and Path(path).is_file():
            return Path(path).read_bytes()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise InputError(f"row {index}: column {column} holds no image bytes ({type(value).__name__}); the dataset "
                     "must keep the original JPEG bytes")


def _mel(value: object, mel_index: int, index: int) -> npt.NDArray[np.float32]:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or tuple(arr.shape[1:]) != MEL_SHAPE or arr.shape[0] <= mel_index:
        raise InputError(f"row {index}: mel_features has shape {np.asarray(value).shape}; expected "
                         f"({MEL_SEGMENTS}, 1, {MEL_SHAPE[0]}, {MEL_SHAPE[1]})")
    out: npt.NDArray[np.float32] = np.ascontiguousarray(arr[mel_index])
    return out


def _number(row: Row, key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def decode_row(row: Row, index: int, plan: ColumnPlan, mel_index: int = 0) -> EvalRow:
    """One raw dataset row → :class:`EvalRow` (only the parts ``plan`` asks for)."""
    spec = plan.spec
    raw_source = row.get(spec.source_column) if spec.source_column else spec.fixed_source
    source = str(raw_source) if raw_source is not None else None
    date = parse_date(row.get(spec.date_column), source)
    tokens = metadata_tokens_for(plan.metadata_type)
    caption_source = row.get("audio_caption_source")
    try:
        meta = Metadata(
            lat=_number(row, "latitude") if "latlong" in tokens else None,
            lon=_number(row, "longitude") if "latlong" in tokens else None,
            hour=date.hour if "time" in tokens else None,
            month=date.month if "month" in tokens else None,
            audio_source=source if "asource" in tokens else None,
            caption_source=str(caption_source) if "tsource" in tokens and caption_source is not None else None,
        )
    except InputError as exc:
        raise InputError(f"row {index} ({row.get('sample_id', '?')}): {exc}") from None
    caption = row.get("audio_caption")
    return EvalRow(
        index=index,
        sample_id=str(row.get("sample_id", index)),
        image=_image_bytes(row.get(plan.image_column), plan.image_column, index) if plan.image else None,
        mel=_mel(row.get("mel_features"), mel_index, index) if plan.mel else None,
        caption=str(caption) if plan.caption and caption is not None else ("" if plan.caption else None),
        metadata=meta,
        date=date,
    )


# ------------------------------------------------------------------ sources


@dataclass(frozen=True)
class SplitSource:
    """An opened split: its rows (only the needed columns, images left as bytes) and its size if known."""

    rows: Iterable[Row]
    num_rows: int | None
    origin: str


def _parquet_files(folder: Path, split: str) -> list[Path]:
    files = sorted(folder.rglob("*.parquet"))
    names = {split} | {k for k, v in _SPLIT_ALIASES.items() if v == split}

    def in_split(p: Path) -> bool:
        parts = [q.lower() for q in p.relative_to(folder).parts]
        stem = parts[-1].split("-")[0].split(".")[0]
        return stem in names or any(q in names for q in parts[:-1])

    return [f for f in files if in_split(f)]


def _no_image_decoding(ds: datasets.Dataset | datasets.IterableDataset, columns: Sequence[str]
                       ) -> datasets.Dataset | datasets.IterableDataset:
    import datasets

    features = ds.features
    for column in columns:
        if features is not None and isinstance(features.get(column), datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def open_split(spec: DatasetSpec, split: str, columns: Sequence[str], data: Path | None = None,
               *, offline: bool = False) -> SplitSource:
    """Open ``split`` of ``spec`` reading only ``columns`` (all of them must exist: see :func:`check_columns`).

    ``data`` is a local copy: a ``save_to_disk`` folder (a Dataset or a DatasetDict) or a folder of Parquet
    shards (``<split>-*.parquet`` or ``<split>/…parquet``). Without it the split is streamed from the Hub,
    which ``offline`` refuses with how to get a local copy.
    """
    import datasets

    split = canonical_split(split)
    if data is not None:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise InputError(f"--data {folder} is not a folder; give a save_to_disk folder or a folder of Parquet files")
        if _is_saved(folder):
            return _from_dataset(_load_disk(folder, split), columns, f"{folder} ({split})")
        files = _parquet_files(folder, split)
        if not files:
            raise InputError(f"{folder} holds neither a save_to_disk dataset nor Parquet files of split {split} "
                             f"(looked for {split}-*.parquet and {split}/*.parquet)")
        import pyarrow.parquet as pq

        available = set(pq.read_schema(files[0]).names)
        check = [c for c in columns if c not in available]
        if check:
            raise InputError(f"{files[0]} lacks column(s) {', '.join(check)}")
        stream = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train",
                                       streaming=True, columns=list(columns))
        num = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        return SplitSource(_as_numpy(_no_image_decoding(stream, columns), columns), num,
                           f"{folder} ({len(files)} Parquet files)")
    if offline:
        gb = spec.mel_gb(split)
        size = f" (mel_features alone is {gb:.1f} GB for {split}; images and audio add more)" if gb else ""
        raise InputError(
            f"offline and no local copy of {spec.repo} {split}: download one where the Hub is reachable with "
            f"`datasets.load_dataset('{spec.repo}', split='{split}').save_to_disk(DIR)` or "
            f"`huggingface-cli download {spec.repo} --repo-type dataset --include 'data/{split}-*' --local-dir DIR`"
            f"{size}, then pass --data DIR")
    stream = datasets.load_dataset(spec.repo, split=split, streaming=True, columns=list(columns))
    return SplitSource(_as_numpy(_no_image_decoding(stream, columns), columns), spec.rows.get(split),
                       f"hf://{spec.repo} ({split})")


def _as_numpy(stream: datasets.Dataset | datasets.IterableDataset, columns: Sequence[str]
              ) -> datasets.Dataset | datasets.IterableDataset:
    """Streamed rows with ``mel_features`` as numpy arrays rather than nested lists (other fields keep
    their values: strings, numbers, image dicts)."""
    return stream.with_format("numpy") if "mel_features" in columns else stream


def _is_saved(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "dataset_info.json", "state.json"))


def _load_disk(folder: Path, split: str) -> datasets.Dataset:
    """``split`` of a ``save_to_disk`` folder (a Dataset, or a DatasetDict with that split)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except IndexError:  # datasets cannot reload a folder saved with zero rows
        raise InputError(f"the dataset saved at {folder} has no rows (an empty split); check --data/--split") from None
    if isinstance(loaded, datasets.DatasetDict):
        key = split if split in loaded else next((k for k in loaded if _SPLIT_ALIASES.get(k) == split), None)
        if key is None:
            raise InputError(f"{folder} has splits {', '.join(loaded)} but not {split}")
        return loaded[key]
    return loaded


def _from_dataset(ds: datasets.Dataset, columns: Sequence[str], origin: str) -> SplitSource:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise InputError(f"{origin} lacks column(s) {', '.join(missing)}")
    ds = ds.select_columns(list(columns))
    ds = _no_image_decoding(ds, columns)
    if "mel_features" in columns:  # arrays straight from Arrow: ~10× faster than nested Python lists
        ds = ds.with_format("numpy", columns=["mel_features"], output_all_columns=True)
    return SplitSource(ds, len(ds), origin)


def available_columns(spec: DatasetSpec, split: str, data: Path | None) -> list[str] | None:
    """Column names of a local copy (None when streaming: the Hub schema is checked when rows arrive)."""

    if data is None:
        return None
    folder = Path(data).expanduser()
    if _is_saved(folder):
        return list(_load_disk(folder, canonical_split(split)).column_names)
    files = _parquet_files(folder, canonical_split(split))
    if not files:
        return None
    import pyarrow.parquet as pq

    return list(pq.read_schema(files[0]).names)


def iter_batches(source: SplitSource, plan: ColumnPlan, batch_size: int, *, start: int = 0,
                 stop: int | None = None, mel_index: int = 0) -> Iterator[EvalBatch]:
    """Decoded batches of rows ``start .. stop-1`` (``stop`` None: to the end)."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    rows = source.rows
    if start and hasattr(rows, "skip") and not hasattr(rows, "select"):
        rows = rows.skip(start)  # streaming: skip without decoding
        offset = start
    else:
        offset = 0
    pending: list[EvalRow] = []
    first = start
    if hasattr(rows, "select") and hasattr(rows, "__len__"):  # a map-style Dataset: slice it
        end = len(rows) if stop is None else min(stop, len(rows))  # type: ignore[arg-type]
        for lo in range(start, end, batch_size):
            hi = min(lo + batch_size, end)
            part = rows[lo:hi]  # type: ignore[index]
            names = list(part)
            batch = [decode_row({n: part[n][i] for n in names}, lo + i, plan, mel_index) for i in range(hi - lo)]
            yield EvalBatch(lo, tuple(batch))
        return
    for i, row in enumerate(rows, start=offset):
        if i < start:
            continue
        if stop is not None and i >= stop:
            break
        pending.append(decode_row(row, i, plan, mel_index))
        if len(pending) == batch_size:
            yield EvalBatch(first, tuple(pending))
            first += len(pending)
            pending = []
    if pending:
        yield EvalBatch(first, tuple(pending))
