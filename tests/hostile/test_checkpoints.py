"""Hostile and broken checkpoint files (issue 17 items 1, 2, 10, 11, 13, 16): each is built here, then loaded.

Anything that could crash or hang the interpreter runs in a subprocess with a timeout, so a
regression fails its test instead of killing pytest.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import importlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sat2sound_core.common.errors import ConfigError, WeightsError
from sat2sound_core.weights import checkpoints as ck
from sat2sound_core.weights import unpickle
from tests.hostile._helpers import Marker, run_python, tiny_official_state, torch_zip_with


# ----------------------------------------------------------------------------- 1. forged numpy memory
class _ForgedDType:
    """A structured dtype with an object field whose flags claim it holds no objects (so bytes = pointers)."""

    def __reduce__(self) -> tuple[object, ...]:
        return (np.dtype, ("V8", False, True),
                (3, "|", None, ("f0",), {"f0": (np.dtype("O"), 0)}, 8, 1, 0))


class _ForgedArray:
    def __reduce__(self) -> tuple[object, ...]:
        return (importlib.import_module("numpy._core.multiarray")._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (1,), _ForgedDType(), False, struct.pack("<Q", 0xDEADBEEF)))


def test_a_forged_numpy_object_pointer_is_refused_not_dereferenced(tmp_path: Path) -> None:
    path = tmp_path / "segv.ckpt"
    torch.save({"state_dict": tiny_official_state(), "callbacks": {"x": _ForgedArray()}}, path)
    code = textwrap.dedent(f"""
        from sat2sound_core.common.errors import ConfigError, WeightsError
        from sat2sound_core.weights import checkpoints as ck
        for load in (ck.safe_torch_load, ck.read_official_checkpoint):
            try:
                print(str(load({str(path)!r})))
            except WeightsError as exc:
                print("REFUSED", exc)
    """)
    result = run_python(code)
    assert result.returncode == 0, f"crashed (rc {result.returncode}): {result.stderr[-2000:]}"
    assert result.stdout.count("REFUSED") == 2 and "Refused to load" in result.stdout


def _refused_in_a_subprocess(path: Path) -> str:
    """Load ``path`` in a fresh interpreter (a forged dtype segfaults when numpy builds it); its refusal."""
    code = textwrap.dedent(f"""
        from sat2sound_core.common.errors import WeightsError
        from sat2sound_core.weights import checkpoints as ck
        try:
            print("LOADED", str(ck.safe_torch_load({str(path)!r}))[:200])
        except WeightsError as exc:
            print("REFUSED", exc)
    """)
    result = run_python(code)
    assert result.returncode == 0, f"crashed (rc {result.returncode}): {result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.parametrize("spec", ["O", "V8", "M8[s]", "U4", "S3"])
def test_only_plain_numeric_numpy_dtypes_are_built(tmp_path: Path, spec: str) -> None:
    class Odd:  # flags 0 on an object dtype: numpy would read the array's bytes as pointers
        def __reduce__(self) -> tuple[object, ...]:
            return (np.dtype, (spec, False, True), (3, "|", None, None, None, -1, -1, 0))

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": tiny_official_state(), "x": Odd()}, path)
    out = _refused_in_a_subprocess(path)
    assert out.startswith("REFUSED Refused to load") and "plain numeric" in out


def test_a_plain_dtype_with_forged_fields_state_is_refused(tmp_path: Path) -> None:
    class Forged:
        def __reduce__(self) -> tuple[object, ...]:
            return (np.dtype, ("f8", False, True), (3, "<", None, ("f0",), {"f0": (np.dtype("O"), 0)}, 8, 1, 0))

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": tiny_official_state(), "x": Forged()}, path)
    assert _refused_in_a_subprocess(path).startswith("REFUSED Refused to load")


def test_plain_numpy_values_keep_their_values(tmp_path: Path) -> None:
    path = tmp_path / "np.ckpt"
    values = {"f": np.float32(1.5), "i": np.int64(-3), "b": np.bool_(True), "c": np.complex64(1 + 2j),
              "a": np.arange(6, dtype=">i4").reshape(2, 3), "fa": np.asfortranarray(np.eye(3)), "e": np.zeros((0, 2))}
    torch.save({"state_dict": tiny_official_state(), "loops": values}, path)
    out = ck.safe_torch_load(path)["loops"]  # type: ignore[index]
    for key, value in values.items():
        assert np.array_equal(out[key], value) and np.asarray(out[key]).dtype == np.asarray(value).dtype, key


# ----------------------------------------------------------------------------- 2. exponential sharing, deep nesting
def test_shared_references_cost_linear_work(tmp_path: Path) -> None:
    x: list[object] = []
    for _ in range(64):
        x = [x, x]  # 2**64 paths through 64 objects
    small = tmp_path / "bomb.ckpt"
    torch_zip_with(small, {"loops": Marker("X")}, {"X": pickle.dumps(x, protocol=2)[2:-1]})
    assert small.stat().st_size < 3500  # the 3 KB file of the issue
    path = tmp_path / "shared.ckpt"
    torch.save({"state_dict": tiny_official_state(), "loops": x, "hyper_parameters": {"sat_type": "bingmap", "h": x}},
               path)
    code = textwrap.dedent(f"""
        from sat2sound_core.weights import checkpoints as ck
        print(len(ck.safe_torch_load({str(small)!r})["loops"]))
        hp = ck.read_official_checkpoint({str(path)!r}).hyper_parameters
        print(hp["sat_type"], hp["h"][0] is hp["h"][1])
        ck.safe_torch_load({str(path)!r})
        print("OK")
    """)
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["2", "bingmap", "True", "OK"]


def test_deep_nesting_is_bounded_and_never_walked_where_unused(tmp_path: Path) -> None:
    deep = b"]" * 200_000 + b"a" * 199_999  # a list nested 200 000 deep, 400 KB of opcodes
    unused = torch_zip_with(tmp_path / "unused.ckpt", {"state_dict": tiny_official_state(), "loops": Marker("D"),
                                                       "hyper_parameters": {"sat_type": "bingmap"}}, {"D": deep})
    in_hp = torch_zip_with(tmp_path / "hp.ckpt", {"state_dict": tiny_official_state(),
                                                  "hyper_parameters": {"sat_type": "bingmap", "d": Marker("D")}},
                           {"D": deep})
    code = textwrap.dedent(f"""
        from sat2sound_core.common.errors import ConfigError, WeightsError
        from sat2sound_core.weights import checkpoints as ck
        print(ck.read_official_checkpoint({str(unused)!r}).hyper_parameters["sat_type"])
        for call, p in ((ck.safe_torch_load, {str(unused)!r}), (ck.read_official_checkpoint, {str(in_hp)!r})):
            try:
                call(p)
            except WeightsError as exc:
                print("REFUSED", "100 deep" in str(exc))
    """)
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["bingmap", "REFUSED", "True", "REFUSED", "True"]


# ----------------------------------------------------------------------------- 16. other people's Lightning files
_CALLED: list[str] = []


@pytest.fixture()
def foreign_modules() -> Iterator[dict[str, types.ModuleType]]:
    """Classes of packages we never import (a project, OmegaConf, Lightning 1.5) that shout when executed."""
    names = ["myproject", "myproject.sched", "omegaconf", "omegaconf.dictconfig", "omegaconf.nodes",
             "pytorch_lightning", "pytorch_lightning.trainer", "pytorch_lightning.trainer.connectors",
             "pytorch_lightning.trainer.connectors.logger_connector",
             "pytorch_lightning.trainer.connectors.logger_connector.result"]
    mods = {n: types.ModuleType(n) for n in names}

    def place(cls: type, module: str) -> type:
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(mods[module], cls.__name__, cls)
        return cls

    class Loud:
        def __setstate__(self, state: object) -> None:
            _CALLED.append(f"{type(self).__name__}.__setstate__")
            self.__dict__.update(state if isinstance(state, dict) else {})

        def __call__(self, *args: object) -> None:
            _CALLED.append(f"{type(self).__name__}.__call__")

    Color = enum.Enum("Color", {"RED": 1, "GREEN": 2})
    place(Color, "myproject")

    class StepLR(Loud):
        def __init__(self) -> None:
            self.step_size, self.gamma = 3, 0.5

    place(StepLR, "myproject.sched")

    def warmup(step: int) -> float:
        _CALLED.append("warmup")
        return 1.0

    warmup.__module__, warmup.__qualname__ = "myproject.sched", "warmup"
    mods["myproject.sched"].warmup = warmup  # type: ignore[attr-defined]

    class AnyNode(Loud):
        def __init__(self, value: object) -> None:
            self._val, self._metadata = value, None

    class DictConfig(Loud):
        def __init__(self, content: dict[str, object]) -> None:
            self._content = {k: AnyNode(v) for k, v in content.items()}
            self._metadata, self._parent = None, None

        def __getstate__(self) -> dict[str, object]:
            return dict(self.__dict__)

    place(AnyNode, "omegaconf.nodes")
    place(DictConfig, "omegaconf.dictconfig")

    class _ResultCollection(dict):
        def __init__(self) -> None:
            super().__init__(train_loss={"value": torch.tensor(0.5), "meta": functools.partial(warmup, 3)})
            self.training, self.device = True, None

        def __setstate__(self, state: object) -> None:
            _CALLED.append("_ResultCollection.__setstate__")

    place(_ResultCollection, "pytorch_lightning.trainer.connectors.logger_connector.result")
    sys.modules.update(mods)
    _CALLED.clear()
    try:
        yield mods
    finally:
        for n in names:
            sys.modules.pop(n, None)


def _foreign_checkpoint(path: Path, mods: dict[str, types.ModuleType]) -> Path:
    sched = mods["myproject.sched"]
    res = mods["pytorch_lightning.trainer.connectors.logger_connector.result"]
    hp = mods["omegaconf.dictconfig"].DictConfig({"sat_type": "sentinel", "lr": 1e-4, "run_name": "my_finetune"})
    torch.save({
        "state_dict": tiny_official_state(),
        "hyper_parameters": hp,
        "pytorch-lightning_version": "1.5.10",
        "torch_version": torch.__version__,  # torch.torch_version.TorchVersion
        "loops": {"fit_loop": {"epoch_loop": {"_results": res._ResultCollection()}}},
        "lr_schedulers": [sched.StepLR()],
        "callbacks": {"timer": {"elapsed": datetime.timedelta(hours=2), "stage": mods["myproject"].Color.RED},
                      "warmup": functools.partial(sched.warmup, 10), "epochs": range(3), "window": slice(1, 5)},
    }, path)
    return path


def test_foreign_lightning_objects_become_inert_placeholders(tmp_path: Path, foreign_modules: dict) -> None:
    path = _foreign_checkpoint(tmp_path / "finetune.ckpt", foreign_modules)
    official = ck.read_official_checkpoint(path)
    assert set(official.state_dict) == set(tiny_official_state())
    assert official.hyper_parameters == {"sat_type": "sentinel", "lr": 1e-4, "run_name": "my_finetune"}
    obj = ck.safe_torch_load(path)
    assert isinstance(obj, dict)
    cb = obj["callbacks"]
    for value in (cb["timer"]["elapsed"], cb["timer"]["stage"], cb["warmup"], cb["epochs"], cb["window"],
                  obj["lr_schedulers"][0], obj["loops"]["fit_loop"]["epoch_loop"]["_results"]):
        assert isinstance(value, unpickle.Placeholder), value
    assert cb["timer"]["elapsed"].name == "datetime.timedelta"
    assert _CALLED == []  # nothing of theirs ran, though every class was importable


def test_foreign_classes_are_never_imported(tmp_path: Path, foreign_modules: dict) -> None:
    path = _foreign_checkpoint(tmp_path / "finetune.ckpt", foreign_modules)
    code = textwrap.dedent(f"""
        import sys
        from sat2sound_core.weights import checkpoints as ck
        hp = ck.read_official_checkpoint({str(path)!r}).hyper_parameters
        ck.safe_torch_load({str(path)!r})
        print(hp["sat_type"], sorted(m for m in sys.modules if m.split(".")[0] in ("myproject", "omegaconf")))
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["sentinel", "[]"]


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval", "builtins.getattr",
                                  "importlib.import_module", "torch.load", "numpy.load", "pickle.loads"])
