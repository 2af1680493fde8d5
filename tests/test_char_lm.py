"""The character n-gram LM and its fusion in the prefix beam search.

Hand-computed Kneser-Ney values, normalization, perplexity against a uniform model, ARPA files
(and KenLM reading them), and the search: alpha = 0 is the search without an LM, a strong LM
settles a tie the posteriors leave, and a wide beam returns the brute-force argmax of
``Q(y) = ln P_ctc(y|x) + alpha ln P_charlm(y) + beta |y|``.
"""

import itertools
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.course.checks import brute_force_ctc
from ctclab.data.grammar import generate_texts
from ctclab.decoding.beam import prefix_beam_search, prefix_beam_search_nbest
from ctclab.decoding.char_lm import SENTENCE_END, CharNGramLM
from ctclab.decoding.lm import NGramLM
from ctclab.decoding.tuning import decode_all, synthetic_posteriors

AB = Alphabet("ab", "ab")  # a = 0, b = 1, blank = 2
TOY = Alphabet("toy", " ab")  # space, a, b, blank: C = 4
TOY_TEXTS = ["a b", "ab a", "b b a", "ba ab", "a", "bb"]
EXACT: dict[str, Any] = dict(beam_width=10_000, prune_log_prob=-math.inf)  # keeps every prefix: an exact search


def next_character_total(lm: CharNGramLM, context: str, sentence_start: bool) -> float:
    """sum of p(c | context) over the alphabet's characters and the sentence end."""
    outcomes = [*lm.alphabet.characters, SENTENCE_END]
    return sum(10 ** lm.log10_prob(context, character, sentence_start) for character in outcomes)


# ---------------------------------------------------------------- the model


def test_bigram_by_hand():
    """Order 2 on ["ab", "b"] over {a, b}: <s> a b </s>, <s> b </s>; every number on paper.

    Unigrams (continuation counts: distinct left neighbours): a 1 (<s>), b 2 (a, <s>), </s> 1 (b);
    counts of counts t1 = 2, t2 = 1 -> Y = 2/4, D1 = 1 - 2 Y t2/t1 = 1/2, D2 = 2 (t3 = 0);
    S = 4, gamma = (1/2 * 2 + 2 * 1) / 4 = 3/4, uniform 1/3 over {a, b, </s>}:
    p(a) = 1/2 / 4 + 1/4 = 3/8, p(b) = 0 + 1/4, p(</s>) = 3/8 (maximum likelihood: 1/4, 1/2, 1/4).
    Bigrams (raw): (<s> a) 1, (a b) 1, (b </s>) 2, (<s> b) 1: t1 = 3, t2 = 1 -> Y = 3/5,
    D1 = 1 - 2 Y / 3 = 3/5, D2 = 2. gamma(<s>) = 3/5 * 2 / 2 = 3/5, gamma(a) = 3/5, gamma(b) = 2/2 = 1.
    """
    lm = CharNGramLM.train(["ab", "b"], AB, order=2)
    table = [  # (context, character, sentence start, p)
        ("", "a", False, Fraction(3, 8)),  # no sentence start: the unigram
        ("", "b", False, Fraction(1, 4)),
        ("", SENTENCE_END, False, Fraction(3, 8)),
        ("", "a", True, Fraction(2, 5) / 2 + Fraction(3, 5) * Fraction(3, 8)),  # (1 - D1) / 2 + backoff
        ("", "b", True, Fraction(2, 5) / 2 + Fraction(3, 5) * Fraction(1, 4)),
        ("", SENTENCE_END, True, Fraction(3, 5) * Fraction(3, 8)),  # unseen after <s>
        ("a", "b", False, Fraction(2, 5) + Fraction(3, 5) * Fraction(1, 4)),
        ("a", "a", False, Fraction(3, 5) * Fraction(3, 8)),
        ("b", SENTENCE_END, False, 0 + 1 * Fraction(3, 8)),  # seen twice: D2 = 2 removes all of it
        ("b", "b", False, Fraction(1, 4)),
        ("bba", "b", True, Fraction(2, 5) + Fraction(3, 5) * Fraction(1, 4)),  # only the last character counts
    ]
    for context, character, sentence_start, expected in table:
        assert 10 ** lm.log10_prob(context, character, sentence_start) == pytest.approx(float(expected), abs=1e-12)
    p_ab = Fraction(17, 40) * Fraction(11, 20) * Fraction(3, 8)  # p(a | <s>) p(b | a) p(</s> | b)
    assert lm.perplexity(["ab"]) == pytest.approx(float(p_ab) ** (-1 / 3), rel=1e-12)
    p_window = Fraction(3, 8) * Fraction(11, 20)  # mid-sentence, no end: p(a) p(b | a)
    assert lm.perplexity(["ab"], sentence_start=False, sentence_end=False) == pytest.approx(
        float(p_window) ** (-1 / 2), rel=1e-12
    )


