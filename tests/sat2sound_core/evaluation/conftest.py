"""The official code's weight-independent metric and loss outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import reference_file


@pytest.fixture(scope="session")
def golden_shared(sat2sound_reference: Path) -> dict[str, Any]:
    """``golden_shared.pt`` (read in place; its ``README`` entry explains the keys)."""
    return torch.load(reference_file(sat2sound_reference, "golden_shared.pt"), weights_only=False)
