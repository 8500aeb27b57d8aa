"""Restricted unpickling of PyTorch/Lightning checkpoints: what may be built, what stands in, how much work.

The pickle is run by torch's own ``weights_only`` unpickler, which only builds tensors and plain
containers and calls nothing but the callables it is given. On top of torch's list we admit:

* Lightning's ``AttributeDict`` and argparse's ``Namespace`` (hyper-parameters), paths and
  ``defaultdict`` (as plain values);
* numpy scalars and arrays of **plain numeric dtypes only** (bool, int, uint, float, complex), rebuilt
  by our own factories from their bytes. ``numpy.dtype`` state and ``numpy._core.multiarray._reconstruct``
  are never handed to numpy (they can forge an object field whose bytes are read as pointers);
* **stand-ins** for any other class or function a foreign fine-tune may name (``TorchVersion``,
  ``timedelta``, OmegaConf ``DictConfig``, enums, ``functools.partial``, schedulers, ``range``,
  ``slice``, Lightning's loop ``_results`` …). A stand-in is never imported and never called: it only
  records the arguments and state the pickle gives it. Names from the Python standard library that
  can run or reach code (``os``, ``subprocess``, ``builtins.eval`` …) and unadmitted ``torch``/
  ``numpy`` internals are still refused before anything is unpickled.

The plain copy of what loading reads (:func:`plain`) is memoised by object id and bounded in depth
and size, so shared references (``x = [x, x]`` 64 times) and deep nesting cost linear work.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sat2sound_core.common.errors import WeightsError

#: deepest container nesting :func:`plain` follows (Lightning state is < 10 deep)
MAX_DEPTH = 100
#: most containers and values :func:`plain` visits in one call
MAX_NODES = 2_000_000
#: most distinct stand-in names one file may ask for
MAX_STAND_INS = 512
#: largest numpy array (bytes) rebuilt from a pickle (Lightning keeps tiny ones: scores, histories)
MAX_NUMPY_BYTES = 64 << 20

#: what torch's restricted unpickler may build: a class or function, or one standing in for a named global
Global = Callable[..., object] | tuple[Callable[..., object], str]

_PLAIN_DTYPE = re.compile(r"[<>=|]?(b1|\?|[iu][1248]|f[248]|c(8|16))")


# --------------------------------------------------------------------------------------------------
# Stand-ins


class InertObject:
    """What a stand-in "call" produced: the name and the arguments/state the pickle gave it, nothing else."""

    __slots__ = ("args", "name", "state")

    def __init__(self, *args: object) -> None:
        self.name = "?"
        self.args: tuple[object, ...] = args
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.name}>"


class StandIn:
    """Stands where a pickle names a class or function this product never imports.

    Calling it (pickle ``REDUCE``) gives an :class:`InertObject`; ``NEWOBJ`` (``cls.__new__(cls, …)``)
    gives an ``OrderedDict`` (so a dict subclass's items and an object's ``__dict__`` state can be
    filled in by the unpickler), remembered as that class's record by the current load.
    """

    __slots__ = ("qualified_name",)

    def __new__(cls_or_self, *args: object) -> StandIn | OrderedDict[object, object]:  # type: ignore[misc]
        if isinstance(cls_or_self, StandIn):  # NEWOBJ: stand_in.__new__(stand_in, *args)
            record: OrderedDict[object, object] = OrderedDict()
            _current().records[id(record)] = (cls_or_self.qualified_name, record)
            return record
        return object.__new__(cls_or_self)

    def __init__(self, qualified_name: str) -> None:
        self.qualified_name = qualified_name

    def __call__(self, *args: object, **_kwargs: object) -> InertObject:
        obj = InertObject(*args)
        obj.name = self.qualified_name
        return obj

    def __repr__(self) -> str:
        return f"<stand-in for {self.qualified_name}>"


#: standard-library names that are inert data types, so they may get a stand-in
_INERT_STDLIB = {
    "builtins.range", "builtins.slice", "builtins.set", "builtins.frozenset", "builtins.complex",
    "builtins.bytearray", "functools.partial", "datetime.timedelta", "datetime.datetime", "datetime.date",
    "datetime.time", "datetime.timezone", "collections.deque", "decimal.Decimal", "fractions.Fraction",
    "uuid.UUID", "enum.Enum", "enum.IntEnum", "re._compile", "copyreg._reconstructor",
}
_STAND_IN_TORCH = ("torch.torch_version.", "torch.optim.", "torch.utils.data.")


def may_stand_in(name: str) -> bool:
    """Whether ``name`` (``module.qualname``) may be replaced by an inert stand-in instead of refused."""
    top = name.split(".", 1)[0]
    if name in _INERT_STDLIB:
        return True
    if top in sys.stdlib_module_names or top in ("numpy", "_codecs", "__builtin__", "__main__"):
        return False
    if top == "torch":
        return name.startswith(_STAND_IN_TORCH)
    return True


# --------------------------------------------------------------------------------------------------
# numpy: plain numeric scalars and arrays only


class NumpyDType:
    """A plain numeric numpy dtype named by a pickle; its pickled state is checked, never given to numpy."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype[np.generic]) -> None:
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
        if not ok or any(s is not None for s in state[2:5]):  # type: ignore[index]
            raise pickle.UnpicklingError("a numpy dtype with fields or sub-arrays (only plain numbers are admitted)")
        self.dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype  # type: ignore[index]


