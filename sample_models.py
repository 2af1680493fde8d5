"""Acoustic model builders: features (B, T, F) -> per-frame character probabilities (B, T', C).

Every builder is a function ``name(input_dim, ..., output_dim=29) -> keras.Model`` that returns
an uncompiled Functional model whose last layer is a softmax named ``"softmax"`` (the CTC loss
reads the logits just before it) and whose ``output_length(input_length)`` gives T' from T
exactly, for Python ints, NumPy arrays and backend tensors alike.

Models 0-4 are the course's. Parameter parity with the course's published summaries
(16,617 / 223,829 / 442,029 / 465,229 / 446,029) needs ``reset_after=False``: the Keras 2 /
TF1 GRU with one recurrent bias per gate, 3 * (input*units + units*units + units) weights.
Keras 3's default ``reset_after=True`` (the cuDNN-compatible form) adds a second recurrent
bias, 3 * units more per GRU; our builders default to it.

Every builder records its own name and arguments in ``model.builder_config`` so a trained model
can be rebuilt from ``results/<name>/builder.json`` (see :func:`build`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import keras
from keras import layers

from char_map import ENGLISH

BUILDERS: dict[str, Callable[..., keras.Model]] = {}
RNN_LAYERS = {"gru": layers.GRU, "lstm": layers.LSTM, "simple_rnn": layers.SimpleRNN}


def model_builder(function: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Register a builder and record its call arguments on the model it returns."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> keras.Model:
        model = function(*args, **kwargs)
        bound = inspect.signature(function).bind(*args, **kwargs)
        bound.apply_defaults()
        model.builder_config = {"builder": function.__name__, "arguments": dict(bound.arguments)}
        return model

    BUILDERS[function.__name__] = wrapper
    return wrapper


def build(builder: str, **arguments) -> keras.Model:
    """Build a registered model by name, e.g. ``build("rnn_model", input_dim=161, units=200)``."""
    if builder not in BUILDERS:
        raise ValueError(f"unknown model builder {builder!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[builder](**arguments)


def cnn_output_length(input_length, filter_size: int, border_mode: str, stride: int, dilation: int = 1):
    """Frames out of a 1-D convolution (course name).

    "same" and "causal" pad so that, before striding, the length is unchanged; "valid" loses
    the dilated kernel span minus one. Striding then keeps every stride-th frame starting at the
    first: ceil(length / stride). Works on ints, arrays and tensors; None stays None.
    """
    if input_length is None:
        return None
    if border_mode not in ("same", "valid", "causal"):
        raise ValueError(f"border_mode must be 'same', 'valid' or 'causal', got {border_mode!r}")
    dilated_filter_size = filter_size + (filter_size - 1) * (dilation - 1)
    length = input_length - dilated_filter_size + 1 if border_mode == "valid" else input_length
    return (length + stride - 1) // stride


def _rnn(rnn_type: str, units: int, name: str, **kwargs) -> layers.Layer:
    if rnn_type not in RNN_LAYERS:
        raise ValueError(f"rnn_type must be one of {sorted(RNN_LAYERS)}, got {rnn_type!r}")
    if rnn_type != "gru":
        kwargs.pop("reset_after", None)
    return RNN_LAYERS[rnn_type](units, return_sequences=True, name=name, **kwargs)


def _time_dense_softmax(x, output_dim: int):
    """The course's "TimeDistributed dense" to ``output_dim`` logits, then the softmax.

    (B, T, H) -> (B, T, C). A Keras 3 Dense already maps the last axis of every time step with
    one shared kernel, which is what TimeDistributed(Dense) meant in Keras 2 (same weights,
    same count). We do not wrap it: in Keras 3.15 a TimeDistributed layer traced with unknown
    batch and time sizes (a tf.function over variable-length batches) returns B time steps
    instead of T (see tests/test_sample_models.py::test_graph_mode_unknown_shapes).
    """
    logits = layers.Dense(output_dim, name="time_dense")(x)
    return layers.Activation("softmax", name="softmax", dtype="float32")(logits)


def _finish(inputs, outputs, name: str, output_length: Callable) -> keras.Model:
    model = keras.Model(inputs, outputs, name=name)
    model.output_length = output_length
    return model


def _input(input_dim: int):
    if input_dim < 1:
        raise ValueError(f"input_dim must be positive, got {input_dim}")
    return keras.Input(shape=(None, input_dim), name="the_input")  # (B, T, F)


@model_builder
def simple_rnn_model(input_dim: int, output_dim: int = ENGLISH.output_dim, reset_after: bool = True) -> keras.Model:
    """Model 0: one GRU with ``output_dim`` units straight into the softmax."""
    inputs = _input(input_dim)
    x = layers.GRU(output_dim, return_sequences=True, reset_after=reset_after, name="rnn")(inputs)
    outputs = layers.Activation("softmax", name="softmax", dtype="float32")(x)
    return _finish(inputs, outputs, "simple_rnn_model", lambda length: length)  # no layer changes time


@model_builder
def rnn_model(
    input_dim: int, units: int = 200, activation: str = "relu", output_dim: int = ENGLISH.output_dim,
    reset_after: bool = True,
) -> keras.Model:
    """Model 1: GRU -> batch norm -> TimeDistributed dense -> softmax."""
    inputs = _input(input_dim)
    x = layers.GRU(units, activation=activation, return_sequences=True, reset_after=reset_after, name="rnn")(inputs)
    x = layers.BatchNormalization(name="bn_rnn")(x)
    return _finish(inputs, _time_dense_softmax(x, output_dim), "rnn_model", lambda length: length)


@model_builder
def cnn_rnn_model(
    input_dim: int, filters: int = 200, kernel_size: int = 11, conv_stride: int = 2,
    conv_border_mode: str = "valid", units: int = 200, output_dim: int = ENGLISH.output_dim,
    rnn_type: str = "simple_rnn", reset_after: bool = True,
) -> keras.Model:
    """Model 2: Conv1D -> batch norm -> RNN -> batch norm -> TimeDistributed dense -> softmax.

    The course's summary uses a SimpleRNN here (80,200 weights for 200 units), the default.
    """
    inputs = _input(input_dim)
    x = layers.Conv1D(
        filters, kernel_size, strides=conv_stride, padding=conv_border_mode, activation="relu", name="conv1d"
    )(inputs)  # (B, T, F) -> (B, T', filters), T' = cnn_output_length(T, ...)
    x = layers.BatchNormalization(name="bn_conv_1d")(x)
    x = _rnn(rnn_type, units, "rnn", activation="relu", reset_after=reset_after)(x)
    x = layers.BatchNormalization(name="bn_rnn")(x)
    return _finish(
        inputs, _time_dense_softmax(x, output_dim), "cnn_rnn_model",
        lambda length: cnn_output_length(length, kernel_size, conv_border_mode, conv_stride),
    )


@model_builder
def deep_rnn_model(
    input_dim: int, units: int = 200, recur_layers: int = 2, output_dim: int = ENGLISH.output_dim,
    rnn_type: str = "gru", activation: str = "tanh", reset_after: bool = True,
) -> keras.Model:
    """Model 3: ``recur_layers`` x (RNN -> batch norm) -> TimeDistributed dense -> softmax.

    With ``recur_layers=1`` this is :func:`rnn_model`'s architecture.
    """
    if recur_layers < 1:
        raise ValueError(f"recur_layers must be at least 1, got {recur_layers}")
    inputs = x = _input(input_dim)
    for index in range(1, recur_layers + 1):
        x = _rnn(rnn_type, units, f"rnn_{index}", activation=activation, reset_after=reset_after)(x)
        x = layers.BatchNormalization(name=f"bn_rnn_{index}")(x)
    return _finish(inputs, _time_dense_softmax(x, output_dim), "deep_rnn_model", lambda length: length)


@model_builder
def bidirectional_rnn_model(
    input_dim: int, units: int = 200, output_dim: int = ENGLISH.output_dim, rnn_type: str = "gru",
    reset_after: bool = True,
) -> keras.Model:
    """Model 4: bidirectional RNN (forward and backward outputs concatenated) -> dense -> softmax."""
    inputs = _input(input_dim)
    x = layers.Bidirectional(
        _rnn(rnn_type, units, "rnn", reset_after=reset_after), merge_mode="concat", name="bidirectional"
    )(inputs)  # (B, T, 2 * units)
    return _finish(inputs, _time_dense_softmax(x, output_dim), "bidirectional_rnn_model", lambda length: length)


def logits_model(model: keras.Model) -> keras.Model:
    """The same layers up to the input of the final softmax: (B, T, F) -> (B, T', C) logits."""
    return keras.Model(model.inputs, model.get_layer("softmax").input, name=f"{model.name}_logits")


# The deeper builders live in their own modules; importing them here registers them in BUILDERS,
# so build() and train_utils.load_trained_model find every model (imports at the end: they use
# model_builder and the helpers above).
import attention_models  # noqa: E402,F401  (transformer, conformer, TDS + MHSA)
import deep_models  # noqa: E402,F401  (CNN + BiRNN, deep BiRNN, Deep Speech 2, ResCNN + BiGRU)
