"""``precision="auto"`` by measured hardware speed: the bf16/fp32 GEMM ratio, its disk cache, the rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sat2sound_core.common import devices
from sat2sound_core.common.devices import Bf16Speed, cpu_bf16_speed, hardware_key, resolve_precision
from sat2sound_core.common.errors import ConfigError
from sat2sound_core.synthesis.synthesizer import transformer_dtype

CPU = torch.device("cpu")
INFO_AMX = "processor: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
INFO_AVX = "processor: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx512f avx512_bf16\n"


@pytest.fixture(autouse=True)
def _measured_not_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py pins SAT2SOUND_BF16_SPEEDUP for the rest of the suite; here it is measured."""
    from sat2sound_core.common.settings import get_settings

    monkeypatch.delenv("SAT2SOUND_BF16_SPEEDUP", raising=False)
    get_settings.cache_clear()


class CountingMeasure:
    """Stands in for the timed matmul pair; counts calls and returns ``ratio``."""

    def __init__(self, ratio: float, steady: bool = True) -> None:
        self.ratio, self.calls, self.steady = ratio, 0, steady

    def __call__(self, key: str | None = None, size: int = 512) -> Bf16Speed:
        self.calls += 1
        return Bf16Speed(key=key or "?", ratio=self.ratio, fp32_gflops=100.0, bf16_gflops=100.0 * self.ratio,
                         amx_bf16=False, avx512_bf16=True, steady=self.steady)


def test_real_measurement_is_short_and_sane() -> None:
    speed = devices.measure_bf16_speedup("k", size=128)
    assert speed.key == "k" and speed.ratio > 0 and speed.fp32_gflops > 0 and speed.bf16_gflops > 0
    assert speed.ratio == pytest.approx(speed.bf16_gflops / speed.fp32_gflops, rel=0.05)
    assert isinstance(speed.amx_bf16, bool) and isinstance(speed.avx512_bf16, bool) and isinstance(speed.steady, bool)


