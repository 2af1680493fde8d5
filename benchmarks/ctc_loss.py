"""The compiled CTC op against TensorFlow's own CTC kernel: loss + gradient on the same batch.

Both sides compute the per-utterance CTC loss and its gradient with respect to the logits
inside one ``tf.function`` on one random batch shaped like a quick-profile training batch
(``--batch`` utterances x ``--frames`` output frames x 29 classes, label lengths and frame
lengths spread as in the corpus). TensorFlow's side is what ``ctc_batch_loss`` ran before the op:
``tf.nn.ctc_loss`` with sparse labels (its C++ kernel, log-space). The two alternate call by
call (A, B, A, B, ...) so load from other processes hits both alike; medians are compared, and
the largest differences of the losses and gradients are printed beside the speed-up. Nothing is
asserted.

Usage, from the repository root (about 20 s on 2 CPU cores)::

    python benchmarks/ctc_loss.py
    python benchmarks/ctc_loss.py --batch 32 --frames 300 --steps 30
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

from ctclab.benchmarking import alternated_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=300, help="padded output frames")
    parser.add_argument("--classes", type=int, default=29)
    parser.add_argument(
        "--chars-per-frame", type=float, default=0.15, help="label length / frames (quick corpus: ~0.13)"
    )
    parser.add_argument("--steps", type=int, default=20)
    arguments = parser.parse_args()

    import tensorflow as tf

    from ctclab.training import ctc_op
    from ctclab.training.loss import _sparse_labels

    if not ctc_op.available():
        sys.exit("the compiled ops are not built: run `make setup`")
    rng = np.random.default_rng(0)
    batch, frames, classes = arguments.batch, arguments.frames, arguments.classes
    logit_length = rng.integers(frames * 2 // 3, frames + 1, size=batch).astype(np.int32)
    label_length = np.maximum(1, (logit_length * arguments.chars_per_frame).astype(np.int32))
    labels = tf.constant(rng.integers(1, classes, size=(batch, label_length.max())).astype(np.int32))
    logits = tf.constant(rng.normal(scale=3.0, size=(batch, frames, classes)).astype(np.float32))
    sparse = _sparse_labels(labels, tf.constant(label_length))

    def step(loss_function):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                losses = loss_function(x)
                total = tf.reduce_sum(losses)
            return losses, tape.gradient(total, x)

        return run

    ours = step(lambda x: ctc_op.ctc_loss(labels, x, label_length, logit_length, 0))
    theirs = step(
        lambda x: tf.nn.ctc_loss(sparse, x, label_length, logit_length, logits_time_major=False, blank_index=0)
    )
    (loss_ours, grad_ours), (loss_theirs, grad_theirs) = ours(logits), theirs(logits)
    seconds = alternated_seconds(
        [lambda: ours(logits)[1].numpy(), lambda: theirs(logits)[1].numpy()], 3, arguments.steps
    )
    median_ours, median_theirs = (statistics.median(times) * 1e3 for times in seconds)
    print(
        f"batch {batch} x {frames} frames x {classes} classes, label lengths {label_length.min()}-{label_length.max()}"
    )
    print(f"compiled op           {median_ours:8.2f} ms  (loss + gradient, median of {arguments.steps})")
    print(f"tf.nn.ctc_loss sparse {median_theirs:8.2f} ms")
    print(f"speed-up              {median_theirs / median_ours:8.2f}x")
    loss_difference = np.abs(loss_ours.numpy() - loss_theirs.numpy()) / np.abs(loss_theirs.numpy())
    print(
        f"largest relative loss difference {loss_difference.max():.2e}, "
        f"largest gradient difference {np.abs(grad_ours.numpy() - grad_theirs.numpy()).max():.2e}"
    )


if __name__ == "__main__":
    main()
