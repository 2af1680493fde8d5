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


def log_space_ctc(logits: np.ndarray, label, blank: int) -> float:
    """-log p(label | logits) by the textbook log-space alpha recursion in float64 (any T).

    An implementation independent of the project's (no rescaling, no pruning): every state of
    the extended labelling at every frame, combined with ``np.logaddexp``.

    Args:
        logits: (T, C) scores of the valid frames only.
        label: the target indices.
        blank: the blank index.
    """
    logits = np.asarray(logits, np.float64)
    log_probabilities = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)  # (T, C)
    extended = [blank]
    for symbol in label:
        extended += [int(symbol), blank]
    states = len(extended)
    alpha = np.full(states, -np.inf)
    alpha[0] = log_probabilities[0, blank]
    if states > 1:
        alpha[1] = log_probabilities[0, extended[1]]
    for t in range(1, len(logits)):
        previous = alpha.copy()
        for s in range(states):
            total = previous[s]
            if s >= 1:
                total = np.logaddexp(total, previous[s - 1])
            if s >= 2 and extended[s] != blank and extended[s] != extended[s - 2]:
                total = np.logaddexp(total, previous[s - 2])
            alpha[s] = total + log_probabilities[t, extended[s]]
    final = alpha[-1] if states == 1 else np.logaddexp(alpha[-1], alpha[-2])
    return float(-final)
