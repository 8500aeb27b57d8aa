"""One frozen options object for every performance switch, read from the settings, overridable."""

from __future__ import annotations

import dataclasses

import pytest

from sat2sound_core import accel
from sat2sound_core.accel import AccelOptions
from sat2sound_core.common.errors import ConfigError
from sat2sound_core.common.settings import from_env, get_settings


def test_defaults_are_every_speed_up_on() -> None:
    opts = AccelOptions.from_settings(from_env({}))
    assert opts == AccelOptions(fused_linear=True, packed_weights=True, native_kernels=True, swin_chunk_rows=4096,
                                cuda_graphs=True, tune_malloc=True, cxx=opts.cxx)


def test_switches_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SAT2SOUND_FUSED_LINEAR": "0", "SAT2SOUND_PACKED_WEIGHTS": "off", "SAT2SOUND_NATIVE_KERNELS": "no",
           "SAT2SOUND_SWIN_CHUNK_ROWS": " 2048 ", "SAT2SOUND_CUDA_GRAPHS": "false", "SAT2SOUND_TUNE_MALLOC": "0"}
    monkeypatch.setenv("CXX", "clang++")
    opts = AccelOptions.from_settings(from_env(env))
    assert opts == AccelOptions(False, False, False, 2048, False, False, "clang++")
    monkeypatch.delenv("CXX")
    assert AccelOptions.from_settings(from_env({})).cxx is None


@pytest.mark.parametrize(("key", "value"), [("SAT2SOUND_SWIN_CHUNK_ROWS", "abc"), ("SAT2SOUND_SWIN_CHUNK_ROWS", "0"),
                                            ("SAT2SOUND_SWIN_CHUNK_ROWS", "1.5"), ("SAT2SOUND_FUSED_LINEAR", "maybe")])
def test_bad_values_are_config_errors(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_env({key: value})


def test_options_are_one_object_until_something_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    first = accel.options()
    assert accel.options() is first and dataclasses.is_dataclass(first)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.fused_linear = False  # type: ignore[misc]
    with accel.override(fused_linear=False) as outer:
        assert accel.options() is outer and not outer.fused_linear and outer.native_kernels == first.native_kernels
        with accel.override(swin_chunk_rows=64) as inner:
            assert accel.options() is inner and inner.swin_chunk_rows == 64 and not inner.fused_linear
        assert accel.options() is outer
    assert accel.options() is first
    monkeypatch.setenv("SAT2SOUND_SWIN_CHUNK_ROWS", "1024")
    get_settings.cache_clear()
    try:
        assert accel.options() is not first and accel.options().swin_chunk_rows == 1024
    finally:
        monkeypatch.delenv("SAT2SOUND_SWIN_CHUNK_ROWS")
        get_settings.cache_clear()


def test_override_names_the_valid_options() -> None:
    with pytest.raises(ConfigError, match="swin_chunk_rows"), accel.override(chunk_rows=64):
        pass
