"""The course's ``char_map``: characters, their indices and the CTC blank (course names).

The alphabet itself lives in :mod:`ctclab.alphabet`, the one owner of characters and the blank.

    >>> text_to_int_sequence("hi a'")
    [9, 10, 1, 2, 0]
    >>> int_sequence_to_text([9, 10, 1, 2, 0])
    "hi a'"
"""

from ctclab.alphabet import ENGLISH, ENGLISH_DIGITS, Alphabet, get_alphabet, int_sequence_to_text, text_to_int_sequence

__all__ = ["ENGLISH", "ENGLISH_DIGITS", "Alphabet", "get_alphabet", "int_sequence_to_text", "text_to_int_sequence"]
