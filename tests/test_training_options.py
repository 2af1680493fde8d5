"""Training options: schedules, Xavier init, L2, SpecAugment, mixed precision, two-replica training."""

import json
import math

import keras
import numpy as np
import pytest
from conftest import run_check_script

from ctclab.data.augment import AugmentConfig
from ctclab.models import deep as deep_models
from ctclab.models import layers as model_layers
from ctclab.training import options as training_options
from ctclab.training.evaluation import evaluate_model
from ctclab.training.loss import CTCTrainer
from ctclab.training.options import OptimizerConfig, WarmupDecay
from ctclab.training.trainer import train_model

PEAK, FINAL = 1e-3, 1e-5


@pytest.mark.parametrize(
    "decay, step, expected",
    [
        ("cosine", 0, PEAK * 1 / 10),  # warm-up: (step + 1) / warmup_steps of the peak
        ("cosine", 4, PEAK * 5 / 10),
        ("cosine", 10, PEAK),  # decay starts at the peak
        ("cosine", 60, FINAL + (PEAK - FINAL) * 0.5),  # half way: cos(pi / 2) = 0
        ("cosine", 85, FINAL + (PEAK - FINAL) * 0.5 * (1 + math.cos(math.pi * 0.75))),
        ("cosine", 110, FINAL),
        ("cosine", 500, FINAL),  # stays at the floor
        ("exponential", 60, PEAK * (FINAL / PEAK) ** 0.5),  # = 1e-4
        ("exponential", 110, FINAL),
        ("constant", 0, PEAK * 1 / 10),
        ("constant", 300, PEAK),
    ],
)
def test_warmup_decay_table(decay, step, expected):
    schedule = WarmupDecay(PEAK, warmup_steps=10, decay_steps=100, decay=decay, final_learning_rate=FINAL)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_warmup_decay_is_monotone_and_serializable():
    schedule = WarmupDecay(PEAK, 5, 50, "cosine", FINAL)
    rates = [float(schedule(step)) for step in range(70)]
    assert np.all(np.diff(rates[:5]) > 0) and np.all(np.diff(rates[5:]) <= 0) and max(rates) == pytest.approx(PEAK)
    assert WarmupDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(decay="linear"), "decay must be one of"),
        (dict(decay_steps=0), "decay_steps >= 1"),
        (dict(decay="exponential", final_learning_rate=0.0), "exponential decay needs"),
    ],
)
def test_warmup_decay_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        WarmupDecay(**dict(dict(peak_learning_rate=PEAK, warmup_steps=1, decay_steps=10), **arguments))


def test_build_optimizer_spreads_the_schedule_over_training():
    optimizer = training_options.build_optimizer(OptimizerConfig(warmup_epochs=1.5, final_fraction=0.1), 10, 6)
    schedule = optimizer.learning_rate if isinstance(optimizer.learning_rate, WarmupDecay) else optimizer._learning_rate
    assert (schedule.warmup_steps, schedule.decay_steps) == (15, 45)  # 60 steps in all
    assert schedule.final_learning_rate == pytest.approx(1e-4) and optimizer.clipnorm == 5.0
    assert isinstance(
        training_options.build_optimizer(OptimizerConfig(weight_decay=1e-2), 10, 2), keras.optimizers.AdamW
    )


def test_glorot_normal_reinitialization_has_xavier_std():
    inputs = keras.Input((None, 400))
    x = keras.layers.Conv1D(300, 5, name="conv")(inputs)  # fans 5 * 400 = 2000 and 5 * 300 = 1500
    x = keras.layers.GRU(64, return_sequences=True, name="gru")(x)
    outputs = keras.layers.Dense(600, bias_initializer="ones", name="dense")(x)  # fans 64, 600
    model = keras.Model(inputs, outputs)
    recurrent = np.array(model.get_layer("gru").cell.recurrent_kernel)
    assert training_options.initialize_kernels(model, "glorot_normal", seed=1) == 3  # conv, GRU input, dense
    for name, fan_in, fan_out in [("conv", 2000, 1500), ("dense", 64, 600)]:
        kernel = np.array(model.get_layer(name).kernel)
        assert kernel.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.03), name
        assert abs(kernel.mean()) < 0.1 * kernel.std()
    np.testing.assert_array_equal(np.array(model.get_layer("gru").cell.recurrent_kernel), recurrent)
    np.testing.assert_array_equal(np.array(model.get_layer("dense").bias), 1.0)


