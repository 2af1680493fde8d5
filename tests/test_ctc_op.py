"""The compiled CTC op against brute force, a float64 log-space recursion, finite differences and TensorFlow."""

import numpy as np
import pytest
from ctc_reference import brute_force_ctc, log_space_ctc, random_ctc_case

tf = pytest.importorskip("tensorflow")

from ctclab.training import ctc_op, loss  # noqa: E402

pytestmark = pytest.mark.skipif(not ctc_op.available(), reason="the compiled ops are not built: run `make setup`")


def _loss_and_gradient(labels, logits, label_length, logit_length, blank, weights=None):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        losses = ctc_op.ctc_loss(labels, logits, label_length, logit_length, blank)
        total = tf.reduce_sum(losses * (weights if weights is not None else 1.0))
    return losses.numpy(), tape.gradient(total, logits).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_loss_equals_brute_force_sum_over_paths(seed):
    labels, logits, label_length, logit_length, blank = random_ctc_case(np.random.default_rng(seed))
    losses, _ = _loss_and_gradient(labels, logits, label_length, logit_length, blank)
    for row in range(len(labels)):
        expected = brute_force_ctc(logits[row, : logit_length[row]], labels[row, : label_length[row]], blank)
        assert losses[row] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("label", "frames", "blank"),
    [
        ([], 4, 3),  # empty labelling: every frame blank
        ([1, 1], 3, 3),  # a repeat needing every frame
        ([0, 2, 1], 5, 3),
        ([2, 3], 4, 0),  # blank first
        ([0, 2, 0], 5, 1),  # blank in the middle of the alphabet
    ],
)
def test_blank_anywhere_and_edge_labellings(label, frames, blank):
    rng = np.random.default_rng(len(label) + frames)
    logits = rng.normal(scale=2.0, size=(1, frames + 2, 4)).astype(np.float32)  # 2 padded frames
    labels = np.array([label + [0] * (3 - len(label))], np.int32)
    losses, gradient = _loss_and_gradient(labels, logits, [len(label)], [frames], blank)
    assert losses[0] == pytest.approx(brute_force_ctc(logits[0, :frames], label, blank), abs=1e-4)
    assert np.all(gradient[0, frames:] == 0)  # padded frames get no gradient


def test_long_sequence_matches_float64_log_space_and_finite_differences():
    rng = np.random.default_rng(3)
    frames, classes, blank = 300, 29, 0
    logits = (4.0 * rng.normal(size=(2, frames, classes))).astype(np.float32)  # peaked: tiny probabilities
    labels = rng.integers(1, classes, size=(2, 80)).astype(np.int32)
    label_length, logit_length = np.array([80, 35], np.int32), np.array([frames, 160], np.int32)
    losses, gradient = _loss_and_gradient(labels, logits, label_length, logit_length, blank, weights=[1.0, 2.0])
    for row in range(2):
        expected = log_space_ctc(logits[row, : logit_length[row]], labels[row, : label_length[row]], blank)
        assert losses[row] == pytest.approx(expected, rel=1e-6)
    x = logits[1, :160].astype(np.float64)
    for t, k in [(0, blank), (10, labels[1, 2]), (80, 5), (159, blank)]:
        step = np.zeros_like(x)
        step[t, k] = 1e-4
        target = labels[1, :35]
        numeric = (log_space_ctc(x + step, target, blank) - log_space_ctc(x - step, target, blank)) / 2e-4
        assert gradient[1, t, k] == pytest.approx(2.0 * numeric, abs=2e-4)  # weight 2 on row 1


def test_equals_tensorflow_kernel_loss_and_gradient():
    rng = np.random.default_rng(7)
    batch, frames, classes = 6, 120, 29
    logits = (2.0 * rng.normal(size=(batch, frames, classes))).astype(np.float32)
    labels = rng.integers(1, classes, size=(batch, 40)).astype(np.int32)
    labels[0, 1] = labels[0, 0]  # a repeat
    label_length = rng.integers(1, 41, size=batch).astype(np.int32)
    logit_length = rng.integers(90, frames + 1, size=batch).astype(np.int32)
    weights = np.arange(1, batch + 1, dtype=np.float32)
    ours = _loss_and_gradient(labels, logits, label_length, logit_length, 0, weights)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        sparse = loss._sparse_labels(tf.constant(labels), tf.constant(label_length))
        theirs = tf.nn.ctc_loss(sparse, x, label_length, logit_length, logits_time_major=False, blank_index=0)
        total = tf.reduce_sum(theirs * weights)
    np.testing.assert_allclose(ours[0], theirs.numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours[1], tape.gradient(total, x).numpy(), atol=2e-3)  # TF's float32 log space


@pytest.mark.parametrize(
    ("label", "frames", "message"),
    [
        ([1, 2, 3], 2, "row 0: not enough frames for the labelling (required: 3, available: 2)"),
        ([1, 1], 2, "required: 3, available: 2"),
        ([1, 0], 5, "label 0 at position 1 is the blank"),
        ([1, 9], 5, "label 9 at position 1"),
    ],
)
def test_bad_rows_name_the_row_and_the_problem(label, frames, message):
    logits = np.zeros((1, 5, 4), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ctc_op.ctc_loss(np.array([label], np.int32), logits, [len(label)], [frames], 0)


def test_training_loss_uses_the_op_on_tensorflow_cpu(monkeypatch):
    labels, logits, label_length, logit_length, blank = random_ctc_case(np.random.default_rng(1))
    calls = []
    compiled = ctc_op.ctc_loss
    monkeypatch.setattr(ctc_op, "ctc_loss", lambda *args: calls.append(1) or compiled(*args))
    losses = loss.ctc_batch_loss(labels, logits, label_length, logit_length, blank)
    assert calls and np.asarray(losses).shape == (len(labels),)


def test_not_available_inside_xla():
    assert not tf.function(lambda: ctc_op.available(), jit_compile=True)()


def test_non_finite_logits_give_nan_not_a_finite_loss():
    logits = np.zeros((2, 5, 4), np.float32)
    logits[0, 2, 1] = np.nan
    losses, gradient = _loss_and_gradient(np.array([[1, 2], [1, 2]], np.int32), logits, [2, 2], [5, 5], 0)
    assert np.isnan(losses[0]) and np.isnan(gradient[0]).all()
    assert np.isfinite(losses[1]) and np.isfinite(gradient[1]).all()  # the other row is untouched
