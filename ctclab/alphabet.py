"""The alphabets: the one place that owns characters, their indices and the CTC blank.

Every other module asks an :class:`Alphabet` for indices and for the blank; no module writes
a character index or the blank by hand.

The default English alphabet keeps the course's order (apostrophe 0, space 1, a-z 2-27, blank
28), so a 29-way softmax still reads the same. Unlike the original course's ``char_map.py``,
``int_sequence_to_text`` is the exact inverse of ``text_to_int_sequence`` (the course shifted the
reverse map by one and patched the shift in the notebook).

Example:
    >>> text_to_int_sequence("hi a'")
    [9, 10, 1, 2, 0]
    >>> int_sequence_to_text([9, 10, 1, 2, 0])
    "hi a'"
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of output characters plus one CTC blank placed after them.

    Attributes:
        name: short identifier used in configs and file names.
        characters: the characters in index order; index ``i`` is ``characters[i]``.
    """

    name: str
    characters: str
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.characters)) != len(self.characters):
            raise ValueError(f"alphabet {self.name!r} repeats a character: {self.characters!r}")
        object.__setattr__(self, "_index", {ch: i for i, ch in enumerate(self.characters)})

    @property
    def blank_index(self) -> int:
        """Index of the CTC blank: one past the last character."""
        return len(self.characters)

    @property
    def output_dim(self) -> int:
        """Size of the softmax a model needs: every character plus the blank."""
        return len(self.characters) + 1

    def unknown_characters(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that this alphabet cannot encode, in order."""
        return sorted({ch for ch in text if ch not in self._index})

    def text_to_int_sequence(self, text: str) -> list[int]:
        """Encode text as a list of character indices.

        Raises:
            ValueError: if ``text`` is empty or has a character outside the alphabet; the
                message names the character(s) and the text.
        """
        if not text:
            raise ValueError(f"empty text cannot be a CTC label (alphabet {self.name!r})")
        unknown = self.unknown_characters(text)
        if unknown:
            raise ValueError(f"characters {unknown!r} of text {text!r} are not in alphabet {self.name!r}")
        return [self._index[ch] for ch in text]

    def int_sequence_to_text(self, sequence: Iterable[int]) -> str:
        """Decode character indices back to text; blanks are dropped.

        Raises:
            ValueError: for an index that is neither a character nor the blank.
        """
        characters = []
        for index in sequence:
            index = int(index)
            if index == self.blank_index:
                continue
            if not 0 <= index < len(self.characters):
                raise ValueError(
                    f"index {index} is outside alphabet {self.name!r} "
                    f"(0..{len(self.characters) - 1}, blank {self.blank_index})"
                )
            characters.append(self.characters[index])
        return "".join(characters)


ENGLISH = Alphabet("english", "' " + string.ascii_lowercase)
"""The course alphabet: apostrophe, space, a-z; blank 28; 29 outputs."""

ENGLISH_DIGITS = Alphabet("english_digits", "' " + string.ascii_lowercase + string.digits)
"""English plus 0-9, for closed-vocabulary data written with digits; blank 38; 39 outputs."""

ALPHABETS = {alphabet.name: alphabet for alphabet in (ENGLISH, ENGLISH_DIGITS)}


def get_alphabet(name: str | Alphabet) -> Alphabet:
    """Return the alphabet called ``name`` (an :class:`Alphabet` is returned unchanged)."""
    if isinstance(name, Alphabet):
        return name
    if name not in ALPHABETS:
        raise ValueError(f"unknown alphabet {name!r}; choose one of {sorted(ALPHABETS)}")
    return ALPHABETS[name]


def text_to_int_sequence(text: str, alphabet: Alphabet = ENGLISH) -> list[int]:
    """Course name: encode ``text`` with ``alphabet`` (English by default)."""
    return alphabet.text_to_int_sequence(text)


def int_sequence_to_text(sequence: Sequence[int], alphabet: Alphabet = ENGLISH) -> str:
    """Course name: decode indices with ``alphabet`` (English by default); blanks dropped."""
    return alphabet.int_sequence_to_text(sequence)