def small_model(input_dim=13, **kwargs):
    return deep_models.deep_birnn_model(
        input_dim, units=8, recur_layers=1, normalization="none", dropout_rate=0.0, **kwargs
    )


def batch(seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(3, 24, 13)).astype(np.float32)
    features[2, 18:] = 0.0  # a shorter utterance, zero-padded
    x = {"features": features, "input_length": np.array([24, 24, 18], np.int32)}
    y = {"labels": np.array([[2, 3, 4], [5, 6, 0], [7, 7, 8]], np.int32), "label_length": np.array([3, 2, 3], np.int32)}
    return x, y


def test_l2_penalty_is_weight_times_sum_of_squared_kernels():
    model = small_model()
    kernels = [np.array(v) for v in training_options.kernel_variables(model)]
    assert len(kernels) == 3  # forward GRU, backward GRU, time dense (recurrent kernels excluded)
    expected = 1e-3 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in kernels)
    assert float(training_options.l2_penalty(model, 1e-3)) == pytest.approx(expected, rel=1e-5)
    x, y = batch()
    plain, penalized = CTCTrainer(model), CTCTrainer(model, l2=1e-3)
    losses = [float(t.compute_loss(x, y, t(x), training=False)) for t in (plain, penalized)]
    assert losses[1] - losses[0] == pytest.approx(expected, rel=1e-4)


