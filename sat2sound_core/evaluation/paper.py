"""The paper's retrieval tables (``reference/paper/retrieval_tables.csv``) next to measured rows.

The CSV is read at run time, only for the side-by-side report; without it the report lists the
measured rows alone.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sat2sound_core.model.config import metadata_tokens_for

CSV_NAME = "retrieval_tables.csv"


@dataclass(frozen=True)
class PaperRow:
    """One Sat2Sound row of the paper's retrieval tables."""

    table: str
    dataset: str
    imagery: str
    scale: int
    metadata: str
    composed: str
    task: str
    i2x_r10: float
    i2x_median_rank: float
    x2i_r10: float
    x2i_median_rank: float


def find_csv(reference: Path | None) -> Path | None:
    """``retrieval_tables.csv`` under ``reference`` (a reference folder, its ``paper/`` or the file itself)."""
    if reference is None:
        return None
    for cand in (reference, reference / CSV_NAME, reference / "paper" / CSV_NAME):
        if cand.is_file():
            return cand
    return None


def sat2sound_rows(path: Path | None) -> Iterator[dict[str, str]]:
    """The rows of one of the paper's table CSVs whose ``model`` is Sat2Sound (the baselines are not
    something this project runs); nothing when ``path`` is None or missing."""
    if path is None or not path.is_file():
        return
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("model") == "Sat2Sound":
                yield r


def read_rows(path: Path | None) -> list[PaperRow]:
    """The Sat2Sound rows of ``retrieval_tables.csv``; [] without it (rows that do not parse are skipped)."""
    rows = []
    for r in sat2sound_rows(path):
        try:
            rows.append(PaperRow(r["table"], r["dataset"], r["imagery"], int(r["scale"]), r["metadata"],
                                 r["composed"], r["task"], float(r["i2x_r10"]), float(r["i2x_median_rank"]),
                                 float(r["x2i_r10"]), float(r["x2i_median_rank"])))
        except (KeyError, ValueError):
            continue
    return rows


def _tokens(metadata: str) -> frozenset[str]:
    return frozenset(metadata_tokens_for(metadata))


def matching(rows: Sequence[PaperRow], record: Mapping[str, object]) -> list[PaperRow]:
    """Paper rows of the same dataset, imagery, scale, metadata parts, composed variant and task."""
    task = str(record.get("task", "image-audio"))
    meta = _tokens(str(record["metadata_type"]))
    return [r for r in rows
            if r.dataset == record["dataset_type"] and r.imagery.lower() == str(record["overhead_type"]).lower()
            and r.scale == record["test_zoom_level"] and r.composed == record["addtextto"] and r.task == task
            and _tokens(r.metadata) == meta]


def _num(x: object) -> float:
    return float(x) if isinstance(x, int | float) else float("nan")


def markdown(records: Sequence[Mapping[str, object]], rows: Sequence[PaperRow]) -> str:
    """A table with each measured row and, where the paper has one, its row and the difference."""
    head = ("| dataset | imagery | scale | metadata | composed | task | source | I→S R@10% | I→S median | "
            "S→I R@10% | S→I median |")
    lines = [head, "|" + "---|" * 11]
    for rec in records:
        base = (f"| {rec['dataset_type']} | {rec['overhead_type']} | {rec['test_zoom_level']} | "
                f"{rec['metadata_type']} | {rec['addtextto']} | {rec.get('task', 'image-audio')} |")
        mine = (_num(rec["I2S_Recall"]), _num(rec["I2S_Median_Rank"]), _num(rec["S2I_Recall"]),
                _num(rec["S2I_Median_Rank"]))
        lines.append(f"{base} measured | {mine[0]:.3f} | {mine[1]:g} | {mine[2]:.3f} | {mine[3]:g} |")
        for p in matching(rows, rec):
            theirs = (p.i2x_r10, p.i2x_median_rank, p.x2i_r10, p.x2i_median_rank)
            lines.append(f"{base} paper (table {p.table}) | {theirs[0]:.3f} | {theirs[1]:g} | {theirs[2]:.3f} | "
                         f"{theirs[3]:g} |")
            d = [m - t for m, t in zip(mine, theirs, strict=True)]
            lines.append(f"{base} difference | {d[0]:+.3f} | {d[1]:+g} | {d[2]:+.3f} | {d[3]:+g} |")
    return "\n".join(lines) + "\n"
