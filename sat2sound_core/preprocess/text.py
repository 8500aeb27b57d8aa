"""Captions → FLAN-T5 token ids: the tokenizer Sat2Sound's text path was trained with.

Sat2Sound tokenises captions with ``google/flan-t5-large``'s tokenizer, padding to the longest
caption of a batch, truncating at 512 tokens and appending ``</s>``. Its files are read from the
FLAN-T5 folder (``SAT2SOUND_T5_DIR``, default ``<weights>/flan-t5-large``) or, when that folder has
none, fetched from the Hub (a few MB; offline: from the Hugging Face caches only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sat2sound_core.common.errors import DownloadError
from sat2sound_core.common.settings import get_settings
from sat2sound_core.weights.registry import FLAN_T5_REPO

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MAX_LENGTH = 512  # tokens per caption, ``</s>`` included
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # required
TOKENIZER_OPTIONAL = ("special_tokens_map.json", "spiece.model")


def has_tokenizer_files(folder: Path) -> bool:
    """True when ``folder`` holds a T5 tokenizer (``tokenizer.json`` or SentencePiece's ``spiece.model``)."""
    return (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file()


def load_tokenizer(folder: Path | None = None) -> PreTrainedTokenizerBase:
    """The FLAN-T5 tokenizer (transformers ``AutoTokenizer``) from ``folder`` (default: the FLAN-T5
    folder), or from the Hub's small tokenizer files when the folder has none; at most 512 tokens."""
    from transformers import AutoTokenizer

    from sat2sound_core.weights.hub import fetch_file

    t5_folder = get_settings().t5_folder
    folder = folder or t5_folder
    if not has_tokenizer_files(folder):

        def hub_file(name: str) -> Path:
            return fetch_file(FLAN_T5_REPO, name, needed_for="the text encoder", folder=t5_folder)

        files = [hub_file(name) for name in TOKENIZER_FILES]
        for optional in TOKENIZER_OPTIONAL:
            try:
                files.append(hub_file(optional))
            except DownloadError:
                log.debug("optional tokenizer file %s unavailable", optional)
        folder = files[0].parent
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(folder))
    if getattr(tokenizer, "model_max_length", MAX_LENGTH) > MAX_LENGTH:
        tokenizer.model_max_length = MAX_LENGTH
    return tokenizer
