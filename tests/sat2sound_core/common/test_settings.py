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


def test_load_model_and_engine_honour_sat2sound_precision(
    product_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import torch

    from sat2sound_core.engine import Engine
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound
    from sat2sound_core.weights import checkpoints as ck
    from sat2sound_core.weights.loading import clear_model_cache, load_model

    torch.manual_seed(0)
    tiny = Sat2Sound(ModelConfig.tiny(name="tiny_test"))
    path = ck.save_converted(tmp_path / "t.safetensors", tiny.state_dict(), dataclasses.asdict(tiny.config), "", "")
    monkeypatch.delenv("SAT2SOUND_DEVICE", raising=False)
    monkeypatch.delenv("SAT2SOUND_PRECISION", raising=False)
    clear_model_cache()
    try:
        assert load_model(path, text_encoder=False).precision == "fp32"  # unset: the old default
        engine = Engine(checkpoint=str(path))
        assert (engine.precision, engine.device) == ("auto", "auto")
        monkeypatch.setenv("SAT2SOUND_PRECISION", "bf16")
        monkeypatch.setenv("SAT2SOUND_DEVICE", "cpu")
        get_settings.cache_clear()
        model = load_model(path, text_encoder=False)
        assert model.precision == "bf16" and next(model.parameters()).device.type == "cpu"
        engine = Engine(checkpoint=str(path))
        assert (engine.precision, engine.device) == ("bf16", "cpu")
        assert Engine(checkpoint=str(path), precision="fp32").precision == "fp32"  # an argument wins
        assert load_model(path, precision="fp32", text_encoder=False).precision == "fp32"
    finally:
        clear_model_cache()
