"""``run_evaluation`` on a tiny official-schema dataset with the tiny model: embeddings equal the model's
own, metrics equal the metric on them, the cache resumes after an interruption and serves other variants."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.progress import Cancelled
from sat2sound_core.evaluation import paper
from sat2sound_core.evaluation.metrics import both_directions, l2_normalize
from sat2sound_core.evaluation.run import EvalRequest, run_evaluation
from sat2sound_core.preprocess.image import image_to_tensor
from sat2sound_core.preprocess.metadata import Metadata
from tests.fixtures.tiny_model import tiny_model
from tests.sat2sound_core.evaluation import official_dataset as od

N = len(od.ROWS)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return od.write(tmp_path_factory.mktemp("geosound"))


def _expected(model, mel_index: int = 0) -> dict[str, np.ndarray]:
    """The same embeddings computed directly, with metadata written out by hand from the rows."""
    months_hours = [(6, 17), (3, 8), (11, 3), (12, None), (None, None), (7, 22), (None, None), (1, 0)]
    meta = [Metadata(lat=10 + 7 * i, lon=-120 + 30 * i, month=mh[0], hour=mh[1], audio_source=od.ROWS[i][0],
                     caption_source=od.ROWS[i][2]) for i, mh in enumerate(months_hours)]
    images = torch.stack([image_to_tensor(Image.open(io.BytesIO(od.jpeg(i))), 1, "bingmap") for i in range(N)])
    mels = torch.from_numpy(np.stack([od.mel(i)[mel_index, 0] for i in range(N)]))
    with torch.inference_mode():
        return {"image": model.encode_image(images, 1, meta).embedding.numpy(),
                "audio": model.encode_audio(mels).embedding.numpy(),
                "text": model.encode_text(od.CAPTIONS).embedding.numpy()}


def test_embeddings_and_metrics_match_the_model(model, local: Path, tmp_path: Path) -> None:
    req = EvalRequest("GeoSound", data=local, composed=("none", "query", "audio"), batch_size=2, chunk_rows=3,
                      recall_at=50.0)
    rep = run_evaluation(model, req, checkpoint="tiny", cache_root=tmp_path, ckpt_path="/w/tiny.ckpt")
    assert rep.rows == N and rep.stats.computed == 9 and rep.stats.reused == 0  # 3 chunks × 3 modalities
    exp = _expected(model)
    got = {m: np.concatenate([np.load(rep.cache_folder / f"{m}_{lo:08d}_{hi:08d}.npy")
                              for lo, hi in ((0, 3), (3, 6), (6, 8))]) for m in ("image", "audio", "text")}
    for m in exp:  # batches of 2 here vs 8 there: float32 summation order only
        np.testing.assert_allclose(l2_normalize(got[m]), l2_normalize(exp[m]), atol=2e-6)
    none = rep.records[0]
    i2s, s2i = both_directions(exp["image"], exp["audio"], recall_at=50.0)
    assert none["addtextto"] == "none" and none["I2S_Median_Rank"] == i2s.median_rank
    assert none["I2S_Recall"] == i2s.recall and none["S2I_Median_Rank"] == s2i.median_rank
    assert [r["addtextto"] for r in rep.records] == ["none", "query", "audio"]
    assert rep.records[1]["S2I_Median_Rank"] == rep.records[2]["S2I_Median_Rank"]
    assert none["metadata_type"] == "latlong_month_time_asource_tsource" and none["ckpt_path"] == "/w/tiny.ckpt"
    assert none["test_mel_index"] == 0 and none["test_zoom_level"] == 1 and none["overhead_type"] == "bingmap"
    json.dumps(rep.records)  # JSON-serialisable as it is

    # the Parquet copy of the same rows gives the same embeddings (a fresh cache)
    pq = od.write(tmp_path / "pq", fmt="parquet")
    rep2 = run_evaluation(model, EvalRequest("GeoSound", data=pq, chunk_rows=3), checkpoint="tiny",
                          cache_root=tmp_path / "c2")
    np.testing.assert_allclose(l2_normalize(np.load(rep2.cache_folder / "audio_00000003_00000006.npy")),
                               l2_normalize(exp["audio"][3:6]), atol=2e-6)


def test_resume_after_interruption_and_other_variants_reuse(model, local: Path, tmp_path: Path) -> None:
    req = EvalRequest("GeoSound", data=local, batch_size=3, chunk_rows=3, mel_index=4)

    def stop_after_first_chunk(done: float, total: float, message: str = "") -> None:
        if done >= 4:
            raise Cancelled("interrupted")

    with pytest.raises(Cancelled):
        run_evaluation(model, req, checkpoint="tiny", cache_root=tmp_path, progress=stop_after_first_chunk)
    files = sorted(p.name for p in tmp_path.rglob("*.npy"))
    assert files == ["audio_00000000_00000003.npy", "image_00000000_00000003.npy"]
    assert not list(tmp_path.rglob("*.tmp"))
    rep = run_evaluation(model, req, checkpoint="tiny", cache_root=tmp_path)
    assert rep.stats.computed == 4 and rep.stats.reused == 2  # only chunks 2 and 3
    exp = _expected(model, mel_index=4)
    np.testing.assert_allclose(l2_normalize(np.load(rep.cache_folder / "audio_00000006_00000008.npy")),
                               l2_normalize(exp["audio"][6:]), atol=2e-6)
    # another variant needs only the caption embeddings; the reverse direction costs nothing
    rep = run_evaluation(model, EvalRequest("GeoSound", data=local, batch_size=3, chunk_rows=3, mel_index=4,
                                            composed=("query",)), checkpoint="tiny", cache_root=tmp_path)
    assert rep.stats.computed == 3 and rep.stats.reused == 6
    # a different mel index is a different cache
    rep = run_evaluation(model, EvalRequest("GeoSound", data=local, chunk_rows=3, limit=2), checkpoint="tiny",
                         cache_root=tmp_path)
    assert rep.rows == 2 and rep.stats.computed == 2


def test_bad_requests_name_the_fix(model, local: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sentinel imagery but SoundingEarth"):
        run_evaluation(tiny_model("sentinel"), EvalRequest("SoundingEarth", data=local), checkpoint="t",
                       cache_root=tmp_path)
    with pytest.raises(InputError, match=r"outside 0\.\.4"):
        run_evaluation(model, EvalRequest("GeoSound", data=local, mel_index=7), checkpoint="t", cache_root=tmp_path)
    with pytest.raises(InputError, match="--scale 2"):
        run_evaluation(model, EvalRequest("GeoSound", data=local, scale=2), checkpoint="t", cache_root=tmp_path)
    for fmt in ("parquet", "disk"):
        empty = od.write(tmp_path / f"empty-{fmt}", n=0, fmt=fmt)
        with pytest.raises(InputError, match="has no rows"):
            run_evaluation(model, EvalRequest("GeoSound", data=empty), checkpoint="t", cache_root=tmp_path)
    nocap = od.write(tmp_path / "nocap", n=2, drop=("audio_caption",))
    with pytest.raises(InputError, match=r"audio_caption \(the audio caption.*checkpoint t .*task image-text"):
        run_evaluation(model, EvalRequest("GeoSound", data=nocap, task="image-text"), checkpoint="t",
                       cache_root=tmp_path)


def test_side_by_side_with_the_paper(tmp_path: Path) -> None:
    csv = tmp_path / "paper" / "retrieval_tables.csv"
    csv.parent.mkdir()
    csv.write_text("table,dataset,imagery,scale,model,metadata,composed,task,i2x_r10,i2x_median_rank,x2i_r10,"
                   "x2i_median_rank,note\n"
                   "5,GeoSound,bingmap,1,Sat2Sound,latlong_month_time_asource_tsource,none,image-audio,0.6,700,0.5,"
                   "800,\n5,GeoSound,bingmap,1,PSM,latlong_month_time_asource_tsource,none,image-audio,0.1,1,0.1,1,\n"
                   "7,GeoSound,bingmap,1,Sat2Sound,asource_time,none,image-audio,0.2,2,0.2,2,\n")
    rec = {"dataset_type": "GeoSound", "overhead_type": "bingmap", "test_zoom_level": 1,
           "metadata_type": "tsource_asource_latlong_month_time", "addtextto": "none",
           "I2S_Recall": 0.5, "I2S_Median_Rank": 750.0, "S2I_Recall": 0.55, "S2I_Median_Rank": 780.0}
    rows = paper.read_rows(paper.find_csv(tmp_path))
    assert len(rows) == 2  # baselines dropped
    table = paper.markdown([rec], rows)
    assert "paper (table 5) | 0.600 | 700" in table and "difference | -0.100 | +50 | +0.050 | -20 |" in table
    assert "table 7" not in table
    alone = paper.markdown([rec], paper.read_rows(paper.find_csv(tmp_path / "absent")))
    assert "measured" in alone and "paper" not in alone.split("\n", 2)[2]
