"""Where and when a recording was made, and how the model encodes it (docs/model.md#metadata).

:class:`Metadata` is the public, validated description of one item (any field may be unknown).
:func:`encode_metadata` turns a batch of them into the official float32 encodings plus one validity
flag per token and item. The official model marks only month and hour as possibly invalid; here an
unknown latitude/longitude or source is treated the same way: the token is excluded from the fuser's
attention (as a key) and its fused output is an exact zero vector, as the official evaluation does for
invalid month/hour tokens. Defaults for a caller who gives nothing belong to the engine, not here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from sat2sound_core.common.errors import InputError
from sat2sound_core.model.config import metadata_tokens_for

#: audio source name -> index of the official ``audio_source`` embedding
AUDIO_SOURCES: dict[str, int] = {"yfcc": 0, "iNat": 1, "aporee": 2, "freesound": 3}
#: caption source name -> index of the official ``caption_source`` embedding
CAPTION_SOURCES: dict[str, int] = {"meta": 0, "qwen": 1, "pengi": 2}

#: the hour encoding's period: the official code divides by 23, not 24 (docs/model.md#metadata)
HOUR_PERIOD = 23.0
MONTH_PERIOD = 12.0


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
            return _number(value.item(), what)
        raise InputError(f"{what} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return number


def _integer(value: object, what: str, low: int, high: int) -> int:
    number = _number(value, what)
    if number != int(number):
        raise InputError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    integer = int(number)
    if not low <= integer <= high:
        raise InputError(f"{what} must be from {low} to {high}, got {integer}")
    return integer


def _source(value: object, table: dict[str, int], what: str) -> str:
    valid = ", ".join(table)
    if isinstance(value, str):
        by_lower = {name.lower(): name for name in table}
        name = by_lower.get(value.strip().lower())
        if name is None:
            raise InputError(f"unknown {what} {value!r}; valid names are {valid} (or codes 0..{len(table) - 1})")
        return name
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | torch.Tensor):
        raise InputError(f"{what} must be one of {valid} or an integer code, got {value!r}")
    code = _integer(value, f"{what} code", 0, len(table) - 1)
    return next(name for name, index in table.items() if index == code)


@dataclass(frozen=True)
class Metadata:
    """Validated metadata of one item; ``None`` means unknown.

    ``lat`` in [-90, 90] and ``lon`` in [-180, 180] degrees, ``hour`` 0..23 (local time of the
    recording), ``month`` 1..12. ``audio_source`` is one of ``yfcc, iNat, aporee, freesound`` and
    ``caption_source`` one of ``meta, qwen, pengi`` (names are case-insensitive; the official integer
    codes are accepted too and normalised to names). Invalid values raise :class:`InputError`.
    """

    lat: float | None = None
    lon: float | None = None
    hour: int | None = None
    month: int | None = None
    audio_source: str | None = None
    caption_source: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.lat is not None:
            lat = _number(self.lat, "latitude")
            if not -90.0 <= lat <= 90.0:
                raise InputError(f"latitude must be within [-90, 90] degrees, got {lat}")
            put("lat", lat)
        if self.lon is not None:
            lon = _number(self.lon, "longitude")
            if not -180.0 <= lon <= 180.0:
                raise InputError(f"longitude must be within [-180, 180] degrees, got {lon}")
            put("lon", lon)
        if self.hour is not None:
            put("hour", _integer(self.hour, "hour", 0, 23))
        if self.month is not None:
            put("month", _integer(self.month, "month", 1, 12))
        if self.audio_source is not None:
            put("audio_source", _source(self.audio_source, AUDIO_SOURCES, "audio source"))
        if self.caption_source is not None:
            put("caption_source", _source(self.caption_source, CAPTION_SOURCES, "caption source"))

    @property
    def audio_source_index(self) -> int | None:
        """The official integer code of ``audio_source`` (None when unknown)."""
        return None if self.audio_source is None else AUDIO_SOURCES[self.audio_source]

    @property
    def caption_source_index(self) -> int | None:
        """The official integer code of ``caption_source`` (None when unknown)."""
        return None if self.caption_source is None else CAPTION_SOURCES[self.caption_source]

    @classmethod
    def coerce(cls, value: object) -> Metadata | None:
        """``value`` as Metadata: a Metadata, a mapping of its fields, or None (all unknown)."""
        if value is None or isinstance(value, Metadata):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise InputError(
                    f"unknown metadata field(s) {sorted(unknown)}; valid: {list(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        raise InputError(f"metadata must be a Metadata, a dict of its fields or None, got {type(value).__name__}")


@dataclass
class MetadataBatch:
    """Official encodings of a batch of metadata, with one validity flag per token and item.

    ``latlong`` (B,4), ``month`` (B,2) and ``time`` (B,2) are float32 (``[0, 0]`` where invalid);
    ``audio_source`` and ``caption_source`` are int64 codes (0 where invalid). ``valid`` maps each
    enabled token name (``asource, tsource, latlong, month, time``) to a bool (B,) tensor;
    ``tokens`` lists the enabled tokens in model order.
    """

    tokens: tuple[str, ...]
    latlong: torch.Tensor
    month: torch.Tensor
    time: torch.Tensor
    audio_source: torch.Tensor
    caption_source: torch.Tensor
    valid: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Number of items."""
        return int(self.latlong.shape[0])

    def token_mask(self) -> torch.Tensor:
        """(B, M) bool: True where the metadata token is valid, columns in model order."""
        if not self.tokens:
            return torch.zeros(self.batch_size, 0, dtype=torch.bool)
        return torch.stack([self.valid[t] for t in self.tokens], dim=1)

    def to(self, device: torch.device | str) -> MetadataBatch:
        """A copy on ``device``."""
        return MetadataBatch(
            tokens=self.tokens,
            latlong=self.latlong.to(device),
            month=self.month.to(device),
            time=self.time.to(device),
            audio_source=self.audio_source.to(device),
            caption_source=self.caption_source.to(device),
            valid={k: v.to(device) for k, v in self.valid.items()},
        )


