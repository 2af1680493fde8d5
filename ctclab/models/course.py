"""The course's acoustic models 0-4: features (B, T, F) -> per-frame character probabilities (B, T', C).

Parameter parity with the course's published summaries
(16,617 / 223,829 / 442,029 / 465,229 / 446,029) needs ``reset_after=False``: the Keras 2 /
TF1 GRU with one recurrent bias per gate, 3 * (input*units + units*units + units) weights.
Keras 3's default ``reset_after=True`` (the cuDNN-compatible form) adds a second recurrent
bias, 3 * units more per GRU; our builders default to it.

``GRU`` here is :class:`ctclab.models.recurrent.GRU`: ``keras.layers.GRU`` (same arguments,
weights and results) with a faster CPU loop; ``recurrent_layer`` picks the same fast layers.
"""

from __future__ import annotations

import keras
from keras import layers

from ctclab.alphabet import ENGLISH
from ctclab.models.deep import cnn_birnn_model
from ctclab.models.recurrent import GRU
from ctclab.models.registry import (
    cnn_output_length,
    features_input,
    finish_model,
    model_builder,
    recurrent_layer,
    time_dense_softmax,
)


@model_builder
def simple_rnn_model(input_dim: int, output_dim: int = ENGLISH.output_dim, reset_after: bool = True) -> keras.Model:
    """Model 0: one GRU with ``output_dim`` units straight into the softmax."""
    inputs = features_input(input_dim)
    x = GRU(output_dim, return_sequences=True, reset_after=reset_after, name="rnn")(inputs)
    outputs = layers.Activation("softmax", name="softmax", dtype="float32")(x)
    return finish_model(inputs, outputs, "simple_rnn_model", lambda length: length)  # no layer changes time


@model_builder
def rnn_model(
    input_dim: int,
    units: int = 200,
    activation: str = "relu",
    output_dim: int = ENGLISH.output_dim,
    reset_after: bool = True,
) -> keras.Model:
    """Model 1: GRU -> batch norm -> TimeDistributed dense -> softmax."""
    # BEGIN SOLUTION: GRU(units, activation, return_sequences=True, reset_after) -> BatchNormalization -> time_dense_softmax; output_length unchanged
    inputs = features_input(input_dim)
    x = GRU(units, activation=activation, return_sequences=True, reset_after=reset_after, name="rnn")(inputs)
    x = layers.BatchNormalization(name="bn_rnn")(x)
    return finish_model(inputs, time_dense_softmax(x, output_dim), "rnn_model", lambda length: length)
    # END SOLUTION


@model_builder
def cnn_rnn_model(
    input_dim: int,
    filters: int = 200,
    kernel_size: int = 11,
    conv_stride: int = 2,
    conv_border_mode: str = "valid",
    units: int = 200,
    output_dim: int = ENGLISH.output_dim,
    rnn_type: str = "simple_rnn",
    reset_after: bool = True,
) -> keras.Model:
    """Model 2: Conv1D -> batch norm -> RNN -> batch norm -> TimeDistributed dense -> softmax.

    The course's summary uses a SimpleRNN here (80,200 weights for 200 units), the default.
    """
    # BEGIN SOLUTION: Conv1D(filters, kernel_size, strides=conv_stride, padding=conv_border_mode, relu) -> BatchNormalization -> recurrent_layer(rnn_type, units, relu) -> BatchNormalization -> time_dense_softmax; output_length through cnn_output_length
    inputs = features_input(input_dim)
    x = layers.Conv1D(
        filters, kernel_size, strides=conv_stride, padding=conv_border_mode, activation="relu", name="conv1d"
    )(inputs)  # (B, T, F) -> (B, T', filters), T' = cnn_output_length(T, ...)
    x = layers.BatchNormalization(name="bn_conv_1d")(x)
    x = recurrent_layer(rnn_type, units, "rnn", activation="relu", reset_after=reset_after)(x)
    x = layers.BatchNormalization(name="bn_rnn")(x)
    return finish_model(
        inputs,
        time_dense_softmax(x, output_dim),
        "cnn_rnn_model",
        lambda length: cnn_output_length(length, kernel_size, conv_border_mode, conv_stride),
    )
    # END SOLUTION


@model_builder
def deep_rnn_model(
    input_dim: int,
    units: int = 200,
    recur_layers: int = 2,
    output_dim: int = ENGLISH.output_dim,
    rnn_type: str = "gru",
    activation: str = "tanh",
    reset_after: bool = True,
) -> keras.Model:
    """Model 3: ``recur_layers`` x (RNN -> batch norm) -> TimeDistributed dense -> softmax.

    With ``recur_layers=1`` this is :func:`rnn_model`'s architecture.
    """
    if recur_layers < 1:
        raise ValueError(f"recur_layers must be at least 1, got {recur_layers}")
    # BEGIN SOLUTION: recur_layers x (recurrent_layer(rnn_type, units, activation) -> BatchNormalization) -> time_dense_softmax
    inputs = x = features_input(input_dim)
    for index in range(1, recur_layers + 1):
        x = recurrent_layer(rnn_type, units, f"rnn_{index}", activation=activation, reset_after=reset_after)(x)
        x = layers.BatchNormalization(name=f"bn_rnn_{index}")(x)
    return finish_model(inputs, time_dense_softmax(x, output_dim), "deep_rnn_model", lambda length: length)
    # END SOLUTION


@model_builder
def bidirectional_rnn_model(
    input_dim: int,
    units: int = 200,
    output_dim: int = ENGLISH.output_dim,
    rnn_type: str = "gru",
    reset_after: bool = True,
) -> keras.Model:
    """Model 4: bidirectional RNN (forward and backward outputs concatenated) -> dense -> softmax."""
    # BEGIN SOLUTION: Bidirectional(recurrent_layer(rnn_type, units), merge_mode="concat") -> time_dense_softmax
    inputs = features_input(input_dim)
    x = layers.Bidirectional(
        recurrent_layer(rnn_type, units, "rnn", reset_after=reset_after), merge_mode="concat", name="bidirectional"
    )(inputs)  # (B, T, 2 * units)
    return finish_model(inputs, time_dense_softmax(x, output_dim), "bidirectional_rnn_model", lambda length: length)
    # END SOLUTION


@model_builder
def final_model(input_dim: int, output_dim: int = ENGLISH.output_dim) -> keras.Model:
    """The final model (course name): your own design, trained in notebook 01 beside models 0-4.

    The reference combines what models 2 and 4 show: a strided convolution (a third of the frames
    for the recurrent layer: faster, and each step sees 110 ms of audio), then a bidirectional GRU,
    batch norm and dropout (seed 004's final-model ideas, :func:`ctclab.models.deep.cnn_birnn_model`).
    """
    # BEGIN SOLUTION: your architecture; e.g. cnn_birnn_model(input_dim, ...) or your own layers ending in time_dense_softmax
    return cnn_birnn_model(
        input_dim,
        filters=200,
        kernel_size=11,
        conv_stride=3,
        units=128,
        recur_layers=1,
        dropout_rate=0.1,
        output_dim=output_dim,
    )
    # END SOLUTION
