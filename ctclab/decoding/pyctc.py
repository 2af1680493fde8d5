"""pyctcdecode with our n-gram LM: an ``AbstractLanguageModel`` adapter, so both decoders can be
run with exactly the same LM (tests and ``benchmarks/decode.py`` compare them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyctcdecode.language_model import AbstractLanguageModel

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.beam import LN10, oov_penalty

if TYPE_CHECKING:
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    from ctclab.decoding.lm import NGramLM


class PyctcdecodeNGram(AbstractLanguageModel):
    """pyctcdecode's language-model interface over an :class:`lm.NGramLM`.

    Scores exactly what :func:`prefix_beam_search_nbest` scores: per finished word
    ``alpha ln p(word | last n-1 words) + beta`` (+ ``oov_penalty`` outside the
    vocabulary), ``alpha ln p(</s> | ...)`` at the end, natural logs, and the same penalty for a
    partial word that begins no vocabulary word. The LM state is the tuple of the last n-1 words.
    """

    def __init__(self, lm: NGramLM, alpha: float = 0.5, beta: float = 1.0, unk_offset: float = -10.0):
        self.lm, self.alpha, self.beta, self.unk_offset = lm, alpha, beta, unk_offset

    @property
    def order(self) -> int:
        return self.lm.order

    def get_start_state(self) -> Any:  # a tuple[str, ...]; pyctcdecode's hint (a list of kenlm states) is KenLM's
        return ("<s>",)

    def score_partial_token(self, partial_token: str) -> float:
        return 0.0 if partial_token in self.lm.word_prefixes else oov_penalty(partial_token, self.unk_offset)

    def score(self, prev_state: tuple[str, ...], word: str, is_last_word: bool = False) -> tuple[float, tuple]:
        log10, bonus, state = 0.0, 0.0, prev_state
        if word:  # pyctcdecode asks for "" when a transcript ends with a space
            log10 = self.lm.log10_prob(word, state)
            bonus = self.beta + (0.0 if word in self.lm.words else oov_penalty(word, self.unk_offset))
            state = (*state, word)[1 - self.lm.order :] if self.lm.order > 1 else ()
        if is_last_word:
            log10 += self.lm.log10_prob("</s>", state)
        return self.alpha * LN10 * log10 + bonus, state


def pyctcdecode_labels(alphabet: Alphabet = ENGLISH) -> list[str]:
    """pyctcdecode's label list for our alphabet: the characters, "" for the blank."""
    assert alphabet.blank_index == len(alphabet.characters)  # char_map puts the blank last
    return list(alphabet.characters) + [""]


def pyctcdecode_decoder(
    alphabet: Alphabet = ENGLISH,
    lm: NGramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    unk_offset: float = -10.0,
) -> BeamSearchDecoderCTC:
    """A pyctcdecode ``BeamSearchDecoderCTC`` for our alphabet, with our LM when given."""
    from pyctcdecode.alphabet import Alphabet as PyctcdecodeAlphabet
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    language_model = PyctcdecodeNGram(lm, alpha, beta, unk_offset) if lm is not None else None
    return BeamSearchDecoderCTC(PyctcdecodeAlphabet.build_alphabet(pyctcdecode_labels(alphabet)), language_model)
