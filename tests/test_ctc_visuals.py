"""CTC teaching visuals: forward variables against brute force and Keras, tables, figure contents."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ctc_reference import brute_force_ctc  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.visuals import (
    BLANK_SYMBOL,
    SPACE_SYMBOL,
    collapse_steps,
    ctc_forward,
    ctc_loss_from_alpha,
    extended_label,
    lattice_transitions,
    plot_forward_lattice,
    plot_posteriorgram,
    predecessors,
    state_occupancy,
)

SMALL = Alphabet("small", "abc")  # a b c, blank 3
B = SMALL.blank_index


def random_probabilities(seed: int, frames: int, classes: int = SMALL.output_dim) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(classes), size=frames)  # (T, C)


@pytest.mark.parametrize(
    "label, state, expected",
    [
        ([0, 1], 0, [0]),  # first blank: only itself
        ([0, 1], 1, [1, 0]),  # first character: itself or the blank before
        ([0, 1], 3, [3, 2, 1]),  # 'b' after 'a': may skip the blank between
        ([0, 0], 3, [3, 2]),  # second 'a' of "aa": the blank between is compulsory
        ([0, 1], 2, [2, 1]),  # a blank never skips
    ],
)
def test_predecessors(label, state, expected):
    assert extended_label(label, B) == [B] + [x for index in label for x in (index, B)]
    assert predecessors(extended_label(label, B), state) == expected


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), frames=st.integers(1, 6), label=st.lists(st.integers(0, 2), max_size=3))
def test_forward_loss_equals_sum_over_all_alignments(seed, frames, label):
    probabilities = random_probabilities(seed, frames)
    expected = brute_force_ctc(np.log(probabilities), label, B)
    alpha = ctc_forward(probabilities, label, B)
    if np.isinf(expected):  # label too long for the frames (repeats need a blank between)
        assert np.isinf(ctc_loss_from_alpha(alpha))
    else:
        assert ctc_loss_from_alpha(alpha) == pytest.approx(expected, rel=1e-9)


def test_forward_loss_equals_keras_ctc_loss():
    labels = [[0, 1, 2], [1, 1], [2], [0, 2, 0, 1]]
    frames = [7, 5, 3, 9]
    logits = np.random.default_rng(0).normal(scale=2.0, size=(len(labels), max(frames), SMALL.output_dim))
    padded = np.zeros((len(labels), 4), np.int32)
    for row, label in enumerate(labels):
        padded[row, : len(label)] = label
    label_length = np.array([len(label) for label in labels])
    expected = keras.ops.ctc_loss(padded, logits.astype(np.float32), label_length, np.array(frames), mask_index=B)
    for row, (label, length) in enumerate(zip(labels, frames)):
        probabilities = np.asarray(keras.ops.softmax(logits[row, :length]))
        loss = ctc_loss_from_alpha(ctc_forward(probabilities, label, B))
        assert loss == pytest.approx(float(np.asarray(expected)[row]), rel=1e-4)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), frames=st.integers(3, 8), label=st.lists(st.integers(0, 2), min_size=1, max_size=3))
def test_occupancy_is_a_distribution_per_frame(seed, frames, label):
    probabilities = random_probabilities(seed, frames)
    if np.isinf(ctc_loss_from_alpha(ctc_forward(probabilities, label, B))):
        return  # impossible label: nothing to distribute
    occupancy = state_occupancy(probabilities, label, B)
    assert occupancy.sum(axis=1) == pytest.approx(np.ones(frames))
    assert occupancy[0, 2:].sum() == 0 and occupancy[-1, :-2].sum() == 0  # start in the first two, end in the last two


def test_collapse_steps_table():
    e, h, el, o = (ENGLISH.text_to_int_sequence(ch)[0] for ch in "ehlo")
    path = [h, h, ENGLISH.blank_index, ENGLISH.blank_index, e, e, e, el, el, ENGLISH.blank_index, el, o, o]
    table = collapse_steps(path)
    assert list(table.index) == ["frame path", "merge repeats", "drop blanks"]
    assert table.loc["frame path", "symbols"] == f"h h {BLANK_SYMBOL} {BLANK_SYMBOL} e e e l l {BLANK_SYMBOL} l o o"
    assert table.loc["merge repeats", "symbols"] == f"h {BLANK_SYMBOL} e l {BLANK_SYMBOL} l o"
    assert table.loc["drop blanks", "symbols"] == "h e l l o"
    assert list(table.length) == [13, 7, 5]
    assert table.attrs["text"] == "hello"


def test_posteriorgram_shows_every_output_and_the_greedy_path():
    probabilities = random_probabilities(1, 40, ENGLISH.output_dim)
    figure = plot_posteriorgram(probabilities, length=30)
    axis = figure.axes[0]
    labels = [tick.get_text() for tick in axis.get_yticklabels()]
    assert len(labels) == ENGLISH.output_dim and labels[1] == SPACE_SYMBOL and labels[-1] == BLANK_SYMBOL
    assert labels[2:-1] == list("abcdefghijklmnopqrstuvwxyz")
    (image,) = axis.get_images()
    assert image.get_array().shape == (ENGLISH.output_dim, 30)
    (line,) = axis.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), np.argmax(probabilities[:30], axis=1))
    plt.close(figure)
    with pytest.raises(ValueError, match="have 4 outputs"):
        plot_posteriorgram(random_probabilities(1, 5))


def test_forward_lattice_figure():
    probabilities = random_probabilities(2, 6)
    label = [0, 0, 1]  # "aab": the repeat forces a blank
    figure = plot_forward_lattice(probabilities, label, SMALL)
    axis = figure.axes[0]
    alpha = ctc_forward(probabilities, label, B)
    occupancy = state_occupancy(probabilities, label, B)
    transitions = lattice_transitions(occupancy, extended_label(label, B))
    assert len(axis.get_lines()) == len(transitions) > 0
    assert len(axis.texts) == np.isfinite(alpha).sum()
    expected_rows = [BLANK_SYMBOL, "a", BLANK_SYMBOL, "a", BLANK_SYMBOL, "b", BLANK_SYMBOL]
    assert [tick.get_text() for tick in axis.get_yticklabels()] == expected_rows
    assert f"{ctc_loss_from_alpha(alpha):.3f}" in axis.get_title()
    assert all(to - source in (0, 1, 2) for _, source, to in transitions)
    assert (1, 3) not in {(source, to) for _, source, to in transitions}  # a -> a must pass the blank
    plt.close(figure)
