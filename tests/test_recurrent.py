"""ctclab.models.recurrent: the fast GRU / LSTM / SimpleRNN equal Keras' own layers.

The reference is Keras itself: ``keras.layers.GRU`` / ``LSTM`` / ``SimpleRNN`` with the same
weights (tests/recurrent_check.py). Tolerance 1e-5: the two sum the same products in another
order (all frames' input products at once), so they agree to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import recurrent_check
from conftest import run_check_script
from keras import layers

import ctclab.models  # noqa: F401  (registers the builders)
from ctclab.models import fused, recurrent
from ctclab.models.registry import build

TOLERANCE = 1e-5


def test_outputs_and_gradients_equal_keras_layers_on_tensorflow():
    differences = recurrent_check.run_cases()
    assert set(differences) == {case[0] for case in recurrent_check.CASES}
    assert {name: d for name, d in differences.items() if d > TOLERANCE} == {}


def test_outputs_and_gradients_equal_keras_layers_on_jax():
    differences = run_check_script("recurrent_check.py", "jax")
    assert set(differences) == {case[0] for case in recurrent_check.CASES}
    assert {name: d for name, d in differences.items() if d > TOLERANCE} == {}


def test_the_dropout_case_really_drops():
    """The dropout comparison means something only if training with dropout changes the outputs."""
    x, mask, _ = recurrent_check.batch()
    _, fast = recurrent_check.make_pair("GRU", {"dropout": 0.3, "seed": 7}, False)
    assert np.max(np.abs(np.asarray(fast(x, training=True)) - np.asarray(fast(x, training=False)))) > 1e-2


@pytest.mark.parametrize(
    ("arguments", "training", "keras_loop"),
    [({}, False, False), ({"dropout": 0.3}, True, False), ({"recurrent_dropout": 0.3}, True, True)],
)
def test_keras_loop_runs_only_where_there_is_no_fast_path(monkeypatch, arguments, training, keras_loop):
    calls = []
    keras_inner_loop = layers.GRU.inner_loop

    def spy(self, *args, **kwargs):
        calls.append(self.name)
        return keras_inner_loop(self, *args, **kwargs)

    monkeypatch.setattr(layers.GRU, "inner_loop", spy)
    layer = recurrent.GRU(4, return_sequences=True, **arguments)
    layer(np.ones((2, 3, 5), "float32"), training=training)
    assert bool(calls) == keras_loop


FUSED_CASES = [  # (arguments, mask, training, fused): the compiled op runs with sigmoid gates, tanh/relu/linear
    ({"reset_after": False}, False, False, True),
    ({"activation": "relu", "go_backwards": True}, False, False, True),
    ({"dropout": 0.3}, False, True, True),
    ({}, True, False, True),
    ({"recurrent_dropout": 0.3}, False, True, False),
    ({"recurrent_activation": "hard_sigmoid"}, False, False, False),
    ({"activation": "softsign"}, False, False, False),
]


@pytest.mark.parametrize(("arguments", "masked", "training", "expected"), FUSED_CASES)
def test_the_compiled_op_runs_where_it_applies(monkeypatch, arguments, masked, training, expected):
    calls = []
    compiled = fused.gru_sequence

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return compiled(*args, **kwargs)

    monkeypatch.setattr(fused, "gru_sequence", spy)
    x, mask, _ = recurrent_check.batch()
    recurrent.GRU(4, return_sequences=True, **arguments)(x, mask=mask if masked else None, training=training)
    assert bool(calls) == expected


@pytest.mark.parametrize(
    ("reset_after", "masked", "zero_output_for_mask"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_compiled_op_equals_keras_over_uneven_shards_with_initial_state(reset_after, masked, zero_output_for_mask):
    """Batch 9 on 2 threads is cut into shards of 5 and 4 rows; a non-zero initial state with its gradient,
    and masks with leading, inner and trailing masked frames (where Keras' outputs and states differ)."""
    import tensorflow as tf

    assert fused.available(), "the compiled GRU op is not built: run `make setup`"
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((9, 11, 6)).astype("float32"))
    h0 = tf.constant(rng.standard_normal((9, 7)).astype("float32"))
    weights = tf.constant(rng.standard_normal((9, 11, 7)).astype("float32"))
    mask = rng.random((9, 11)) > 0.3 if masked else None
    if masked:
        mask[0, :3] = False  # leading masked frames: the output is zero there, the state is h0
        mask[1] = True
    results = []
    for module in (layers, recurrent):
        layer = module.GRU(
            7,
            return_sequences=True,
            return_state=True,
            reset_after=reset_after,
            zero_output_for_mask=zero_output_for_mask,
        )
        layer.build((None, None, 6))
        layer.set_weights(
            [np.random.default_rng(6).normal(0, 0.4, w.shape).astype("float32") for w in layer.get_weights()]
        )
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            outputs, state = layer(x, initial_state=h0, mask=mask)
            loss = tf.reduce_sum(outputs * weights) + tf.reduce_sum(state * weights[:, 0])
        results.append([outputs, state, *tape.gradient(loss, [x, h0, *layer.trainable_variables])])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=TOLERANCE)


def test_initial_state_and_return_state_as_keras():
    x, _, _ = recurrent_check.batch()
    reference, fast = recurrent_check.make_pair("LSTM", {"return_state": True}, False)
    state = [np.full((x.shape[0], recurrent_check.UNITS), value, "float32") for value in (0.5, -0.25)]
    for a, b in zip(reference(x, initial_state=state), fast(x, initial_state=state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=TOLERANCE)


def test_course_models_keep_their_parameter_counts_and_use_the_fast_layers():
    # the course's published summaries (reset_after=False): models 1, 3 and 4
    for builder, arguments, count in [
        ("rnn_model", {"units": 200}, 223_829),
        ("deep_rnn_model", {"units": 200, "recur_layers": 2}, 465_229),
        ("bidirectional_rnn_model", {"units": 200}, 446_029),
    ]:
        model = build(builder, input_dim=161, reset_after=False, **arguments)
        assert model.count_params() == count, builder
        recurrent_layers = [
            getattr(layer, "forward_layer", layer)
            for layer in model.layers
            if isinstance(layer, layers.RNN | layers.Bidirectional)
        ]
        assert recurrent_layers and all(
            type(layer).__module__ == "ctclab.models.recurrent" for layer in recurrent_layers
        )


def test_saved_models_load_fast_and_keras_layers(tmp_path):
    x, _, _ = recurrent_check.batch()
    model = build("bidirectional_rnn_model", input_dim=x.shape[-1], units=6, reset_after=False)
    model.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras", compile=False)
    assert type(loaded.get_layer("bidirectional").forward_layer) is recurrent.GRU
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)

    inputs = keras.Input((None, x.shape[-1]))  # a model saved with Keras' own layer (earlier runs) still loads
    old = keras.Model(inputs, layers.GRU(6, return_sequences=True, reset_after=False)(inputs))
    old.save(tmp_path / "keras.keras")
    loaded_old = keras.saving.load_model(tmp_path / "keras.keras", compile=False)
    assert type(loaded_old.layers[-1]) is layers.GRU
    np.testing.assert_allclose(np.asarray(loaded_old(x)), np.asarray(old(x)), atol=1e-6)
