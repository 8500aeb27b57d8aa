"""Generated inputs for the app tests and the app benchmark: a gallery, a checkpoint, a WAV clip.

Everything is made by code here (fixed seeds) or read from the shared reference folder; nothing is
downloaded. The synthetic checkpoint is the official layout filled by the reference
``make_weights.py`` (full size, so it is cached between runs under ``.sat2sound/test-cache``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".sat2sound" / "test-cache"

# Captions with words a test can pick for word heatmaps; the rest of the gallery is filler.
CAPTIONS = (
    "birds chirping in the trees of a quiet park",
    "cars and buses passing on a busy road",
    "waves breaking on a sandy beach with wind",
    "people talking in a crowded market square",
    "a train passing over a bridge near the river",
    "church bells ringing over the old town",
)


def reference_root() -> Path:
    env = os.environ.get("SAT2SOUND_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def write_gallery(path: Path, dim: int = 1024, n: int = 60, seed: int = 0, checkpoint: str = "bingmap_withmeta",
                  caption_texts: tuple[str, ...] | None = None) -> Path:
    """A small gallery in the official schema: captions per scale, text/audio embeddings, and
    pre-synthesised audio (a 1-s 440 Hz tone) on three rows of every four. ``caption_texts`` replaces
    the built-in captions (cycled over the rows)."""
    from sat2sound_core.gallery import SYNTH_RATE
    from sat2sound_core.gallery import write_gallery as _write

    rng = np.random.default_rng(seed)

    def unit(k: int) -> np.ndarray:
        x = rng.normal(size=(n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    texts = CAPTIONS if caption_texts is None else caption_texts
    captions = [texts[i % len(texts)] + ("" if i < len(texts) else f" (variant {i})") for i in range(n)]
    t = np.arange(int(SYNTH_RATE * 1.0), dtype=np.float32) / SYNTH_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    synth = [tone if i % 4 != 3 else None for i in range(n)]
    return _write(
        path,
        sample_ids=[f"app-{i}" for i in range(n)],
        captions={s: captions for s in (1, 3, 5)},
        text_embeddings={s: unit(s) for s in (1, 3, 5)},
        audio_captions=[f"recording of {c}" for c in captions],
        audio_embeddings=unit(9),
        raw_audio=[tone[:16000] if i % 4 != 3 else None for i in range(n)],
        synth_audio={s: synth for s in (1, 3, 5)},
        checkpoint=checkpoint,
    )


def synthetic_checkpoint(name: str = "bingmap_withmeta", seed: int = 0) -> Path:
    """The official-layout checkpoint ``name`` with deterministic random weights (cached on disk)."""
    ref = reference_root() / "sat2sound"
    manifest = ref / f"manifest_{name}.json"
    maker = ref / "make_weights.py"
    for p in (manifest, maker):
        if not p.is_file():
            raise FileNotFoundError(f"reference file {p} is missing (set SAT2SOUND_REFERENCE)")
    digest = hashlib.sha256(manifest.read_bytes() + maker.read_bytes() + str(seed).encode()).hexdigest()[:12]
    out = CACHE / f"{name}-{digest}" / f"{name}.ckpt"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.spec_from_file_location("_sat2sound_make_weights", maker)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".ckpt.tmp")
    os.close(fd)
    try:
        module.make_checkpoint(str(manifest), tmp, seed)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def wav_clip(seconds: float = 3.0, rate: int = 32000, seed: int = 1) -> bytes:
    """A WAV of chirps over noise (not silent, not too short) for the audio heatmap."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * np.sin(2 * np.pi * (2000 + 1500 * np.sin(2 * np.pi * 3 * t)) * t) + 0.05 * rng.normal(size=t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def tangoflux_tiny() -> Path:
    """The tiny TangoFlux weights in the reference folder."""
    path = reference_root() / "tangoflux" / "tiny"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing (set SAT2SOUND_REFERENCE)")
    return path


def app_env(home: Path, checkpoint: Path, gallery: Path, tile_url: str, precision: str = "fp32",
            kind: str = "text") -> dict[str, str]:
    """Environment for ``streamlit run app/main.py`` against local everything (docs/app.md)."""
    t5 = t5_stand_in(CACHE / "t5-stand-in")
    return {
        "SAT2SOUND_T5_DIR": str(t5),
        "SAT2SOUND_HOME": str(home / "home"),
        # HF_HUB_OFFLINE forbids weight downloads; SAT2SOUND_OFFLINE is left unset because it would also
        # stop the loopback tile server from being read (tiles then come from the cache only).
        "HF_HUB_OFFLINE": "1",
        "SAT2SOUND_APP_CHECKPOINT": str(checkpoint),
        "SAT2SOUND_GALLERY": str(gallery),
        "SAT2SOUND_TILE_URL": tile_url,
        "SAT2SOUND_TILE_ATTRIBUTION": "Loopback test tiles",
        "SAT2SOUND_TILE_MAX_ZOOM": "20",
        "SAT2SOUND_TANGOFLUX": str(tangoflux_tiny()),
        "SAT2SOUND_PRECISION": precision,
        "SAT2SOUND_DEVICE": "cpu",
        "SAT2SOUND_APP_HEATMAP": kind,
        "SAT2SOUND_APP_TOP_K": "8",
        "SAT2SOUND_APP_START_LAT": "45.0",
        "SAT2SOUND_APP_START_LON": "7.0",
    }


_T5_WORDS = ("birds", "bird", "chirping", "trees", "park", "quiet", "cars", "buses", "road", "busy", "waves",
             "beach", "sandy", "wind", "people", "talking", "market", "crowded", "square", "train", "bridge",
             "river", "church", "bells", "ringing", "town", "old", "the", "a", "of", "in", "on", "and", "with",
             "near", "over", "passing", "breaking", "recording", "variant")


def t5_stand_in(folder: Path, d_model: int = 1024, seed: int = 0) -> Path:
    """A FLAN-T5-shaped text encoder folder for SAT2SOUND_T5_DIR: 1-layer random T5 encoder of width
    ``d_model`` (the Sat2Sound text path's input width) and a small word-level SentencePiece-style
    tokenizer, so captions tokenise into ``▁word`` pieces as with FLAN-T5. Written once per folder."""
    import json
    import string

    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    if (folder / "model.safetensors").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -1.0) for w in _T5_WORDS]
    vocab += [("\u2581", -4.0), ("s", -3.0)]
    vocab += [(c, -8.0) for c in string.ascii_lowercase + string.digits + "(),.'-"]
    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                   feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False)
    model = T5EncoderModel(cfg).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    return folder
