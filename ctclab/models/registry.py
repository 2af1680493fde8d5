"""The model registry: the builder table, ``build`` by name, and the helpers every builder uses.

Every builder is a function ``name(input_dim, ..., output_dim=29) -> keras.Model`` that returns
an uncompiled Functional model whose last layer is a softmax named ``"softmax"`` (the CTC loss
reads the logits just before it) and whose ``output_length(input_length)`` gives T' from T
exactly, for Python ints, NumPy arrays and backend tensors alike.

:func:`model_builder` registers a builder and records its name, module and arguments in
``model.builder_config``, so a trained model can be rebuilt from its run folder (see
:mod:`ctclab.runs`). Builder modules (course, deep, attention) import this module; it imports
none of them (``import ctclab.models`` registers them all). A builder defined outside the package
(a learner's ``sample_models.py``, your own module) is recorded but not registered: :func:`build`
rebuilds it from its module, so it never replaces the reference builder of the same name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from ctclab.models import recurrent

Length = Any  # frame counts: a Python int, a NumPy array or a backend tensor (tf.Tensor, jax.Array); or None

BUILDERS: dict[str, Callable[..., keras.Model]] = {}  # the package's builders, by name
PACKAGE = "ctclab"


RNN_LAYERS = {
    "gru": recurrent.GRU,
    "lstm": recurrent.LSTM,
    "simple_rnn": recurrent.SimpleRNN,
}  # Keras' layers, faster loop


def model_builder(function: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Record the builder's name, module and call arguments on the model it returns; register the package's."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> keras.Model:
        model = function(*args, **kwargs)
        bound = inspect.signature(function).bind(*args, **kwargs)
        bound.apply_defaults()
        model.builder_config = {
            "builder": function.__name__,
            "module": function.__module__,
            "arguments": dict(bound.arguments),
        }
        return model

    if function.__module__.split(".")[0] == PACKAGE:
        BUILDERS[function.__name__] = wrapper
    return wrapper


def build(builder: str, module: str | None = None, **arguments: Any) -> keras.Model:
    """Build a model by name, e.g. ``build("rnn_model", input_dim=161, units=200)``.

    Args:
        builder: the builder's function name.
        module: where it is defined (``builder_config["module"]``); a module outside the package
            is imported and its function called, None or a package module means the registry.
        **arguments: the builder's arguments.
    """
    if module is not None and module.split(".")[0] != PACKAGE:
        function = getattr(importlib.import_module(module), builder, None)
        if function is None:
            raise ValueError(f"module {module!r} has no model builder {builder!r}")
        return function(**arguments)
    if builder not in BUILDERS:
        raise ValueError(f"unknown model builder {builder!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[builder](**arguments)


def cnn_output_length(
    input_length: Length, filter_size: int, border_mode: str, stride: int, dilation: int = 1
) -> Length:
    """Frames out of a 1-D convolution (course name).

    "same" and "causal" pad so that, before striding, the length is unchanged; "valid" loses
    the dilated kernel span minus one. Striding then keeps every stride-th frame starting at the
    first: ceil(length / stride). Works on ints, arrays and tensors; None stays None.
    """
    if input_length is None:
        return None
    if border_mode not in ("same", "valid", "causal"):
        raise ValueError(f"border_mode must be 'same', 'valid' or 'causal', got {border_mode!r}")
    # BEGIN SOLUTION: "valid" loses the dilated kernel span minus one frame; then striding keeps ceil(length / stride)
    dilated_filter_size = filter_size + (filter_size - 1) * (dilation - 1)
    length = input_length - dilated_filter_size + 1 if border_mode == "valid" else input_length
    return (length + stride - 1) // stride
    # END SOLUTION


def recurrent_layer(rnn_type: str, units: int, name: str, **kwargs) -> layers.Layer:
    """A "gru", "lstm" or "simple_rnn" layer returning sequences: (B, T, H) -> (B, T, units).

    ``kwargs`` go to the layer; ``reset_after`` is dropped for LSTM and SimpleRNN, which have no such argument.
    """
    if rnn_type not in RNN_LAYERS:
        raise ValueError(f"rnn_type must be one of {sorted(RNN_LAYERS)}, got {rnn_type!r}")
    if rnn_type != "gru":
        kwargs.pop("reset_after", None)
    return RNN_LAYERS[rnn_type](units, return_sequences=True, name=name, **kwargs)


def time_dense_softmax(x: keras.KerasTensor, output_dim: int) -> keras.KerasTensor:
    """The course's "TimeDistributed dense" to ``output_dim`` logits, then the softmax.

    (B, T, H) -> (B, T, C). A Keras 3 Dense already maps the last axis of every time step with
    one shared kernel, which is what TimeDistributed(Dense) meant in Keras 2 (same weights,
    same count). We do not wrap it: in Keras 3.15 a TimeDistributed layer traced with unknown
    batch and time sizes (a tf.function over variable-length batches) returns B time steps
    instead of T (see tests/test_sample_models.py::test_graph_mode_unknown_shapes).
    """
    logits = layers.Dense(output_dim, name="time_dense")(x)
    return layers.Activation("softmax", name="softmax", dtype="float32")(logits)


def finish_model(
    inputs: keras.KerasTensor, outputs: keras.KerasTensor, name: str, output_length: Callable[[Length], Length]
) -> keras.Model:
    """The Functional model ``inputs`` (B, T, F) -> ``outputs`` (B, T', C) with ``output_length`` (T -> T') attached."""
    model = keras.Model(inputs, outputs, name=name)
    model.output_length = output_length
    return model


def features_input(input_dim: int) -> keras.KerasTensor:
    """The model input: features (B, T, input_dim), any batch size B and frame count T."""
    if input_dim < 1:
        raise ValueError(f"input_dim must be positive, got {input_dim}")
    return keras.Input(shape=(None, input_dim), name="the_input")  # (B, T, F)


def logits_model(model: keras.Model) -> keras.Model:
    """The same layers up to the input of the final softmax: (B, T, F) -> (B, T', C) logits."""
    return keras.Model(model.inputs, model.get_layer("softmax").input, name=f"{model.name}_logits")
