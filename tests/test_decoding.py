"""Greedy CTC decoding and WER / CER, checked against hand values and jiwer."""

import itertools
import math

import jiwer
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.beam import LN10, prefix_beam_search, prefix_beam_search_nbest
from ctclab.decoding.greedy import collapse_path, greedy_decode
from ctclab.decoding.lm import NGramLM
from ctclab.decoding.metrics import cer, edit_distance, wer
from ctclab.decoding.pyctc import pyctcdecode_decoder
from ctclab.decoding.tuning import synthetic_posteriors

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


# ---------------------------------------------------------------------- prefix beam search


TOY = Alphabet("toy", " ab")  # space, a, b, blank: C = 4
TOY_LM = NGramLM.train(["a b", "ab a", "b b a", "a", "ba ab", "b"], order=2)
EXACT = dict(beam_width=10_000, prune_log_prob=-math.inf)  # keeps every prefix: an exact search


def random_probabilities(rng: np.random.Generator, frames: int, classes: int, concentration: float = 1.0) -> np.ndarray:
    return rng.dirichlet(np.full(classes, concentration), size=frames)  # (T, C), rows sum to 1


def exhaustive_scores(
    probabilities, alphabet, lm=None, alpha=0.0, beta=0.0, merge_spaces=False, unk_offset=0.0
) -> dict[str, float]:
    """Q(y) of every transcript y with P_ctc(y) > 0, from all C^T frame paths (brute force)."""
    frames, classes = probabilities.shape
    totals: dict[str, float] = {}
    for path in itertools.product(range(classes), repeat=frames):
        text = alphabet.int_sequence_to_text(collapse_path(path, alphabet.blank_index))
        text = " ".join(text.split()) if merge_spaces else text
        totals[text] = totals.get(text, 0.0) + float(np.prod(probabilities[np.arange(frames), path]))

    def lm_terms(text):
        words = text.split()
        unknown = sum(unk_offset * max(1, len(word) / 6) for word in words if word not in lm.words)
        return alpha * LN10 * lm.score_sentence(text) + beta * len(words) + unknown

    return {text: math.log(total) + (lm_terms(text) if lm else 0.0) for text, total in totals.items() if total > 0}


@pytest.mark.parametrize("merge_spaces", [False, True])
@pytest.mark.parametrize("with_lm", [False, True])
def test_wide_beam_is_the_exhaustive_search(merge_spaces, with_lm):
    """T <= 5, C = 4: the best transcript and every n-best score equal the brute-force Q(y)."""
    rng = np.random.default_rng(7 + 2 * merge_spaces + with_lm)
    for _ in range(40):
        probabilities = random_probabilities(rng, int(rng.integers(1, 6)), TOY.output_dim)
        alpha, beta, unk = (rng.uniform(0.2, 2.0), rng.uniform(-1.0, 2.0), rng.uniform(-3, 0)) if with_lm else (0, 0, 0)
        lm = TOY_LM if with_lm else None  # words "a", "b", "ab", "ba"; "aa", "bab", ... are out of vocabulary
        expected = exhaustive_scores(probabilities, TOY, lm, alpha, beta, merge_spaces, unk)
        hypotheses = prefix_beam_search_nbest(
            probabilities, TOY, lm=lm, alpha=alpha, beta=beta, merge_spaces=merge_spaces, unk_offset=unk, **EXACT
        )
        assert hypotheses[0].text == max(expected, key=expected.get)
        assert {h.text: h.score for h in hypotheses} == pytest.approx(expected, abs=1e-9)
        assert [h.score for h in hypotheses] == pytest.approx(sorted(expected.values(), reverse=True), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 40))
def test_beam_width_one_is_greedy_on_confident_frames(seed, frames):
    """With every frame's best output above 0.9 the single kept prefix follows the greedy path."""
    rng = np.random.default_rng(seed)
    path = rng.integers(0, ENGLISH.output_dim, size=frames)
    probabilities = random_probabilities(rng, frames, ENGLISH.output_dim) * 0.09
    probabilities[np.arange(frames), path] += 0.91 - probabilities[np.arange(frames), path]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert prefix_beam_search(probabilities, beam_width=1, merge_spaces=False) == greedy_decode(probabilities)


