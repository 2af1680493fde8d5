"""The CTC loss as one compiled TensorFlow CPU op (``ctclab/kernels/ctc_loss.cc``).

Same loss as ``keras.ops.ctc_loss`` (TensorFlow's ``tf.nn.ctc_loss``): -log p(labels | logits)
with the softmax taken inside, blank at ``blank_index``, repeated labels separated by a blank.
The op runs the forward-backward in probability space with per-frame rescaling in double
precision, so each state update is a few additions and one product instead of TensorFlow's
log-space terms: about 10x faster on a CPU (``benchmarks/ctc_loss.py``). It returns the gradient
with the loss, so the registered gradient is one broadcast product; it has no second derivative
(nor has TensorFlow's). :func:`ctclab.training.loss.ctc_batch_loss` calls it on TensorFlow on a
CPU when the ops are built (:mod:`ctclab.kernels`), and ``keras.ops.ctc_loss`` otherwise.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ctclab import kernels


@cache
def _library() -> Any | None:
    import tensorflow as tf

    ops = kernels.library()
    if ops is not None:
        tf.RegisterGradient("CtcLabCtcLoss")(_gradient)
    return ops


def _gradient(op: Any, dloss: Any, _dgradient: Any) -> tuple:
    """d logits = upstream d loss (B,) times the op's own d loss / d logits (B, T, C); none for the integers."""
    return dloss[:, None, None] * op.outputs[1], None, None, None


def available() -> bool:
    """Whether the op can run here: TensorFlow on CPU only, outside XLA, and the library built."""
    return kernels.on_cpu_outside_xla() and _library() is not None


def ctc_loss(labels: Any, logits: Any, label_length: Any, logit_length: Any, blank_index: int) -> Any:
    """Per-utterance CTC negative log-likelihood (B,) float32, differentiable in ``logits``.

    Args:
        labels: (B, L) int32 character indices; entries past ``label_length`` are ignored.
        logits: (B, T, C) float32 unnormalized scores.
        label_length: (B,) int32 true label lengths.
        logit_length: (B,) int32 true output frames (frames past it get a zero gradient).
        blank_index: the blank's class.

    Raises:
        tf.errors.InvalidArgumentError: a label is the blank or not a class, or a row has fewer
            frames than its labelling needs (the message names the row).
    """
    library = _library()
    assert library is not None, "call available() first"
    loss, _ = library.ctc_lab_ctc_loss(logits, labels, label_length, logit_length, blank=blank_index)
    return loss
