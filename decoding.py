"""From per-frame character probabilities to text, and how wrong the text is.

Two decoders: greedy (best-path) decoding, and a CTC prefix beam search fused with a word n-gram
language model (:func:`prefix_beam_search`, :func:`prefix_beam_search_nbest`, implemented in
beam_search.py and re-exported here), which maximizes
``Q(y) = ln P_ctc(y|x) + alpha ln P_lm(y) + beta word_count(y)`` (natural logs; seed 002's
objective). And the two error rates used throughout the course:

- WER: word-level edit distance / number of reference words,
- CER: character-level edit distance / number of reference characters (spaces included),

both summed over a corpus before dividing (the convention of jiwer and of the DS2 papers), not
averaged per utterance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from char_map import ENGLISH, Alphabet


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


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (unit cost substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def _error_rate(references: Sequence[str], hypotheses: Sequence[str], split) -> float:
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses):
        reference_units = split(reference)
        if not reference_units:
            raise ValueError("an empty reference has no error rate")
        errors += edit_distance(reference_units, split(hypothesis))
        total += len(reference_units)
    return errors / total


def wer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus word error rate (words split on whitespace)."""
    return _error_rate(references, hypotheses, str.split)


def cer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus character error rate over whitespace-normalized text (spaces count as characters)."""
    return _error_rate(references, hypotheses, lambda text: list(" ".join(text.split())))


# the beam search lives in its own module; these names stay importable from here
from beam_search import LN10, Hypothesis, oov_penalty, prefix_beam_search, prefix_beam_search_nbest  # noqa: E402,F401
