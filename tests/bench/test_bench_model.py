"""The model benchmark counts the same FLOPs whichever attention kernel runs."""

from __future__ import annotations

import torch

from bench.bench_model import count_flops, paired_fraction
from sat2sound_core import accel
from sat2sound_core.accel import native
from sat2sound_core.model import ModelConfig, Sat2Sound


def test_flops_do_not_depend_on_the_attention_kernel() -> None:
    torch.manual_seed(0)
    model = Sat2Sound(ModelConfig.tiny()).eval()
    mel = torch.randn(2, 1001, 64)
    assert native.available(), native.status()
    with_kernel = count_flops(lambda: model.encode_audio(mel))
    with accel.override(native_kernels=False):
        with_pytorch = count_flops(lambda: model.encode_audio(mel))
    assert with_kernel == with_pytorch > 0


def test_paired_fraction_is_a_fraction_of_the_gemm_rate() -> None:
    a = torch.randn(512, 512)
    median, ratios = paired_fraction(lambda: a @ a, 2 * 512**3, torch.float32, torch.device("cpu"), 3)
    assert len(ratios) == 3 and 0 < median < 1.5
