"""Words across tokenizers: which whitespace-separated word of a text each token belongs to.

A token belongs to the word its last character falls in (from the tokenizer's character ``offsets``), which
works the same for WordPiece, byte-level BPE and SentencePiece, so two models with different tokenizers can
be compared on the same words (``viz.compare``, ``sae.compare``). Special tokens and padding (empty spans)
belong to no word.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence


def words_of(text: str) -> list[tuple[int, int, str]]:
    """The whitespace-separated words of ``text`` as (start, end, word)."""
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]


def token_words(offsets: Sequence[tuple[int, int]], text: str) -> list[int | None]:
    """For each token (its character span), the index of the word its last character falls in; None for
    special tokens and spans with no character in a word."""
    spans = words_of(text)
    starts = [start for start, _, _ in spans]
    result = []
    for start, end in offsets:
        word = None
        if end > start:
            char = end - 1
            candidate = bisect.bisect_right(starts, char) - 1  # the last word starting at or before char
            if candidate >= 0 and char < spans[candidate][1]:
                word = candidate
        result.append(word)
    return result