def masked_runs(row_is_masked):
    """Lengths of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], row_is_masked, [False]]).astype(int)
    starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
    return list(ends - starts)


def test_spec_augment_masks_have_the_configured_widths():
    layer = model_layers.SpecAugment(frequency_mask_width=6, time_mask_width=9, seed=3)
    features = np.ones((200, 50, 40), np.float32)
    features[:, 45:] = 0.0  # every utterance has 45 real frames
    output = np.asarray(layer(features, training=True))
    frequency_widths, time_widths = [], []
    for utterance in output[:, :45]:
        zero = utterance == 0.0
        masked_bins, masked_frames = zero.all(axis=0), zero.all(axis=1)  # (F,), (T,)
        # every zero is in a masked frequency band or a masked time run: nothing else changed
        np.testing.assert_array_equal(zero, masked_bins[None, :] | masked_frames[:, None])
        frequency_widths += masked_runs(masked_bins) or [0]
        time_widths += masked_runs(masked_frames) or [0]
        assert len(masked_runs(masked_bins)) <= 1 and len(masked_runs(masked_frames)) <= 1
        assert not masked_frames[44]  # the last real frame is never masked: the length stays true
    assert set(frequency_widths) == set(range(7)) and set(time_widths) == set(range(10))  # U{0..width}
    np.testing.assert_array_equal(output[:, 45:], 0.0)  # padding stays zero


def test_spec_augment_is_identity_at_inference_and_rejects_too_wide_bands():
    features = np.random.default_rng(0).normal(size=(4, 30, 20)).astype(np.float32)
    layer = model_layers.SpecAugment(frequency_mask_width=5, time_mask_width=5)
    np.testing.assert_array_equal(np.asarray(layer(features)), features)
    np.testing.assert_array_equal(np.asarray(layer(features, training=False)), features)
    with pytest.raises(ValueError, match="frequency_mask_width 20 must be below the 20 features"):
        model_layers.SpecAugment(frequency_mask_width=20)(features, training=True)
    with pytest.raises(ValueError, match="time_masks must be >= 0, got -1"):
        model_layers.SpecAugment(time_masks=-1)


def has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize(
    "flag, expected",
    [
        (False, "float32"),
        (None, "float32"),
        ("mixed_bfloat16", "mixed_bfloat16"),
        ("mixed_float16", "mixed_float16"),
        (True, "mixed_float16" if has_gpu() else "mixed_bfloat16"),
    ],
)
def test_precision_policy(flag, expected):
    assert training_options.precision_policy(flag) == expected


def test_precision_policy_rejects_unknown_names():
    with pytest.raises(ValueError, match="'float8'"):
        training_options.precision_policy("float8")


def test_mixed_precision_computes_in_bfloat16_keeps_softmax_float32_and_trains():
    model = small_model()
    with training_options.training_scope(model, "mixed_bfloat16") as (mixed, strategy):
        assert strategy is None and mixed is not model
        assert mixed.get_layer("time_dense").compute_dtype == "bfloat16"
        assert mixed.get_layer("time_dense").kernel.dtype == "float32"  # weights stay float32
        assert mixed.get_layer("softmax").compute_dtype == "float32"
        trainer = CTCTrainer(mixed)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        x, y = batch()
        assert mixed(x["features"]).dtype == "float32"
        losses = [float(trainer.train_on_batch(x, y)) for _ in range(4)]
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # the float32 model on the same weights gives nearly the same probabilities
    model.set_weights(mixed.get_weights())
    np.testing.assert_allclose(np.asarray(model(x["features"])), np.asarray(mixed(x["features"])), atol=0.05)


@pytest.mark.slow
def test_train_model_with_every_option(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    model = small_model(161)
    before = model.get_weights()
    history = train_model(
        model,
        "m.pickle",
        "options.keras",
        train_json=tone_corpus,
        valid_json=tone_corpus,
        minibatch_size=3,
        epochs=2,
        verbose=0,
        results_dir=tmp_path / "results",
        mixed_precision=True,
        l2=1e-4,
        initializer="glorot_normal",
        spec_augment=model_layers.SpecAugment(10, 5),
        augment=AugmentConfig(speed_probability=1.0, noise_probability=1.0, reverb=False),
        schedule=OptimizerConfig(warmup_epochs=1),
    )
    options = json.loads((tmp_path / "results" / "options" / "training.json").read_text())
    assert options["precision"] == training_options.precision_policy(True) and options["replicas"] == 1
    assert options["spec_augment"] == dict(frequency_mask_width=10, time_mask_width=5, frequency_masks=1, time_masks=1)
    assert options["schedule"]["warmup_epochs"] == 1 and options["l2"] == 1e-4
    assert options["augment"]["speed_probability"] == 1.0 and options["augment"]["reverb"] is False
    assert all(np.isfinite(history["loss"])) and len(history["loss"]) == 2
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))  # trained weights copied back
    assert evaluate_model(tmp_path / "results" / "options", tone_corpus)["utterances"] == 6


def test_train_model_rejects_optimizer_and_schedule(tone_corpus, tmp_path):
    with pytest.raises(ValueError, match="either optimizer or schedule"):
        train_model(
            small_model(161),
            "a.pickle",
            "a.keras",
            train_json=tone_corpus,
            results_dir=tmp_path,
            optimizer=keras.optimizers.Adam(),
            schedule=OptimizerConfig(),
        )


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tone_corpus, tmp_path):
    """Two replicas: the split step equals the single-device step, and train_model's loss goes down."""
    result = run_check_script("distribute_check.py", "tensorflow", tone_corpus, tmp_path / "results", cwd=tmp_path)
    assert result["logical_cpus"] == 2 and result["replicas"] == 2
    assert result["training_json"]["replicas"] == 2
    # sum over replicas of (replica mean / 2) = the batch mean: same loss, same update
    assert result["distributed_loss"] == pytest.approx(result["single_loss"], rel=1e-5)
    assert result["max_update"] > 1e-3 and result["max_weight_difference"] < 1e-5
    losses = result["losses"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
