"""``sat2sound probe``: linear probes of frozen tiny-model embeddings on synthetic datasets the tests write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from sat2sound_core.cli import main
from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation import probe as pr
from tests.fixtures.tiny_model import tiny_model, write_tiny_weights

COLOURS = {"forest": (30, 120, 40), "sea": (20, 60, 200), "desert": (220, 190, 120)}
TONES = {"low": 220.0, "mid": 1200.0, "high": 5000.0}
PER_CLASS = 16


def _write_images(root: Path, per_class: int = PER_CLASS, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 25, (size, size, 3))
            px = np.clip(np.asarray(rgb, np.float64) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / name / f"{name}_{i}.png")
    return root


def _write_audio(root: Path, per_class: int = PER_CLASS) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["primary_label,filename,rating"]
    sr = 16000
    t = np.arange(sr) / sr
    for name, hz in TONES.items():
        (root / name).mkdir(exist_ok=True)
        for i in range(per_class):
            wave = 0.5 * np.sin(2 * np.pi * hz * (1 + 0.02 * rng.standard_normal()) * t)
            wave = wave + 0.01 * rng.standard_normal(t.shape)
            sf.write(root / name / f"{i}.wav", wave.astype(np.float32), sr)
            rows.append(f"{name},{name}/{i}.wav,4.0")
    (root / "train_metadata.csv").write_text("\n".join(rows) + "\n")
    return root / "train_metadata.csv"


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model(seed=0).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_images(tmp_path_factory.mktemp("eurosat_like"))


@pytest.fixture(scope="module")
def image_embeddings(model: Any, images: Path) -> tuple[pr.ProbeDataset, np.ndarray]:
    ds = pr.image_folder(images)
    return ds, pr.embed(model, ds, batch_size=16)


def test_image_probe_separates_colours_and_fails_on_shuffled_labels(
        image_embeddings: tuple[pr.ProbeDataset, np.ndarray]) -> None:
    ds, emb = image_embeddings
    assert emb.shape[0] == 3 * PER_CLASS and ds.classes == ("desert", "forest", "sea")
    res = pr.fit_probe(emb, ds.labels, None, folds=4)
    assert res.accuracy >= 0.9, res
    assert res.confusion.sum() == 3 * PER_CLASS and res.protocol == "k-fold (k=4)"
    assert np.trace(res.confusion) == round(res.accuracy * 3 * PER_CLASS)
    shuffled = list(np.random.default_rng(7).permutation(np.asarray(ds.labels)))
    bad = pr.fit_probe(emb, shuffled, None, folds=4)
    assert bad.accuracy <= 0.6, bad  # chance is 1/3


def test_split_layout_is_used(model: Any, tmp_path: Path) -> None:
    _write_images(tmp_path / "train", per_class=6, size=32)
    _write_images(tmp_path / "test", per_class=3, size=48)
    ds = pr.image_folder(tmp_path)
    assert ds.is_test is not None and sum(ds.is_test) == 9
    res = pr.run_probe(model, ds)
    assert res.protocol == "split" and res.confusion.sum() == 9 and len(res.fold_accuracies) == 1
    assert res.accuracy >= 0.8


def test_audio_probe_separates_tones(model: Any, tmp_path: Path) -> None:
    ds = pr.audio_csv(_write_audio(tmp_path / "birdclef"))
    emb = pr.embed(model, ds, batch_size=12)
    assert emb.shape[0] == 3 * PER_CLASS
    assert pr.fit_probe(emb, ds.labels, None, folds=4, modality="audio").accuracy >= 0.9
    shuffled = list(np.random.default_rng(3).permutation(np.asarray(ds.labels)))
    assert pr.fit_probe(emb, shuffled, None, folds=4).accuracy <= 0.6


def test_foreign_image_sizes_become_model_inputs() -> None:
    for size in ((64, 64), (256, 256), (300, 200)):
        x = pr.probe_image_tensor(Image.new("RGB", size, (10, 20, 30)), "bingmap")
        assert tuple(x.shape) == (3, 224, 224)
    assert tuple(pr.probe_image_tensor(Image.new("L", (600, 600)), "sentinel").shape) == (3, 224, 224)


def test_confusion_png_is_a_png(image_embeddings: tuple[pr.ProbeDataset, np.ndarray], tmp_path: Path) -> None:
    ds, emb = image_embeddings
    res = pr.fit_probe(emb, ds.labels, None, folds=4)
    png, js = pr.write_outputs(res, tmp_path / "out")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 3 * 24 and im.height > 3 * 24
        px = np.asarray(im.convert("RGB"))
    dark = (px[..., 0] < 60) & (px[..., 2] > 120)  # the dark-blue diagonal of a near-perfect probe
    assert dark.sum() > 3 * 100
    data = json.loads(js.read_text())
    assert data["classes"] == ["desert", "forest", "sea"] and np.asarray(data["confusion"]).sum() == 3 * PER_CLASS


def test_bad_inputs_name_the_fix(model: Any, tmp_path: Path) -> None:
    one = tmp_path / "one"
    _write_images(one, per_class=3)
    for name in ("sea", "desert"):
        for f in (one / name).iterdir():
            f.unlink()
        (one / name).rmdir()
    with pytest.raises(InputError, match="only the class 'forest'.*at least two classes"):
        pr.image_folder(one)
    few = _write_images(tmp_path / "few", per_class=3)
    with pytest.raises(InputError, match="5-fold needs at least 5 samples per class.*lower --folds"):
        pr.run_probe(model, pr.image_folder(few))
    (few / "sea" / "broken.jpg").write_bytes(b"not a jpeg")
    (few / "forest" / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"2 image file\(s\) do not decode: .*empty\.png.*broken\.jpg"):
        pr.run_probe(model, pr.image_folder(few), folds=2)
    with pytest.raises(InputError, match="is not a folder"):
        pr.image_folder(tmp_path / "nope")
    bad_csv = tmp_path / "meta.csv"
    bad_csv.write_text("label,file\na,x.wav\n")
    with pytest.raises(InputError, match="lacks the column.*primary_label, filename"):
        pr.audio_csv(bad_csv)
    bad_csv.write_text("primary_label,filename\na,x.wav\nb,y.wav\n")
    with pytest.raises(InputError, match="do not exist.*--audio-root"):
        pr.audio_csv(bad_csv)


def test_paper_rows_match_by_benchmark(tmp_path: Path) -> None:
    ref = tmp_path / "paper"
    ref.mkdir()
    (ref / "probing_tables.csv").write_text(
        "table,modality,benchmark,model,backbone,accuracy_percent\n16,image,EuroSAT,SatMAE,ViT-L,96.43\n"
        "16,image,EuroSAT,Sat2Sound,ViT-B,83.83\n15,audio,BirdCLEF-2022,Sat2Sound,,54.84\n")
    rows = pr.read_paper_rows(pr.find_csv(tmp_path))
    assert [r.benchmark for r in rows] == ["EuroSAT", "BirdCLEF-2022"]
    assert [r.accuracy_percent for r in pr.matching(rows, "audio", "birdclef2022")] == [54.84]
    res = pr.ProbeResult("image", ("a", "b"), 0.5, "split", (0.5,), np.array([[1, 1], [1, 1]]), 4)
    table = pr.markdown(res, "eurosat", rows)
    assert "| measured | 50.00 |" in table and "| 83.83 |" in table and "-33.83" in table and "96.43" not in table


@pytest.fixture()
def env(tmp_path_factory: pytest.TempPathFactory, product_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from sat2sound_core.weights.loading import clear_model_cache

    ckpt, t5 = write_tiny_weights(tmp_path_factory.mktemp("weights"))
    monkeypatch.setenv("SAT2SOUND_T5_DIR", str(t5))
    monkeypatch.setenv("SAT2SOUND_PRECISION", "fp32")
    monkeypatch.delenv("SAT2SOUND_REFERENCE", raising=False)
    clear_model_cache()
    return str(ckpt)


def test_cli_end_to_end(env: str, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref" / "paper"
    ref.mkdir(parents=True)
    (ref / "probing_tables.csv").write_text(
        "table,modality,benchmark,model,backbone,accuracy_percent\n16,image,EuroSAT,Sat2Sound,ViT-B,83.83\n")
    code = main(["--quiet", "probe", str(images), "-c", env, "--folds", "4", "--benchmark", "EuroSAT",
                 "--reference", str(tmp_path / "ref"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "48 image samples, 3 classes, k-fold (k=4)" in out and "paper (table 16) | 83.83" in out
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    acc = json.loads((tmp_path / "out" / "probe.json").read_text())["accuracy"]
    assert acc >= 0.9
    code = main(["--quiet", "probe", str(images), "-c", env, "--folds", "40"])
    out, err = capsys.readouterr()
    assert code != 0 and "40-fold needs at least 40 samples per class" in err and "Traceback" not in err
    code = main(["--quiet", "probe", str(tmp_path / "missing"), "-c", env])
    assert code != 0 and "is not a folder" in capsys.readouterr().err


def test_audio_csv_split_column_and_audio_root(tmp_path: Path) -> None:
    csv_path = _write_audio(tmp_path / "clips", per_class=2)
    lines = csv_path.read_text().splitlines()
    moved = tmp_path / "meta" / "train_metadata.csv"
    moved.parent.mkdir()
    moved.write_text("\n".join([lines[0] + ",split"] + [f"{ln},{'test' if i % 2 else 'train'}"
                                                         for i, ln in enumerate(lines[1:])]) + "\n")
    with pytest.raises(InputError, match="--audio-root"):
        pr.audio_csv(moved)
    ds = pr.audio_csv(moved, audio_root=tmp_path / "clips")
    assert ds.is_test == (False, True) * 3 and ds.classes == ("high", "low", "mid")


def test_cli_audio_csv_takes_the_benchmark_from_the_folder(env: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = _write_audio(tmp_path / "birdclef-2022", per_class=5)
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "probing_tables.csv").write_text(
        "table,modality,benchmark,model,backbone,accuracy_percent\n15,audio,BirdCLEF-2022,Sat2Sound,,54.84\n"
        "15,audio,BirdCLEF-2023,Sat2Sound,,45.69\n")
    code = main(["--quiet", "probe", str(csv_path), "-c", env, "--reference", str(ref), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "15 audio samples, 3 classes, k-fold (k=5)" in out
    assert "paper (table 15) | 54.84" in out and "45.69" not in out
