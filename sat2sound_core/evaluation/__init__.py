"""Reproducing the paper's evaluation: retrieval metrics (R@10 %, median rank) computed exactly as the
official code does, vectorised so a 10,000-row gallery takes well under a second; the GeoSound /
SoundingEarth rows (:mod:`.data`), a resumable embedding cache (:mod:`.cache`), the composed variants in
the official JSON schema (:mod:`.variants`), metadata subsets the official way (:mod:`.subset`), the
paper's tables side by side (:mod:`.paper`) and the whole run (:mod:`.run`, ``sat2sound evaluate``).
"""