def test_code_is_still_refused(tmp_path: Path, name: str) -> None:
    module, attr = name.rsplit(".", 1)
    glob = f"c{module}\n{attr}\n".encode()
    path = torch_zip_with(tmp_path / "evil.ckpt", {"state_dict": tiny_official_state(), "x": Marker("E")},
                          {"E": glob + b"X\x04\x00\x00\x00true\x85R"})
    with pytest.raises(WeightsError, match=f"Refused to load .*{attr}"):
        ck.safe_torch_load(path)
    assert not unpickle.may_stand_in(name)


@pytest.mark.parametrize(("content", "words"), [
    (b"x", "1 byte"),
    (b"\x80", "1 byte"),
    (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" + b"x" * 2000, "HTML page"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 1333220105\n",
     "git-lfs pointer.*git lfs pull"),
    (b'{"error": "Repository not found"}', "JSON"),
])
def test_files_that_are_not_checkpoints_are_named(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bingmap_withmeta.ckpt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=words) as info:
        ck.read_official_checkpoint(path)
    assert "Refused" not in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- 13. silently wrong weights
def _tiny_source() -> tuple[object, dict[str, torch.Tensor], dict[str, object]]:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound

    torch.manual_seed(0)
    model = Sat2Sound(ModelConfig.tiny(name="tiny_hostile"))
    return model, dict(model.state_dict()), dataclasses.asdict(model.config)


