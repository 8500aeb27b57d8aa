"""A real (tiny) Sat2Sound for engine tests: ModelConfig.tiny + a tiny FLAN-T5-shaped text encoder.

The text encoder is a real ``T5EncoderModel`` with a 1-layer config and a SentencePiece-style Unigram
tokenizer built offline (pieces carry the ``▁`` word marker like FLAN-T5's), so word heatmaps see
realistic token strings. Weights are random but seeded.
"""

from __future__ import annotations

import string
from typing import Any

import torch

WORDS = ("birds", "bird", "singing", "sing", "river", "water", "traffic", "car", "cars", "wind", "rain",
         "near", "the", "a", "in", "of", "and", "forest", "city", "street", "waves", "beach", "crowd",
         "people", "talking", "church", "bells", "insects", "frogs", "night", "noise", "engine")


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -2.0) for w in WORDS]
    vocab += [("s", -3.0), ("ing", -3.0), ("\u2581", -4.0)]
    vocab += [(ch, -6.0) for ch in string.ascii_lowercase + string.digits + ",.'-"]
    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


class TinyTextEncoder:
    """``encode(texts) -> (hidden (B, L, text_dim) float32, mask (B, L) bool)`` like the FLAN-T5 path."""

    def __init__(self, d_model: int = 24, seed: int = 0) -> None:
        from transformers import T5Config, T5EncoderModel

        self.tokenizer = tiny_tokenizer()
        torch.manual_seed(seed)
        cfg = T5Config(vocab_size=len(self.tokenizer), d_model=d_model, d_kv=8, d_ff=32, num_layers=1,
                       num_heads=2, feed_forward_proj="gated-gelu", dropout_rate=0.0)
        self.model = T5EncoderModel(cfg).eval()

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        return hidden.float(), batch["attention_mask"] == 1


def tiny_model(sat_type: str = "bingmap", metadata_type: str = "latlong_month_time_asource_tsource",
               seed: int = 0) -> Any:
    from sat2sound_core.model.config import ModelConfig
    from sat2sound_core.model.sat2sound import Sat2Sound

    torch.manual_seed(seed)
    model = Sat2Sound(ModelConfig.tiny(sat_type=sat_type, metadata_type=metadata_type))
    # The official temperature (scores / 32 / 1000) makes sparsemax almost uniform over a 64-code
    # codebook with small random weights; a large codebook scale gives sparse, input-dependent weights
    # like the real model's, so tests can tell queries apart.
    with torch.no_grad():
        model.fdt.space_dict.mul_(400.0)
    model.text_encoder = TinyTextEncoder(d_model=model.config.text_dim, seed=seed)
    return model


def write_tiny_weights(folder: Any, sat_type: str = "bingmap",
                       metadata_type: str = "latlong_month_time_asource_tsource", seed: int = 0) -> tuple[Any, Any]:
    """Write the tiny model as product files: our converted safetensors checkpoint (what
    ``load_model(path)`` reads) and a T5 folder (``SAT2SOUND_T5_DIR``: config, model.safetensors and a
    tokenizer). Returns (checkpoint path, T5 folder)."""
    import dataclasses
    from pathlib import Path

    from sat2sound_core.model import checkpoints as ck

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_model(sat_type=sat_type, metadata_type=metadata_type, seed=seed)
    ckpt = folder / f"tiny_{sat_type}_{metadata_type.split('_')[0]}.safetensors"
    ck.save_converted(ckpt, model.state_dict(), dataclasses.asdict(model.config), "0" * 64, "synthetic tiny model")
    t5 = folder / "t5"
    model.text_encoder.model.save_pretrained(str(t5))
    model.text_encoder.tokenizer.save_pretrained(str(t5))
    return ckpt, t5
