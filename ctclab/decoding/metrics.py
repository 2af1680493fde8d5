"""How wrong a transcript is: edit distance, WER and CER.

- WER: word-level edit distance / number of reference words,
- CER: character-level edit distance / number of reference characters (spaces included),

both summed over a corpus before dividing (the convention of jiwer and of the DS2 papers), not
averaged per utterance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

# the beam search lives in its own module; these names stay importable from here


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (unit cost substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def _error_rate(
    references: Sequence[str] | str, hypotheses: Sequence[str] | str, split: Callable[[str], Sequence[str]]
) -> float:
    if isinstance(references, str):
        references, hypotheses = [references], [cast(str, hypotheses)]
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
