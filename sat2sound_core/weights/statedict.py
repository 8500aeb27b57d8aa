"""Comparing a set of weights with what an architecture expects (one check for every loader)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


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


def dtype_mismatch(
    expected: Mapping[str, torch.dtype], found: Mapping[str, torch.dtype], exact: bool = True, show: int = 8
) -> str:
    """Keys whose stored dtype differs from the architecture's; ``""`` when all agree.

    With ``exact`` every dtype must be the model's (our converted files are written from the model).
    Otherwise a float may stand for a float of another width (a fine-tune saved in half precision
    is cast exactly by ``load_state_dict``), but an integer or bool never for a float and back: those
    bytes would be reinterpreted or truncated, giving silently wrong weights.
    """
    def kind(d: torch.dtype) -> str:
        return "float" if d.is_floating_point else "complex" if d.is_complex else "bool" if d == torch.bool else "int"

    wrong = sorted(
        f"{k}: file {str(found[k]).removeprefix('torch.')} vs model {str(v).removeprefix('torch.')}"
        for k, v in expected.items()
        if k in found and (found[k] != v if exact else kind(found[k]) != kind(v))
    )
    if not wrong:
        return ""
    more = f" … (+{len(wrong) - show} more)" if len(wrong) > show else ""
    return f"{len(wrong)} dtype mismatch(es): {', '.join(wrong[:show])}{more}"


def non_finite_keys(state_dict: Mapping[str, torch.Tensor], chunk: int = 1 << 24) -> list[str]:
    """Keys of floating tensors that hold a NaN or an infinity (checked ``chunk`` values at a time)."""
    bad = []
    for key, value in state_dict.items():
        if not (value.is_floating_point() or value.is_complex()):
            continue
        flat = value.detach().reshape(-1)
        if not all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.numel(), chunk)):
            bad.append(key)
    return bad