@pytest.mark.parametrize(
    "texts, alphabet, order, contexts",
    [
        (["ab", "b"], AB, 2, ["", "a", "b", "ba"]),
        (TOY_TEXTS, TOY, 3, ["", " ", "a", "ab", "b b", "aaa", "  "]),
        (["a"], TOY, 1, ["", "b"]),  # unigram; b and the space never seen
        (["the cat sat", "a dog's day", "the end"], ENGLISH, 6, ["", "the", "the c", "xyz", "dog's ", "qqqqqqq"]),
    ],
)
def test_next_character_probabilities_sum_to_one(texts, alphabet, order, contexts):
    lm = CharNGramLM.train(texts, alphabet, order)
    for context, sentence_start in itertools.product(contexts, [False, True]):
        assert next_character_total(lm, context, sentence_start) == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=" ab'", min_size=1, max_size=12), min_size=1, max_size=8),
    order=st.integers(1, 6),
    context=st.text(alphabet=" ab'", max_size=7),
    sentence_start=st.booleans(),
)
def test_probabilities_sum_to_one_property(texts, order, context, sentence_start):
    if not any(text.strip() for text in texts):
        texts = [*texts, "a"]
    lm = CharNGramLM.train(texts, Alphabet("small", "' ab"), order)
    assert next_character_total(lm, context, sentence_start) == pytest.approx(1.0, abs=1e-6)


def test_perplexity_on_held_out_grammar_text_beats_a_uniform_model():
    """Grammar sentences: 400 to train, 100 held out; the uniform model scores |alphabet| + 1 = 28."""
    texts = [sentence.text for sentence in generate_texts(500, np.random.default_rng(0))]
    train, held_out = texts[:400], texts[400:]
    uniform = len(ENGLISH.characters) + 1  # 27 characters and the sentence end, equally likely
    perplexities = {order: CharNGramLM.train(train, ENGLISH, order).perplexity(held_out) for order in (1, 2, 6)}
    assert perplexities[6] < perplexities[2] < perplexities[1] < uniform
    assert perplexities[6] < 4.0  # measured 2.7: the grammar's words are few and regular
    six = CharNGramLM.train(train, ENGLISH, 6)
    assert six.perplexity(held_out, sentence_start=False, sentence_end=False) < len(ENGLISH.characters)


def test_arpa_round_trip_and_kenlm_agreement(tmp_path):
    lm = CharNGramLM.train(["go left", "go right", "it's late"], ENGLISH, order=4)
    path = lm.save(tmp_path / "char.arpa")
    assert "\t<space>\t" in path.read_text() and "\t \t" not in path.read_text()
    loaded = CharNGramLM.load(path, ENGLISH)
    assert loaded.order == 4
    for context in ["", "g", "go ", "go l", "zz", "it'"]:
        for sentence_start in (False, True):
            history = lm.history_of(context, sentence_start)
            np.testing.assert_allclose(loaded.distribution(history), lm.distribution(history), atol=2e-7)
    with pytest.raises(ValueError, match=r"'<space>', 'd', .* are not characters of alphabet 'abc'"):
        CharNGramLM.load(path, Alphabet("abc", "abc"))  # the file holds every English character
    kenlm = pytest.importorskip("kenlm")
    reference = kenlm.Model(str(path))
    for text in ["go left", "go lift", "it's right", "a"]:
        tokens = " ".join("<space>" if character == " " else character for character in text)
        assert reference.score(tokens, bos=True, eos=True) == pytest.approx(lm.score_text(text), abs=1e-4)
        assert reference.score(tokens, bos=False, eos=False) == pytest.approx(
            lm.score_text(text, sentence_start=False, sentence_end=False), abs=1e-4
        )


