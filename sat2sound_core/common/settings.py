"""One settings object for the whole product, read from ``SAT2SOUND_*`` environment variables.

Every cache (weights, converted checkpoints, encodings, galleries, synthesised audio) lives under one
home directory so a user can see, move or delete it in one place. The variables are documented in the
README; :func:`describe` renders that table from the fields below so the two cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from sat2sound_core.common.errors import ConfigError

D = TypeVar("D")
PREFIX = "SAT2SOUND_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _default_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sat2sound"


@dataclass(frozen=True)
class Settings:
    """Product-wide configuration. Build it with :func:`get_settings` (reads the environment)."""

    home: Path = field(default_factory=_default_home, metadata={"help": "root of every cache"})
    weights_dir: Path | None = field(
        default=None, metadata={"help": "where checkpoints are looked up and downloaded (default: HOME/weights)"}
    )
    device: str = field(default="auto", metadata={"help": "torch device: auto, cpu, cuda, cuda:N"})
    precision: str = field(default="auto", metadata={"help": "model precision: auto, fp32 or bf16"})
    offline: bool = field(
        default=False, metadata={"help": "never download (HF_HUB_OFFLINE=1 has the same effect)"}
    )
    hf_repo: str = field(default="MVRL/sat2sound", metadata={"help": "Hugging Face repo of the checkpoints"})
    gallery: str = field(
        default="", metadata={"help": "gallery to retrieve from (default: the official demo gallery)"}
    )
    tangoflux: str = field(
        default="declare-lab/TangoFlux", metadata={"help": "TangoFlux weights: HF repo id or local folder"}
    )
    user_agent: str = field(
        default="sat2sound-map/0.1 (+https://github.com/sat2sound-map)",
        metadata={"help": "User-Agent sent to tile providers"},
    )
    tile_cache: bool = field(
        default=True, metadata={"help": "keep fetched tiles on disk where the provider's terms allow"}
    )
    esri_disk_cache: bool = field(
        default=False, metadata={"help": "opt in to storing Esri World Imagery tiles on disk (check its terms)"}
    )
    log_level: str = field(default="INFO", metadata={"help": "logging level"})
    reference: str = field(
        default="", metadata={"help": "folder of the paper's result tables for `evaluate`'s side-by-side "
                                      "(default: ../shared/reference when present)"}
    )

    @property
    def weights(self) -> Path:
        """Directory holding checkpoints (``weights_dir`` or ``home/weights``)."""
        return self.weights_dir if self.weights_dir is not None else self.home / "weights"

    def cache_dir(self, name: str) -> Path:
        """A named sub-cache under ``home`` (created on demand)."""
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def is_offline(self) -> bool:
        """True when downloads are disabled by this product's or Hugging Face's switch."""
        return self.offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE

    t5_dir: str = field(
        default="", metadata={"help": "local FLAN-T5 folder for the text path (default: WEIGHTS/flan-t5-large)"}
    )

    @property
    def t5_folder(self) -> Path:
        """Folder of the FLAN-T5 text encoder and tokenizer (``t5_dir`` or ``weights/flan-t5-large``)."""
        return Path(self.t5_dir).expanduser() if self.t5_dir else self.weights / "flan-t5-large"

    @property
    def hf_endpoint(self) -> str | None:
        """``HF_ENDPOINT`` (a Hugging Face mirror), or None for the public Hub.

        Read from the environment on every access, not once with the other settings, so a mirror or a
        loopback Hub set while the process runs is used by the next download.
        """
        return os.environ.get("HF_ENDPOINT") or None

    # performance switches: sat2sound_core.accel.options() turns them into one frozen object
    fused_linear: bool = field(
        default=True,
        metadata={"help": "CPU linear layers as oneDNN GEMMs with the bias, GELU or residual add fused in "
                          "(0: plain F.linear, for debugging)"},
    )
    packed_weights: bool = field(
        default=True,
        metadata={"help": "keep oneDNN-blocked copies of the audio tower's and codebook's GEMM weights on a "
                          "CPU (0 saves their memory: 145 MiB in fp32)"},
    )
    native_kernels: bool = field(
        default=True,
        metadata={"help": "the audio tower's native CPU kernels (window attention, LayerNorm), built into "
                          "HOME/kernels/ (0 turns them off; see docs/weights.md)"},
    )
    swin_chunk_rows: int = field(
        default=4096,
        metadata={"help": "tokens per piece of an audio-tower Swin block on a CPU (measured best on the "
                          "2-core machine)"},
    )
    cuda_graphs: bool = field(
        default=True,
        metadata={"help": "replay TangoFlux's transformer step as a CUDA graph on a GPU (0 runs it eagerly)"},
    )
    tune_malloc: bool = field(
        default=True,
        metadata={"help": "raise glibc's allocator thresholds in the CLI, app and benchmarks (0 keeps its "
                          "defaults; see sat2sound_core/accel/allocator.py)"},
    )
    bf16_speedup: str = field(
        default="",
        metadata={"help": "this machine's bf16/fp32 GEMM throughput ratio (e.g. 5.75) for precision auto; empty: "
                          "measured once and cached in HOME/hardware/bf16_speedup.json"},
    )

    def __post_init__(self) -> None:
        rows = self.swin_chunk_rows
        try:
            value = int(str(rows).strip()) if not isinstance(rows, bool) else -1
        except ValueError:
            value = -1
        if value < 1:
            raise ConfigError(f"{PREFIX}SWIN_CHUNK_ROWS={rows!r} is not a positive whole number of tokens "
                              "(default 4096).")
        object.__setattr__(self, "swin_chunk_rows", value)  # the environment gives it as text

    @property
    def cxx(self) -> str | None:
        """The C++ compiler the native kernels are built with: ``$CXX``, or None (then ``c++``, ``g++``)."""
        return os.environ.get("CXX", "").strip() or None


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")
    if name in ("home", "weights_dir"):
        return Path(raw).expanduser()
    return raw


def from_env(env: dict[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default ``os.environ``), validating every value."""
    env = dict(os.environ if env is None else env)
    base = Settings()
    values: dict[str, object] = {}
    for f in fields(Settings):
        key = PREFIX + f.name.upper()
        if key in env:
            values[f.name] = _parse(f.name, env[key], getattr(base, f.name))
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"{PREFIX}PRECISION={settings.precision!r}; use auto, fp32 or bf16.")
    if settings.device != "auto" and not (settings.device == "cpu" or settings.device.startswith("cuda")):
        raise ConfigError(f"{PREFIX}DEVICE={settings.device!r}; use auto, cpu, cuda or cuda:N.")
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; call ``get_settings.cache_clear()`` after changing env)."""
    return from_env()


def device_or_default(device: D | None, default: str) -> D | str:
    """The device a library call runs on: ``device`` when given, else ``SAT2SOUND_DEVICE`` when it is
    set, else the call's own ``default`` (``load_model``: ``cpu``; the engine: ``auto``)."""
    if device is not None:
        return device
    return get_settings().device if PREFIX + "DEVICE" in os.environ else default


def precision_or_default(precision: str | None, default: str) -> str:
    """The precision a library call runs in: ``precision`` when given, else ``SAT2SOUND_PRECISION``
    when it is set, else the call's own ``default`` (``load_model``: ``fp32``; the engine: ``auto``)."""
    if precision is not None:
        return precision
    return get_settings().precision if PREFIX + "PRECISION" in os.environ else default


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting, as the README and ``sat2sound --help`` list them."""
    base = Settings()
    rows = []
    for f in fields(Settings):
        default = getattr(base, f.name)
        if f.name == "home":
            default = "$XDG_CACHE_HOME/sat2sound or ~/.cache/sat2sound"
        rows.append((PREFIX + f.name.upper(), str(default if default is not None else ""), f.metadata["help"]))
    return rows
