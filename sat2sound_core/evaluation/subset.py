"""Evaluating a withmeta checkpoint with only some of its metadata parts, the way the official code does.

The official ``evaluate.py --metadata_type asource_time`` builds the model with that metadata type and
loads the full checkpoint with ``strict=False``: the fuser then has embedders only for the named parts
(the others' weights are dropped), and its transformer sees 196 + (number of named parts) tokens, in the
fixed model order. That is not the same computation as marking the other fields unknown: an unknown token
is still a position whose zero output takes part in the codebook max-pool. ``none`` drops the fuser.
"""

from __future__ import annotations

import dataclasses

from sat2sound_core.common.errors import ConfigError, InputError
from sat2sound_core.model.config import metadata_tokens_for
from sat2sound_core.model.sat2sound import Sat2Sound


def parse_subset(metadata_type: str, full: str) -> str:
    """``metadata_type`` checked against the checkpoint's ``full`` set (order-free, ``none`` allowed)."""
    try:
        tokens = metadata_tokens_for(metadata_type.strip())
    except ConfigError as exc:  # names the valid parts
        raise InputError(f"--metadata: {exc}") from None
    have = metadata_tokens_for(full)
    lacking = [t for t in tokens if t not in have]
    if lacking:
        raise InputError(f"--metadata {metadata_type!r} names {', '.join(lacking)}, which this checkpoint lacks "
                         f"(it has {'_'.join(have) or 'none'}); use a subset of those parts joined by '_'")
    return "_".join(tokens) if tokens else "none"


def with_metadata_subset(model: Sat2Sound, metadata_type: str) -> Sat2Sound:
    """A model that shares ``model``'s weights but fuses only the metadata parts of ``metadata_type``.

    Returns ``model`` itself when the subset is its full set. The parameters are the same tensors
    (``load_state_dict(assign=True)``), so no weights are copied; the text encoder is shared too.
    """
    subset = parse_subset(metadata_type, model.config.metadata_type)
    if set(metadata_tokens_for(subset)) == set(metadata_tokens_for(model.config.metadata_type)):
        return model
    new = Sat2Sound(dataclasses.replace(model.config, metadata_type=subset), init="empty")
    wanted = new.state_dict()
    source = model.state_dict()
    missing = [k for k in wanted if k not in source]
    if missing:  # cannot happen for a subset of the same architecture
        raise InputError(f"the checkpoint has no weights for {missing[:3]} needed by metadata {subset!r}")
    new.load_state_dict({k: source[k] for k in wanted}, strict=True, assign=True)
    new.to(model.device)
    if model.precision != "fp32":
        new.set_precision(model.precision)
    setattr(new, "text_encoder", model.text_encoder)  # noqa: B010 (property with a custom setter)
    return new
