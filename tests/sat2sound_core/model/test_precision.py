"""bf16 precision keeps the embeddings within cosine 0.999 of fp32 on the reference inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sat2sound_core.model import Metadata
from tests.conftest import reference_file
from tests.sat2sound_core.model.test_fidelity_network import build_official_model

pytestmark = pytest.mark.slow

MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def embeddings(sat2sound_reference: Path) -> dict[str, dict[str, torch.Tensor]]:
    shared: dict[str, Any] = torch.load(reference_file(sat2sound_reference, "golden_shared.pt"),
                                        weights_only=False)
    golden: dict[str, Any] = torch.load(reference_file(sat2sound_reference, "golden_bingmap_withmeta.pt"),
                                        weights_only=False)
    model = build_official_model(sat2sound_reference)
    zooms = [int(z) for z in golden["img/zoom_levels"]]
    images = torch.stack([shared[f"sat_tensor/{model.config.sat_type}/zl{z}"] for z in zooms])
    mels = torch.cat([shared["mel_start0"], shared["mel_seeded"], shared["mel_short3s_zero_padded"]])
    meta = Metadata(**golden["env"]["meta"])
    out: dict[str, dict[str, torch.Tensor]] = {}
    for precision in ("fp32", "bf16"):
        model.set_precision(precision)
        out[precision] = {
            "image": model.encode_image(images, zooms, meta).embedding,
            "image_nometa": model.encode_image(images, zooms, None).embedding,
            "audio": model.encode_audio(mels).embedding,
            "text_A": model.encode_text_states(shared["text_A/hidden"], shared["text_A/mask"]).embedding,
            "text_B": model.encode_text_states(shared["text_B/hidden"], shared["text_B/mask"]).embedding,
        }
    assert model.precision == "bf16"
    return out


@pytest.mark.parametrize("path", ["image", "image_nometa", "audio", "text_A", "text_B"])
def test_bf16_embeddings_match_fp32(embeddings: dict[str, dict[str, torch.Tensor]], path: str) -> None:
    fp32, bf16 = embeddings["fp32"][path], embeddings["bf16"][path]
    assert bf16.dtype == torch.float32
    cosine = F.cosine_similarity(fp32, bf16, dim=-1)
    assert float(cosine.min()) >= MIN_COSINE, cosine
    assert not torch.equal(fp32, bf16) or path.startswith("text")  # bf16 really ran
