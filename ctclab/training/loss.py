"""The CTC loss and the training wrapper that applies it.

The loss is the CTC loss (``keras.ops.ctc_loss``, or on TensorFlow on a CPU the same loss as one
compiled op: :mod:`ctclab.training.ctc_op`) on the logits just before each model's softmax, with the
true number of output frames from the model's own ``output_length`` (not the padded time axis)
and the blank index from the alphabet. It is backend-agnostic (TensorFlow by default, JAX too)
because it lives in :meth:`CTCTrainer.compute_loss`, which every Keras 3 backend's train step
calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
from keras import ops

from ctclab.alphabet import ENGLISH
from ctclab.models.registry import logits_model
from ctclab.training import ctc_op
from ctclab.training import options as training_options

if TYPE_CHECKING:
    import tensorflow as tf

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array) or a NumPy array


def ctc_batch_loss(
    labels: Tensor, logits: Tensor, label_length: Tensor, logit_length: Tensor, blank_index: int = ENGLISH.blank_index
) -> Tensor:
    """Per-utterance CTC negative log-likelihood.

    Args:
        labels: (B, L) int character indices; entries past ``label_length`` are ignored.
        logits: (B, T, C) unnormalized scores (a log-softmax is applied inside).
        label_length: (B,) true label lengths.
        logit_length: (B,) true output frames, e.g. ``model.output_length(input_length)``.
        blank_index: the alphabet's blank.

    Returns:
        (B,) float32 losses, -log p(labels | logits).
    """
    logits = ops.cast(logits, "float32")  # mixed precision: the forward-backward runs in fp32
    labels, label_length = ops.cast(labels, "int32"), ops.cast(label_length, "int32")
    logit_length = ops.cast(logit_length, "int32")
    if keras.backend.backend() == "tensorflow":
        if ctc_op.available():  # the compiled op: about 10x faster than TensorFlow's own kernel on a CPU
            return ctc_op.ctc_loss(labels, logits, label_length, logit_length, blank_index)
        # TensorFlow's C++ kernel wants sparse labels: with dense ones tf.nn.ctc_loss runs a
        # Python-level forward-backward (15x slower on 2 CPU cores at B=20, T=320)
        labels = _sparse_labels(labels, label_length)
    return ops.ctc_loss(labels, logits, label_length, logit_length, mask_index=blank_index)


def _sparse_labels(labels: Tensor, label_length: Tensor) -> tf.SparseTensor:
    """(B, L) padded labels -> tf.SparseTensor holding only the first label_length[b] of row b."""
    import tensorflow as tf

    positions = tf.where(tf.sequence_mask(label_length, tf.shape(labels)[1]))  # (N, 2) (row, column)
    return tf.SparseTensor(positions, tf.gather_nd(labels, positions), tf.cast(tf.shape(labels), tf.int64))


class CTCTrainer(keras.Model):
    """Wraps an acoustic model for ``fit``: batches in, mean CTC loss out.

    Args:
        acoustic_model: a sample_models builder's output (softmax named "softmax",
            ``output_length`` attribute).
        blank_index: the alphabet's blank.
        l2: weight of the L2 penalty on the model's kernels (0: none).
        augment: a layer applied to the features in training only (e.g. SpecAugment).
    """

    def __init__(
        self,
        acoustic_model: keras.Model,
        blank_index: int = ENGLISH.blank_index,
        l2: float = 0.0,
        augment: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(name=f"{acoustic_model.name}_ctc", **kwargs)
        if not hasattr(acoustic_model, "output_length"):
            raise ValueError(f"model {acoustic_model.name!r} has no output_length; build it with sample_models")
        self.acoustic_model = acoustic_model
        self.logits_model = logits_model(acoustic_model)
        self.blank_index, self.l2, self.augment = blank_index, l2, augment
        self.built = True  # the wrapped Functional model is built; no variables of its own

    def call(self, inputs: dict[str, Tensor], training: bool | None = False) -> Tensor:
        features = inputs["features"]  # (B, T, F)
        if self.augment is not None:
            features = self.augment(features, training=training)
        return self.logits_model(features, training=training)  # (B, T', C) logits

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Build only the optimizer (TensorFlow trainer hook, called by fit under a strategy).

        Keras 3.15 would average the first batch over the replicas to build the model, which
        fails when a batch does not split evenly between them; this trainer is built already.
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def compute_loss(
        self,
        x: dict[str, Tensor] | None = None,
        y: dict[str, Tensor] | None = None,
        y_pred: Tensor | None = None,
        sample_weight: Tensor | None = None,
        training: bool = True,
    ) -> Tensor:
        assert x is not None and y is not None  # Keras' train and test steps pass both
        output_length = self.acoustic_model.output_length(x["input_length"])
        losses = ctc_batch_loss(y["labels"], y_pred, y["label_length"], output_length, self.blank_index)  # (B,)
        # the mean, safe for the empty share a replica can get of a batch smaller than the replicas
        loss = ops.sum(losses) / ops.maximum(ops.cast(ops.shape(losses)[0], "float32"), 1.0)
        if self.losses:  # weight regularizers, if a builder added any
            loss = loss + ops.sum(self.losses)
        if self.l2:
            loss = loss + training_options.l2_penalty(self.acoustic_model, self.l2)
        return training_options.replica_share(loss)