def test_scattered_measurement_is_used_but_not_cached(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = CountingMeasure(0.9, steady=False)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    assert cpu_bf16_speed(key="k").ratio == 0.9 and not (product_home / devices.SPEEDUP_FILE).exists()
    measure.ratio, measure.steady = 2.2, True
    assert cpu_bf16_speed(key="k").ratio == 2.2 and measure.calls == 2
    assert cpu_bf16_speed(key="k").ratio == 2.2 and measure.calls == 2  # now cached


def test_gemm_timing_retries_while_it_scatters(monkeypatch: pytest.MonkeyPatch) -> None:
    results = iter([(100.0, 90.0, False), (100.0, 210.0, True), (1.0, 1.0, True)])
    monkeypatch.setattr(devices, "_gemm_gflops", lambda n, budget: next(results))
    speed = devices.measure_bf16_speedup("k")
    assert speed.ratio == 2.1 and speed.steady and next(results) == (1.0, 1.0, True)


def test_measured_ratio_is_cached_and_re_read(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = CountingMeasure(5.75)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    first = cpu_bf16_speed(key="cpu A|torch 2|threads 2")
    cached = json.loads((product_home / devices.SPEEDUP_FILE).read_text())
    assert cached["key"] == "cpu A|torch 2|threads 2" and cached["ratio"] == 5.75
    measure.ratio = 1.0  # a re-measurement would now give another answer
    again = cpu_bf16_speed(key="cpu A|torch 2|threads 2")
    assert measure.calls == 1 and again == first and again.ratio == 5.75
    assert not list((product_home / "hardware").glob("*.tmp*"))  # written atomically, nothing left over


def test_cache_is_invalidated_when_the_key_changes(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = CountingMeasure(2.0)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    assert cpu_bf16_speed(key=hardware_key(INFO_AVX, threads=2)).ratio == 2.0
    measure.ratio = 5.75
    assert cpu_bf16_speed(key=hardware_key(INFO_AMX, threads=2)).ratio == 5.75  # other CPU flags
    assert cpu_bf16_speed(key=hardware_key(INFO_AMX, threads=1)).ratio == 5.75  # other thread count
    assert measure.calls == 3
    assert json.loads((product_home / devices.SPEEDUP_FILE).read_text())["key"] == hardware_key(INFO_AMX, threads=1)


def test_hardware_key_names_cpu_flags_torch_and_threads() -> None:
    key = hardware_key(INFO_AMX, threads=2)
    assert key.startswith("Intel Xeon|") and f"torch {torch.__version__}" in key and key.endswith("threads 2")
    assert key != hardware_key(INFO_AVX, threads=2) and key != hardware_key(INFO_AMX, threads=4)


def test_unreadable_cache_is_measured_again(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = CountingMeasure(3.5)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    path = product_home / devices.SPEEDUP_FILE
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert cpu_bf16_speed(key="k").ratio == 3.5 and measure.calls == 1
    assert json.loads(path.read_text())["ratio"] == 3.5


def test_auto_rule_synthesis_needs_3x_towers_1_5x(monkeypatch: pytest.MonkeyPatch) -> None:
    for ratio, synthesis, towers in ((0.0, "fp32", "fp32"), (0.9, "fp32", "fp32"), (1.4, "fp32", "fp32"),
                                     (1.5, "fp32", "bf16"), (2.0, "fp32", "bf16"), (3.0, "bf16", "bf16"),
                                     (5.75, "bf16", "bf16")):
        monkeypatch.setattr(devices, "bf16_speedup", lambda device, r=ratio: r)
        want = torch.bfloat16 if synthesis == "bf16" else torch.float32
        assert transformer_dtype("auto", CPU) == want, ratio
        assert resolve_precision("auto", CPU) == towers, ratio
        assert resolve_precision("auto", CPU, min_bf16_speedup=devices.TOWERS_MIN_BF16_SPEEDUP) == towers


def test_explicit_precisions_never_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(device: torch.device) -> float:
        raise AssertionError("measured for an explicit precision")

    monkeypatch.setattr(devices, "bf16_speedup", boom)
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bfloat16", CPU) == "bf16"
    assert transformer_dtype("bf16", CPU) == torch.bfloat16 and transformer_dtype("float32", CPU) == torch.float32
    with pytest.raises(ConfigError, match="fp32, bf16 or auto"):
        resolve_precision("fp16", CPU)


def test_known_ratio_setting_skips_the_measurement(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sat2sound_core.common.settings import get_settings

    measure = CountingMeasure(1.0)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    monkeypatch.setenv("SAT2SOUND_BF16_SPEEDUP", "5.75")
    get_settings.cache_clear()
    assert devices.bf16_speedup(CPU) == 5.75 and transformer_dtype("auto", CPU) == torch.bfloat16
    monkeypatch.setenv("SAT2SOUND_BF16_SPEEDUP", "2")
    get_settings.cache_clear()
    assert transformer_dtype("auto", CPU) == torch.float32 and resolve_precision("auto", CPU) == "bf16"
    assert measure.calls == 0 and not (product_home / devices.SPEEDUP_FILE).exists()
    for bad in ("fast", "-1", "0", "inf"):
        monkeypatch.setenv("SAT2SOUND_BF16_SPEEDUP", bad)
        get_settings.cache_clear()
        with pytest.raises(ConfigError, match="SAT2SOUND_BF16_SPEEDUP.*unset it"):
            resolve_precision("auto", CPU)


def test_cpu_without_setting_uses_the_cache(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measure = CountingMeasure(2.0)
    monkeypatch.setattr(devices, "measure_bf16_speedup", measure)
    monkeypatch.setattr(devices, "_PROCESS_SPEEDS", {})
    assert devices.bf16_speedup(CPU) == 2.0 and devices.bf16_speedup(CPU) == 2.0
    assert measure.calls == 1
    assert json.loads((product_home / devices.SPEEDUP_FILE).read_text())["key"] == hardware_key()
    monkeypatch.setattr(devices, "_PROCESS_SPEEDS", {})  # a new process: reads the file, measures nothing
    assert devices.bf16_speedup(CPU) == 2.0 and measure.calls == 1


def test_cuda_bf16_is_fast_where_supported(product_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.bf16_speedup(cuda) == devices.CUDA_BF16_SPEEDUP >= devices.SYNTHESIS_MIN_BF16_SPEEDUP
    assert transformer_dtype("auto", cuda) == torch.bfloat16 and resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert transformer_dtype("auto", cuda) == torch.float32 and resolve_precision("auto", cuda) == "fp32"
    assert devices.bf16_speedup(torch.device("meta")) == 0.0
