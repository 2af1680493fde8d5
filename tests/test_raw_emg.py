"""The raw-EMG route: the "raw" feature kind against an independent scipy chain (Gaddy & Klein's
filtfilt notches and high-pass, np.interp), tone by tone gains, and raw_emg_model's exact
output_length, padding invariance, parameter count and bad arguments; one tiny training run."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import signal
from test_emg_loaders import write_gaddy_fixture  # the Gaddy & Klein layout fixture

from ctclab.alphabet import ENGLISH
from ctclab.emg import signal as emg_signal
from ctclab.emg import training as emg
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.models.registry import BUILDERS, build
from ctclab.runs import load_trained_model
from ctclab.training.trainer import train_model

RATE = 1000.0
RAW = EMGFeatureConfig.raw_emg()


def reference_raw(emg: np.ndarray, target_rate: float = 689.06) -> np.ndarray:
    """Gaddy & Klein's read_emg chain written with scipy's transfer-function filters and np.interp,
    plus the documented anti-alias low-pass, then 50 tanh(x / 20 / 50)."""
    x = np.asarray(emg, np.float64)
    for multiple in range(1, 8):
        b, a = signal.iirnotch(60.0 * multiple, 30.0, fs=RATE)
        x = signal.filtfilt(b, a, x, axis=0)
    b, a = signal.butter(3, 2.0, "highpass", fs=RATE)
    x = signal.filtfilt(b, a, x, axis=0)
    x = signal.sosfiltfilt(signal.butter(8, 0.45 * target_rate, fs=RATE, output="sos"), x, axis=0)
    times = np.arange(int(len(x) * target_rate / RATE)) / target_rate
    x = np.stack([np.interp(times, np.arange(len(x)) / RATE, x[:, channel]) for channel in range(x.shape[1])], 1)
    return 50.0 * np.tanh(x / 20.0 / 50.0)


def tone(frequency: float, seconds: float = 8.0, amplitude: float = 40.0) -> np.ndarray:
    """(T, 8) the same sine on every channel, in microvolts at 1 kHz."""
    time = np.arange(int(seconds * RATE)) / RATE
    return np.repeat((amplitude * np.sin(2 * np.pi * frequency * time + 0.3))[:, None], 8, axis=1)


def microvolts(raw: np.ndarray) -> np.ndarray:
    """Undo the documented squash: x = 20 * 50 * artanh(y / 50)."""
    return 20.0 * 50.0 * np.arctanh(np.asarray(raw, np.float64) / 50.0)


def middle(x: np.ndarray) -> np.ndarray:
    """The samples from 2 s in to 2 s before the end at the raw rate: the 2 Hz high-pass's edge
    transient (the two filters pad the ends differently) decays as exp(-2 pi 2 Hz t / 2), to 4e-6."""
    edge = int(2 * RAW.frame_rate)
    return x[edge:-edge]


# ------------------------------------------------------------------------- the "raw" feature kind


def test_raw_kind_matches_an_independent_scipy_chain():
    rng = np.random.default_rng(0)
    seconds = np.arange(8000)[:, None] / RATE
    muscle = signal.sosfiltfilt(
        signal.butter(4, [20, 300], "bandpass", fs=RATE, output="sos"), rng.normal(size=(8000, 8)) * 30, axis=0
    )
    hum = sum(20.0 / k * np.sin(2 * np.pi * 60.0 * k * seconds + k) for k in range(1, 8))
    drift = 80.0 * np.sin(2 * np.pi * 0.2 * seconds) + rng.uniform(-300, 300, size=8)  # wander + offsets
    emg = muscle + hum + drift
    ours, reference = emg_signal.emg_features(emg, RAW), reference_raw(emg)
    assert ours.shape == reference.shape == (5512, 8) and ours.dtype == np.float32
    np.testing.assert_allclose(middle(ours), middle(reference), atol=1e-5 * np.std(reference))


@pytest.mark.parametrize(
    "frequency, low, high",
    [
        (0.5, 0.0, 0.01),  # drift: 2 Hz 3rd-order high-pass, forward and backward (|H|^2 = 2.4e-4)
        (30.0, 0.99, 1.01),  # EMG band: passes (linear interpolation loses 0.3 % at most here)
        (45.0, 0.97, 1.01),
        (60.0, 0.0, 0.01),  # mains and harmonics: notched
        (120.0, 0.0, 0.01),
        (180.0, 0.0, 0.01),
        (420.0, 0.0, 0.01),
    ],
)
def test_raw_kind_gain_of_a_tone(frequency, low, high):
    """Amplitude out / in of a 40 µV sine, fitted at the tone's frequency on the 689.06 Hz grid."""
    out = middle(microvolts(emg_signal.emg_features(tone(frequency), RAW)))[:, 0]
    time = (np.arange(len(out)) + int(2 * RAW.frame_rate)) / RAW.frame_rate
    basis = np.stack([np.sin(2 * np.pi * frequency * time), np.cos(2 * np.pi * frequency * time)], 1)
    amplitude = np.hypot(*np.linalg.lstsq(basis, out, rcond=None)[0])
    assert low <= amplitude / 40.0 <= high