def test_beam_width_one_differs_from_greedy_when_frames_are_unsure():
    """Hand-computed: P(b) = .35*.45 + .35*.30 + .25*.45 = .375, P(a) = .40*.25 + .40*.30 + .25*.25 = .2825,
    P(ab) = .40*.45 = .18; greedy takes the path "ab", beam 1 keeps "a" after frame 1, only a wide beam finds "b"."""
    alphabet = Alphabet("ab", "ab")  # a = 0, b = 1, blank = 2
    probabilities = np.array([[0.40, 0.35, 0.25], [0.25, 0.45, 0.30]])
    assert greedy_decode(probabilities, alphabet=alphabet) == "ab"
    assert prefix_beam_search(probabilities, alphabet, beam_width=1, prune_log_prob=-math.inf) == "a"
    nbest = prefix_beam_search_nbest(probabilities, alphabet, **EXACT)
    expected = [("b", 0.375), ("a", 0.2825), ("ab", 0.18)]
    assert [(h.text, round(math.exp(h.ctc_log_prob), 6)) for h in nbest[:3]] == expected


def test_keras_beam_search_agrees_on_exact_and_realistic_inputs():
    rng = np.random.default_rng(3)
    small = Alphabet("small", "abc")  # C = 4
    cases = [(small, random_probabilities(rng, 5, 4), 500) for _ in range(10)]  # 500 > all 364 prefixes: exact
    texts = ["turn left at the second corner", "seven of hearts", "march twenty third"]
    cases += [(ENGLISH, synthetic_posteriors(text, seed=i, confusion_rate=0.3), 32) for i, text in enumerate(texts)]
    for alphabet, probabilities, beam_width in cases:
        dense, scores = keras.ops.ctc_decode(
            np.log(probabilities)[None].astype(np.float32),
            np.array([len(probabilities)]),
            strategy="beam_search",
            beam_width=beam_width,
            top_paths=3,
            mask_index=alphabet.blank_index,
        )
        theirs = [alphabet.int_sequence_to_text(row[row >= 0]) for row in np.asarray(dense)[:, 0]]
        ours = prefix_beam_search_nbest(
            probabilities, alphabet, beam_width=beam_width, prune_log_prob=-math.inf, merge_spaces=False
        )
        assert [h.text for h in ours[:3]] == theirs
        # TensorFlow works in float32: about 1e-5 per frame of rounding in its log-softmax
        tolerance = 1e-4 * len(probabilities)
        assert [h.ctc_log_prob for h in ours[:3]] == pytest.approx(np.asarray(scores)[0].tolist(), abs=tolerance)


def test_pyctcdecode_agrees_without_lm():
    rng = np.random.default_rng(11)
    exact = [(TOY, random_probabilities(rng, 7, 4)) for _ in range(15)]
    decoder = pyctcdecode_decoder(TOY)
    for alphabet, probabilities in exact:  # a beam that keeps everything: both are exact
        beams = decoder.decode_beams(
            np.log(probabilities), beam_width=10_000, token_min_logp=-1e9, beam_prune_logp=-1e9, prune_history=False
        )
        assert prefix_beam_search(probabilities, alphabet, **EXACT) == beams[0][0]
    english = pyctcdecode_decoder(ENGLISH)
    for seed, text in enumerate(["turn left at the second corner", "queen of spades", "ten past nine at night"]):
        probabilities = synthetic_posteriors(text, seed=seed, confusion_rate=0.3)
        expected = english.decode(probabilities, beam_width=32, token_min_logp=-10.0, beam_prune_logp=-1e9)
        assert prefix_beam_search(probabilities, beam_width=32, prune_log_prob=-10.0) == expected