def _numpy_dtype(spec: object, _align: object = False, _copy: object = True) -> NumpyDType:
    if not isinstance(spec, str) or not _PLAIN_DTYPE.fullmatch(spec):
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} (only plain numeric dtypes are admitted)")
    return NumpyDType(np.dtype(spec))


def _numpy_scalar(dtype: object, data: object = b"") -> np.generic:
    if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number of the right size")
    value: np.generic = np.frombuffer(data, dtype=dtype.dtype)[0]
    return value


class _NdarrayTag:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``; never instantiated by numpy."""


class NumpyArray:
    """A numpy array named by a pickle, rebuilt from raw bytes of a plain numeric dtype (``.array``)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("a numpy array with an unknown state layout")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, NumpyDType) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("a numpy array that is not plain numbers stored as bytes")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)) or len(shape) > 32:
            raise pickle.UnpicklingError("a numpy array with an invalid shape")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.dtype.itemsize != len(raw) or len(raw) > MAX_NUMPY_BYTES:
            raise pickle.UnpicklingError("a numpy array whose bytes do not match its shape (or over 64 MiB)")
        flat = np.frombuffer(raw, dtype=dtype.dtype).copy()
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _numpy_reconstruct(cls: object, _shape: object = (0,), _typecode: object = b"b") -> NumpyArray:
    if cls is not _NdarrayTag:
        raise pickle.UnpicklingError("numpy _reconstruct of anything but a plain ndarray")
    return NumpyArray()


# --------------------------------------------------------------------------------------------------
# The admitted globals


def _path_as_str(*parts: str) -> str:
    return os.path.join(*parts) if parts else ""


def _empty_bytes(*args: object) -> bytes:
    """``bytes()`` as protocol 2 spells ``b""`` (an empty array's data); any size argument is refused."""
    if args:
        raise pickle.UnpicklingError("bytes(...) with arguments (only the empty bytes are admitted)")
    return b""


def _defaultdict_as_dict(*_factory: object) -> OrderedDict[object, object]:
    return OrderedDict()


def _numpy_globals() -> list[Global]:
    out: list[Global] = [(_numpy_dtype, "numpy.dtype"), (_NdarrayTag, "numpy.ndarray"), NumpyDType, NumpyArray]
    for mod in ("numpy.core", "numpy._core"):
        out += [(_numpy_scalar, f"{mod}.multiarray.scalar"), (_numpy_reconstruct, f"{mod}.multiarray._reconstruct")]
    return out