def test_raw_kind_low_passes_what_would_fold_below_the_new_nyquist():
    """400 Hz lies above 689.06 / 2 Hz: without the anti-alias filter it would fold to 289 Hz."""
    out = middle(microvolts(emg_signal.emg_features(tone(400.0), RAW)))
    assert np.sqrt(np.mean(out**2)) < 0.03 * 40.0 / math.sqrt(2)


def test_raw_kind_squash_is_linear_for_emg_and_caps_artefacts():
    values = np.array([[-1e6], [-1000.0], [-20.0], [0.0], [20.0], [170.0], [1e6]])
    np.testing.assert_allclose(
        emg_signal.squash_raw(values)[:, 0], 50 * np.tanh(values[:, 0] / 1000), rtol=1e-6, atol=1e-6
    )
    assert emg_signal.squash_raw(values)[5, 0] == pytest.approx(170.0 / 20, rel=0.01)  # within 1 % to 170 µV
    assert np.all(np.abs(emg_signal.squash_raw(values)) <= 50.0)


@pytest.mark.parametrize("num_samples, frames", [(2, 1), (3, 2), (100, 68), (1000, 689), (4321, 2977)])
def test_raw_kind_shape_rate_and_names(num_samples, frames):
    emg_samples = np.random.default_rng(1).normal(size=(num_samples, 8)) * 20 + 300
    features = emg_signal.emg_features(emg_samples, RAW)
    assert features.shape == (frames, 8) == (RAW.num_frames(num_samples), RAW.feature_dim)  # floor(T * 0.68906)
    assert RAW.frame_rate == 689.06 and RAW.frame_hop_ms == pytest.approx(1000 / 689.06)
    assert emg_signal.feature_names(RAW) == [f"ch{channel} raw" for channel in range(1, 9)]


def test_raw_kind_other_rates_and_bad_values():
    assert EMGFeatureConfig.raw_emg(feature_rate=1000.0).num_frames(1234) == 1234  # no resampling
    with pytest.raises(ValueError, match="frame_length = frame_hop = 1, got 16, 6"):
        EMGFeatureConfig(kind="raw")
    with pytest.raises(ValueError, match="feature_rate must lie in .* got 1500.0"):
        EMGFeatureConfig.raw_emg(feature_rate=1500.0)
    with pytest.raises(ValueError, match="'wavelet' is not one of"):
        EMGFeatureConfig(kind="wavelet")
    with pytest.raises(ValueError, match="too short"):
        emg_signal.emg_features(np.zeros((1, 8)), RAW)


# ------------------------------------------------------------------------------- raw_emg_model

