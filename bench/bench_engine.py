"""Click-to-result latency of the soundscape engine, and gallery open time.

One "click" with the chip already fetched (tiles cached): encode the chip at scale 1 with metadata and
token scores, a text heatmap and a word heatmap (their text encodings cached, as the engine caches
them per query), a concept map, and top-10 retrieval over a 10k-row gallery (memory-mapped
embeddings). Measured with the full-size Sat2Sound (random weights; the numbers depend on sizes, not
on values) at fp32 and bf16. FLAN-T5 is replaced by a stand-in that returns hidden states of the
right shape, because its time is paid once per typed query, not per click.

Also: time to open a 10k-row gallery file and read its description (nothing else is read).

Run: ``python -m bench engine [--repeats N] [--rows N] [--precisions fp32,bf16]``.
Target: ≤ 0.5 s per click in bf16 on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CAPTION = "birds singing near the river and cars on a busy road"


class _StandInT5:
    """Hidden states of FLAN-T5-large's shape (1024-d, one row per whitespace word + ``</s>``)."""

    class _Tok:
        def __call__(self, text: str) -> dict[str, list[int]]:
            return {"input_ids": list(range(len(text.split()) + 1))}

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return [*("\u2581" + w for w in CAPTION.split()), "</s>"][: len(ids)]

    def __init__(self, dim: int = 1024) -> None:
        self.dim = dim
        self.tokenizer = self._Tok()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(t.split()) for t in texts) + 1
        g = torch.Generator().manual_seed(len(texts[0]))
        hidden = torch.randn(len(texts), length, self.dim, generator=g) * 0.3
        return hidden, torch.ones(len(texts), length, dtype=torch.bool)


def _gallery(path: Path, rows: int, dim: int = 1024) -> None:
    from sat2sound_core.gallery import write_gallery

    rng = np.random.default_rng(0)
    write_gallery(
        path,
        [f"s{i}" for i in range(rows)],
        {s: [f"synthetic caption {i} at scale {s}" for i in range(rows)] for s in (1, 3, 5)},
        {s: rng.standard_normal((rows, dim), dtype=np.float32) for s in (1, 3, 5)},
        audio_captions=[f"clip {i}" for i in range(rows)],
        audio_embeddings=rng.standard_normal((rows, dim), dtype=np.float32),
        checkpoint="sat2sound",
    )


def _chip() -> Any:
    import tiles
    from tiles.geometry import target_grid

    grid = target_grid("bingmap", 38.627, -90.1994)
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, size=(31, 31, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.kron(small, np.ones((50, 50, 1), np.uint8))[:1500, :1500])
    return tiles.Chip(image=image, crs=grid.crs, transform=grid.transform, ground_resolution=grid.ground_resolution,
                      provider="synthetic", attribution="synthetic", geometry="bingmap", center=(38.627, -90.1994))


def _click(engine: Any, chip: Any, gallery: Any) -> dict[str, float]:
    t0 = time.perf_counter()
    engine.clear_results()
    result = engine.analyze_chip(chip, scale=1)
    t1 = time.perf_counter()
    result.text_heatmap("birds singing")
    result.word_heatmap(CAPTION, ["birds", "river"])
    t2 = time.perf_counter()
    result.concept_map(top_k=5, n_examples=0)
    t3 = time.perf_counter()
    hits = result.retrieve(k=10, gallery=gallery)
    t4 = time.perf_counter()
    assert len(hits) == 10
    return {"encode_s": t1 - t0, "heatmaps_s": t2 - t1, "concepts_s": t3 - t2, "retrieve_s": t4 - t3,
            "total_s": t4 - t0}


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench engine")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args(argv)

    from sat2sound_core.engine import Engine
    from sat2sound_core.gallery import Gallery
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound

    out: dict[str, Any] = {"threads": torch.get_num_threads(), "rows": args.rows, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gallery.h5"
        t = time.perf_counter()
        _gallery(path, args.rows)
        out["gallery_write_s"] = time.perf_counter() - t
        opens = []
        for _ in range(5):
            t = time.perf_counter()
            g = Gallery(path)
            info = g.info()
            opens.append(time.perf_counter() - t)
            g.close()
        assert info.rows == args.rows
        out["gallery_open_s"] = statistics.median(opens)
        print(f"gallery: {args.rows} rows, {path.stat().st_size / 1e6:.0f} MB, open+info {out['gallery_open_s'] * 1e3:.1f} ms")

        chip = _chip()
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            torch.manual_seed(0)
            t = time.perf_counter()
            model = Sat2Sound(ModelConfig(name="sat2sound"))
            if precision == "bf16":
                model.set_precision("bf16")
            model.text_encoder = _StandInT5()
            build_s = time.perf_counter() - t
            engine = Engine(checkpoint="sat2sound", model=model, gallery=path)
            gallery = engine.get_gallery()
            _click(engine, chip, gallery)  # warm-up: text encodings, gallery pages, kernels
            runs = [_click(engine, chip, gallery) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            out[precision] = {"model_build_s": build_s, **med}
            print(f"{precision}: click {med['total_s'] * 1e3:7.1f} ms  (encode {med['encode_s'] * 1e3:.1f}, "
                  f"heatmaps {med['heatmaps_s'] * 1e3:.1f}, concepts {med['concepts_s'] * 1e3:.1f}, "
                  f"top-10 of {args.rows} {med['retrieve_s'] * 1e3:.1f}) ms")
            del engine, model, gallery
    if "bf16" in out:
        out["target_met_bf16_le_0.5s"] = out["bf16"]["total_s"] <= 0.5
    return out
