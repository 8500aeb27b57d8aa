"""Where weights come from and how they are read.

``registry`` (everything the product downloads, as data), ``hub`` (the one Hugging Face client: whole
files, repo files, HTTP-range safetensors subsets, download progress), ``checkpoints`` (the restricted
reader of official Lightning ``.ckpt`` files and the converted safetensors cache), ``statedict`` (the
key/shape check every loader shares), ``loading`` (:func:`~sat2sound_core.weights.loading.load_model`),
``t5`` (the FLAN-T5 text encoder's weights) and ``inventory`` (what is on this machine, for the CLI and
the app).
"""