# Lightning's AttributeDict becomes an OrderedDict (torch's restricted unpickler fills only exact
# dict types); Namespace stays a Namespace (a bag of attributes) and is turned into a dict by plain().
ALLOWED_GLOBALS: list[Global] = [
    (OrderedDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (OrderedDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
    (OrderedDict, "lightning_fabric.utilities.data.AttributeDict"),
    (OrderedDict, "lightning.fabric.utilities.data.AttributeDict"),
    argparse.Namespace,
    (_path_as_str, "pathlib.PosixPath"),
    (_path_as_str, "pathlib.WindowsPath"),
    (_path_as_str, "pathlib.Path"),
    # a defaultdict (loop/callback state) becomes a plain dict; its factory types are inert here
    (_defaultdict_as_dict, "collections.defaultdict"),
    (int, "builtins.int"),
    (float, "builtins.float"),
    (list, "builtins.list"),
    (dict, "builtins.dict"),
    (_empty_bytes, "builtins.bytes"),
    InertObject,
    *_numpy_globals(),
]


def _allowed_names() -> set[str]:
    return {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}


# --------------------------------------------------------------------------------------------------
# One load


@dataclass
class LoadContext:
    """What one restricted load produced besides the object: the records built by stand-ins."""

    records: dict[int, tuple[str, object]] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)


_local = threading.local()


def _current() -> LoadContext:
    ctx = getattr(_local, "context", None)
    if not isinstance(ctx, LoadContext):
        raise pickle.UnpicklingError("a stand-in was used outside a restricted load")
    return ctx


@contextmanager
def restricted_globals(stand_in_names: list[str]) -> Iterator[LoadContext]:
    """Admit :data:`ALLOWED_GLOBALS` plus a stand-in for each of ``stand_in_names`` during one ``torch.load``."""
    ctx = LoadContext(stand_ins=list(stand_in_names))
    extra: list[Global] = [(StandIn(n), n) for n in stand_in_names]
    previous = getattr(_local, "context", None)
    _local.context = ctx
    try:
        with torch.serialization.safe_globals([*ALLOWED_GLOBALS, *extra]):
            yield ctx
    finally:
        _local.context = previous


def unknown_globals(path: Path) -> list[str]:
    """Globals the pickle of a torch zip file names that are not admitted (a static scan: nothing runs)."""
    with torch.serialization.safe_globals(ALLOWED_GLOBALS):
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    allowed = _allowed_names()
    return sorted(g for g in found if g not in allowed)


# --------------------------------------------------------------------------------------------------
# What a file is when it is not a checkpoint


def describe_non_checkpoint(head: bytes, size: int) -> str | None:
    """Name what a file that is not a PyTorch checkpoint is (from its first bytes), or None."""
    text = head.lstrip()[:200].lower()
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "is a git-lfs pointer, not the weights; run `git lfs pull` in its repository (or download the file again)"
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return ("is an HTML page (a login, error or download page saved instead of the file); "
                "download the checkpoint again")
    if text.startswith((b"{", b"[")) and size < (1 << 20):
        return "is a JSON/text file, not a checkpoint; download the checkpoint again"
    if size < 64:
        return f"is only {size} byte(s), far too small for a checkpoint; delete it and download it again"
    return None


# --------------------------------------------------------------------------------------------------
# The bounded plain copy


@dataclass(frozen=True)
class Placeholder:
    """An object of a class this product never imports, kept as its name only (never called)."""

    name: str


class _Walk:
    def __init__(self, ctx: LoadContext | None) -> None:
        self.records = ctx.records if ctx else {}
        self.memo: dict[int, object] = {}
        self.nodes = 0

    def copy(self, obj: object, depth: int) -> object:
        if obj is None or isinstance(obj, (str, bytes, int, float, bool, complex, torch.Tensor, np.generic)):
            return obj
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise WeightsError(f"it holds more than {MAX_NODES} objects where a few are expected")
        if depth > MAX_DEPTH:
            raise WeightsError(f"it nests containers more than {MAX_DEPTH} deep")
        if isinstance(obj, NumpyArray):
            return obj.array
        if isinstance(obj, NumpyDType):
            return obj.dtype
        if isinstance(obj, (InertObject, StandIn)):
            name = obj.name if isinstance(obj, InertObject) else obj.qualified_name
            return self.memo.setdefault(key, Placeholder(name))
        if key in self.records:
            return self.memo.setdefault(key, self._record(obj, depth))
        if isinstance(obj, argparse.Namespace):
            obj = vars(obj)
        if isinstance(obj, dict):
            out: dict[object, object] = {}
            self.memo[key] = out
            for k, v in obj.items():
                out[self.copy(k, depth + 1)] = self.copy(v, depth + 1)
            return out
        if isinstance(obj, list):
            items: list[object] = []
            self.memo[key] = items
            items.extend(self.copy(v, depth + 1) for v in obj)
            return items
        if isinstance(obj, tuple):
            result = tuple(self.copy(v, depth + 1) for v in obj)
            self.memo[key] = result
            return result
        return obj

    def _record(self, obj: object, depth: int) -> object:
        """A NEWOBJ stand-in record; an OmegaConf DictConfig/ListConfig gives its values, others a placeholder."""
        name, _ = self.records[id(obj)]
        content = getattr(obj, "__dict__", {}).get("_content")
        if name.startswith("omegaconf.") and isinstance(content, (dict, list)):
            def value(node: object) -> object:
                inner = getattr(node, "__dict__", {}) if id(node) in self.records else {}
                if "_val" in inner and "_content" not in inner:  # a value node
                    return self.copy(inner["_val"], depth + 1)
                return self.copy(node, depth + 1)  # a nested config: memo and depth bound apply

            self.nodes += len(content)
            if isinstance(content, dict):
                return {self.copy(k, depth + 1): value(v) for k, v in content.items()}
            return [value(v) for v in content]
        return Placeholder(name)


def plain(obj: object, ctx: LoadContext | None = None) -> object:
    """Namespaces and dict-likes become plain dicts, numpy stand-ins numpy values, stand-ins :class:`Placeholder`.

    Memoised by id (shared references are copied once, sharing is kept) and bounded by
    :data:`MAX_DEPTH` and :data:`MAX_NODES`; over either raises :class:`WeightsError`.
    """
    return _Walk(ctx).copy(obj, 0)