def _cyclic(value: float, period: float) -> list[float]:
    angle = 2.0 * math.pi * value / period
    return [math.sin(angle), math.cos(angle)]


def encode_metadata(
    items: Metadata | Mapping[str, object] | Sequence[Metadata | Mapping[str, object] | None] | None,
    metadata_type: str,
    batch_size: int,
) -> MetadataBatch:
    """Encode metadata for a batch of ``batch_size`` items exactly as the official dataloader does.

    ``items`` is one Metadata (used for every item), a sequence of ``batch_size`` Metadata/None, or
    None (everything unknown). Encodings (computed in float64, stored as float32):
    latlong = [sin(π·lat/90), cos(π·lat/90), sin(π·lon/180), cos(π·lon/180)],
    month = [sin(2π·m/12), cos(2π·m/12)], time = [sin(2π·h/23), cos(2π·h/23)] (period 23 as in the
    official code). A token is valid when every field it needs is known.
    """
    tokens = metadata_tokens_for(metadata_type)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if items is None or isinstance(items, Metadata | Mapping):
        per_item = [Metadata.coerce(items)] * batch_size
    elif isinstance(items, Sequence) and not isinstance(items, str):
        if len(items) != batch_size:
            raise InputError(
                f"got metadata for {len(items)} items but the batch has {batch_size}; pass one Metadata "
                "for all items or a list with one entry (or None) per item"
            )
        per_item = [Metadata.coerce(m) for m in items]
    else:
        raise InputError(f"metadata must be a Metadata, a list of them, or None; got {type(items).__name__}")

    latlong, month, time = [], [], []
    asrc, csrc = [], []
    valid: dict[str, list[bool]] = {t: [] for t in ("asource", "tsource", "latlong", "month", "time")}
    for meta in per_item:
        m = meta or Metadata()
        ok_ll = m.lat is not None and m.lon is not None
        if ok_ll:
            assert m.lat is not None and m.lon is not None
            lat_a, lon_a = math.pi * m.lat / 90.0, math.pi * m.lon / 180.0
            latlong.append([math.sin(lat_a), math.cos(lat_a), math.sin(lon_a), math.cos(lon_a)])
        else:
            latlong.append([0.0, 0.0, 0.0, 0.0])
        month.append(_cyclic(m.month, MONTH_PERIOD) if m.month is not None else [0.0, 0.0])
        time.append(_cyclic(m.hour, HOUR_PERIOD) if m.hour is not None else [0.0, 0.0])
        asrc.append(m.audio_source_index if m.audio_source_index is not None else 0)
        csrc.append(m.caption_source_index if m.caption_source_index is not None else 0)
        valid["latlong"].append(ok_ll)
        valid["month"].append(m.month is not None)
        valid["time"].append(m.hour is not None)
        valid["asource"].append(m.audio_source is not None)
        valid["tsource"].append(m.caption_source is not None)

    return MetadataBatch(
        tokens=tokens,
        latlong=torch.tensor(latlong, dtype=torch.float64).to(torch.float32),
        month=torch.tensor(month, dtype=torch.float64).to(torch.float32),
        time=torch.tensor(time, dtype=torch.float64).to(torch.float32),
        audio_source=torch.tensor(asrc, dtype=torch.int64),
        caption_source=torch.tensor(csrc, dtype=torch.int64),
        valid={t: torch.tensor(valid[t], dtype=torch.bool) for t in tokens},
    )
