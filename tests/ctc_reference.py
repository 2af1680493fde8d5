"""Brute-force CTC: the probability of a label is the sum over every frame path that collapses to it."""

import itertools

import numpy as np

from ctclab.decoding.greedy import collapse_path


def brute_force_ctc(logits: np.ndarray, label, blank: int) -> float:
    """-log sum_{paths p: B(p) = label} prod_t softmax(logits)[t, p_t], enumerating all C^T paths.

    Args:
        logits: (T, C) scores of the valid frames only.
        label: the target indices.
        blank: the blank index.
    """
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)  # (T, C)
    total = -np.inf
    frames = range(logits.shape[0])
    for path in itertools.product(range(logits.shape[1]), repeat=logits.shape[0]):
        if collapse_path(path, blank) == list(label):
            total = np.logaddexp(total, sum(log_probabilities[t, path[t]] for t in frames))
    return float(-total)


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
