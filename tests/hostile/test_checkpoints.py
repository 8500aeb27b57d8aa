"""Hostile and broken checkpoint files (issue 17 items 1, 2, 10, 11, 13, 16): each is built here, then loaded.

Anything that could crash or hang the interpreter runs in a subprocess with a timeout, so a
regression fails its test instead of killing pytest.
"""

from __future__ import annotations

import datetime
import enum
import functools
import importlib
import pickle
import struct
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sat2sound_core.common.errors import WeightsError
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
        from sat2sound_core.common.errors import WeightsError
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


@pytest.mark.parametrize("spec", ["O", "V8", "M8[s]", "U4", "S3"])
def test_only_plain_numeric_numpy_dtypes_are_built(tmp_path: Path, spec: str) -> None:
    class Odd:
        def __reduce__(self) -> tuple[object, ...]:
            return (np.dtype, (spec, False, True), (3, "|", None, None, None, -1, -1, 0))

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": tiny_official_state(), "x": Odd()}, path)
    with pytest.raises(WeightsError, match="Refused to load .*plain numeric"):
        ck.safe_torch_load(path)


def test_a_plain_dtype_with_forged_fields_state_is_refused(tmp_path: Path) -> None:
    class Forged:
        def __reduce__(self) -> tuple[object, ...]:
            return (np.dtype, ("f8", False, True), (3, "<", None, ("f0",), {"f0": (np.dtype("O"), 0)}, 8, 1, 0))

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": tiny_official_state(), "x": Forged()}, path)
    with pytest.raises(WeightsError, match="Refused to load"):
        ck.safe_torch_load(path)


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
        from sat2sound_core.common.errors import WeightsError
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
