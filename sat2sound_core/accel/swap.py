"""Modules whose forward runs an implementation (a *processor*) chosen for their device.

The pattern is diffusers' attention processors: a module keeps its parameters and its state_dict, and
its forward hands the work to ``self.processor``, an object that holds no weights. Here the processor is
chosen by :meth:`Swappable.choose_processor` from the module's device and dtype and the
:func:`~sat2sound_core.accel.options.options` in effect, once: on first use, and again after the
module was moved or cast (``to``, ``cuda``, ``bfloat16``, ``to_empty``) or the options changed.
:meth:`Swappable.set_processor` puts one in from outside; it holds until the next such change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import nn

from sat2sound_core.accel.options import AccelOptions, options

P = TypeVar("P")


class Swappable(nn.Module, Generic[P]):
    """Base of modules with a device-dependent processor of type ``P`` (see the module docstring)."""

    _processor: P | None = None
    _chosen_for: AccelOptions | None = None

    def choose_processor(self, opts: AccelOptions) -> P:
        """The processor for this module's device and dtype under ``opts``."""
        raise NotImplementedError

    @property
    def processor(self) -> P:
        """The processor in use (chosen now if the module moved or the options changed since)."""
        opts = options()
        if self._chosen_for is not opts or self._processor is None:
            self._processor = self.choose_processor(opts)
            self._chosen_for = opts
        return self._processor

    def set_processor(self, processor: P) -> None:
        """Use ``processor`` until the module moves or the options change."""
        self._processor = processor
        self._chosen_for = options()

    def reset_processor(self) -> None:
        """Choose the processor again on next use."""
        self._chosen_for = None

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Swappable[P]:
        super()._apply(fn, recurse)
        self.reset_processor()  # moved or cast: the next call chooses for the new device and dtype
        return self
