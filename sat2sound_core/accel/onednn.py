"""Fused CPU kernels used by the towers: Linear followed by exact GELU in one oneDNN call.

On CPU, ``torch.ops.mkldnn._linear_pointwise`` applies the bias and the erf GELU inside the GEMM,
saving two passes over the (often 4×-wide) hidden activations; elsewhere (CUDA, builds without
oneDNN, or ``SAT2SOUND_FUSED_LINEAR=0``) the plain ``F.gelu(F.linear(...))`` runs. Both compute the
same function (differences ~1e-6). :func:`linear_add` likewise fuses a float32 residual add into the
GEMM (oneDNN binary post-op).

Weights of modules passed to :func:`prepack` are reordered once into oneDNN's blocked layout (kept
beside the plain weight, which state_dict and every other device still use), so each CPU call skips
that reorder and its scratch allocation: the same results, bit for bit, and about 2–7 % faster GEMMs.
It costs one more copy of those weights in memory; ``SAT2SOUND_PACKED_WEIGHTS=0`` switches it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.accel import native
from sat2sound_core.common.settings import switch_off


def _fused_available() -> bool:
    if switch_off("SAT2SOUND_FUSED_LINEAR"):
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_FUSED = _fused_available()
_PACKING = not switch_off("SAT2SOUND_PACKED_WEIGHTS") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
#: attribute of a weight tensor marked by :func:`prepack`: None, or ((version, pointer, dtype), packed)
_MARK = "_sat2sound_packed"


def set_fused_linear(enabled: bool) -> None:
    """Turn the fused oneDNN path on or off for this process (tests compare both)."""
    global _FUSED
    _FUSED = enabled and _fused_available()


def set_packing(enabled: bool) -> None:
    """Turn the use of prepacked weights on or off for this process (tests and benchmarks compare)."""
    global _PACKING
    _PACKING = enabled and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def packing_enabled() -> bool:
    """Whether prepacked weights are in use in this process."""
    return _PACKING


def prepack(module: nn.Module) -> None:
    """Mark the weights of every ``nn.Linear`` in ``module`` for packing: their CPU calls then use a
    oneDNN-blocked copy, made on first use and again whenever the weight changes (a new version, device
    or dtype). Idempotent and cheap; the copy lives on the weight tensor and goes with it."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            prepack_weight(layer.weight)


def prepack_weight(weight: torch.Tensor) -> None:
    """Mark one (out, in) weight for packing, like :func:`prepack` does for a module's layers."""
    if not hasattr(weight, _MARK):
        setattr(weight, _MARK, None)


def _packed(weight: torch.Tensor) -> torch.Tensor:
    """The blocked copy of a :func:`prepack`-marked weight (made now if stale), else ``weight``."""
    if not _PACKING or not hasattr(weight, _MARK) or (weight.requires_grad and torch.is_grad_enabled()):
        return weight
    key = (weight._version, weight.data_ptr(), weight.dtype)
    mark = getattr(weight, _MARK)
    if mark is not None and mark[0] == key:
        return mark[1]
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable in and out of inference
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    setattr(weight, _MARK, (key, packed))
    return packed


def linear_gelu(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``gelu(layer(x))`` with exact (erf) GELU; input cast to the weight's dtype."""
    weight, bias = layer.weight, layer.bias
    x = x.to(weight.dtype)
    if _FUSED and x.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16):
        return torch.ops.mkldnn._linear_pointwise(x, _packed(weight), bias, "gelu", [], "none")
    return F.gelu(F.linear(x, weight, bias))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the input cast to the weight's dtype; on CPU the bias is
    applied inside the oneDNN GEMM instead of being copied into the output first (``addmm``)."""
    x = x.to(weight.dtype)
    if _FUSED and x.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16):
        return torch.ops.mkldnn._linear_pointwise(x, _packed(weight), bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_add(x: torch.Tensor, layer: nn.Linear, residual: torch.Tensor) -> torch.Tensor:
    """``residual + layer(x)``; on CPU in float32 the sum is a post-op of the oneDNN GEMM, so the
    layer's output is never written out and read back. In bf16 the GEMM output (bf16) is added to the
    float32 residual in a separate pass, which keeps the residual stream float32."""
    weight, bias = layer.weight, layer.bias
    x = x.to(weight.dtype)
    if (_FUSED and x.device.type == "cpu" and weight.dtype == torch.float32
            and residual.dtype == torch.float32 and residual.shape[:-1] == x.shape[:-1]):
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, _packed(weight), bias, "add")
    return residual + linear(x, weight, bias)


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``norm(x)``; on the CPU in float32 at inference through the native row-wise kernel
    (:mod:`sat2sound_core.accel.native`) when it is built, else PyTorch's."""
    weight, bias = norm.weight, norm.bias
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight is not None and bias is not None
            and weight.dtype == torch.float32 and bias.dtype == torch.float32 and x.is_contiguous()
            and len(norm.normalized_shape) == 1
            and not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
            and native.available()):
        return native.layer_norm(x, weight, bias, norm.eps)
    return norm(x)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state_dict) whose forward uses :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
