"""How wrong a transcript is: edit distance, WER and CER, and their error breakdown.

- WER: word-level edit distance / number of reference words,
- CER: character-level edit distance / number of reference characters (spaces included),

both summed over a corpus before dividing (the convention of jiwer and of the DS2 papers), not
averaged per utterance. :func:`error_counts` splits the same edit distance into substitutions,
deletions and insertions (seed 001's tables report all three rates beside the CER).

Ties. Several minimum-edit alignments may exist ("ab" -> "ba" is two substitutions, or one
deletion and one insertion around a hit). We count the one with the most substitutions. Every
alignment has D - I = len(reference) - len(hypothesis) and S + D + I = edit distance, so fixing
S fixes D and I: the rule "prefer substitutions, then deletions" needs no second step, and the
counts are unique. jiwer (rapidfuzz's alignment) may pick another of the tied alignments, with
the same S + D + I and the same D - I but fewer substitutions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

# the beam search lives in its own module; these names stay importable from here

UNITS = ("char", "word")  # what error_counts aligns: characters (as cer) or words (as wer)


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (unit cost substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def _words(text: str) -> list[str]:
    """Words split on whitespace (the units of WER)."""
    return text.split()


def _characters(text: str) -> list[str]:
    """Characters of whitespace-normalized text, single spaces included (the units of CER)."""
    return list(" ".join(text.split()))


def _unit_pairs(
    references: Sequence[str] | str, hypotheses: Sequence[str] | str, split: Callable[[str], Sequence[str]]
) -> Iterator[tuple[Sequence[str], Sequence[str]]]:
    """(reference units, hypothesis units) per utterance; one string each is a one-utterance corpus."""
    if isinstance(references, str):
        references, hypotheses = [references], [cast(str, hypotheses)]
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    for reference, hypothesis in zip(references, hypotheses):
        reference_units = split(reference)
        if not reference_units:
            raise ValueError("an empty reference has no error rate")
        yield reference_units, split(hypothesis)


def _error_rate(
    references: Sequence[str] | str, hypotheses: Sequence[str] | str, split: Callable[[str], Sequence[str]]
) -> float:
    errors = total = 0
    for reference_units, hypothesis_units in _unit_pairs(references, hypotheses, split):
        errors += edit_distance(reference_units, hypothesis_units)
        total += len(reference_units)
    return errors / total


def wer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus word error rate (words split on whitespace)."""
    return _error_rate(references, hypotheses, _words)


def cer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus character error rate over whitespace-normalized text (spaces count as characters)."""
    return _error_rate(references, hypotheses, _characters)


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations of the alignment of a corpus (or one utterance) against its references.

    Attributes:
        substitutions: reference units replaced by another unit (S).
        deletions: reference units missing from the hypothesis (D).
        insertions: hypothesis units with no reference unit (I).
        reference_length: units in the references (N), the denominator of every rate.

    Counts of several utterances add up: ``sum(counts, ErrorCounts())``.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )

    @property
    def errors(self) -> int:
        """S + D + I: the edit distance."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def hits(self) -> int:
        """Reference units matched exactly: N - S - D."""
        return self.reference_length - self.substitutions - self.deletions

    def _per_reference_unit(self, count: int) -> float:
        if self.reference_length == 0:
            raise ValueError("no reference units: the rates are undefined")
        return count / self.reference_length

    @property
    def rate(self) -> float:
        """(S + D + I) / N: the WER or CER (may exceed 1 with many insertions)."""
        return self._per_reference_unit(self.errors)

    @property
    def substitution_rate(self) -> float:
        """S / N."""
        return self._per_reference_unit(self.substitutions)

    @property
    def deletion_rate(self) -> float:
        """D / N."""
        return self._per_reference_unit(self.deletions)

    @property
    def insertion_rate(self) -> float:
        """I / N."""
        return self._per_reference_unit(self.insertions)


def alignment_counts(reference: Sequence, hypothesis: Sequence) -> ErrorCounts:
    """S, D and I of the minimum-edit alignment with the most substitutions (see the module docstring).

    One dynamic programme scores every alignment as ``edits * scale - substitutions`` with
    ``scale`` above any possible substitution count, so the minimum score has the fewest edits
    and, among those, the most substitutions; D and I follow from S (module docstring).

    Args:
        reference: the reference units (characters, words, label ids).
        hypothesis: the hypothesis units.

    Returns:
        ErrorCounts with reference_length = len(reference).
    """
    reference_length, hypothesis_length = len(reference), len(hypothesis)
    scale = reference_length + hypothesis_length + 1  # > min(N, M) >= any substitution count
    previous = [j * scale for j in range(hypothesis_length + 1)]  # j insertions
    for i, ref_item in enumerate(reference, start=1):
        current = [i * scale]  # i deletions
        for j, hyp_item in enumerate(hypothesis, start=1):
            diagonal = previous[j - 1] + (scale - 1 if ref_item != hyp_item else 0)  # substitution or hit
            current.append(min(diagonal, previous[j] + scale, current[j - 1] + scale))
        previous = current
    score = previous[-1]
    errors = -(-score // scale)  # ceil: score = errors * scale - substitutions, 0 <= substitutions < scale
    substitutions = errors * scale - score
    # D + I = errors - S and D - I = N - M
    deletions = (errors - substitutions + reference_length - hypothesis_length) // 2
    insertions = errors - substitutions - deletions
    return ErrorCounts(substitutions, deletions, insertions, reference_length)


def error_counts(references: Sequence[str] | str, hypotheses: Sequence[str] | str, unit: str = "char") -> ErrorCounts:
    """Corpus substitutions, deletions and insertions at the character or word level.

    The units and checks are those of :func:`cer` ("char") and :func:`wer` ("word"), so
    ``error_counts(r, h, "char").rate == cer(r, h)`` and ``error_counts(r, h, "word").rate == wer(r, h)``.

    Args:
        references: reference transcripts (or one string).
        hypotheses: decoded transcripts, one per reference (or one string).
        unit: "char" or "word".

    Returns:
        The summed ErrorCounts over all utterances.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    split = _characters if unit == "char" else _words
    total = ErrorCounts()
    for reference_units, hypothesis_units in _unit_pairs(references, hypotheses, split):
        total += alignment_counts(reference_units, hypothesis_units)
    return total


def error_breakdown(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> dict[str, float]:
    """The WER and the CER split into their parts, as a results table's columns.

    Returns:
        {"WER substitutions", "WER deletions", "WER insertions", "CER substitutions",
        "CER deletions", "CER insertions"}: rates per reference word / character, each triple
        adding up to :func:`wer` / :func:`cer` of the same transcripts.
    """
    parts = {}
    for unit, rate in (("word", "WER"), ("char", "CER")):
        counts = error_counts(references, hypotheses, unit)
        parts[f"{rate} substitutions"] = counts.substitution_rate
        parts[f"{rate} deletions"] = counts.deletion_rate
        parts[f"{rate} insertions"] = counts.insertion_rate
    return parts
