"""Comparing a set of weights with what an architecture expects (one check for every loader)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def key_mismatch(
    expected: Mapping[str, Iterable[int]],
    found: Mapping[str, Iterable[int]],
    allowed_missing: Iterable[str] = (),
    show: int = 8,
) -> str:
    """How ``found`` (key → shape) differs from ``expected``; ``""`` when they match exactly.

    Keys in ``allowed_missing`` may be absent. The description counts the missing keys, the
    unexpected keys and the shape mismatches and names up to ``show`` of each, e.g.
    ``"1 missing key(s): a.bias; 1 shape mismatch(es): b.weight: file (7,) vs model (8,)"``.
    """
    want = {k: tuple(v) for k, v in expected.items()}
    have = {k: tuple(v) for k, v in found.items()}
    missing = sorted(set(want) - set(have) - set(allowed_missing))
    unexpected = sorted(set(have) - set(want))
    wrong = sorted(f"{k}: file {have[k]} vs model {want[k]}" for k in set(want) & set(have) if have[k] != want[k])

    def few(items: list[str]) -> str:
        return ", ".join(items[:show]) + (f" … (+{len(items) - show} more)" if len(items) > show else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): {few(wrong)}")
    return "; ".join(parts)
