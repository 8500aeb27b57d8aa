"""Caption → T5 token ids for TangoFlux, with the 64-token limit it was trained with.

The real tokenizer is FLAN-T5-large's SentencePiece model (only its ~3 MB of tokenizer files are
fetched). A folder may instead ship ``vocab.json`` (the tiny reference model does): a list of pieces
tokenised greedily, longest piece first, the way SentencePiece splits words it knows whole.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from sat2sound_core.common.errors import InputError, WeightsError
from sat2sound_core.synthesis.components import MAX_TEXT_TOKENS

if TYPE_CHECKING:
    from sat2sound_core.common.progress import ProgressCallback

log = logging.getLogger(__name__)

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


class CaptionTruncatedWarning(UserWarning):
    """A caption had more tokens than TangoFlux was trained with; the tail was dropped."""


class CaptionTokenizer(Protocol):
    """What the synthesiser needs from a tokenizer."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` ending with ``</s>``."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (for messages)."""
        ...


class VocabTokenizer:
    """Greedy longest-match tokenizer over a fixed piece list (``vocab.json``: ``{"vocab": [...]}``).

    Words are prefixed with ``▁`` as SentencePiece does; ids follow the list order (pad 0, ``</s>`` 1,
    ``<unk>`` 2); a character no piece covers becomes ``<unk>``.
    """

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = list(pieces)
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.longest = max(len(p) for p in self.pieces)

    @classmethod
    def from_file(cls, path: Path) -> VocabTokenizer:
        data = json.loads(path.read_text())
        pieces = data["vocab"] if isinstance(data, dict) else data
        return cls([str(p) for p in pieces])

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for word in text.split():
            rest = "\u2581" + word
            while rest:
                for n in range(min(len(rest), self.longest), 0, -1):
                    if rest[:n] in self.ids:
                        out.append(self.ids[rest[:n]])
                        rest = rest[n:]
                        break
                else:
                    if not out or out[-1] != UNK_ID:
                        out.append(UNK_ID)
                    rest = rest[1:]
        return [*out, EOS_ID]

    def decode(self, ids: list[int]) -> str:
        pieces = [self.pieces[i] for i in ids if i not in (PAD_ID, EOS_ID)]
        return "".join(pieces).replace("\u2581", " ").strip()


class HFTokenizer:
    """FLAN-T5's SentencePiece tokenizer through ``transformers`` (loaded from a folder of tokenizer files)."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:
            raise WeightsError(f"cannot read the T5 tokenizer files in {folder} ({exc}); delete them to re-fetch.") from exc

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=True)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=True)).strip()


@dataclass(frozen=True)
class Tokens:
    """One caption's ids ``(1, L)`` and mask, plus the text dropped by truncation (empty if none)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: str = ""

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def tokenize_caption(tokenizer: CaptionTokenizer, caption: str, max_tokens: int = MAX_TEXT_TOKENS) -> Tokens:
    """Tokenise one caption (no padding). Empty captions are refused; longer than ``max_tokens`` tokens
    (``</s>`` included) keeps the first ``max_tokens − 1`` pieces and warns with the dropped text."""
    if not isinstance(caption, str) or not caption.strip():
        raise InputError("the caption is empty; describe the sound, e.g. 'birds chirping near a river'.")
    ids = tokenizer.encode(caption.strip())
    truncated = ""
    if len(ids) > max_tokens:
        truncated = tokenizer.decode(ids[max_tokens - 1 : -1])
        ids = [*ids[: max_tokens - 1], EOS_ID]
        message = (
            f"caption has more than the {max_tokens} tokens TangoFlux was trained with; "
            f"dropped the end: {truncated!r}"
        )
        warnings.warn(message, CaptionTruncatedWarning, stacklevel=3)
        log.warning(message)
    t = torch.tensor([ids], dtype=torch.long)
    return Tokens(t, torch.ones_like(t), truncated)


def unconditional_tokens(length: int, rows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty caption padded to ``length``: ``</s>`` then pads; mask 1 only on ``</s>``."""
    ids = torch.full((rows, length), PAD_ID, dtype=torch.long)
    ids[:, 0] = EOS_ID
    mask = torch.zeros_like(ids)
    mask[:, 0] = 1
    return ids, mask


def find_tokenizer_folder(weights_folder: Path) -> Path | None:
    """A folder with T5 tokenizer files next to the weights (``tokenizer/`` or the folder itself), if any."""
    for candidate in (weights_folder / "tokenizer", weights_folder):
        if (candidate / "tokenizer.json").is_file() or (candidate / "spiece.model").is_file():
            return candidate
    return None


def load_tokenizer(weights_folder: Path, progress: ProgressCallback | None = None) -> CaptionTokenizer:
    """The tokenizer for a weights folder: its ``vocab.json``, tokenizer files beside it, or FLAN-T5-large's
    small tokenizer files fetched from the Hub (offline: from the cache, else a message naming them)."""
    vocab = weights_folder / "vocab.json"
    if vocab.is_file():
        return VocabTokenizer.from_file(vocab)
    local = find_tokenizer_folder(weights_folder)
    if local is not None:
        return HFTokenizer(local)
    from sat2sound_core.synthesis.weights import TOKENIZER_FILES, TOKENIZER_REPO, missing_message
    from sat2sound_core.weights.hub import fetch_repo_files

    folder, _ = fetch_repo_files(
        TOKENIZER_REPO, TOKENIZER_FILES, progress=progress,
        required=("tokenizer_config.json", "spiece.model", "tokenizer.json"), explain=missing_message,
    )
    return HFTokenizer(folder)