def test_a_word_model_file_is_not_a_character_model(tmp_path):
    path = NGramLM.train(["go left"], order=2).save_arpa(tmp_path / "words.arpa")
    with pytest.raises(ValueError, match=r"tokens \['go', 'left'\] of the language model are not characters"):
        CharNGramLM.load(path, ENGLISH)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lm: CharNGramLM.train(["Go left"], ENGLISH), r"characters \['G'\] of text 'Go left'"),
        (lambda lm: CharNGramLM.train(["", "  "], ENGLISH), "every text is empty"),
        (lambda lm: CharNGramLM.train(["go"], ENGLISH, order=0), "order must be at least 1, got 0"),
        (lambda lm: lm.log10_prob("go", "!"), "character '!' is not in alphabet 'english'"),
        (lambda lm: lm.log10_prob("go!", "a"), r"characters \['!'\] of context 'go!'"),
        (lambda lm: lm.score_text("go?"), r"characters \['\?'\] of text 'go\?'"),
        (lambda lm: lm.perplexity([" "]), "every text is empty"),
        (lambda lm: prefix_beam_search(np.full((3, 4), 0.25), TOY, lm=lm), "predicts .* but the search decodes"),
        (lambda lm: decode_all([np.full((3, 29), 1 / 29)], "beam+charLM"), "needs a CharNGramLM"),
        (lambda lm: decode_all([np.full((3, 29), 1 / 29)], "beam+LM", lm), "goes with 'beam\\+charLM'"),
    ],
)
def test_bad_arguments_name_the_value(call, message):
    lm = CharNGramLM.train(["go left"], ENGLISH, order=3)
    with pytest.raises(ValueError, match=message):
        call(lm)


# ---------------------------------------------------------------- the search


def test_alpha_zero_is_the_search_without_an_lm():
    """alpha = beta = 0 adds exactly nothing: the same n-best list, ranking and pruning included."""
    lm = CharNGramLM.train(["seven of hearts", "turn left", "march third"], ENGLISH, order=6)
    rng = np.random.default_rng(0)
    cases = [synthetic_posteriors(text, seed=i, confusion_rate=0.4) for i, text in enumerate(["seven of", "turn"])]
    cases += [rng.dirichlet(np.full(ENGLISH.output_dim, 0.3), size=6) for _ in range(3)]
    for probabilities, sentence_bounds in itertools.product(cases, [True, False]):
        options: dict[str, Any] = dict(beam_width=8, alpha=0.0, beta=0.0)
        plain = prefix_beam_search_nbest(probabilities, ENGLISH, **options)
        fused = prefix_beam_search_nbest(probabilities, ENGLISH, lm=lm, sentence_bounds=sentence_bounds, **options)
        assert [h.text for h in fused] == [h.text for h in plain]
        assert [h.score for h in fused] == [h.ctc_log_prob for h in fused] == [h.score for h in plain]


def hand_posteriors(frames: list[dict[str, float]], alphabet: Alphabet = ENGLISH) -> np.ndarray:
    """(T, C) posteriors: the named characters' probabilities, the blank takes the rest."""
    probabilities = np.zeros((len(frames), alphabet.output_dim))
    for row, frame in enumerate(frames):
        for character, probability in frame.items():
            probabilities[row, alphabet.characters.index(character)] = probability
        probabilities[row, alphabet.blank_index] = 1.0 - sum(frame.values())
    return probabilities


TIE = {"a": 0.5, "e": 0.5}  # two characters equally likely at one frame
BLANK: dict[str, float] = {}


