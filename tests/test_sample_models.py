"""Models 0-4: course parameter counts, and output_length against real output shapes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctclab.alphabet import ENGLISH
from ctclab.models.course import cnn_rnn_model, deep_rnn_model, rnn_model
from ctclab.models.registry import BUILDERS, build, cnn_output_length, logits_model

# The course notebook's published summaries, built with the course's configurations.
COURSE_MODELS = [
    ("simple_rnn_model", dict(input_dim=161), 16_617),
    ("rnn_model", dict(input_dim=161, units=200, activation="relu"), 223_829),
    (
        "cnn_rnn_model",
        dict(input_dim=161, filters=200, kernel_size=11, conv_stride=2, conv_border_mode="valid", units=200),
        442_029,
    ),
    ("deep_rnn_model", dict(input_dim=161, units=200, recur_layers=2), 465_229),
    ("bidirectional_rnn_model", dict(input_dim=161, units=200), 446_029),
]


@pytest.mark.parametrize("builder, arguments, expected", COURSE_MODELS)
def test_course_parameter_counts(builder, arguments, expected):
    """reset_after=False (the Keras 2 / TF1 GRU) reproduces the course's numbers exactly."""
    assert build(builder, reset_after=False, **arguments).count_params() == expected


@pytest.mark.parametrize("builder, arguments, expected", COURSE_MODELS)
def test_modern_gru_adds_one_recurrent_bias_per_gate(builder, arguments, expected):
    model = build(builder, **arguments)
    gru_units = sum(layer.units for layer in model._flatten_layers() if isinstance(layer, keras.layers.GRU))
    assert model.count_params() == expected + 3 * gru_units


@pytest.mark.parametrize(
    "length, filter_size, border_mode, stride, dilation, expected",
    [
        (100, 11, "same", 1, 1, 100),
        (100, 11, "same", 2, 1, 50),
        (101, 11, "same", 2, 1, 51),
        (100, 11, "valid", 1, 1, 90),
        (100, 11, "valid", 2, 1, 45),
        (101, 11, "valid", 2, 1, 46),
        (100, 3, "valid", 1, 4, 92),  # dilated span 3 + 2 * 3 = 9
        (100, 5, "causal", 3, 2, 34),
        (None, 11, "valid", 2, 1, None),
    ],
)
def test_cnn_output_length_table(length, filter_size, border_mode, stride, dilation, expected):
    assert cnn_output_length(length, filter_size, border_mode, stride, dilation) == expected


def test_cnn_output_length_rejects_unknown_padding():
    with pytest.raises(ValueError, match="'full'"):
        cnn_output_length(10, 3, "full", 1)


SHAPE_CASES = [
    ("simple_rnn_model", dict(input_dim=13)),
    ("rnn_model", dict(input_dim=13, units=8)),
    ("cnn_rnn_model", dict(input_dim=13, filters=8, kernel_size=11, conv_stride=2, conv_border_mode="valid", units=8)),
    (
        "cnn_rnn_model",
        dict(input_dim=13, filters=8, kernel_size=5, conv_stride=3, conv_border_mode="same", units=8, rnn_type="gru"),
    ),
    (
        "cnn_rnn_model",
        dict(
            input_dim=13, filters=8, kernel_size=4, conv_stride=2, conv_border_mode="causal", units=8, rnn_type="lstm"
        ),
    ),
    ("deep_rnn_model", dict(input_dim=13, units=8, recur_layers=3)),
    ("bidirectional_rnn_model", dict(input_dim=13, units=8)),
]
LENGTHS = [11, 12, 13, 17, 32, 63, 100, 161]


@pytest.mark.parametrize("builder, arguments", SHAPE_CASES)
def test_output_length_matches_real_output(builder, arguments):
    model = build(builder, **arguments)
    for length in LENGTHS:
        output = model(np.zeros((2, length, arguments["input_dim"]), np.float32))
        assert output.shape == (2, model.output_length(length), ENGLISH.output_dim), (builder, length)
    assert list(model.output_length(np.array(LENGTHS))) == [model.output_length(n) for n in LENGTHS]


@pytest.mark.parametrize("builder, arguments", SHAPE_CASES)
def test_graph_mode_unknown_shapes(builder, arguments):
    """Training traces models with unknown batch and time sizes; shapes must still be right."""
    model = build(builder, **arguments)
    spec = tf.TensorSpec((None, None, arguments["input_dim"]), tf.float32)
    traced = tf.function(lambda features: model(features), input_signature=[spec])
    for batch, length in [(3, 40), (5, 77)]:
        output = traced(np.zeros((batch, length, arguments["input_dim"]), np.float32))
        assert tuple(output.shape) == (batch, model.output_length(length), ENGLISH.output_dim)


def test_softmax_outputs_and_logits_model():
    model = rnn_model(13, units=8)
    features = np.random.default_rng(0).normal(size=(2, 20, 13)).astype(np.float32)
    probabilities = np.asarray(model(features))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    logits = np.asarray(logits_model(model)(features))
    np.testing.assert_allclose(
        np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), probabilities, rtol=1e-4, atol=1e-6
    )


def test_builder_config_rebuilds_the_same_architecture():
    model = cnn_rnn_model(13, filters=8, units=8, conv_stride=3)
    assert model.builder_config == {
        "builder": "cnn_rnn_model",
        "module": "ctclab.models.course",
        "arguments": dict(
            input_dim=13,
            filters=8,
            kernel_size=11,
            conv_stride=3,
            conv_border_mode="valid",
            units=8,
            output_dim=29,
            rnn_type="simple_rnn",
            reset_after=True,
        ),
    }
    rebuilt = build(model.builder_config["builder"], **model.builder_config["arguments"])
    assert rebuilt.count_params() == model.count_params() and rebuilt.output_length(100) == 30


def test_a_builder_outside_the_package_is_rebuilt_from_its_module_and_never_replaces_the_reference(
    tmp_path, monkeypatch
):
    (tmp_path / "my_models.py").write_text(
        "import keras\n"
        "from ctclab.models.registry import features_input, finish_model, model_builder\n\n"
        "@model_builder\n"
        "def rnn_model(input_dim, output_dim=29):\n"
        "    inputs = features_input(input_dim)\n"
        "    outputs = keras.layers.Dense(output_dim, activation='softmax', name='softmax')(inputs)\n"
        "    return finish_model(inputs, outputs, 'mine', lambda length: length)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_models

    mine = my_models.rnn_model(13)
    assert mine.builder_config["module"] == "my_models" and mine.count_params() == 14 * 29
    assert BUILDERS["rnn_model"].__module__ == "ctclab.models.course"  # the reference is still registered
    rebuilt = build("rnn_model", "my_models", **mine.builder_config["arguments"])
    assert rebuilt.name == "mine" and rebuilt.count_params() == 14 * 29
    assert build("rnn_model", "ctclab.models.course", input_dim=13).name == "rnn_model"
    with pytest.raises(ValueError, match="module 'my_models' has no model builder 'nothing'"):
        build("nothing", "my_models", input_dim=13)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: build("no_such_model"), "unknown model builder 'no_such_model'"),
        (lambda: deep_rnn_model(13, recur_layers=0), "recur_layers must be at least 1, got 0"),
        (lambda: cnn_rnn_model(13, rnn_type="transformer"), "rnn_type must be one of"),
        (lambda: rnn_model(0), "input_dim must be positive, got 0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
