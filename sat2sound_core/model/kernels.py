"""Fused CPU kernels used by the towers: Linear followed by exact GELU in one oneDNN call.

On CPU, ``torch.ops.mkldnn._linear_pointwise`` applies the bias and the erf GELU inside the GEMM,
saving two passes over the (often 4×-wide) hidden activations; elsewhere (CUDA, builds without
oneDNN, or ``SAT2SOUND_FUSED_LINEAR=0``) the plain ``F.gelu(F.linear(...))`` runs. Both compute the
same function (differences ~1e-6). :func:`linear_add` likewise fuses a float32 residual add into the
GEMM (oneDNN binary post-op).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sat2sound_core.settings import switch_off


def _fused_available() -> bool:
    if switch_off("SAT2SOUND_FUSED_LINEAR"):
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_FUSED = _fused_available()


def set_fused_linear(enabled: bool) -> None:
    """Turn the fused oneDNN path on or off for this process (tests compare both)."""
    global _FUSED
    _FUSED = enabled and _fused_available()


def linear_gelu(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``gelu(layer(x))`` with exact (erf) GELU; input cast to the weight's dtype."""
    weight, bias = layer.weight, layer.bias
    x = x.to(weight.dtype)
    if _FUSED and x.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return F.gelu(F.linear(x, weight, bias))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the input cast to the weight's dtype; on CPU the bias is
    applied inside the oneDNN GEMM instead of being copied into the output first (``addmm``)."""
    x = x.to(weight.dtype)
    if _FUSED and x.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_add(x: torch.Tensor, layer: nn.Linear, residual: torch.Tensor) -> torch.Tensor:
    """``residual + layer(x)``; on CPU in float32 the sum is a post-op of the oneDNN GEMM, so the
    layer's output is never written out and read back. In bf16 the GEMM output (bf16) is added to the
    float32 residual in a separate pass, which keeps the residual stream float32."""
    weight, bias = layer.weight, layer.bias
    x = x.to(weight.dtype)
    if (_FUSED and x.device.type == "cpu" and weight.dtype == torch.float32
            and residual.dtype == torch.float32 and residual.shape[:-1] == x.shape[:-1]):
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return residual + linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state_dict) whose forward uses :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
