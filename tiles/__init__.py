"""Imagery for Sat2Sound: georeferenced chips at the training ground resolution (filled in by the tiles issue)."""
