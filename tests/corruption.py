"""Corrupted copies of a file's bytes, drawn by hypothesis, for the property tests of the file readers."""

from __future__ import annotations

from hypothesis import strategies as st


def draw_corruption(data, original: bytes) -> tuple[str, bytes]:
    """How (``"truncate"``, ``"append"`` or ``"flip"``) and ``original`` so corrupted: truncated, extended by
    1-16 bytes, or with one byte changed. ``data`` is hypothesis's ``st.data()``; each choice is drawn with a
    label, so a failure prints how the bytes were corrupted."""
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]), label="how")
    if how == "truncate":
        return how, original[: data.draw(st.integers(0, max(0, len(original) - 1)), label="length")]
    if how == "append":
        return how, original + data.draw(st.binary(min_size=1, max_size=16), label="extra")
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]), label="byte")
    return how, original[:position] + bytes([byte]) + original[position + 1 :]
