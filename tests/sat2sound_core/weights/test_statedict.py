"""The one key/shape comparison every weights loader uses."""

from __future__ import annotations

from sat2sound_core.weights.statedict import key_mismatch


def test_matching_weights_give_no_description() -> None:
    assert key_mismatch({"a": (2, 3), "b": [4]}, {"b": (4,), "a": [2, 3]}) == ""
    assert key_mismatch({"a": (2,), "tied": (5,)}, {"a": (2,)}, allowed_missing={"tied"}) == ""


def test_every_kind_of_difference_is_counted_and_named() -> None:
    expected = {f"k{i}": (i + 1,) for i in range(12)}
    found = {k: v for k, v in expected.items() if k not in ("k0", "k1")}
    found.update({"extra": (1,), "k5": (99,)})
    text = key_mismatch(expected, found)
    assert text == ("2 missing key(s): k0, k1; 1 unexpected key(s): extra; "
                    "1 shape mismatch(es): k5: file (99,) vs model (6,)")
    many = key_mismatch(expected, {}, show=3)
    assert many == "12 missing key(s): k0, k1, k10 … (+9 more)"
    # an allowed-missing key that is present is still shape-checked
    assert "tied: file (4,) vs model (5,)" in key_mismatch({"tied": (5,)}, {"tied": (4,)}, allowed_missing={"tied"})
