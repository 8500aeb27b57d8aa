"""The metadata-subset path: the official rebuild of the fuser, against the full set and against 'unknown'."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.evaluation.run import EvalRequest, run_evaluation
from sat2sound_core.evaluation.subset import parse_subset, with_metadata_subset
from sat2sound_core.model.config import ModelConfig
from sat2sound_core.model.sat2sound import Sat2Sound
from sat2sound_core.preprocess.image import image_to_tensor
from sat2sound_core.preprocess.metadata import Metadata
from tests.fixtures.tiny_model import tiny_model
from tests.sat2sound_core.evaluation import official_dataset as od

FULL = "latlong_month_time_asource_tsource"
META = [Metadata(lat=10.0, lon=20.0, hour=5, month=3, audio_source="iNat", caption_source="qwen"),
        Metadata(lat=-40.0, lon=100.0, hour=22, month=11, audio_source="aporee", caption_source="pengi")]


def _images() -> torch.Tensor:
    return torch.stack([image_to_tensor(Image.open(io.BytesIO(od.jpeg(i))), 1, "bingmap") for i in range(2)])


def test_subset_rebuilds_the_fuser_without_the_other_embedders() -> None:
    model = tiny_model()
    sub = with_metadata_subset(model, "time_asource")
    assert sub.config.metadata_type == "asource_time" and sub is not model
    dropped = {k for k in model.state_dict() if k not in sub.state_dict()}
    assert dropped and all(any(p in k for p in ("location_fc", "month_fc", "caption_source_fc")) for k in dropped)
    for k, v in sub.state_dict().items():  # the rest are the checkpoint's own tensors
        assert torch.equal(v, model.state_dict()[k]), k
    # what the official code computes: a model built for that metadata_type, loaded non-strictly
    ref = Sat2Sound(ModelConfig.tiny(metadata_type="asource_time"))
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k in ref.state_dict()}, strict=True)
    x = _images()
    got = sub.encode_image(x, 1, META).embedding
    assert torch.allclose(got, ref.encode_image(x, 1, META).embedding, atol=1e-5)
    # not the same computation as the full model with the other parts unknown
    unknown = [Metadata(hour=m.hour, audio_source=m.audio_source) for m in META]
    assert not torch.allclose(got, model.encode_image(x, 1, unknown).embedding, atol=1e-3)
    assert not torch.allclose(got, model.encode_image(x, 1, META).embedding, atol=1e-3)
    # the full set (in any order) is the model itself
    assert with_metadata_subset(model, "tsource_asource_latlong_month_time") is model
    none = with_metadata_subset(model, "none")
    assert none.sat_encoder is None


def test_subset_must_be_parts_the_checkpoint_has() -> None:
    with pytest.raises(InputError, match="names asource, which this checkpoint lacks"):
        parse_subset("asource_time", "latlong_month_time_tsource")
    with pytest.raises(InputError, match="valid tokens"):
        parse_subset("weather", FULL)
    assert parse_subset("time_latlong", FULL) == "latlong_time"


def test_run_with_a_subset_agrees_with_the_full_path_where_it_must(tmp_path: Path) -> None:
    model = tiny_model()
    local = od.write(tmp_path / "d", n=4)
    full = run_evaluation(model, EvalRequest("GeoSound", data=local), checkpoint="t", cache_root=tmp_path / "c")
    same = run_evaluation(model, EvalRequest("GeoSound", data=local, metadata="tsource_asource_latlong_month_time"),
                          checkpoint="t", cache_root=tmp_path / "c")
    assert same.stats.computed == 0  # the full set is the same cache
    sub = run_evaluation(model, EvalRequest("GeoSound", data=local, metadata="asource_time"), checkpoint="t",
                         cache_root=tmp_path / "c")
    assert sub.cache_folder != full.cache_folder and sub.records[0]["metadata_type"] == "asource_time"
    img_full, img_sub = (np.load(r.cache_folder / "image_00000000_00000004.npy") for r in (full, sub))
    aud_full, aud_sub = (np.load(r.cache_folder / "audio_00000000_00000004.npy") for r in (full, sub))
    assert np.array_equal(aud_full, aud_sub) and not np.allclose(img_full, img_sub, atol=1e-3)
    with pytest.raises(InputError, match="lacks"):
        run_evaluation(tiny_model(metadata_type="latlong_month_time_tsource"),
                       EvalRequest("GeoSound", data=local, metadata="asource"), checkpoint="t", cache_root=tmp_path)
