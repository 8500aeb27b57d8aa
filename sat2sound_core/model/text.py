"""The FLAN-T5 text tower: tokenizer + frozen ``T5EncoderModel`` -> (hidden states, mask).

Sat2Sound embeds captions from the last hidden state of ``google/flan-t5-large``'s encoder, tokenised
with padding to the longest caption, truncation at 512 tokens and ``</s>`` appended. This module only
runs the encoder; :func:`sat2sound_core.weights.t5.load_text_encoder` finds its weights and builds it
(once per process, shared with TangoFlux), and :mod:`sat2sound_core.preprocess.text` loads the
tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from sat2sound_core.common.errors import InputError
from sat2sound_core.preprocess.text import MAX_LENGTH

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TextEncoder:
    """Tokenizer plus frozen T5 encoder; :meth:`encode` gives what Sat2Sound's text path consumes."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: nn.Module, max_length: int = MAX_LENGTH) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, L, d_model) float32 and the token mask (B, L) bool (True = real token).

        Captions are padded to the longest one, truncated at 512 tokens, and end in ``</s>``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("texts must be a non-empty list of strings")
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)
        attention = batch["attention_mask"].to(self.device)
        with torch.inference_mode():
            hidden: torch.Tensor = self.model(input_ids=ids, attention_mask=attention).last_hidden_state
        return hidden.float(), attention == 1


class LazyTextEncoder:
    """Builds the real :class:`TextEncoder` with ``loader(device)`` on first use, so loading Sat2Sound
    stays fast and offline (``load_model`` passes :func:`sat2sound_core.weights.t5.load_text_encoder`)."""

    def __init__(
        self, device: str | torch.device = "cpu", *, loader: Callable[[torch.device], TextEncoder]
    ) -> None:
        self.device = torch.device(device)
        self._loader = loader
        self._encoder: TextEncoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def get(self) -> TextEncoder:
        """The underlying encoder, built (and weights fetched if needed) on the first call."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._loader(self.device)
            return self._encoder

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.get().tokenizer

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get().encode(texts)
