"""A tiny evaluation dataset in the official GeoSound / SoundingEarth schema, written with the real
``datasets`` library (``save_to_disk`` and Parquet). Images are real JPEG bytes, mel_features real
(5, 1, 1001, 64) float32 arrays; dates cover the official formats, an unparseable one and a freesound row."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

TILE = 320  # ≥ the bingmap scale-1 crop (300 px); the crop rule works on any tile at least that big

#: (source, date, caption source): every official date format, an unparseable date, a freesound row
ROWS = [
    ("yfcc", "2012-06-14 17:25:01", "meta"),
    ("iNat", "2019-03-02T08:10:00+00:00", "qwen"),
    ("aporee", "Sat, 21 Nov 2009 03:45:00 GMT+0100 (extra)", "pengi"),
    ("freesound", "2015-12-24 23:10:00", "meta"),
    ("yfcc", "not a date at all", "qwen"),
    ("iNat", "July 4, 2020 10:30 pm EDT whatever", "pengi"),
    ("aporee", "", "meta"),
    ("yfcc", "2011-01-09", "qwen"),
]
CAPTIONS = ["birds singing in the forest", "traffic and cars in the city", "waves on the beach",
            "rain and wind", "church bells", "crowd of people talking", "river water", "insects at night"]


def jpeg(seed: int, size: int = TILE) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def mel(seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return (rng.standard_normal((5, 1, 1001, 64)) * 2.0 - 5.0).astype(np.float32)


def columns(n: int = len(ROWS), kind: str = "GeoSound") -> dict[str, list[object]]:
    rows = [ROWS[i % len(ROWS)] for i in range(n)]
    out: dict[str, list[object]] = {
        "sample_id": [f"{r[0]}-{i}" for i, r in enumerate(rows)],
        "latitude": [float(10 + 7 * i) for i in range(n)],
        "longitude": [float(-120 + 30 * i) for i in range(n)],
        "audio_caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(n)],
        "audio_caption_source": [r[2] for r in rows],
        "mel_features": [mel(i) for i in range(n)],
    }
    if kind == "GeoSound":
        out["source"] = [r[0] for r in rows]
        out["date"] = [r[1] for r in rows]
        out["bingmap_image"] = [{"bytes": jpeg(i), "path": None} for i in range(n)]
        out["sentinel_image"] = [{"bytes": jpeg(100 + i), "path": None} for i in range(n)]
    else:
        out["date_recorded"] = [r[1] for r in rows]
        out["googleearth_image"] = [{"bytes": jpeg(200 + i), "path": None} for i in range(n)]
    return out


def features(kind: str = "GeoSound", drop: tuple[str, ...] = ()) -> object:
    import datasets

    f = {
        "sample_id": datasets.Value("string"), "latitude": datasets.Value("float32"),
        "longitude": datasets.Value("float32"), "audio_caption": datasets.Value("string"),
        "audio_caption_source": datasets.Value("string"),
        "mel_features": datasets.Array4D(shape=(5, 1, 1001, 64), dtype="float32"),
    }
    if kind == "GeoSound":
        f |= {"source": datasets.Value("string"), "date": datasets.Value("string"),
              "bingmap_image": datasets.Image(), "sentinel_image": datasets.Image()}
    else:
        f |= {"date_recorded": datasets.Value("string"), "googleearth_image": datasets.Image()}
    return datasets.Features({k: v for k, v in f.items() if k not in drop})


def write(folder: Path, n: int = len(ROWS), kind: str = "GeoSound", fmt: str = "disk",
          drop: tuple[str, ...] = (), split: str = "test") -> Path:
    """Write ``n`` rows as a ``save_to_disk`` DatasetDict (``fmt="disk"``) or Parquet shards
    (``fmt="parquet"``: ``data/<split>-0000i-of-00002.parquet``); returns the folder."""
    import datasets

    cols = {k: v for k, v in columns(n, kind).items() if k not in drop}
    ds = datasets.Dataset.from_dict(cols, features=features(kind, drop))  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "disk":
        datasets.DatasetDict({split: ds}).save_to_disk(str(folder))
    else:
        (folder / "data").mkdir(exist_ok=True)
        half = n // 2 if n > 1 else n
        ds.select(range(half)).to_parquet(str(folder / "data" / f"{split}-00000-of-00002.parquet"))
        if n > half:
            ds.select(range(half, n)).to_parquet(str(folder / "data" / f"{split}-00001-of-00002.parquet"))
    return folder
