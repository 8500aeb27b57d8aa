"""Where weights come from and how they are read: the checkpoint registry, the restricted reader of
official Lightning ``.ckpt`` files, the converted safetensors cache, Hub downloads (whole files and HTTP
range subsets), the key/shape check every loader shares, and :func:`~sat2sound_core.weights.loading.load_model`.
"""
