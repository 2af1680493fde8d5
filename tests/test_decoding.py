"""Greedy CTC decoding and WER / CER, checked against hand values and jiwer."""

import jiwer
import numpy as np
import pytest

from char_map import ENGLISH
from decoding import cer, collapse_path, edit_distance, greedy_decode, wer

B = ENGLISH.blank_index


@pytest.mark.parametrize(
    "path, expected",
    [
        ([], []),
        ([B, B], []),
        ([2, 2, 2], [2]),
        ([2, B, 2], [2, 2]),
        ([B, 9, 9, B, 10, 10, B], [9, 10]),
        ([13, 13, B, 13, 16, 16, 1], [13, 13, 16, 1]),
    ],
)
def test_collapse(path, expected):
    assert collapse_path(path, B) == expected


def test_greedy_decode_uses_only_valid_frames():
    path = [9, 9, B, 10, B, 2]  # "hi" then a padded frame that would add "a"
    probabilities = np.eye(ENGLISH.output_dim)[path]  # (6, 29) one-hot
    assert greedy_decode(probabilities) == "hia"
    assert greedy_decode(probabilities, length=5) == "hi"


@pytest.mark.parametrize(
    "reference, hypothesis, distance",
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_edit_distance(reference, hypothesis, distance):
    assert edit_distance(reference, hypothesis) == distance


CASES = [
    (["the cat sat"], ["the cat sat"]),
    (["the cat sat"], ["the bat sat down"]),
    (["turn left at the second corner"], ["turn lft at second corner"]),
    (["queen of hearts", "ten past nine"], ["queen of harts", ""]),
    (["a b c d", "one"], ["a c d e f", "won one"]),
    (["march twenty third", "seven"], ["marsh twenty", "seventy seven"]),
]


@pytest.mark.parametrize("references, hypotheses", CASES)
def test_wer_cer_agree_with_jiwer(references, hypotheses):
    assert wer(references, hypotheses) == pytest.approx(jiwer.wer(references, hypotheses))
    assert cer(references, hypotheses) == pytest.approx(jiwer.cer(references, hypotheses))


def test_hand_computed_rates():
    assert wer("the cat sat", "the bat sat down") == pytest.approx(2 / 3)
    assert cer("abcd", "abxd") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
