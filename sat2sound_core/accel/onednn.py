"""oneDNN linear kernels for the CPU: one GEMM with the bias and a GELU or a residual add fused in.

``torch.ops.mkldnn._linear_pointwise`` applies the bias and the exact (erf) GELU inside the GEMM,
saving two passes over the (often 4×-wide) hidden activations; its ``.binary`` form adds a float32
residual as a post-op, so the layer's output is never written out and read back. Against
``F.gelu(F.linear(...))`` the results differ by ~1e-6.

:func:`packed_weight` reorders a weight once into oneDNN's blocked layout (kept on the weight tensor,
beside the plain weight that state_dict and every other device still use), so each CPU call skips that
reorder and its scratch allocation: the same results, bit for bit, and about 2–7 % faster GEMMs, for
one more copy of the weight in memory.

These functions only run the kernels (CPU tensors, float32 or bfloat16 weights, input already in the
weight's dtype); :mod:`sat2sound_core.accel.modules` decides when they apply.
"""

from __future__ import annotations

from typing import cast

import torch

#: attribute of a weight tensor holding its blocked copy: ((version, pointer, dtype), packed)
_MARK = "_sat2sound_packed"


def available() -> bool:
    """Whether this PyTorch build has the fused oneDNN linear kernel."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def can_pack() -> bool:
    """Whether this PyTorch build can reorder weights into oneDNN's blocked layout."""
    return hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def packed_weight(weight: torch.Tensor) -> torch.Tensor:
    """The blocked copy of an (out, in) weight, made now if there is none or the weight changed since
    (a new version, storage or dtype); the plain ``weight`` while autograd records it."""
    if weight.requires_grad and torch.is_grad_enabled():
        return weight
    key = (weight._version, weight.data_ptr(), weight.dtype)
    mark = getattr(weight, _MARK, None)
    if mark is not None and mark[0] == key:
        return cast(torch.Tensor, mark[1])
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable in and out of inference
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    setattr(weight, _MARK, (key, packed))
    return cast(torch.Tensor, packed)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the bias applied inside the GEMM (not copied into the output
    first, as ``addmm`` does). ``weight`` may be a :func:`packed_weight`."""
    return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], ""))


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.gelu(F.linear(x, weight, bias))`` (exact GELU) as one GEMM."""
    return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none"))


def linear_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               residual: torch.Tensor) -> torch.Tensor:
    """``residual + F.linear(x, weight, bias)`` as one float32 GEMM (``residual`` shaped like the output)."""
    return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add"))