def _forge_header_dtype(path: Path, key: str, dtype: str) -> None:
    """Rewrite one tensor's dtype in a safetensors header (same bytes, read as another number format)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header[key]["dtype"] = dtype
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    assert len(text) == n
    path.write_bytes(data[:8] + text + data[8 + n:])


@pytest.fixture()
def _no_model_cache(product_home: Path) -> Iterator[None]:
    from sat2sound_core.weights.loading import clear_model_cache

    clear_model_cache()
    yield
    clear_model_cache()


@pytest.mark.usefixtures("_no_model_cache")
def test_a_converted_file_with_a_reinterpreted_dtype_is_refused(tmp_path: Path) -> None:
    from sat2sound_core.weights.loading import load_model

    _, sd, config = _tiny_source()
    path = ck.save_converted(tmp_path / "tiny.safetensors", sd, config, "", "test")
    key = "fdt.space_dict"
    _forge_header_dtype(path, key, "I32")  # F32 bytes now read as int32: loads, and is wrong
    assert ck.read_converted(path).state_dict[key].dtype == torch.int32
    with pytest.raises(WeightsError, match=f"wrong number format.*{key}: file int32 vs model float32"):
        load_model(path, text_encoder=False)


@pytest.mark.usefixtures("_no_model_cache")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, bad: float) -> None:
    from sat2sound_core.weights.loading import load_model

    _, sd, config = _tiny_source()
    key = "fdt.space_dict"
    sd[key] = sd[key].clone()
    sd[key][3, 1] = bad
    path = ck.save_converted(tmp_path / "tiny.safetensors", sd, config, "", "test")
    with pytest.raises(WeightsError, match=f"NaN or infinite weights in 1 tensor.*{key}"):
        load_model(path, text_encoder=False)


def test_half_precision_fine_tunes_still_fit_but_integers_never_stand_for_floats() -> None:
    from sat2sound_core.weights.statedict import dtype_mismatch

    want = {"w": torch.float32, "n": torch.int64}
    assert dtype_mismatch(want, {"w": torch.float16, "n": torch.int64}, exact=False) == ""
    assert "w: file int32 vs model float32" in dtype_mismatch(want, {"w": torch.int32, "n": torch.int64}, exact=False)
    assert "w: file float16" in dtype_mismatch(want, {"w": torch.float16, "n": torch.int64}, exact=True)


# ----------------------------------------------------------------------------- 11. converted-checkpoint configs
def _with_config(path: Path, config_text: str) -> Path:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": ck.FORMAT_TAG, "config": config_text})
    return path


@pytest.mark.usefixtures("_no_model_cache")
@pytest.mark.parametrize(("change", "words"), [
    ("not json {", "not JSON"),
    ("[1, 2, 3]", "a list, not a JSON object"),
    ('"bingmap"', "a str, not a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ({"fc_dim": -4}, "fc_dim must be a whole number from 1"),
    ({"codebook_size": 10**9}, "codebook_size must be a whole number from 1 to 262144"),
    ({"vit_dim": 8192, "vit_mlp_dim": 16384, "vit_depth": 256}, "parameters"),
    ({"vit_depth": "12"}, "vit_depth must be a whole number"),
    ({"vit_depth": True}, "vit_depth must be a whole number"),
    ({"htsat_depths": [2, -1]}, "htsat_depths must be"),
    ({"vit_eps": float("nan")}, "vit_eps must be a number"),
    ({"name": {"a": 1}}, "name must be a short string"),
])
def test_a_hostile_config_gives_one_line_before_any_allocation(tmp_path: Path, change: object, words: str) -> None:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.weights.loading import load_model

    if isinstance(change, dict):
        text = json.dumps({**dataclasses.asdict(ModelConfig.tiny()), **change})
    else:
        text = str(change)
    path = _with_config(tmp_path / "bad.safetensors", text)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=words) as info:
        load_model(path, text_encoder=False)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value) and "delete it" in str(info.value)


def test_model_config_refuses_absurd_values_directly() -> None:
    from sat2sound_core.model.config import ModelConfig

    with pytest.raises(ConfigError, match="fc_dim"):
        ModelConfig.tiny(fc_dim=-4)
    with pytest.raises(ConfigError, match="codebook_size"):
        ModelConfig(codebook_size=10**9)
    assert ModelConfig().approx_parameters < 10**9  # the official sizes pass


# ----------------------------------------------------------------------------- 10. orphan temp files
_WRITER = """
import sys, time
from pathlib import Path
from sat2sound_core.common import files
with files.atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"x" * 4096)
    print(tmp, flush=True)
    time.sleep(60)
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen[str], Path]:
    from tests.hostile._helpers import ROOT

    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the writer did not start"
    return proc, Path(line)


