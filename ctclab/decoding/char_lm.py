"""A character n-gram language model, and its scorer for the CTC prefix beam search.

EMG typing is scored with a character LM (emg2qwerty decodes with a 6-gram character KenLM):
a 300 ms window holds one or two keystrokes, so a word LM, which scores a word only when a space
completes it, has nothing to say. :class:`CharNGramLM` predicts the next character of an
:class:`~ctclab.alphabet.Alphabet` (or the sentence end ``</s>``) from the previous n - 1.

The model is :class:`~ctclab.decoding.lm.NGramLM` over character tokens: the same interpolated
modified Kneser-Ney smoothing and the same ARPA files, trained with a closed vocabulary (the
alphabet's characters and ``</s>``, so the probabilities of every context sum to 1 over them and
``<unk>`` is never predicted). ARPA separates tokens by white space, so the space character is
the token ``<space>`` (:data:`SPACE_TOKEN`); every other character is its own token.

Sentence start: a whole transcript is scored after ``<s>``, like the word LM does. A window cut
from the middle of a sentence has no sentence start, so ``sentence_start=False`` scores its first
characters with an empty or short context: the backoff form then uses the lower orders directly
(the Kneser-Ney unigram is a *continuation* distribution, how many distinct characters precede
a character, not its raw frequency; KenLM's null-context state scores the same way).

:class:`CharScorer` plugs the model into :func:`~ctclab.decoding.beam.prefix_beam_search`: each
character is scored when the search appends it, so the search ranks by
``Q(y) = ln P_ctc(y|x) + alpha ln P_charlm(y) + beta |y|`` (natural logs, |y| in characters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.lm import BOS, EOS, NGramLM

LN10 = math.log(10.0)  # the LM speaks log10; the search scores in nats (as beam.LN10)


SPACE_TOKEN = "<space>"  # the ARPA token of the space character (ARPA splits tokens on white space)
SENTENCE_END = EOS  # what log10_prob accepts as the "character" that ends a sentence


def _token(character: str) -> str:
    return SPACE_TOKEN if character == " " else character


def normalized(text: str) -> str:
    """``text`` as the decoder writes transcripts: white space runs folded to one space, ends stripped."""
    return " ".join(text.split())


class CharNGramLM:
    """A backoff character n-gram model over one alphabet; log10 probabilities (the ARPA convention).

    Build one with :meth:`train` or :meth:`load`. A *history* is the tuple of the last
    ``order - 1`` tokens (with ``<s>`` first while the sentence start is that close); it is what
    the search keeps per prefix.

    Attributes:
        model: the underlying token model (its tokens are the alphabet's characters).
        alphabet: the characters the model predicts, in index order.
        order: n, the longest n-gram, in characters.
        column_of: character (or ``</s>``) -> its column in :meth:`distribution`.
    """

    def __init__(self, model: NGramLM, alphabet: Alphabet):
        tokens = {_token(character) for character in alphabet.characters}
        stray = sorted(model.words - tokens)
        if stray:
            raise ValueError(f"tokens {stray!r} of the language model are not characters of alphabet {alphabet.name!r}")
        self.model, self.alphabet, self.order = model, alphabet, model.order
        self._tokens = [_token(character) for character in alphabet.characters] + [EOS]  # distribution columns
        self.column_of = {character: index for index, character in enumerate(alphabet.characters)} | {EOS: len(tokens)}
        self._distributions: dict[tuple[str, ...], np.ndarray] = {}  # history -> (C + 1,) log10 p

    @classmethod
    def train(cls, texts: Iterable[str], alphabet: Alphabet = ENGLISH, order: int = 6) -> CharNGramLM:
        """Fit an interpolated modified Kneser-Ney character model to sentences.

        Args:
            texts: one sentence per item, used as written after :func:`normalized` (no lower-casing:
                the alphabet decides); empty texts are skipped.
            alphabet: the characters; every character of every text must be one of them.
            order: n of the n-grams, in characters (emg2qwerty's KenLM: 6).

        Raises:
            ValueError: for order < 1, no characters at all, or a character outside the alphabet
                (the message names it and its text).
        """
        sentences = []
        for text in map(normalized, texts):
            if text:
                alphabet.text_to_int_sequence(text)  # ValueError naming a character outside the alphabet
                sentences.append([_token(character) for character in text])
        vocabulary = [_token(character) for character in alphabet.characters]
        return cls(NGramLM.train_tokens(sentences, order, closed_vocabulary=vocabulary), alphabet)

    # ------------------------------------------------------------------ histories

    def start_history(self, sentence_start: bool) -> tuple[str, ...]:
        """The history before the first character: ``(<s>,)``, or empty mid-sentence."""
        return (BOS,) if sentence_start and self.order > 1 else ()

    def advance(self, history: tuple[str, ...], character: str) -> tuple[str, ...]:
        """The history after one more character (the oldest token drops out past n - 1)."""
        return (*history, _token(character))[1 - self.order :] if self.order > 1 else ()

    def history_of(self, context: str, sentence_start: bool = False) -> tuple[str, ...]:
        """The history after the characters of ``context``.

        Raises:
            ValueError: for a character of ``context`` outside the alphabet (named).
        """
        self._check_characters(context, "context")
        tokens = (*self.start_history(sentence_start), *map(_token, context))
        return tokens[1 - self.order :] if self.order > 1 else ()

    def _check_characters(self, text: str, what: str) -> None:
        unknown = self.alphabet.unknown_characters(text)
        if unknown:
            raise ValueError(f"characters {unknown!r} of {what} {text!r} are not in alphabet {self.alphabet.name!r}")

    def distribution(self, history: tuple[str, ...]) -> np.ndarray:
        """log10 p(next | history) of every character, then of the sentence end.

        Returns:
            (C + 1,) float64, read-only: column i is ``alphabet.characters[i]``, column C ``</s>``.
        """
        row = self._distributions.get(history)
        if row is None:
            # this row cache stands in for NGramLM's (token, context) memo, which would hold C + 1 entries a history
            row = np.array([self.model._backoff_log10_prob(token, history) for token in self._tokens])
            row.setflags(write=False)
            self._distributions[history] = row
        return row

    # ------------------------------------------------------------------ queries

    def log10_prob(self, context: str, character: str, sentence_start: bool = False) -> float:
        """log10 p(character | the last n - 1 characters of context).

        Args:
            context: the preceding characters, oldest first (only the last n - 1 are used).
            character: the next character, or :data:`SENTENCE_END`.
            sentence_start: whether ``context`` begins at the sentence start (``<s>`` in front);
                False scores the first characters of a mid-sentence window from the lower orders.

        Raises:
            ValueError: for a character (of either argument) outside the alphabet.
        """
        if character not in self.column_of:
            raise ValueError(
                f"character {character!r} is not in alphabet {self.alphabet.name!r} (nor the sentence end {EOS!r})"
            )
        return float(self.distribution(self.history_of(context, sentence_start))[self.column_of[character]])

    def score_text(self, text: str, sentence_start: bool = True, sentence_end: bool = True) -> float:
        """log10 P_charlm(text): every character given the ones before it, then ``</s>`` if asked.

        Raises:
            ValueError: for a character outside the alphabet.
        """
        self._check_characters(text, "text")
        history, total = self.start_history(sentence_start), 0.0
        for character in text:
            total += self.distribution(history)[self.column_of[character]]
            history = self.advance(history, character)
        if sentence_end:
            total += self.distribution(history)[-1]
        return float(total)

    def perplexity(self, texts: Iterable[str], sentence_start: bool = True, sentence_end: bool = True) -> float:
        """Per-character perplexity ``10 ** (-sum log10 p / N)`` on :func:`normalized` texts.

        N counts the characters, plus one ``</s>`` per text with ``sentence_end``; a uniform model
        scores ``C + 1`` with the end and ``C`` without (C = ``len(alphabet.characters)``).

        Raises:
            ValueError: when every text is empty, or for a character outside the alphabet.
        """
        total, count = 0.0, 0
        for text in map(normalized, texts):
            if text:
                total += self.score_text(text, sentence_start, sentence_end)
                count += len(text) + int(sentence_end)
        if count == 0:
            raise ValueError("no characters to measure a perplexity on (every text is empty)")
        return float(10.0 ** (-total / count))

    # ------------------------------------------------------------------ files and the search

    def save(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (:meth:`NGramLM.save_arpa`; the space as ``<space>``)."""
        return self.model.save_arpa(path)

    @classmethod
    def load(cls, path: str | Path, alphabet: Alphabet = ENGLISH) -> CharNGramLM:
        """Read an ARPA character model (ours, or KenLM's with ``<space>`` for the space).

        Characters of the alphabet missing from the file score as its ``<unk>``.

        Raises:
            ARPAFormatError: a malformed file (see :meth:`NGramLM.load_arpa`).
            ValueError: a token of the file that is not a character of ``alphabet`` (named).
        """
        return cls(NGramLM.load_arpa(path), alphabet)

    def beam_scorer(
        self, alphabet: Alphabet, alpha: float, beta: float, merge_spaces: bool, sentence_bounds: bool
    ) -> CharScorer:
        """The scorer :func:`~ctclab.decoding.beam.prefix_beam_search_nbest` fuses this model with."""
        return CharScorer(self, alphabet, alpha, beta, merge_spaces, sentence_bounds)


class CharScorer:
    """The character LM's side of the prefix beam search (the interface of ``beam._Scorer``).

    A state is (bonus, log10 P_charlm so far, history): ``bonus`` is the sum over the prefix's
    characters of ``alpha ln p(c | history) + beta``, in nats; it ranks the beam.

    Args:
        lm: the character model.
        alphabet: the search's alphabet; it must have the model's characters in the same order.
        alpha: language-model weight.
        beta: insertion bonus, nats per character.
        merge_spaces: the search merges transcripts that differ in a trailing space, so a final
            space is not scored (``"a b "`` is the transcript ``"a b"``).
        sentence_bounds: score the first characters after ``<s>`` and the end with ``</s>`` (whole
            sentences); False for windows that start and end mid-sentence.

    Raises:
        ValueError: an alphabet other than the model's.
    """

    def __init__(
        self, lm: CharNGramLM, alphabet: Alphabet, alpha: float, beta: float, merge_spaces: bool, sentence_bounds: bool
    ):
        if alphabet.characters != lm.alphabet.characters:
            raise ValueError(
                f"the character LM predicts {lm.alphabet.characters!r} (alphabet {lm.alphabet.name!r}) "
                f"but the search decodes alphabet {alphabet.name!r}: {alphabet.characters!r}"
            )
        self.lm, self.beta, self.merge_spaces, self.sentence_bounds = lm, beta, merge_spaces, sentence_bounds
        self.weight = alpha * LN10  # the LM speaks log10; the search adds nats

    def start(self) -> tuple:
        return 0.0, 0.0, self.lm.start_history(self.sentence_bounds)

    def extensions(
        self,
        beams: Any,  # beam._Beams (not imported: beam imports this module)
        candidates: np.ndarray,
        space_column: int,
        reachable: np.ndarray,
        states: dict,
    ) -> tuple[np.ndarray, ...]:
        """(bonus, finished, node, length) of every extension of every beam, each (B, K).

        Every character is finished when it is appended, so ``finished`` is ``bonus``; the
        spelling-trie node and partial-word length of the word LM are zeros.
        """
        rows = np.stack([self.lm.distribution(states[prefix][2]) for prefix in beams.prefixes])  # (B, C + 1)
        bonus = beams.bonus[:, None] + self.weight * rows[:, candidates] + self.beta  # (B, K)
        zeros = np.zeros(bonus.shape, int)
        return bonus, bonus, zeros, zeros

    def extend(self, state: tuple, character: str) -> tuple:
        """The state after one more character (the same sum as :meth:`extensions`)."""
        bonus, log10_sum, history = state
        log10 = self.lm.distribution(history)[self.lm.column_of[character]]
        return bonus + self.weight * log10 + self.beta, log10_sum + log10, self.lm.advance(history, character)

    def history(self, state: tuple) -> tuple[str, ...]:
        """What decides every later LM score: the last n - 1 characters (for recombination)."""
        return state[2]

    def finish(self, states: dict, prefix: str) -> tuple[float, float, int]:
        """(bonus, log10 P_charlm, words) of a complete transcript, its end scored if asked."""
        if self.merge_spaces and prefix.endswith(" "):  # the transcript "a b" (its parent is kept)
            prefix = prefix[:-1]
        bonus, log10_sum, history = states[prefix]
        if self.sentence_bounds:
            end = self.lm.distribution(history)[-1]
            bonus, log10_sum = bonus + self.weight * end, log10_sum + end
        return float(bonus), float(log10_sum), len(prefix.split())
