"""Brute-force CTC: the probability of a label is the sum over every frame path that collapses to it."""

import numpy as np

from ctclab.course import checks


def brute_force_ctc(logits: np.ndarray, label, blank: int) -> float:
    """-log sum_{paths p: B(p) = label} prod_t softmax(logits)[t, p_t], enumerating all C^T paths.

    The enumeration is the course self-checks' (:func:`ctclab.course.checks.brute_force_ctc`); this
    adds the log-softmax and the sign of a loss.

    Args:
        logits: (T, C) scores of the valid frames only.
        label: the target indices.
        blank: the blank index.
    """
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)  # (T, C)
    return -checks.brute_force_ctc(log_probabilities, label, blank)


def random_ctc_case(rng: np.random.Generator, batch: int = 4, max_time: int = 6, classes: int = 4):
    """A padded batch with different label and frame lengths, repeats included; blank is last.

    Returns:
        (labels (B, L) padded with 0, logits (B, T, C), label_length (B,), logit_length (B,), blank)
    """
    blank = classes - 1
    label_rows = [[0, 0], [1, 2, 1], [2], [0, 1, 1]][:batch]
    logit_length = np.array([4, 6, 3, 6][:batch], np.int32)
    labels = np.zeros((batch, 3), np.int32)
    for row, label in enumerate(label_rows):
        labels[row, : len(label)] = label
    label_length = np.array([len(label) for label in label_rows], np.int32)
    logits = rng.normal(scale=2.0, size=(batch, max_time, classes)).astype(np.float32)
    return labels, logits, label_length, logit_length, blank
