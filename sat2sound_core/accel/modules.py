"""Drop-in ``Linear``, ``LayerNorm`` and ``Mlp`` whose forward runs the fastest kernel for their device.

Each keeps the parameters and state_dict keys of its PyTorch counterpart (``Linear`` and ``LayerNorm``
are still ``nn.Linear`` and ``nn.LayerNorm``) and hands its forward to a processor chosen for its
device, dtype and :func:`~sat2sound_core.accel.options.options` (:mod:`sat2sound_core.accel.swap`):

- ``Linear`` on a CPU with float32 or bfloat16 weights: one oneDNN GEMM with the bias, an exact GELU
  (``activation="gelu"``) or a float32 ``residual`` fused in, from prepacked weights where
  :func:`prepack` marked the layer (:mod:`sat2sound_core.accel.onednn`); elsewhere ``F.linear``.
- ``LayerNorm`` on a CPU in float32: the native row-wise kernel (:mod:`sat2sound_core.accel.native`)
  at inference, when it is built; elsewhere ``F.layer_norm``.

:func:`linear` is the same choice for a raw weight tensor (a convolution used as a GEMM, an attention
in-projection, the codebook), made per call. :func:`use_accel_linear` turns the ``nn.Linear`` layers
of any model into :class:`Linear`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel import native, onednn
from sat2sound_core.accel.options import AccelOptions, options
from sat2sound_core.accel.swap import Swappable

Activation = Literal["gelu"] | None
_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


# ------------------------------------------------------------------------------------------------ Linear
class LinearProcessor(Protocol):
    def __call__(self, layer: Linear, x: torch.Tensor, activation: Activation,
                 residual: torch.Tensor | None) -> torch.Tensor: ...


class TorchLinear:
    """``F.linear`` (then ``F.gelu``, then ``+ residual``): every device and dtype."""

    def __call__(self, layer: Linear, x: torch.Tensor, activation: Activation,
                 residual: torch.Tensor | None) -> torch.Tensor:
        y = F.linear(x.to(layer.weight.dtype), layer.weight, layer.bias)
        if activation == "gelu":
            y = F.gelu(y)
        return y if residual is None else residual + y


@dataclass(frozen=True)
class OneDNNLinear:
    """One oneDNN GEMM on a CPU (float32 or bfloat16 weights) with the bias and the GELU, or a float32
    residual add, fused in; from the blocked copy of the weight when ``packed``. A bfloat16 output is
    added to a float32 residual in a separate pass, which keeps the residual stream float32."""

    packed: bool = False

    def __call__(self, layer: Linear, x: torch.Tensor, activation: Activation,
                 residual: torch.Tensor | None) -> torch.Tensor:
        weight, bias = layer.weight, layer.bias
        x = x.to(weight.dtype)
        w = onednn.packed_weight(weight) if self.packed else weight
        if (residual is not None and activation is None and weight.dtype == torch.float32
                and residual.dtype == torch.float32 and residual.shape[:-1] == x.shape[:-1]):
            return onednn.linear_add(x, w, bias, residual)
        y = onednn.linear_gelu(x, w, bias) if activation == "gelu" else onednn.linear(x, w, bias)
        return y if residual is None else residual + y


TORCH_LINEAR = TorchLinear()


def _onednn_applies(weight: torch.Tensor, opts: AccelOptions) -> bool:
    return (opts.fused_linear and weight.device.type == "cpu" and weight.dtype in _ONEDNN_DTYPES
            and onednn.available())


class Linear(Swappable[LinearProcessor], nn.Linear):
    """``nn.Linear`` (same parameters and state_dict) computing ``residual + act(x Wᵀ + b)``.

    ``activation`` is None or ``"gelu"`` (exact); ``residual`` is None or a tensor shaped like the
    output. The input is cast to the weight's dtype. ``packed`` (set by :func:`prepack`) asks for a
    blocked copy of the weight on a CPU.
    """

    packed: bool = False

    def choose_processor(self, opts: AccelOptions) -> LinearProcessor:
        if _onednn_applies(self.weight, opts):
            return OneDNNLinear(packed=self.packed and opts.packed_weights and onednn.can_pack())
        return TORCH_LINEAR

    def forward(self, x: torch.Tensor, activation: Activation = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.processor(self, x, activation, residual)

    if TYPE_CHECKING:  # what calling the module returns (nn.Module types its calls as returning Any)
        def __call__(self, x: torch.Tensor, activation: Activation = None,
                     residual: torch.Tensor | None = None) -> torch.Tensor: ...


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           packed: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a raw (out, in) weight, input cast to its dtype: on a CPU one
    oneDNN GEMM with the bias fused in, from a blocked copy of ``weight`` when ``packed`` (for a weight
    used on every call)."""
    x = x.to(weight.dtype)
    opts = options()
    if x.device.type == "cpu" and _onednn_applies(weight, opts):
        use_packed = packed and opts.packed_weights and onednn.can_pack()
        return onednn.linear(x, onednn.packed_weight(weight) if use_packed else weight, bias)
    return F.linear(x, weight, bias)


def prepack(module: nn.Module) -> None:
    """Mark every :class:`Linear` in ``module`` for prepacked weights: on a CPU their GEMMs then read a
    oneDNN-blocked copy, made on first use and again whenever the weight changes (a new version,
    device or dtype). Worth it for weights read by many small GEMMs; costs one more copy of them."""
    for layer in module.modules():
        if isinstance(layer, Linear):
            layer.packed = True
            layer.reset_processor()


def use_accel_linear(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` in ``module`` a :class:`Linear` (same parameters and state_dict;
    still an ``nn.Linear``). Returns ``module``."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = Linear
    return module


# --------------------------------------------------------------------------------------------- LayerNorm
class LayerNormProcessor(Protocol):
    def __call__(self, norm: LayerNorm, x: torch.Tensor) -> torch.Tensor: ...


class TorchLayerNorm:
    """``F.layer_norm``: every device and dtype."""

    def __call__(self, norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class NativeLayerNorm:
    """The native row-wise kernel for contiguous float32 input at inference (PyTorch's CPU LayerNorm is
    overhead-bound on short rows such as the audio tower's 96 floats); ``F.layer_norm`` otherwise."""

    def __call__(self, norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
        weight, bias = norm.weight, norm.bias
        if (x.dtype == torch.float32 and x.is_contiguous()
                and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
                and native.available()):
            return native.layer_norm(x, weight, bias, norm.eps)
        return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)


TORCH_LAYER_NORM = TorchLayerNorm()
NATIVE_LAYER_NORM = NativeLayerNorm()


class LayerNorm(Swappable[LayerNormProcessor], nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and state_dict) over the last axis."""

    def choose_processor(self, opts: AccelOptions) -> LayerNormProcessor:
        weight, bias = self.weight, self.bias
        if (opts.native_kernels and weight is not None and bias is not None and len(self.normalized_shape) == 1
                and weight.device.type == "cpu" and weight.dtype == torch.float32
                and bias.dtype == torch.float32):
            return NATIVE_LAYER_NORM
        return TORCH_LAYER_NORM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.processor(self, x)

    if TYPE_CHECKING:
        def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------------- Mlp
class Mlp(nn.Module):
    """``fc1`` → exact GELU → ``fc2`` (timm's layout), plus an optional ``residual``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc2(self.fc1(x, activation="gelu"), residual=residual)

    if TYPE_CHECKING:
        def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor: ...
