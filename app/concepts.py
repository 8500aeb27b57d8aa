"""The concept explorer: the chip's most activated codebook concepts, where they are, gallery examples.

The paper's Figure 6 view. The concept map itself (per-patch top concepts, groups of patches,
gallery captions that activate a concept most) comes from the engine (``ChipAnalysis.concept_map``).
Gallery captions are shown as plain text (``st.text``), never as Markdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:
    from app.page import Controls
    from sat2sound_core.maps.concepts import ConceptMap


def concept_map(ss: Any, ctl: Controls) -> ConceptMap:
    """The current result's ConceptMap, computed once per result (the concept heatmap shares it)."""
    key = (id(ss.result), "concept")
    cm: ConceptMap | None = ss.heatmaps.get(key)
    if cm is None:
        from app import resources
        from sat2sound_core.common.settings import get_settings

        s = get_settings()
        shared = resources.get_engine(ctl.checkpoint, ctl.precision, s.device, s.gallery)
        with shared.use():
            cm = ss.result.concept_map(5)
        ss.heatmaps[key] = cm
    return cm


def render(ss: Any, ctl: Controls) -> None:
    """Concept groups of the whole chip, or of one clicked patch (row/column pickers).

    Computed on request (or when the concept heatmap already made it), so clicks stay fast.
    """
    if (id(ss.result), "concept") not in ss.heatmaps and not st.toggle("Explore concepts", key="concept_on"):
        st.caption("Turn on to list the chip's most activated soundscape concepts with gallery examples.")
        return
    cm = concept_map(ss, ctl)
    scope = st.radio("Scope", ("whole chip", "one patch"), horizontal=True, key="concept_scope")
    if scope == "one patch":
        c1, c2 = st.columns(2)
        row = int(c1.number_input("Patch row (0 = north)", 0, 13, 7, key="concept_row"))
        col = int(c2.number_input("Patch column (0 = west)", 0, 13, 7, key="concept_col"))
        codes = [int(c) for c in cm.codes[row, col]]
        scores = [float(s) for s in cm.scores[row, col]]
        for code, score in zip(codes, scores, strict=False):
            st.markdown(f"**concept {code}** · score {score:.3f}")
            for ex in cm.examples(code)[:3]:
                st.text(f"• {ex}")  # a gallery caption: plain text, never Markdown
        return
    for g in cm.groups[:8]:
        with st.container(border=True):
            st.markdown(f"**concept {g.code}** · {g.fraction:.0%} of the chip · mean score {g.mean_score:.3f}")
            for ex in (g.examples or cm.examples(g.code))[:3]:
                st.text(f"• {ex}")  # a gallery caption: plain text, never Markdown