@pytest.mark.parametrize(
    "texts, frames, sentence_bounds, expected, other",
    [
        (["the then there", "these the"], [{"t": 1}, BLANK, {"h": 1}, TIE, BLANK], True, "the", "tha"),
        (["thanks that", "than that"], [{"t": 1}, BLANK, {"h": 1}, TIE, BLANK], True, "tha", "the"),
        (["we see trees", "free tea"], [{"r": 1}, TIE, BLANK, {"e": 1}], False, "ree", "rae"),  # inside "trees"
        (["a bad cat", "that was bad"], [{"b": 1}, TIE, BLANK, {"d": 1}], False, "bad", "bed"),
    ],
)
def test_a_strong_lm_settles_a_tie(texts, frames, sentence_bounds, expected, other):
    probabilities = hand_posteriors(frames)
    alternatives = prefix_beam_search_nbest(probabilities, ENGLISH, **EXACT)
    by_text = {h.text: h.ctc_log_prob for h in alternatives}
    assert by_text[expected] == pytest.approx(by_text[other], abs=1e-12)  # the posteriors cannot tell
    lm = CharNGramLM.train(texts * 3, ENGLISH, order=6)
    options: dict[str, Any] = dict(alpha=2.0, beta=0.0, sentence_bounds=sentence_bounds)
    assert prefix_beam_search(probabilities, ENGLISH, 16, lm, **options) == expected
    texts_out, _ = decode_all([probabilities], "beam+charLM", lm, 2.0, 0.0, 16, sentence_bounds=sentence_bounds)
    assert texts_out == [expected]


def exact_scores(probabilities, lm, alpha, beta, merge_spaces, sentence_bounds) -> dict[str, float]:
    """Q(y) of every transcript: every label sequence up to T = 3 long, P_ctc by brute force over paths."""
    frames = len(probabilities)
    log_probabilities = np.log(probabilities)  # (T, C)
    totals: dict[str, float] = {}
    labels = [
        seq for length in range(frames + 1) for seq in itertools.product(range(len(TOY.characters)), repeat=length)
    ]
    for label in labels:
        text = TOY.int_sequence_to_text(label)
        text = " ".join(text.split()) if merge_spaces else text
        totals[text] = np.logaddexp(
            totals.get(text, -math.inf), brute_force_ctc(log_probabilities, label, TOY.blank_index)
        )
    assert np.logaddexp.reduce(list(totals.values())) == pytest.approx(0.0, abs=1e-9)  # every label enumerated
    return {
        text: ctc + alpha * math.log(10) * lm.score_text(text, sentence_bounds, sentence_bounds) + beta * len(text)
        for text, ctc in totals.items()
        if ctc > -math.inf  # labels longer than the frames allow (or needing a blank between repeats)
    }


@pytest.mark.parametrize("merge_spaces", [False, True])
@pytest.mark.parametrize("sentence_bounds", [False, True])
@pytest.mark.parametrize("order", [2, 3])
def test_wide_beam_returns_the_brute_force_argmax(merge_spaces, sentence_bounds, order):
    lm = CharNGramLM.train(TOY_TEXTS, TOY, order)
    rng = np.random.default_rng(order + 2 * merge_spaces + 4 * sentence_bounds)
    for _ in range(6):
        probabilities = rng.dirichlet(np.full(TOY.output_dim, 0.7), size=int(rng.integers(1, 4)))  # (T <= 3, 4)
        alpha, beta = rng.uniform(0.3, 3.0), rng.uniform(-1.0, 1.0)
        expected = exact_scores(probabilities, lm, alpha, beta, merge_spaces, sentence_bounds)
        hypotheses = prefix_beam_search_nbest(
            probabilities, TOY, lm=lm, alpha=alpha, beta=beta, merge_spaces=merge_spaces,
            sentence_bounds=sentence_bounds, **EXACT,
        )  # fmt: skip
        assert hypotheses[0].text == max(expected, key=lambda text: expected[text])
        assert {h.text: h.score for h in hypotheses} == pytest.approx(expected, abs=1e-9)
        best = prefix_beam_search(
            probabilities, TOY, lm=lm, alpha=alpha, beta=beta, merge_spaces=merge_spaces,
            sentence_bounds=sentence_bounds, **EXACT,
        )  # fmt: skip
        assert best == hypotheses[0].text  # recombination keeps the best