SMALL = [
    dict(conv_channels=(4, 6, 8), units=8, encoder_layers=1),
    dict(conv_channels=(4, 6), conv_strides=(2, 3), kernel_size=5, encoder="lstm", units=6, encoder_layers=2),
    dict(conv_channels=(8, 8, 8), encoder="attention", units=8, encoder_layers=2, num_heads=2, dropout_rate=0.0),
]
IDS = ["gru", "lstm-strides-2-3", "attention"]
LENGTHS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 257]


def traced(model):
    """The model in a tf.function with unknown batch and time sizes, as training traces it."""
    spec = tf.TensorSpec((None, None, model.input_shape[-1]), tf.float32)
    return tf.function(lambda features: model(features), input_signature=[spec])


@pytest.mark.parametrize("arguments", SMALL, ids=IDS)
def test_output_length_matches_real_output_eager_and_in_graph(arguments):
    model = build("raw_emg_model", input_dim=8, **arguments)
    assert model(np.zeros((2, 11, 8), np.float32)).shape == (2, model.output_length(11), ENGLISH.output_dim)
    graph = traced(model)
    for batch, length in [(3, n) for n in LENGTHS] + [(5, 689)]:
        assert tuple(graph(np.zeros((batch, length, 8), np.float32)).shape) == (batch, model.output_length(length), 29)
    assert list(model.output_length(np.array(LENGTHS))) == [model.output_length(n) for n in LENGTHS]


@pytest.mark.parametrize(
    "arguments, lengths",
    [  # frames out for 1, 7, 8, 9, 689, 1000 samples in
        (dict(), [1, 1, 1, 2, 87, 125]),  # ceil(T / 8): 689.06 Hz -> 86.13 Hz
        (dict(conv_channels=(4, 4), conv_strides=(2, 3)), [1, 2, 2, 2, 115, 167]),  # ceil(ceil(T / 2) / 3)
        (dict(conv_channels=(4,), conv_strides=(1,), kernel_size=7), [1, 7, 8, 9, 689, 1000]),  # stride 1: all
    ],
)
def test_output_length_table(arguments, lengths):
    model = BUILDERS["raw_emg_model"](**arguments)
    assert [model.output_length(n) for n in (1, 7, 8, 9, 689, 1000)] == lengths


@pytest.mark.parametrize("arguments", SMALL, ids=IDS)
def test_padding_never_changes_real_frames(arguments):
    """An utterance alone, with extra zero padding, and batched with a longer one: same real outputs."""
    model = build("raw_emg_model", input_dim=8, **arguments)
    run = traced(model)
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(141, 8)).astype(np.float32), rng.normal(size=(203, 8)).astype(np.float32)
    alone = np.asarray(run(short[None]))[0]
    padded = np.concatenate([short, np.zeros((77, 8), np.float32)])
    together = np.asarray(run(np.stack([padded[:203], long])))[0]
    longer = np.asarray(run(padded[None]))[0]
    frames = model.output_length(141)
    np.testing.assert_allclose(together[:frames], alone[:frames], atol=2e-6)
    np.testing.assert_allclose(longer[:frames], alone[:frames], atol=2e-6)


def test_training_steps_survive_changing_batch_lengths():
    """Gradients of a training-mode model on batches whose length changes between steps, as
    training does: the strided shortcut must not be a strided 1 x 1 Conv1D (module docstring),
    whose oneDNN filter gradient crashed the process on this input."""
    model = build("raw_emg_model", conv_channels=(16, 16, 16), units=8, encoder_layers=1)
    spec = tf.TensorSpec((None, None, 8), tf.float32)

    @tf.function(input_signature=[spec])
    def gradients(features):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(features, training=True) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    rng = np.random.default_rng(0)
    for length in (1378, 827, 1001, 1000, 64, 65, 20, 21):
        for batch in (1, 3):
            grads = gradients(rng.normal(size=(batch, length, 8)).astype(np.float32))
            assert all(np.all(np.isfinite(gradient)) for gradient in grads)


