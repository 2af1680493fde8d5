"""char_map: one owner of characters, exact round trips, clear errors."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctclab.alphabet import ENGLISH, ENGLISH_DIGITS, get_alphabet, int_sequence_to_text, text_to_int_sequence


@pytest.mark.parametrize(
    "text, expected",
    [
        ("'", [0]),
        (" ", [1]),
        ("a", [2]),
        ("z", [27]),
        ("hi a'", [9, 10, 1, 2, 0]),
        ("don't", [5, 16, 15, 0, 21]),
    ],
)
def test_course_indices(text, expected):
    assert text_to_int_sequence(text) == expected
    assert int_sequence_to_text(expected) == text


def test_blank_is_last_and_course_sized():
    assert (ENGLISH.blank_index, ENGLISH.output_dim) == (28, 29)
    assert (ENGLISH_DIGITS.blank_index, ENGLISH_DIGITS.output_dim) == (38, 39)
    assert ENGLISH_DIGITS.text_to_int_sequence("0 9") == [28, 1, 37]


def test_blank_is_dropped_when_decoding():
    assert int_sequence_to_text([9, 28, 10, 28]) == "hi"


@given(st.text(alphabet="' " + string.ascii_lowercase, min_size=1))
def test_round_trip(text):
    assert int_sequence_to_text(text_to_int_sequence(text)) == text


@pytest.mark.parametrize(
    "text, alphabet, fragment",
    [
        ("café", ENGLISH, "['é']"),
        ("room 101", ENGLISH, "['0', '1']"),
        ("Hello", ENGLISH, "['H']"),
        ("", ENGLISH, "empty text"),
        ("a-b", ENGLISH_DIGITS, "['-']"),
    ],
)
def test_errors_name_character_and_text(text, alphabet, fragment):
    with pytest.raises(ValueError) as error:
        alphabet.text_to_int_sequence(text)
    assert fragment in str(error.value)
    if text:
        assert repr(text) in str(error.value)


def test_bad_index_and_unknown_alphabet():
    with pytest.raises(ValueError, match="index 29"):
        int_sequence_to_text([29])
    with pytest.raises(ValueError, match="unknown alphabet"):
        get_alphabet("klingon")
    assert get_alphabet("english") is ENGLISH
