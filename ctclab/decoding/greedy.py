"""Greedy (best-path) CTC decoding: the most likely symbol per frame, repeats merged, blanks dropped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet

# the beam search lives in its own module; these names stay importable from here


def greedy_decode(probabilities: np.ndarray, length: int | None = None, alphabet: Alphabet = ENGLISH) -> str:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        probabilities: (T, C) per-frame scores (probabilities, log-probabilities or logits:
            only the argmax matters).
        length: number of valid frames (the model's output_length); None uses all T.
        alphabet: maps indices to characters and names the blank.

    Returns:
        The decoded text.
    """
    path = np.argmax(probabilities[:length], axis=-1)  # (T,)
    return alphabet.int_sequence_to_text(collapse_path(path, alphabet.blank_index))


def collapse_path(path: Sequence[int], blank_index: int) -> list[int]:
    """The CTC collapse B(path): merge runs of the same index, then remove blanks."""
    collapsed, previous = [], None
    for index in path:
        index = int(index)
        if index != previous and index != blank_index:
            collapsed.append(index)
        previous = index
    return collapsed
