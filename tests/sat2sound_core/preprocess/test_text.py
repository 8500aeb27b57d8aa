"""The FLAN-T5 tokenizer of the text path: padding, truncation at 512, ``</s>``, files from the Hub."""

from __future__ import annotations

import json
from pathlib import Path

from sat2sound_core.preprocess.text import load_tokenizer
from sat2sound_core.weights.registry import FLAN_T5_REPO
from tests.conftest import reference_file
from tests.fixtures.mini_hub import MiniHub
from tests.fixtures.t5_folder import CAPTIONS, t5_dir, t5_hub, tiny

__all__ = ["t5_dir", "t5_hub", "tiny"]  # fixtures


def test_tokenizer_pads_truncates_and_appends_eos(t5_dir: Path, tiny: Path) -> None:
    ids = json.loads(reference_file(tiny, "vocab.json").read_text())["ids"]
    tok = load_tokenizer(t5_dir)
    assert tok.model_max_length == 512
    for caption, want in ids.items():
        assert tok(caption)["input_ids"] == want  # ends with </s> = 1
    batch = tok(CAPTIONS, padding=True, truncation=True, max_length=512)
    assert [len(r) for r in batch["input_ids"]] == [8, 8]
    assert batch["attention_mask"][1] == [1] * 6 + [0, 0]
    long = tok([" ".join(["birds"] * 700)], padding=True, truncation=True, max_length=512)
    assert len(long["input_ids"][0]) == 512 and long["input_ids"][0][-1] == 1


def test_tokenizer_files_come_from_the_hub_when_not_local(
    t5_dir: Path, t5_hub: tuple[MiniHub, dict], tmp_path: Path
) -> None:
    server, _ = t5_hub
    for name in ("tokenizer.json", "tokenizer_config.json"):
        server.add(FLAN_T5_REPO, name, (t5_dir / name).read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    tok = load_tokenizer(empty)
    assert tok(CAPTIONS[0])["input_ids"] == [3, 4, 5, 6, 7, 8, 9, 1]
    assert {r.path.rsplit("/", 1)[-1] for r in server.gets("tokenizer.json")} == {"tokenizer.json"}
