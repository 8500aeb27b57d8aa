"""``sat2sound evaluate`` end to end: tiny weights on disk, a tiny official-schema dataset, real files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sat2sound_core.cli import main
from tests.fixtures.tiny_model import write_tiny_weights
from tests.sat2sound_core.evaluation import official_dataset as od

KEYS = ["test_mel_index", "test_zoom_level", "dataset_type", "overhead_type", "metadata_type", "expr", "ckpt_path",
        "addtextto", "I2S_Recall", "I2S_Median_Rank", "S2I_Recall", "S2I_Median_Rank"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return od.write(tmp_path_factory.mktemp("geosound"), fmt="parquet")


@pytest.fixture()
def env(weights: tuple[Path, Path], product_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from sat2sound_core.weights.loading import clear_model_cache

    monkeypatch.setenv("SAT2SOUND_T5_DIR", str(weights[1]))
    monkeypatch.setenv("SAT2SOUND_PRECISION", "fp32")
    monkeypatch.delenv("SAT2SOUND_REFERENCE", raising=False)
    clear_model_cache()
    return str(weights[0])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("--checkpoint", "--dataset", "--split", "--data", "--scale", "--task", "--composed", "--mel-index",
                 "--limit", "--precision", "--device", "--batch-size", "--out", "--reference", "--metadata"):
        assert word in out, word


def test_evaluate_writes_official_lines_and_the_side_by_side(env: str, local: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref" / "paper"
    ref.mkdir(parents=True)
    (ref / "retrieval_tables.csv").write_text(
        "table,dataset,imagery,scale,model,metadata,composed,task,i2x_r10,i2x_median_rank,x2i_r10,x2i_median_rank,"
        "note\n13,GeoSound,bingmap,1,Sat2Sound,latlong_month_time_asource_tsource,query,image-audio,0.9,82,0.5,"
        "836,\n")
    out = tmp_path / "res.jsonl"
    code, stdout, err = _run(capsys, "evaluate", "-c", env, "--data", str(local), "--composed", "none,query,audio",
                             "--batch-size", "3", "--out", str(out), "--reference", str(tmp_path / "ref"))
    assert code == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [list(x) for x in lines] == [KEYS] * 3 and [x["addtextto"] for x in lines] == ["none", "query", "audio"]
    assert all(x["dataset_type"] == "GeoSound" and x["ckpt_path"] == str(Path(env).resolve()) for x in lines)
    assert all(0.0 <= x["I2S_Recall"] <= 1.0 and 1.0 <= x["S2I_Median_Rank"] <= 8.0 for x in lines)
    assert "8 rows of GeoSound test" in stdout and "paper (table 13) | 0.900 | 82" in stdout
    assert "difference" in stdout and "pieces computed, 0 from the cache" in stdout
    # a second run (another subset of variants, the reverse direction included) re-encodes nothing
    code, stdout, err = _run(capsys, "evaluate", "-c", env, "--data", str(local), "--composed", "audio",
                             "--reference", str(tmp_path / "absent"))
    assert code == 0, err
    assert "0 pieces computed" in stdout and json.loads(stdout.splitlines()[0]) == lines[2]
    assert "tables were not found" in stdout and "paper (" not in stdout  # measured rows only
    # a metadata subset through the CLI: its own cache, its own metadata_type
    code, stdout, err = _run(capsys, "evaluate", "-c", env, "--data", str(local), "--metadata", "time_asource",
                             "--limit", "4", "--reference", str(tmp_path / "absent"))
    assert code == 0, err
    line = json.loads(stdout.splitlines()[0])
    assert line["metadata_type"] == "time_asource" and "4 rows" in stdout and "2 pieces computed" in stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--mel-index", "7"], r"--mel-index 7 is outside 0..4"),
    (["--dataset", "SoundingEarth"], "bingmap imagery but SoundingEarth holds only googleEarth"),
    (["--composed", "query", "--task", "image-text"], "only to image-audio"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--metadata", "asource_weather"], "--metadata: unknown metadata token"),
])
def test_bad_input_is_one_line(env: str, local: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    import re

    code, _, err = _run(capsys, "evaluate", "-c", env, "--data", str(local), *argv)
    assert code == 2 and re.search(message, err) and "Traceback" not in err, err


def test_offline_without_a_copy_says_how_to_get_one(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "evaluate", "-c", env)
    assert code == 2 and "save_to_disk" in err and "12.7 GB" in err and "--data DIR" in err, err
