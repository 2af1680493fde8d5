"""CTC prefix beam search fused with a word or a character n-gram language model.

:func:`prefix_beam_search` / :func:`prefix_beam_search_nbest` maximize
``Q(y) = ln P_ctc(y|x) + alpha ln P_lm(y) + beta word_count(y)`` (natural logs) with a word LM
(seed 002's decoder), or ``Q(y) = ln P_ctc(y|x) + alpha ln P_charlm(y) + beta |y|`` (|y| in
characters) with a :class:`~ctclab.decoding.char_lm.CharNGramLM` (EMG typing). The search keeps,
per prefix, the probability of the frame paths ending in a blank and of those ending in the
prefix's last character; a word LM scores each word when a space (or the end) completes it, a
character LM each character when the search appends it. Both plug in through a scorer: this
module's :class:`_Scorer`, or the one the LM brings (``lm.beam_scorer``, see :class:`_Scorer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.lm import NGramLM

if TYPE_CHECKING:
    from ctclab.decoding.char_lm import CharNGramLM, CharScorer

LN10 = math.log(10.0)  # the LM speaks log10 (ARPA); every score below is a natural log
OOV_WORD_LENGTH = 6  # characters; a longer out-of-vocabulary word pays unk_offset per this many
NEG_INF = -math.inf


def oov_penalty(word: str, unk_offset: float) -> float:
    """What a word outside the LM vocabulary adds to Q: unk_offset, scaled up past 6 characters.

    The scaling (pyctcdecode's) stops the search from spelling several misheard words as one long
    unknown word to pay the penalty only once.
    """
    return unk_offset * max(1.0, len(word) / OOV_WORD_LENGTH)


@dataclass(frozen=True)
class Hypothesis:
    """One transcript of an n-best list.

    Attributes:
        text: the label sequence as text (spaces as decoded).
        score: Q(y) = ln P_ctc(y|x) + alpha ln P_lm(y) + beta word_count(y) + OOV penalties,
            in nats (just ln P_ctc without an LM; with a character LM, beta |y| in characters).
        ctc_log_prob: ln P_ctc(y|x), summed over the alignments the beam kept.
        lm_log10_prob: log10 P_lm(y) with the sentence end (0 without a language model; a
            character LM's without it when ``sentence_bounds`` is off).
        word_count: number of words of ``text``.
    """

    text: str
    score: float
    ctc_log_prob: float
    lm_log10_prob: float
    word_count: int


class _Scorer:
    """The language-model side of the search: word scores in nats, kept per prefix.

    A state is (bonus, finished bonus, log10 P_lm so far, words, LM context, partial word):
    ``bonus`` ranks the beam; it is the finished words' ``alpha ln p + beta (+ unk_offset)`` plus
    ``unk_offset`` while the partial word begins no vocabulary word (it is replaced, not
    added to, once the word is finished).

    The interface the search asks of a scorer (``char_lm.CharScorer`` has it too): ``start()``,
    the empty prefix's state (a tuple); ``extensions(...)``, the beam arrays of every extension;
    ``extend(state, character)``; ``history(state)``, what decides every later LM score (beams
    that share it and their last character are recombined); ``finish(states, prefix)``.
    """

    def __init__(self, lm: NGramLM, alpha: float, beta: float, unk_offset: float, alphabet: Alphabet):
        self.lm, self.alpha, self.beta, self.unk_offset = lm, alpha, beta, unk_offset
        self.prefixes = lm.word_prefixes  # every prefix of every vocabulary word
        self.trie = lm.spelling_trie(alphabet.characters)  # (N + 1, characters): node of prefix + c
        self.dead = len(self.trie) - 1  # the node of partial words that begin no vocabulary word

    def start(self) -> tuple:
        return 0.0, 0.0, 0.0, 0, ("<s>",), ""

    def extensions(
        self, beams: _Beams, candidates: np.ndarray, space_column: int, reachable: np.ndarray, states: dict
    ) -> tuple[np.ndarray, ...]:
        """(bonus, finished, node, length) of every extension of every beam, each (B, K).

        A letter moves down the spelling trie (the penalty of :meth:`extend`, vectorized); a space
        finishes the partial word, scored through the per-prefix LM states.
        """
        node = self.trie[beams.node][:, candidates]  # (B, K); candidates never hold the blank
        length = np.repeat(beams.length[:, None] + 1, candidates.size, axis=1)  # partial word length
        finished = np.repeat(beams.finished[:, None], candidates.size, axis=1)
        penalty = np.where(node == self.dead, self.unk_offset * np.maximum(1.0, length / OOV_WORD_LENGTH), 0.0)
        bonus = finished + penalty
        if space_column >= 0:
            for i in np.flatnonzero(reachable[:, space_column]).tolist():
                key = beams.prefixes[i] + " "
                if key not in states:
                    states[key] = self.extend(states[beams.prefixes[i]], " ")
                bonus[i, space_column] = finished[i, space_column] = states[key][1]
                node[i, space_column] = length[i, space_column] = 0
        return bonus, finished, node, length

    def extend(self, state: tuple, character: str) -> tuple:
        """The state after one more character."""
        _, finished, log10_sum, words, context, partial = state
        if character != " ":
            partial += character
            penalty = 0.0 if partial in self.prefixes else oov_penalty(partial, self.unk_offset)
            return finished + penalty, finished, log10_sum, words, context, partial
        if not partial:  # a leading or doubled space finishes no word
            return state
        return self._commit(state)

    def _commit(self, state: tuple) -> tuple:
        _, finished, log10_sum, words, context, word = state
        log10 = self.lm.log10_prob(word, context)
        unknown = 0.0 if word in self.lm.words else oov_penalty(word, self.unk_offset)
        finished += self.alpha * LN10 * log10 + self.beta + unknown
        context = (*context, word)[1 - self.lm.order :] if self.lm.order > 1 else ()
        return finished, finished, log10_sum + log10, words + 1, context, ""

    def history(self, state: tuple) -> tuple:
        """(last n-1 words, partial word): what decides the LM scores from here on."""
        return state[4], state[5]

    def finish(self, states: dict, prefix: str) -> tuple[float, float, int]:
        """(bonus, log10 P_lm, words) of a complete transcript: last word and sentence end scored."""
        state = states[prefix]
        if state[5]:
            state = self._commit(state)
        _, finished, log10_sum, words, context, _ = state
        log10 = self.lm.log10_prob("</s>", context)
        return finished + self.alpha * LN10 * log10, log10_sum + log10, words


def _log_add(a: float, b: float) -> float:
    """ln(e^a + e^b) for scalars, exact at -inf."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def _tried_log_probabilities(log_probabilities: np.ndarray, prune_log_prob: float, top_k: int | None) -> np.ndarray:
    """(T, C + 1) ln p of the outputs tried at each frame; -inf for the rest and in column C.

    An output is tried when ln p >= ``prune_log_prob`` and it is among the ``top_k`` best of its
    frame; the frame's best output always is. Column C stands for "no last character".
    """
    frames, classes = log_probabilities.shape
    keep = log_probabilities >= prune_log_prob  # (T, C)
    if top_k is not None and top_k < classes:
        kth_best = -np.partition(-log_probabilities, top_k - 1, axis=1)[:, top_k - 1 : top_k]  # (T, 1)
        keep &= log_probabilities >= kth_best
    keep[np.arange(frames), np.argmax(log_probabilities, axis=1)] = True
    tried = np.full((frames, classes + 1), NEG_INF)
    tried[:, :classes][keep] = log_probabilities[keep]
    return tried


@dataclass
class _Beams:
    """The prefixes kept after a frame, as parallel arrays (B of them).

    With ``merge_spaces`` a prefix is canonical: no leading or doubled space (the empty prefix
    stands for any run of leading spaces and counts a space as its last character).
    """

    prefixes: list[str]
    blank: np.ndarray  # (B,) ln P_b: paths ending in a blank
    non_blank: np.ndarray  # (B,) ln P_nb: paths ending in the prefix's last character
    last: np.ndarray  # (B,) int index of the last character; C when there is none
    bonus: np.ndarray  # (B,) the LM's share of the ranking score, nats (see _Scorer / CharScorer)
    finished: np.ndarray  # (B,) the part of bonus owed to finished words
    node: np.ndarray  # (B,) int spelling-trie node of the partial word
    length: np.ndarray  # (B,) int characters in the partial word

    ARRAYS = ("blank", "non_blank", "last", "bonus", "finished", "node", "length")

    def gather(
        self,
        stays: np.ndarray,
        sources: np.ndarray,
        columns: np.ndarray,
        prefixes: list[str],
        blank: np.ndarray,
        non_blank: np.ndarray,
        extended: dict,
    ) -> _Beams:
        """Beams ``stays`` with their new (blank, non_blank), then extensions (source beam, column)."""
        extended = dict(extended, blank=np.full(extension_shape := extended["non_blank"].shape, NEG_INF))
        now = dict(vars(self), blank=blank, non_blank=non_blank)
        assert extension_shape == extended["bonus"].shape
        return _Beams(
            prefixes, *(np.concatenate([now[name][stays], extended[name][sources, columns]]) for name in _Beams.ARRAYS)
        )


def _fold_collisions(
    beams: _Beams, extension: np.ndarray, column: np.ndarray, stay_non_blank: np.ndarray, space: int, merge_spaces: bool
) -> None:
    """Move extensions that land on a kept prefix into that prefix's P_nb (in place).

    Prefix i + character c is prefix j when i is j's parent (j minus its last character); with
    ``merge_spaces`` a space after a space (or at the start) lands on the prefix itself.
    """
    sources, columns, targets = [], [], []
    if merge_spaces and column[space] >= 0:
        for j in np.flatnonzero(beams.last == space).tolist():
            sources.append(j)
            columns.append(column[space])
            targets.append(j)
    index = {prefix: j for j, prefix in enumerate(beams.prefixes)}
    for j, prefix in enumerate(beams.prefixes):
        parent = index.get(prefix[:-1]) if prefix else None
        if parent is not None and column[beams.last[j]] >= 0:
            sources.append(parent)
            columns.append(column[beams.last[j]])
            targets.append(j)
    if sources:
        np.logaddexp.at(stay_non_blank, targets, extension[sources, columns])
        extension[sources, columns] = NEG_INF


def _search(
    log_probabilities: np.ndarray,
    alphabet: Alphabet,
    beam_width: int,
    scorer: _Scorer | CharScorer | None,
    prune_log_prob: float,
    top_k: int | None,
    beam_prune_log_prob: float | None,
    merge_spaces: bool,
    recombine: bool,
) -> tuple[_Beams, dict]:
    """The beams after the last frame, and the LM state of every kept prefix (see the caller)."""
    classes = alphabet.output_dim
    blank, space = alphabet.blank_index, alphabet.characters.find(" ")
    merge_spaces = merge_spaces and space >= 0
    tried = _tried_log_probabilities(log_probabilities, prune_log_prob, top_k)  # (T, C + 1)
    tried_characters = np.isfinite(tried[:, :classes])
    tried_characters[:, blank] = False
    start_last = space if merge_spaces else classes
    zero, zeros = np.zeros(1), np.zeros(1, int)
    beams = _Beams([""], zero, np.full(1, NEG_INF), np.array([start_last]), zero, zero, zeros, zeros)
    states = {"": scorer.start()} if scorer is not None else {}  # prefix -> LM state (bonus first)
    for frame, row in enumerate(tried):  # row: (C + 1,)
        total = np.logaddexp(beams.blank, beams.non_blank)  # (B,)
        stay_blank = total + row[blank]  # a blank: the prefix stays
        stay_non_blank = beams.non_blank + row[beams.last]  # its last character again: it stays
        candidates = np.flatnonzero(tried_characters[frame])  # (K,)
        if candidates.size == 0:  # only the blank: every prefix stays, ranking unchanged
            beams.blank, beams.non_blank = stay_blank, stay_non_blank
            continue
        column = np.full(classes + 1, -1)
        column[candidates] = np.arange(candidates.size)
        repeat = beams.last[:, None] == candidates[None, :]  # (B, K): same character needs a blank between
        extension = np.where(repeat, beams.blank[:, None], total[:, None]) + row[candidates]  # (B, K)
        _fold_collisions(beams, extension, column, stay_non_blank, space, merge_spaces)
        extended = {"non_blank": extension, "last": np.broadcast_to(candidates, extension.shape)}
        if scorer is None:
            no_lm = np.zeros(extension.shape, int)  # (B, K): no LM, no bonus, no trie
            extended.update(bonus=no_lm, finished=no_lm, node=no_lm, length=no_lm)
        else:
            bonus, finished, node, length = scorer.extensions(
                beams, candidates, column[space] if space >= 0 else -1, np.isfinite(extension), states
            )
            extended.update(bonus=bonus, finished=finished, node=node, length=length)
        beams = _select(
            beams, stay_blank, stay_non_blank, extended, candidates, alphabet, beam_width, beam_prune_log_prob
        )
        if scorer is not None:
            for prefix in beams.prefixes:
                if prefix not in states:
                    states[prefix] = scorer.extend(states[prefix[:-1]], prefix[-1])
            if recombine:
                beams = _recombine(beams, states, scorer)
    return beams, states


def _recombine(beams: _Beams, states: dict, scorer: _Scorer | CharScorer) -> _Beams:
    """Keep one beam per (scorer history, last character): the best scoring.

    A word LM's history is (last n-1 words, partial word), a character LM's its last n-1 characters.

    Beams that agree on these get the same LM scores from here on, so the weaker one can only
    take a beam slot from a more different prefix (pyctcdecode's ``prune_history``). A heuristic
    for the single best transcript: it thins the n-best list.
    """
    scores = (np.logaddexp(beams.blank, beams.non_blank) + beams.bonus).tolist()
    best: dict[tuple, int] = {}
    for j, prefix in enumerate(beams.prefixes):
        key = (scorer.history(states[prefix]), int(beams.last[j]))
        if key not in best or scores[j] > scores[best[key]]:
            best[key] = j
    if len(best) == len(beams.prefixes):
        return beams
    keep = sorted(best.values())
    return _Beams([beams.prefixes[j] for j in keep], *(getattr(beams, name)[keep] for name in _Beams.ARRAYS))


def _select(
    beams: _Beams,
    stay_blank: np.ndarray,
    stay_non_blank: np.ndarray,
    extended: dict,
    candidates: np.ndarray,
    alphabet: Alphabet,
    beam_width: int,
    beam_prune_log_prob: float | None,
) -> _Beams:
    """The ``beam_width`` best of the B staying prefixes and the B x K extensions."""
    count = len(beams.prefixes)
    stay_score = np.logaddexp(stay_blank, stay_non_blank) + beams.bonus  # (B,)
    extension_score = (extended["non_blank"] + extended["bonus"]).ravel()  # (B * K,)
    top = np.arange(extension_score.size)
    if extension_score.size > beam_width:  # only these extensions can make the overall top
        top = np.argpartition(extension_score, extension_score.size - beam_width)[-beam_width:]
    scores = np.concatenate([stay_score, extension_score[top]])
    chosen = np.arange(scores.size)
    if scores.size > beam_width:
        chosen = np.argpartition(scores, scores.size - beam_width)[-beam_width:]
    chosen = chosen[np.isfinite(scores[chosen])]
    if beam_prune_log_prob is not None and chosen.size:
        chosen = chosen[scores[chosen] >= scores[chosen].max() - beam_prune_log_prob]
    stays = chosen[chosen < count]
    sources, columns = np.divmod(top[chosen[chosen >= count] - count], candidates.size)
    characters = alphabet.characters
    prefixes = [beams.prefixes[j] for j in stays.tolist()] + [
        beams.prefixes[i] + characters[c] for i, c in zip(sources.tolist(), candidates[columns].tolist())
    ]
    return beams.gather(stays, sources, columns, prefixes, stay_blank, stay_non_blank, extended)


def prefix_beam_search_nbest(
    probabilities: np.ndarray,
    alphabet: Alphabet = ENGLISH,
    beam_width: int = 32,
    lm: NGramLM | CharNGramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    length: int | None = None,
    prune_log_prob: float = -10.0,
    top_k: int | None = None,
    beam_prune_log_prob: float | None = None,
    merge_spaces: bool = True,
    unk_offset: float = -10.0,
    recombine: bool = False,
    sentence_bounds: bool = True,
) -> list[Hypothesis]:
    """CTC prefix beam search in log space with word- or character-level LM fusion; n-best list.

    Every kept prefix y carries ln P_b(y) and ln P_nb(y): the probability of the frames so far
    with y as their collapse, ending in a blank / in y's last character. A frame extends y by a
    blank (y stays), by its last character (y stays if the path did not end in a blank, else the
    character repeats), or by a new character. Beams are ranked by
    ``ln(P_b + P_nb) + alpha ln P_lm(words done) + beta words done``; a word is scored when the
    space after it is added, and at the end the last word and ``</s>``, so the final ranking is
    Q(y) = ln P_ctc(y|x) + alpha ln P_lm(y) + beta word_count(y) + sum of :func:`oov_penalty`
    over y's words outside the LM vocabulary, with natural logs throughout (the ARPA log10 is
    multiplied by ln 10, as pyctcdecode does). With a character LM every character is scored
    when it is appended and the ranking is Q(y) = ln P_ctc(y|x) + alpha ln P_charlm(y) + beta |y|
    (characters; with ``merge_spaces`` a trailing space is neither scored nor counted).

    Without pruning (``prune_log_prob=-inf``, a beam wide enough to keep every prefix) this is an
    exact search over label sequences. Runs of frames where only the blank passes the pruning
    threshold cost one addition per beam.

    Args:
        probabilities: (T, C) softmax outputs of one utterance; C = ``alphabet.output_dim``,
            blank last.
        alphabet: characters and blank; a word LM needs a space in it, a character LM the same
            characters.
        beam_width: prefixes kept per frame.
        lm: an ``lm.NGramLM`` (words), a ``char_lm.CharNGramLM`` (characters), or None for the
            acoustic score alone.
        alpha: language-model weight.
        beta: insertion bonus, nats per word (word LM) or per character (character LM).
        length: valid frames (the model's output_length); None uses all T.
        prune_log_prob: characters with ln p below this are not tried at a frame (the frame's
            best output always is); -10 keeps p >= 4.5e-5.
        top_k: at most this many outputs tried per frame (None: no limit).
        beam_prune_log_prob: also drop beams scoring this far below the best (None: off).
        merge_spaces: treat label sequences that differ only in leading, doubled or trailing
            spaces as one transcript (their probabilities add up; pyctcdecode does the same).
            False searches over exact label sequences, as TensorFlow's beam search does.
        unk_offset: nats added per word outside the LM's vocabulary (see :func:`oov_penalty`;
            also, while it is being spelled, to a partial word that begins no vocabulary word);
            pyctcdecode's default -10.
        recombine: with an LM, keep only the best of beams that share their last n-1 words,
            partial word and last character (pyctcdecode's ``prune_history``): more distinct
            prefixes per beam slot, fewer alternatives in the n-best list.
            A Kneser-Ney ``<unk>`` keeps the leftover mass of the training words, often as much as
            a rare real word, so without it misspellings cost little.
        sentence_bounds: character LM only: score the first characters after ``<s>`` and the
            end with ``</s>`` (whole sentences); False for windows cut from inside a sentence
            (EMG typing's 300 ms windows): the first characters are scored by the lower orders
            and no end is scored. A word LM always scores both.

    Returns:
        Up to ``beam_width`` hypotheses, best Q first.

    Raises:
        ValueError: a shape that does not match the alphabet, values that are not
            probabilities, a bad length / beam width, a word LM with an alphabet without a
            space, or a character LM of another alphabet.
    """
    log_probabilities = _validated_log_probabilities(probabilities, alphabet, length)
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None), got {top_k}")
    scorer: _Scorer | CharScorer | None = None
    if isinstance(lm, NGramLM):
        if " " not in alphabet.characters:
            raise ValueError(f"alphabet {alphabet.name!r} has no space, so words (and an LM) are undefined")
        scorer = _Scorer(lm, alpha, beta, unk_offset, alphabet)
    elif lm is not None:  # a character LM brings its own scorer
        scorer = lm.beam_scorer(alphabet, alpha, beta, merge_spaces and " " in alphabet.characters, sentence_bounds)
    beams, states = _search(
        log_probabilities,
        alphabet,
        beam_width,
        scorer,
        prune_log_prob,
        top_k,
        beam_prune_log_prob,
        merge_spaces,
        recombine,
    )
    merged: dict[str, list] = {}  # text -> [ln P_ctc, bonus, log10 P_lm, words]
    for prefix, blank, non_blank in zip(beams.prefixes, beams.blank.tolist(), beams.non_blank.tolist()):
        ctc = _log_add(blank, non_blank)
        if scorer is None:
            bonus, log10, words = 0.0, 0.0, len(prefix.split())
        else:  # the last word and the sentence end
            bonus, log10, words = scorer.finish(states, prefix)
        text = " ".join(prefix.split()) if merge_spaces else prefix
        if text in merged:  # "a b" and "a b ": same words, same LM score, probabilities add
            merged[text][0] = _log_add(merged[text][0], ctc)
        else:
            merged[text] = [ctc, bonus, log10, words]
    hypotheses = [
        Hypothesis(text, ctc + bonus, ctc, log10, words) for text, (ctc, bonus, log10, words) in merged.items()
    ]
    return sorted(hypotheses, key=lambda hypothesis: -hypothesis.score)[:beam_width]


def prefix_beam_search(
    probabilities: np.ndarray,
    alphabet: Alphabet = ENGLISH,
    beam_width: int = 32,
    lm: NGramLM | CharNGramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    length: int | None = None,
    **options,
) -> str:
    """The best transcript of :func:`prefix_beam_search_nbest` (same arguments; see there).

    ``options`` takes ``prune_log_prob``, ``top_k``, ``beam_prune_log_prob``, ``merge_spaces``,
    ``unk_offset``, ``sentence_bounds`` and ``recombine``, which is on here (only the best
    transcript is wanted).
    """
    options.setdefault("recombine", True)
    return prefix_beam_search_nbest(probabilities, alphabet, beam_width, lm, alpha, beta, length, **options)[0].text


def _validated_log_probabilities(probabilities: np.ndarray, alphabet: Alphabet, length: int | None) -> np.ndarray:
    """(T', C) float64 natural-log probabilities of the valid frames; ValueError for bad input."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != alphabet.output_dim:
        raise ValueError(
            f"probabilities must be (T, {alphabet.output_dim}) for alphabet "
            f"{alphabet.name!r}, got shape {probabilities.shape}"
        )
    if length is not None and not 0 <= length <= len(probabilities):
        raise ValueError(f"length {length} is outside 0..{len(probabilities)} frames")
    probabilities = probabilities[:length].astype(np.float64)
    if probabilities.size and (probabilities.min() < 0 or probabilities.max() > 1 + 1e-4):
        raise ValueError(
            f"expected probabilities (a softmax output) in [0, 1], got values in "
            f"[{probabilities.min():.3g}, {probabilities.max():.3g}]"
        )
    with np.errstate(divide="ignore"):
        return np.log(probabilities)  # zeros become -inf: never tried, never extended