def test_temp_files_of_killed_conversions_are_removed_when_the_cache_is_opened(tmp_path: Path) -> None:
    cache = tmp_path / "converted"
    target = cache / "bingmap_withmeta-0123456789abcdef0123.safetensors"
    killed, orphan = _start_writer(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    live, held = _start_writer(cache / "other-0123.safetensors")
    try:
        mine = cache / "notes.tmp"  # not of our naming
        mine.write_text("keep")
        assert orphan.exists() and orphan.name.startswith(f".{target.name}.") and orphan.name.endswith(".tmp")
        time.sleep(0.05)
        code = textwrap.dedent(f"""
            from pathlib import Path
            from sat2sound_core.weights import checkpoints as ck
            print(len(ck.clean_converted_cache(Path({str(cache)!r}))))
        """)
        result = run_python(code)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split() == ["1"]
        assert not orphan.exists()  # SIGKILLed: its writer's lock died with it
        assert held.exists()  # a live writer (started before the cleaner) keeps its file
        assert mine.exists()
    finally:
        live.kill()
        live.wait(10)


def test_temp_files_newer_than_the_process_are_kept(tmp_path: Path) -> None:
    from sat2sound_core.common import files

    fresh = tmp_path / ".a.safetensors.abcd1234.tmp"
    fresh.write_bytes(b"x")
    assert files.remove_stale_temps(tmp_path) == []  # written after this process started: maybe ours
    old = time.time() - 3600
    os.utime(fresh, (old, old))
    assert files.remove_stale_temps(tmp_path, older_than=time.time()) == [fresh]
    assert not fresh.exists()


@pytest.mark.usefixtures("_no_model_cache")
def test_loading_cleans_the_converted_cache(tmp_path: Path, product_home: Path) -> None:
    from sat2sound_core.weights.loading import load_model

    cache = product_home / "converted"
    cache.mkdir(parents=True)
    stale = cache / ".tiny-0123.safetensors.k2j4h6g8.tmp"
    stale.write_bytes(b"x" * 100)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    ck._cleaned.discard(str(cache.resolve()))
    with pytest.raises(WeightsError):
        load_model(_html(tmp_path), text_encoder=False)  # a broken source still cleans the cache first
    assert not stale.exists()


def _html(tmp_path: Path) -> Path:
    path = tmp_path / "page.ckpt"
    path.write_bytes(b"<html><body>Sign in</body></html>" + b" " * 100)
    return path


def test_a_config_that_contains_itself_is_bounded(tmp_path: Path, foreign_modules: dict) -> None:
    conf = foreign_modules["omegaconf.dictconfig"].DictConfig({"sat_type": "bingmap"})
    conf._content["self"] = conf  # a cycle through the config's own content
    path = tmp_path / "cycle.ckpt"
    torch.save({"state_dict": tiny_official_state(), "hyper_parameters": conf}, path)
    with pytest.raises(WeightsError, match="100 deep"):
        ck.read_official_checkpoint(path)
