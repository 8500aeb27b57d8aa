"""Errors users see have one root per package and name the fix; no bare ValueError escapes a public call."""

from __future__ import annotations

import pytest

from sat2sound_core.common.errors import ConfigError, InputError, Sat2SoundError


def test_product_errors_share_one_root_and_stay_value_errors_where_they_were() -> None:
    for cls in (ConfigError, InputError):
        assert issubclass(cls, Sat2SoundError) and issubclass(cls, ValueError)


def test_sampler_refuses_mismatched_conditioning_with_the_rows_it_needs() -> None:
    import torch

    from sat2sound_core.synthesis.sampler import Conditioning, flow_sample

    rows = torch.zeros(3, 4, 8)
    cond = Conditioning(rows, rows[:, 0], rows[:, 0], rows[:1, :1], rows)
    with pytest.raises(InputError, match=r"same guidance \(4 rows"):
        flow_sample(torch.nn.Linear(1, 1), cond, torch.zeros(2, 5, 64), steps=2, guidance=4.5)


def test_odd_fourier_width_is_a_config_error_naming_the_fix() -> None:
    from sat2sound_core.synthesis.components import FourierFeatures

    with pytest.raises(ConfigError, match="must be even, got 3; fix the model config"):
        FourierFeatures(3)


def test_tiles_errors_have_their_own_root_and_name_the_fix() -> None:
    import numpy as np

    import tiles
    from tiles.config import custom_provider_config

    with pytest.raises(tiles.TilesInputError, match="stack the bands"):
        tiles.write_raster(None, np.zeros((1, 1, 1, 1)), "EPSG:4326", tiles.target_grid("sentinel", 0, 0).transform)
    with pytest.raises(tiles.TilesConfigError, match="whole number from 0 to 24"):
        custom_provider_config({"SAT2SOUND_TILE_URL": "http://h/{z}/{x}/{y}.png", "SAT2SOUND_TILE_MAX_ZOOM": "z"})
    assert issubclass(tiles.TilesInputError, tiles.TilesError) and issubclass(tiles.TilesConfigError, tiles.TilesError)
