"""CPU fast paths swapped in from outside the model: oneDNN linear kernels and prepacked weights, the
audio tower's native C++ kernels, and glibc allocator tuning. Model code never depends on them being on.
"""
