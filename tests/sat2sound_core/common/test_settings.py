from __future__ import annotations

from pathlib import Path

import pytest

import sat2sound_core
from sat2sound_core.common.errors import ConfigError
from sat2sound_core.common.settings import Settings, describe, from_env, get_settings


def test_package_imports_without_streamlit() -> None:
    import sys

    assert sat2sound_core.__version__
    import subprocess

    code = "import sys, sat2sound_core, sat2sound_core.common.settings; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_defaults_and_home_layout(tmp_path: Path) -> None:
    s = from_env({"SAT2SOUND_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h"
    assert s.weights == tmp_path / "h" / "weights"
    assert s.precision == "auto" and s.device == "auto"
    cache = s.cache_dir("tiles")
    assert cache.is_dir() and cache.parent == s.home


def test_env_overrides(tmp_path: Path) -> None:
    s = from_env(
        {
            "SAT2SOUND_WEIGHTS_DIR": str(tmp_path / "w"),
            "SAT2SOUND_PRECISION": "bf16",
            "SAT2SOUND_OFFLINE": "yes",
            "SAT2SOUND_DEVICE": "cuda:1",
        }
    )
    assert s.weights == tmp_path / "w"
    assert s.precision == "bf16" and s.device == "cuda:1"
    assert s.offline is True and s.is_offline


def test_hf_offline_counts_as_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Settings().is_offline


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [("SAT2SOUND_PRECISION", "fp8", "fp32 or bf16"), ("SAT2SOUND_OFFLINE", "maybe", "1/0"),
     ("SAT2SOUND_DEVICE", "tpu", "cuda")],
)
def test_bad_values_name_the_fix(key: str, value: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        from_env({key: value})


def test_describe_lists_every_variable() -> None:
    names = [row[0] for row in describe()]
    assert "SAT2SOUND_HOME" in names and "SAT2SOUND_WEIGHTS_DIR" in names
    assert len(names) == len(set(names))


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [name for name, _, _ in describe() if name not in readme]
    assert not missing, f"README does not document {missing}"


def test_product_home_fixture(product_home: Path) -> None:
    assert get_settings().home == product_home
    assert get_settings().is_offline


def test_switch_off_reads_performance_switches(monkeypatch) -> None:
    from sat2sound_core.common.settings import switch_off

    monkeypatch.delenv("SAT2SOUND_CUDA_GRAPHS", raising=False)
    assert not switch_off("SAT2SOUND_CUDA_GRAPHS")  # default on
    for value, off in (("0", True), (" Off ", True), ("false", True), ("no", True), ("1", False), ("", False)):
        monkeypatch.setenv("SAT2SOUND_CUDA_GRAPHS", value)
        assert switch_off("SAT2SOUND_CUDA_GRAPHS") is off, value
