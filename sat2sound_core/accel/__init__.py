"""CPU and GPU fast paths, swapped in from outside the model.

The model is written with plain building blocks (``accel.modules``: ``Linear``, ``LayerNorm``,
``Mlp``, with PyTorch's state_dict keys); each runs a processor chosen for its device
(``accel.swap``): oneDNN GEMMs with fused bias, GELU or residual add and prepacked weights
(``accel.onednn``), the audio tower's compiled window attention and LayerNorm (``accel.native``),
and the Swin blocks' cache-sized pieces (``accel.swin``). ``accel.allocator`` tunes glibc's malloc.

Every switch is one field of :class:`AccelOptions`, read from the settings (``SAT2SOUND_FUSED_LINEAR``,
``SAT2SOUND_PACKED_WEIGHTS``, ``SAT2SOUND_NATIVE_KERNELS``, ``SAT2SOUND_SWIN_CHUNK_ROWS``,
``SAT2SOUND_CUDA_GRAPHS``, ``SAT2SOUND_TUNE_MALLOC``, ``CXX``): :func:`options` gives the ones in
effect, and ``with override(fused_linear=False):`` changes them for a block (tests, benchmarks).
Model code never depends on any of them being on.
"""

from sat2sound_core.accel.options import AccelOptions, options, override

__all__ = ["AccelOptions", "options", "override"]
