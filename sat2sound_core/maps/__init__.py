"""Soundscape maps on a chip's patch grid: heatmap math and the registry of heatmap kinds, concept maps,
and colour-mapped overlays.
"""