def test_gaddy_size_residual_blocks_have_pytorchs_parameter_count():
    """architecture.py's three ResBlocks at width 768: Conv1d k*c_in*c_out + c_out; BatchNorm1d
    2 weights + 2 running statistics per channel (Keras counts both); a 1 x 1 shortcut on every
    block (stride 2), here a Dense of c_in*c_out + c_out."""
    model = build("raw_emg_model", conv_channels=(768, 768, 768), units=4, encoder_layers=1)

    def block(c_in: int, c_out: int) -> int:
        return (3 * c_in * c_out + c_out) + (3 * c_out * c_out + c_out) + (c_in * c_out + c_out) + 3 * 4 * c_out

    counted = sum(layer.count_params() for layer in model.layers if layer.name.startswith("block_"))
    assert counted == block(8, 768) + 2 * block(768, 768) == 10_086_144


def test_builder_config_round_trips_and_the_model_saves_and_loads(tmp_path):
    model = build("raw_emg_model", input_dim=8, **SMALL[2])
    config = json.loads(json.dumps(model.builder_config))  # tuples become lists in builder.json
    rebuilt = build(config["builder"], **config["arguments"])
    assert rebuilt.count_params() == model.count_params() and rebuilt.output_length(689) == 87
    features = np.random.default_rng(0).normal(size=(2, 90, 8)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(features)), np.asarray(model(features)), atol=1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(conv_channels=(4, 4), conv_strides=(2,)), r"one stride per residual block, got conv_channels \[4, 4\]"),
        (dict(conv_channels=(), conv_strides=()), r"one stride per residual block, got conv_channels \[\]"),
        (dict(conv_strides=(2, 0, 2)), r"must be positive, got \[2, 0, 2\]"),
        (dict(conv_channels=(4, -1, 4)), r"must be positive, got \[2, 2, 2\] and \[4, -1, 4\]"),
        (dict(kernel_size=4), "kernel_size must be a positive odd number .* got 4"),
        (dict(encoder="cnn"), "encoder must be one of .* got 'cnn'"),
        (dict(units=0), "need units >= 1 and encoder_layers >= 1, got 0, 2"),
        (dict(encoder_layers=0), "need units >= 1 and encoder_layers >= 1, got 128, 0"),
        (dict(encoder="attention", units=10, num_heads=4), "divisible by num_heads, got 2, 10, 4"),
        (dict(input_dim=0), "input_dim must be positive, got 0"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        build("raw_emg_model", **arguments)


# ------------------------------------------------------------------------ through the training path


@pytest.mark.slow
def test_raw_run_trains_reloads_and_scores(tmp_path):
    """The raw kind in the unchanged path: train_model, the run's feature class, score_run."""
    keras.utils.set_random_seed(0)
    write_gaddy_fixture(tmp_path / "gaddy")
    paths = emg.gaddy_descriptor_set(tmp_path / "gaddy", tmp_path / "descriptors")
    loader = emg.EMGFeatureLoader(RAW)
    model = build("raw_emg_model", conv_channels=(8, 8, 8), units=8, encoder_layers=1)
    history = train_model(
        model,
        "h.pickle",
        "raw_tiny.keras",
        paths["train"],
        paths["dev"],
        epochs=2,
        minibatch_size=2,
        features=RAW,
        feature_loader=loader,
        results_dir=tmp_path / "runs",
        verbose=0,
    )
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["loss"]))
    run = tmp_path / "runs" / "raw_tiny"
    _, normalizer, config, _ = load_trained_model(run)
    assert config == RAW and normalizer.mean.shape == (8,)
    row = emg.score_run("raw EMG", "voiced", "open", run, paths["dev"], feature_loader=loader)
    assert row["scores"]["utterances"] == 2 and 0 <= row["scores"]["greedy"][1]  # voiced + silent