@pytest.mark.parametrize("alpha, beta, unk_offset", [(0.5, 1.0, -10.0), (1.5, 0.0, -1.0), (1.0, 3.0, 0.0)])
def test_pyctcdecode_with_the_same_lm_agrees(alpha, beta, unk_offset):
    rng = np.random.default_rng(int(10 * alpha + beta))
    decoder = pyctcdecode_decoder(TOY, TOY_LM, alpha, beta, unk_offset)
    for _ in range(15):  # exact regime: both find the brute-force optimum of Q
        probabilities = random_probabilities(rng, 6, 4)
        beams = decoder.decode_beams(
            np.log(probabilities), beam_width=10_000, token_min_logp=-1e9, beam_prune_logp=-1e9, prune_history=False
        )
        ours = prefix_beam_search_nbest(
            probabilities, TOY, lm=TOY_LM, alpha=alpha, beta=beta, unk_offset=unk_offset, **EXACT
        )
        assert ours[0].text == beams[0][0]
        assert ours[0].score == pytest.approx(beams[0][4], abs=1e-6)  # pyctcdecode's combined score is Q


def test_pruning_and_arguments():
    rng = np.random.default_rng(5)
    probabilities = random_probabilities(rng, 30, ENGLISH.output_dim, concentration=0.3)
    unpruned = prefix_beam_search_nbest(probabilities, beam_width=16, prune_log_prob=-math.inf)
    assert (
        prefix_beam_search_nbest(probabilities, beam_width=16, prune_log_prob=-math.inf, top_k=ENGLISH.output_dim)
        == unpruned
    )
    pruned = prefix_beam_search_nbest(probabilities, beam_width=16, prune_log_prob=-math.inf, top_k=1)
    assert pruned[0].text == greedy_decode(probabilities)  # only the argmax of each frame is tried
    assert prefix_beam_search(probabilities, length=0) == ""
    padded = np.concatenate([probabilities, np.eye(ENGLISH.output_dim)[[2, 3, 4]]])  # 3 frames "abc"
    assert prefix_beam_search(padded, length=30) == prefix_beam_search(probabilities)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: prefix_beam_search(np.full((4, 28), 1 / 28)), r"must be \(T, 29\).*got shape \(4, 28\)"),
        (lambda: prefix_beam_search(np.full((4, 29), -1.0)), r"in \[0, 1\], got values in \[-1, -1\]"),
        (lambda: prefix_beam_search(np.full((4, 29), 1 / 29), length=5), "length 5 is outside 0..4"),
        (lambda: prefix_beam_search(np.full((4, 29), 1 / 29), beam_width=0), "beam_width must be at least 1, got 0"),
        (lambda: prefix_beam_search(np.full((4, 3), 1 / 3), Alphabet("ab", "ab"), lm=TOY_LM), "has no space"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_lm_search_matches_pyctcdecode_on_model_like_posteriors():
    """Realistic sizes (29 outputs, ~100 frames, beam 32, pruning on): the same transcripts as
    pyctcdecode with the same LM (this caught a search that ranked beams without the partial-word
    penalty: it spelled several confused words as one long unknown word)."""
    numbers = ["one", "two", "three", "seven", "ten", "twenty"]
    suits = ["hearts", "spades", "clubs", "diamonds"]
    sentences = [f"{n} of {s}" for n in numbers for s in suits] + [
        f"turn {d} at the {o} corner" for d in ("left", "right") for o in ("first", "second", "third")
    ]
    lm = NGramLM.train(sentences, order=3)
    decoder = pyctcdecode_decoder(lm=lm, alpha=0.8, beta=1.0)
    for seed, text in enumerate(sentences[::2]):
        probabilities = synthetic_posteriors(text, seed=seed, confusion_rate=0.3)
        ours = prefix_beam_search(probabilities, lm=lm, alpha=0.8, beta=1.0, beam_width=32, beam_prune_log_prob=10.0)
        theirs = decoder.decode(probabilities, beam_width=32, token_min_logp=-10.0, beam_prune_logp=-10.0)
        assert ours == theirs
