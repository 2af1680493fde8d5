"""Run under any KERAS_BACKEND: ctclab's fast GRU / LSTM / SimpleRNN against Keras' own layers.

For every case (layer type, ``reset_after``, mask, direction, Bidirectional, dropout), both layers
get the same weights and the same batch; outputs and the gradients of a fixed weighted sum of the
outputs with respect to the input and every weight are compared. Prints one JSON line
``{case: largest absolute difference}``; tests/test_recurrent.py runs it on TensorFlow in-process
and with KERAS_BACKEND=jax in a subprocess.
"""

from __future__ import annotations

import json

import keras
import numpy as np
from keras import layers

from ctclab.models import recurrent

# (name, layer class name, layer arguments, use mask, wrap in Bidirectional, training)
CASES = [
    ("gru_reset_after", "GRU", {"reset_after": True}, False, False, False),
    ("gru_course", "GRU", {"reset_after": False}, False, False, False),
    ("gru_relu_masked", "GRU", {"reset_after": False, "activation": "relu"}, True, False, False),
    ("gru_reset_after_masked", "GRU", {"reset_after": True}, True, False, False),
    ("gru_backwards_masked", "GRU", {"reset_after": False, "go_backwards": True}, True, False, False),
    ("gru_zero_output_masked", "GRU", {"zero_output_for_mask": True}, True, False, False),
    ("bigru_course_masked", "GRU", {"reset_after": False}, True, True, False),
    ("bigru_reset_after", "GRU", {"reset_after": True}, False, True, False),
    ("gru_no_bias", "GRU", {"use_bias": False}, False, False, False),
    ("gru_relu", "GRU", {"reset_after": False, "activation": "relu"}, False, False, False),
    ("gru_linear_reset_after", "GRU", {"activation": "linear"}, False, False, False),
    ("gru_backwards", "GRU", {"go_backwards": True}, False, False, False),
    ("gru_dropout_unmasked_training", "GRU", {"reset_after": False, "dropout": 0.3, "seed": 7}, False, False, True),
    ("gru_dropout_training", "GRU", {"dropout": 0.3, "seed": 7}, True, False, True),
    ("lstm", "LSTM", {}, False, False, False),
    ("lstm_masked", "LSTM", {}, True, False, False),
    ("bilstm_masked", "LSTM", {}, True, True, False),
    ("simple_rnn_relu", "SimpleRNN", {"activation": "relu"}, False, False, False),
    ("simple_rnn_masked", "SimpleRNN", {}, True, False, False),
    ("bisimple_rnn_masked", "SimpleRNN", {}, True, True, False),
    ("gru_recurrent_dropout_training", "GRU", {"recurrent_dropout": 0.3, "seed": 3}, False, False, True),
]
BATCH, FRAMES, FEATURES, UNITS = 3, 9, 5, 4


def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (B, T, F), a mask with one full, one shortened and one single-frame row, output weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, FRAMES, FEATURES)).astype("float32")
    mask = np.ones((BATCH, FRAMES), bool)
    mask[1, 5:] = False
    mask[2, 1:] = False
    return x, mask, rng.standard_normal((BATCH, FRAMES, 2 * UNITS)).astype("float32")


def make_pair(class_name: str, arguments: dict, bidirectional: bool) -> tuple[layers.Layer, layers.Layer]:
    """Keras' layer and ours with the same (random, non-zero-bias) weights."""
    keras.utils.set_random_seed(1)
    pair = []
    for module in (layers, recurrent):
        layer = getattr(module, class_name)(UNITS, return_sequences=True, **arguments)
        pair.append(layers.Bidirectional(layer) if bidirectional else layer)
    for layer in pair:
        layer.build((None, None, FEATURES))
    rng = np.random.default_rng(2)
    weights = [rng.normal(0, 0.4, w.shape).astype("float32") for w in pair[0].get_weights()]
    for layer in pair:
        layer.set_weights(weights)
    return pair[0], pair[1]


def outputs_and_gradients(
    layer: layers.Layer, x: np.ndarray, mask: np.ndarray | None, weights: np.ndarray, training: bool
) -> list:
    """[outputs, d loss / d x, d loss / d each trainable weight] for loss = sum(outputs * weights)."""
    backend = keras.backend.backend()
    width = layer.compute_output_shape(x.shape)[-1]
    w = weights[..., :width]
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)

        @tf.function
        def run(inputs: tf.Tensor) -> list:
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y = layer(inputs, mask=mask, training=training)
                loss = tf.reduce_sum(y * w)
            return [y, *tape.gradient(loss, [inputs, *layer.trainable_variables])]

        return [np.asarray(value) for value in run(inputs)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable: list, inputs: jax.Array) -> tuple:
            y, _ = layer.stateless_call(trainable, non_trainable, inputs, mask=mask, training=training)
            return (y * w).sum(), y

        (_, y), (d_weights, d_inputs) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(trainable, x)
        return [np.asarray(y), np.asarray(d_inputs), *map(np.asarray, d_weights)]
    raise SystemExit(f"no gradient check for backend {backend}")


def run_cases() -> dict[str, float]:
    """{case: largest absolute difference between Keras' and our outputs and gradients}."""
    x, mask, weights = batch()
    differences = {}
    for name, class_name, arguments, masked, bidirectional, training in CASES:
        reference, fast = make_pair(class_name, arguments, bidirectional)
        expected = outputs_and_gradients(reference, x, mask if masked else None, weights, training)
        got = outputs_and_gradients(fast, x, mask if masked else None, weights, training)
        assert len(expected) == len(got), name
        differences[name] = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got, strict=True))
    return differences


if __name__ == "__main__":
    print(json.dumps(run_cases()))
