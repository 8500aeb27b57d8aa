"""Architecture sizes of a Sat2Sound model and the per-source imagery constants.

The defaults are the official checkpoints' values; :meth:`ModelConfig.tiny` gives a model with
the same structure that builds and runs in milliseconds for unit tests. The imagery constants
(`GSD`, `TILE_SIZE`, `SOURCE_SIZE`, `ALLOWED_SCALES`) are shared with the image transform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sat2sound_core.common.errors import ConfigError

SAT_TYPES: tuple[str, ...] = ("bingmap", "sentinel", "googleEarth")

#: ground sample distance (metres per pixel) of each imagery source at zoom level 1
GSD: dict[str, float] = {"sentinel": 10.0, "bingmap": 0.6, "googleEarth": 0.2}
#: side (pixels) of the centre crop at zoom level 1; zoom z crops z * tile
TILE_SIZE: dict[str, int] = {"bingmap": 300, "sentinel": 256, "googleEarth": 256}
#: side (pixels) of the square source tile each dataset ships
SOURCE_SIZE: dict[str, int] = {"bingmap": 1500, "sentinel": 1280, "googleEarth": 1024}
#: zoom levels ("scales") the official models were trained with: GeoSound 1/3/5, SoundingEarth 1
ALLOWED_SCALES: dict[str, tuple[int, ...]] = {
    "bingmap": (1, 3, 5),
    "sentinel": (1, 3, 5),
    "googleEarth": (1,),
}

#: metadata tokens in the order the official model appends them after the image tokens
METADATA_TOKEN_ORDER: tuple[str, ...] = ("asource", "tsource", "latlong", "month", "time")
#: the metadata_type strings of the official configs
METADATA_TYPES: tuple[str, ...] = (
    "latlong_month_time_asource_tsource",
    "latlong_month_time_tsource",
    "none",
)


def metadata_tokens_for(metadata_type: str) -> tuple[str, ...]:
    """The enabled metadata tokens of ``metadata_type``, in model order.

    ``metadata_type`` is the official underscore-joined string; every sub-word enables one token
    (``"none"`` enables nothing). Unknown sub-words raise :class:`ConfigError` listing the valid ones.
    """
    if metadata_type in ("none", ""):
        return ()
    words = metadata_type.split("_")
    unknown = [w for w in words if w not in METADATA_TOKEN_ORDER]
    if unknown:
        raise ConfigError(
            f"unknown metadata token(s) {unknown} in metadata_type {metadata_type!r}; "
            f"valid tokens are {list(METADATA_TOKEN_ORDER)} joined by '_' (or 'none')"
        )
    return tuple(t for t in METADATA_TOKEN_ORDER if t in words)


#: largest parameter count a stored config may describe (the official models have ~0.3 billion)
MAX_PARAMETERS = 4_000_000_000
#: largest value of each whole-number field (others: 16384)
_INT_LIMITS: dict[str, int] = {
    "vit_depth": 256, "vit_heads": 256, "fuser_layers": 256, "fuser_heads": 256, "htsat_window": 256,
    "htsat_patch": 256, "patch_size": 1024, "img_size": 4096, "htsat_spec_size": 4096, "htsat_mlp_ratio": 64,
    "n_audio_sources": 1024, "n_caption_sources": 1024, "mel_frames": 100_000, "htsat_frames": 1 << 16,
    "codebook_size": 1 << 18,
}
_TUPLE_LIMITS: dict[str, int] = {"htsat_depths": 64, "htsat_heads": 256}
_FLOAT_LIMITS: dict[str, tuple[float, float]] = {
    "vit_eps": (0.0, 1.0), "fuser_eps": (0.0, 1.0), "htsat_eps": (0.0, 1.0), "fdt_eps": (0.0, 1.0),
    "sd_temperature": (0.0, 1e9),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ModelConfig:
    """Every size of a Sat2Sound model; the defaults are the official checkpoints' values.

    ``sat_type`` selects the ground resolution used by the positional embedding and the allowed
    scales; ``metadata_type`` selects the metadata tokens (``"none"`` builds no metadata fuser).
    The HTS-AT audio tower folds ``htsat_frames`` interpolated frames of ``mel_bins`` into a
    ``htsat_spec_size`` square image; its output has ``audio_frame_dim`` channels.
    """

    name: str = "sat2sound"
    sat_type: str = "bingmap"
    metadata_type: str = "latlong_month_time_asource_tsource"
    # SatMAE ViT-B/16
    img_size: int = 224
    patch_size: int = 16
    vit_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    vit_mlp_dim: int = 3072
    vit_eps: float = 1e-6
    # projector and shared embedding width
    fc_dim: int = 1024
    # metadata fuser (nn.TransformerEncoder layout)
    fuser_layers: int = 3
    fuser_heads: int = 8
    fuser_ffn_dim: int = 2048
    fuser_eps: float = 1e-5
    meta_hidden_dim: int = 64
    n_audio_sources: int = 4
    n_caption_sources: int = 3
    # HTS-AT
    mel_bins: int = 64
    mel_frames: int = 1001
    htsat_frames: int = 1024
    htsat_spec_size: int = 256
    htsat_patch: int = 4
    htsat_embed_dim: int = 96
    htsat_depths: tuple[int, ...] = (2, 2, 6, 2)
    htsat_heads: tuple[int, ...] = (4, 8, 16, 32)
    htsat_window: int = 8
    htsat_mlp_ratio: int = 4
    htsat_eps: float = 1e-5
    audio_frame_dim: int = 768
    # FDT codebook
    codebook_size: int = 16000
    codebook_dim: int = 1024
    text_dim: int = 1024
    sd_temperature: float = 1000.0
    fdt_eps: float = 1e-5

    def __post_init__(self) -> None:
        self._check_types_and_ranges()
        if self.sat_type not in SAT_TYPES:
            raise ConfigError(f"unknown sat_type {self.sat_type!r}; valid: {list(SAT_TYPES)}")
        metadata_tokens_for(self.metadata_type)  # validates
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.vit_dim % 4 or self.vit_dim % self.vit_heads:
            raise ConfigError("vit_dim must be divisible by 4 (sincos embedding) and by vit_heads")
        if self.fc_dim % self.fuser_heads:
            raise ConfigError("fc_dim must be divisible by fuser_heads")
        if len(self.htsat_depths) != len(self.htsat_heads):
            raise ConfigError("htsat_depths and htsat_heads must have the same length")
        expected_audio = self.htsat_embed_dim * 2 ** (len(self.htsat_depths) - 1)
        if self.audio_frame_dim != expected_audio:
            raise ConfigError(
                f"audio_frame_dim {self.audio_frame_dim} must equal htsat_embed_dim * 2**(stages-1) "
                f"= {expected_audio}"
            )
        ratio, rem = divmod(self.htsat_spec_size, self.mel_bins)
        if rem or self.htsat_frames != ratio * self.htsat_spec_size:
            raise ConfigError(
                "htsat_frames must equal htsat_spec_size**2 / mel_bins and mel_bins must divide "
                "htsat_spec_size (the fold stacks time chunks over the mel axis)"
            )
        grid = self.htsat_spec_size // self.htsat_patch
        if grid % (self.htsat_window * 2 ** (len(self.htsat_depths) - 1)):
            raise ConfigError("the HTS-AT token grid must be divisible by window * 2**(stages-1)")
        final = self.htsat_final_grid
        if final % self.htsat_freq_ratio:
            raise ConfigError("the final HTS-AT grid must be divisible by the frequency ratio")

    def _check_types_and_ranges(self) -> None:
        """Every field has its type and a size a real model can have (a stored config may be hostile)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "sat_type", "metadata_type"):
                if not isinstance(value, str) or len(value) > 256:
                    raise ConfigError(f"{f.name} must be a short string, not {_shown(value)}")
            elif f.name in _TUPLE_LIMITS:
                top = _TUPLE_LIMITS[f.name]
                if not (isinstance(value, tuple) and 1 <= len(value) <= 8
                        and all(_is_int(v) and 1 <= v <= top for v in value)):
                    raise ConfigError(f"{f.name} must be 1 to 8 whole numbers from 1 to {top}, not {_shown(value)}")
            elif f.name in _FLOAT_LIMITS:
                low, high = _FLOAT_LIMITS[f.name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                    raise ConfigError(f"{f.name} must be a number in ({low:g}, {high:g}], not {_shown(value)}")
            else:
                top = _INT_LIMITS.get(f.name, 1 << 14)
                if not _is_int(value) or not 1 <= value <= top:
                    raise ConfigError(f"{f.name} must be a whole number from 1 to {top}, not {_shown(value)}")
        if self.approx_parameters > MAX_PARAMETERS:
            raise ConfigError(
                f"this config describes about {self.approx_parameters:.3g} parameters, more than the "
                f"{MAX_PARAMETERS:.3g} any Sat2Sound model has; the stored config is damaged"
            )

    @property
    def approx_parameters(self) -> int:
        """A rough parameter count (the big matrices), to refuse configs no machine could build."""
        vit = self.vit_depth * (4 * self.vit_dim * self.vit_dim + 2 * self.vit_dim * self.vit_mlp_dim)
        fuser = self.fuser_layers * (4 * self.fc_dim * self.fc_dim + 2 * self.fc_dim * self.fuser_ffn_dim)
        widths = [self.htsat_embed_dim * (1 << i) for i in range(len(self.htsat_depths))]
        htsat = sum(d * 12 * w * w for d, w in zip(self.htsat_depths, widths, strict=False))
        heads = (self.vit_dim + self.audio_frame_dim + self.text_dim + self.codebook_dim) * self.fc_dim
        return vit + fuser + htsat + heads + self.codebook_size * self.codebook_dim

    # ----------------------------------------------------------------- derived sizes
    @property
    def metadata_tokens(self) -> list[str]:
        """The enabled metadata tokens, in the order the model appends them after the image tokens."""
        return list(metadata_tokens_for(self.metadata_type))

    @property
    def has_metadata(self) -> bool:
        """Whether this model has a metadata fuser."""
        return bool(self.metadata_tokens)

    @property
    def grid_size(self) -> int:
        """Patches per side of the ViT input (14 for 224/16)."""
        return self.img_size // self.patch_size

    @property
    def n_image_tokens(self) -> int:
        """Number of image patch tokens (196 officially)."""
        return self.grid_size**2

    @property
    def gsd(self) -> float:
        """Ground sample distance of ``sat_type`` at zoom level 1, metres per pixel."""
        return GSD[self.sat_type]

    @property
    def allowed_scales(self) -> tuple[int, ...]:
        """Zoom levels accepted by :meth:`Sat2Sound.encode_image` for this ``sat_type``."""
        return ALLOWED_SCALES[self.sat_type]

    @property
    def htsat_freq_ratio(self) -> int:
        """How many time chunks the fold stacks over the mel axis (4 officially)."""
        return self.htsat_spec_size // self.mel_bins

    @property
    def htsat_final_grid(self) -> int:
        """Side of the last HTS-AT stage's token grid (8 officially)."""
        return self.htsat_spec_size // self.htsat_patch // int(2 ** (len(self.htsat_depths) - 1))

    @property
    def n_audio_frames(self) -> int:
        """Number of audio frame tokens fed to the codebook (32 officially)."""
        return self.htsat_final_grid * self.htsat_freq_ratio

    def replace(self, **changes: object) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls, sat_type: str = "bingmap", metadata_type: str = "latlong_month_time_asource_tsource",
             **changes: object) -> ModelConfig:
        """A structurally complete model with tiny widths, for millisecond unit tests.

        It keeps the official input shapes (images 224², mels 1001×64) so input handling is the same,
        but uses 8-wide HTS-AT stages, a 2-block ViT of width 32 and a 64-code codebook.
        """
        base = {
            "name": "tiny",
            "sat_type": sat_type,
            "metadata_type": metadata_type,
            "vit_dim": 32,
            "vit_depth": 2,
            "vit_heads": 2,
            "vit_mlp_dim": 64,
            "fc_dim": 32,
            "fuser_layers": 2,
            "fuser_heads": 2,
            "fuser_ffn_dim": 48,
            "meta_hidden_dim": 8,
            "htsat_embed_dim": 8,
            "htsat_depths": (2, 2),
            "htsat_heads": (1, 2),
            "audio_frame_dim": 16,
            "codebook_size": 64,
            "codebook_dim": 32,
            "text_dim": 24,
        }
        base.update(changes)
        return cls(**base)  # type: ignore[arg-type]
