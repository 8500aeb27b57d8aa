"""Sat2Sound soundscape map: click a place, see where sounds live on the satellite image, hear it, export it.

Run with ``streamlit run app/main.py`` (``make run``). This file only lays out widgets and keeps each
session's state; every number comes from :mod:`sat2sound_core` (engine, export, synthesis) and
:mod:`tiles`. See ``docs/app.md`` for the settings and the tests.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # `streamlit run app/main.py` puts app/ (not the repo) on sys.path
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from app import page  # noqa: E402
from sat2sound_core.accel.allocator import tune_allocator  # noqa: E402
from sat2sound_core.common.errors import ConfigError  # noqa: E402
from sat2sound_core.common.settings import get_settings  # noqa: E402

try:
    _level = get_settings().log_level.strip().upper()
except ConfigError:  # another setting is wrong: the page says which; the log still starts
    _level = "INFO"
logging.basicConfig(
    level=_level if _level in logging.getLevelNamesMapping() else "INFO",
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)

tune_allocator()  # reuse freed activation memory instead of page-faulting it in again (once per process)
st.set_page_config(page_title="Sat2Sound soundscape map", layout="wide")
try:
    page.render()
except Exception as exc:
    logging.getLogger("app").exception("page failed")
    st.error(f"Something went wrong ({type(exc).__name__}: {exc}). Reload the page; the server log has details.")
