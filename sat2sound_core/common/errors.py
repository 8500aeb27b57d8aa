"""Errors the product raises on purpose. Each message says what was wrong and how to fix it.

The app shows ``str(error)`` to the user as is (never a traceback), so messages are written for people.
"""

from __future__ import annotations


class Sat2SoundError(Exception):
    """Base class of every error this product raises deliberately."""


class ConfigError(Sat2SoundError, ValueError):
    """A setting or environment variable has an invalid value."""


class InputError(Sat2SoundError, ValueError):
    """User input (an image, audio clip, coordinate, query …) cannot be used; the message says why."""


class WeightsError(Sat2SoundError):
    """Weights are missing, corrupt, unsafe or belong to another model."""


class DownloadError(Sat2SoundError):
    """A download failed or is impossible (offline); the message names what to fetch and how."""


class ImageryError(Sat2SoundError):
    """Imagery for a place could not be had (the ``tiles`` package's error, re-raised with its message)."""
