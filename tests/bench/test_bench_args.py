"""``python -m bench`` hands option values to the benchmark instead of reading them as names."""

from __future__ import annotations

from bench.__main__ import split_args

MODULES = ["bench_app", "bench_engine", "bench_model", "bench_synthesis"]


def test_option_values_are_passed_through_with_or_without_equals() -> None:
    assert split_args(["synthesis", "--steps", "2"], MODULES) == (["synthesis"], ["--steps", "2"])
    assert split_args(["synthesis", "--steps=2"], MODULES) == (["synthesis"], ["--steps=2"])
    assert split_args(["model", "--device", "cuda", "--batches", "1,16"], MODULES) == (
        ["model"], ["--device", "cuda", "--batches", "1,16"])


def test_several_names_and_flags_without_values() -> None:
    assert split_args(["model", "engine", "--quick"], MODULES) == (["model", "engine"], ["--quick"])
    assert split_args([], MODULES) == ([], [])
    # a flag's value that happens to name a benchmark still belongs to the flag once a name was given
    assert split_args(["synthesis", "--kind", "model"], MODULES) == (["synthesis"], ["--kind", "model"])
