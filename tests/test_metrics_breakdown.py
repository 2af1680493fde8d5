"""Substitutions, deletions and insertions: hand tables, a brute-force aligner, wer / cer and jiwer."""

import functools

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctclab.decoding.metrics import (
    ErrorCounts,
    alignment_counts,
    cer,
    edit_distance,
    error_breakdown,
    error_counts,
    wer,
)

CHARACTER_TABLE = [  # reference, hypothesis -> S, D, I (hand-computed)
    ("kitten", "sitting", 2, 0, 1),  # k->s, e->i, +g
    ("abcd", "abxd", 1, 0, 0),
    ("abc", "abc", 0, 0, 0),
    ("abc", "", 0, 3, 0),
    ("a", "abc", 0, 0, 2),
    ("flaw", "lawn", 0, 1, 1),  # -f, +n: two edits; four substitutions would be four
    ("ab", "ba", 2, 0, 0),  # tie: 2 S, or -a +a around the hit b: the rule takes the substitutions
    ("intention", "execution", 5, 0, 0),  # tie with the textbook's 3 S, 1 D, 1 I
    ("go  left", " go left ", 0, 0, 0),  # whitespace normalized as cer does
    ("to be", "tobe", 0, 1, 0),  # the space counts
]
WORD_TABLE = [
    ("the cat sat", "the bat sat down", 1, 0, 1),
    ("a b c", "b c a", 0, 1, 1),  # two edits; all-substitution would take three
    ("turn left now", "turn now", 0, 1, 0),
    ("one", "one two three", 0, 0, 2),
    ("seven of hearts", "eleven of darts", 2, 0, 0),
]


@pytest.mark.parametrize("reference, hypothesis, substitutions, deletions, insertions", CHARACTER_TABLE)
def test_character_table(reference, hypothesis, substitutions, deletions, insertions):
    counts = error_counts(reference, hypothesis, unit="char")
    reference_length = len(" ".join(reference.split()))
    assert counts == ErrorCounts(substitutions, deletions, insertions, reference_length)
    assert counts.rate == pytest.approx(cer(reference, hypothesis))


@pytest.mark.parametrize("reference, hypothesis, substitutions, deletions, insertions", WORD_TABLE)
def test_word_table(reference, hypothesis, substitutions, deletions, insertions):
    counts = error_counts(reference, hypothesis, unit="word")
    assert counts == ErrorCounts(substitutions, deletions, insertions, len(reference.split()))
    assert counts.rate == pytest.approx(wer(reference, hypothesis))


def test_rates_and_corpus_sums():
    references, hypotheses = ["the cat sat", "turn left now"], ["the bat sat down", "turn now"]
    counts = error_counts(references, hypotheses, unit="word")
    assert counts == ErrorCounts(1, 1, 1, 6)
    assert counts == error_counts(references[0], hypotheses[0], "word") + error_counts(
        references[1], hypotheses[1], "word"
    )
    assert (counts.rate, counts.substitution_rate, counts.deletion_rate, counts.insertion_rate) == (
        pytest.approx(3 / 6),
        pytest.approx(1 / 6),
        pytest.approx(1 / 6),
        pytest.approx(1 / 6),
    )
    assert (counts.errors, counts.hits) == (3, 4)
    assert ErrorCounts(0, 0, 5, 1).rate == 5.0  # insertions can push a rate above 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="'letter'"):
        error_counts("a", "a", unit="letter")
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_counts(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty reference"):
        error_counts(["a", "  "], ["a", "b"])
    with pytest.raises(ValueError, match="no reference units"):
        _ = ErrorCounts().rate


def brute_force_counts(reference, hypothesis):
    """Every alignment's (S, D, I) by exhaustive recursion; the fewest edits, then the most substitutions."""

    @functools.cache
    def triples(i, j):  # the (S, D, I) of every alignment of reference[i:] with hypothesis[j:]
        if i == len(reference):
            return {(0, 0, len(hypothesis) - j)}
        if j == len(hypothesis):
            return {(0, len(reference) - i, 0)}
        found = {(s, d + 1, n) for s, d, n in triples(i + 1, j)}
        found |= {(s, d, n + 1) for s, d, n in triples(i, j + 1)}
        step = int(reference[i] != hypothesis[j])
        found |= {(s + step, d, n) for s, d, n in triples(i + 1, j + 1)}
        return frozenset(found)

    substitutions, deletions, insertions = min(triples(0, 0), key=lambda t: (sum(t), -t[0]))
    return ErrorCounts(substitutions, deletions, insertions, len(reference))


SHORT = st.text(alphabet="abc", max_size=7)


@settings(max_examples=300, deadline=None)
@given(SHORT, SHORT)
def test_alignment_matches_brute_force_and_edit_distance(reference, hypothesis):
    counts = alignment_counts(reference, hypothesis)
    assert counts == brute_force_counts(reference, hypothesis)
    assert counts.errors == edit_distance(reference, hypothesis)


WORDS = st.lists(st.sampled_from(["a", "b", "cat", "sat"]), min_size=1, max_size=6).map(" ".join)
TEXTS = st.lists(st.text(alphabet="ab", min_size=1, max_size=4), min_size=1, max_size=3).map(" ".join)


def check_against_jiwer(pairs, unit, process, rate):
    references, hypotheses = [list(column) for column in zip(*pairs)]
    counts, theirs = error_counts(references, hypotheses, unit), process(references, hypotheses)
    assert counts.rate == pytest.approx(rate(references, hypotheses))
    assert counts.errors == theirs.substitutions + theirs.deletions + theirs.insertions
    assert counts.deletions - counts.insertions == theirs.deletions - theirs.insertions
    assert counts.substitutions >= theirs.substitutions


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(TEXTS, TEXTS), min_size=1, max_size=3), st.lists(st.tuples(WORDS, WORDS), min_size=1, max_size=3)
)
def test_agrees_with_cer_wer_and_jiwer(character_pairs, word_pairs):
    """Same S + D + I and D - I as jiwer; at least jiwer's substitutions (it may pick another tied alignment)."""
    check_against_jiwer(character_pairs, "char", jiwer.process_characters, cer)
    check_against_jiwer(word_pairs, "word", jiwer.process_words, wer)


def test_error_breakdown_by_hand_and_adding_up_to_wer_and_cer():
    # words: "sat" -> "sit" (S), "down" inserted (I); characters: a -> i (S), " down" inserted (5 I);
    # both alignments are the only ones of their length (ref is not a subsequence of hyp: no 'a' after 's')
    reference, hypothesis = "the cat sat", "the cat sit down"
    parts = error_breakdown(reference, hypothesis)
    assert parts == {
        "WER substitutions": pytest.approx(1 / 3),
        "WER deletions": 0,
        "WER insertions": pytest.approx(1 / 3),
        "CER substitutions": pytest.approx(1 / 11),
        "CER deletions": 0,
        "CER insertions": pytest.approx(5 / 11),
    }
    references, hypotheses = ["ace of spades", "turn left"], ["ace of spade", "turn lft at"]
    parts = error_breakdown(references, hypotheses)
    for rate, total in (("WER", jiwer.wer(references, hypotheses)), ("CER", jiwer.cer(references, hypotheses))):
        kinds = ("substitutions", "deletions", "insertions")
        assert sum(parts[f"{rate} {kind}"] for kind in kinds) == pytest.approx(total)
