"""Turning user inputs into model tensors exactly as the official evaluation does: images (crop, resize,
normalise), audio (decode, resample, log-mel windows) and metadata (the official encodings and masks).
"""
