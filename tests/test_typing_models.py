"""EMG-typing builders: parameter counts, exact output_length, padding, rotation invariance, bad arguments."""

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctclab.alphabet import ENGLISH
from ctclab.models import typing_models
from ctclab.models.registry import BUILDERS, build
from ctclab.models.typing_models import RotationInvariantMLP, typing_front_end

C = ENGLISH.output_dim
FRONT_END = 4 * 32 + 2 * (16 * 33 * 64 + 64)  # BatchNorm over 32 channels; per band Dense(528 -> 64)
TDS_FC = 2 * (128 * 128 + 128) + 2 * 128  # two Dense(128) + LayerNorm
LSTM = 2 * 4 * (128 * 48 + 48 * 48 + 48) + 3 * 2 * 4 * (96 * 48 + 48 * 48 + 48)  # 4 BiLSTM(48), inputs 128 / 96
LSTM_MODULE = LSTM + 2 * (96 * 96 + 96) + 2 * 96 + 96 * 128 + 128  # + FC block on 96 + Dense back to 128
RELATIVE_ATTENTION = 3 * (64 * 64 + 64) + 64 * 64 + (64 * 64 + 64) + 2 * 4 * 16  # q, k, v; positions; output; u, v
ATTENTION = 2 * 128 + (128 * 64 + 64) + RELATIVE_ATTENTION + (64 * 128 + 128)  # LN, Dense down, MHSA, Dense up
SOFTMAX = 128 * C + C


def tds(kernel_size):  # one TDS block of 16 channels on D = 128: conv (k x 1), LayerNorm, FC block
    return 16 * 16 * kernel_size + 16 + 2 * 128 + TDS_FC


@pytest.mark.parametrize(
    "builder, arguments, expected",
    [
        ("tds_conv_ctc_model", {}, FRONT_END + 4 * tds(7) + SOFTMAX),  # 212,957
        ("tds_conv_ctc_model", dict(padded=True, kernel_size=9), FRONT_END + 4 * tds(9) + SOFTMAX),  # 215,005
        ("typing_lstm_model", {}, FRONT_END + LSTM_MODULE + SOFTMAX),  # 337,821
        ("tds_lstm_model", {}, FRONT_END + 4 * tds(9) + LSTM_MODULE + SOFTMAX),  # 481,245
        ("tds_mhsa_typing_model", {}, FRONT_END + 2 * ATTENTION + 4 * tds(9) + SOFTMAX),  # 290,397
    ],
)
def test_default_parameter_counts(builder, arguments, expected):
    """Sizes for quick CPU training, checked against the formulas (1056 = 2 x 16 x 33 inputs)."""
    model = build(builder, input_dim=1056, **arguments)
    assert model.count_params() == expected
    assert model.builder_config["builder"] == builder


INPUT_DIM = 2 * 16 * 3  # F = 3 frequency bins keeps the tests small
SMALL: dict[str, Any] = dict(mlp_features=(8,), block_channels=(4, 4))  # D = 16
UNPADDED_LENGTHS = [5, 6, 7, 8, 12, 17, 32, 63, 100]  # two kernel-3 blocks: 5 frames give 1
LENGTHS = [1, 2, 3, 5, 8, 17, 32, 63, 100]
CASES = [
    ("tds_conv_ctc_model", dict(SMALL, kernel_size=3), UNPADDED_LENGTHS),
    ("tds_conv_ctc_model", dict(SMALL, kernel_size=5, padded=True), LENGTHS),
    ("typing_lstm_model", dict(mlp_features=(8,), units=4, recur_layers=2), LENGTHS),
    ("tds_lstm_model", dict(SMALL, kernel_size=5, units=4, recur_layers=2), LENGTHS),
    ("tds_lstm_model", dict(SMALL, kernel_size=3, padded=False, units=4, recur_layers=1), UNPADDED_LENGTHS),
    ("tds_mhsa_typing_model", dict(SMALL, kernel_size=5, attention_dim=8, num_heads=2), LENGTHS),
]
CASE_IDS = [f"{builder}-{index}" for index, (builder, _, _) in enumerate(CASES)]


def traced(model):
    """The model in a tf.function with unknown batch and time sizes, as training traces it."""
    spec = tf.TensorSpec((None, None, model.input_shape[-1]), tf.float32)
    return tf.function(lambda features: model(features), input_signature=[spec])


@pytest.mark.filterwarnings("ignore:You are using a softmax")  # one-frame inputs attend to one key
@pytest.mark.parametrize("builder, arguments, lengths", CASES, ids=CASE_IDS)
def test_output_length_matches_real_output(builder, arguments, lengths):
    model = build(builder, input_dim=INPUT_DIM, **arguments)
    rng = np.random.default_rng(0)
    graph = traced(model)
    for length in lengths:
        features = rng.normal(size=(2, length, INPUT_DIM)).astype(np.float32)
        assert tuple(graph(features).shape) == (2, model.output_length(length), C)
    for length in (lengths[0], lengths[-1]):
        features = rng.normal(size=(3, length, INPUT_DIM)).astype(np.float32)
        assert model.predict(features, verbose=0).shape == (3, model.output_length(length), C)
    assert list(model.output_length(np.array(lengths))) == [model.output_length(n) for n in lengths]


def test_output_length_table():
    """Default kernels: unpadded TDS loses 4 x 6 frames (300 ms at 125 Hz = 37 frames -> 13)."""
    unpadded, padded = (
        build("tds_conv_ctc_model", input_dim=1056),
        build("tds_conv_ctc_model", input_dim=1056, padded=True),
    )
    assert [unpadded.output_length(n) for n in (25, 26, 37, 150)] == [1, 2, 13, 126]
    assert [padded.output_length(n) for n in (1, 25, 37, 150)] == [1, 25, 37, 150]


@pytest.mark.parametrize("builder, arguments, lengths", CASES, ids=CASE_IDS)
def test_padding_never_changes_real_frames(builder, arguments, lengths):
    """An utterance alone, with extra zero padding, and batched with a longer one: same real outputs."""
    model = build(builder, input_dim=INPUT_DIM, **arguments)
    run = traced(model)
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(23, INPUT_DIM)), rng.normal(size=(41, INPUT_DIM))
    short, long = short.astype(np.float32), long.astype(np.float32)
    alone = np.asarray(run(short[None]))[0]
    padded = np.concatenate([short, np.zeros((19, INPUT_DIM), np.float32)])
    together = np.asarray(run(np.stack([padded[:41], long])))[0]
    longer = np.asarray(run(padded[None]))[0]
    frames = model.output_length(23)
    np.testing.assert_allclose(together[:frames], alone[:frames], atol=2e-6)
    np.testing.assert_allclose(longer[:frames], alone[:frames], atol=2e-6)


def rotation_layer(offsets, weights=None):
    layer = RotationInvariantMLP((12, 6), offsets)
    layer.build((None, None, 16, 3))
    if weights is not None:
        layer.set_weights(weights)
    return layer


BAND = np.random.default_rng(2).normal(size=(2, 5, 16, 3)).astype(np.float32)  # (B, T, E, F)


@pytest.mark.parametrize("shift", [1, 5, -3])
def test_all_rotations_make_the_mlp_exactly_invariant(shift):
    layer = rotation_layer(range(16))
    np.testing.assert_allclose(layer(np.roll(BAND, shift, axis=2)), layer(BAND), atol=1e-5)


def test_three_offsets_pool_shifted_rotations():
    """Offsets (-1, 0, 1) on a band rotated by +1 equal offsets (0, 1, 2) on the band: invariance is approximate."""
    layer = rotation_layer((-1, 0, 1))
    shifted = rotation_layer((0, 1, 2), layer.get_weights())
    np.testing.assert_allclose(layer(np.roll(BAND, 1, axis=2)), shifted(BAND), atol=1e-6)
    assert not np.allclose(layer(np.roll(BAND, 1, axis=2)), layer(BAND), atol=1e-3)


def test_front_end_rotates_each_band_on_its_own():
    """With every rotation pooled, rotating one band's electrodes changes nothing; the other band's half stays put."""
    inputs = keras.Input((None, INPUT_DIM))
    front_end = keras.Model(inputs, typing_front_end(inputs, (8,), offsets=range(16)))
    frames = np.random.default_rng(3).normal(size=(2, 4, 2, 16, 3)).astype(np.float32)  # (B, T, band, E, F)
    rotated_left = frames.copy()
    rotated_left[:, :, 0] = np.roll(frames[:, :, 0], 3, axis=2)
    changed_right = frames.copy()
    changed_right[:, :, 1] += 1.0
    outputs = [np.asarray(front_end(x.reshape(2, 4, INPUT_DIM))) for x in (frames, rotated_left, changed_right)]
    assert outputs[0].shape == (2, 4, 16)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    np.testing.assert_allclose(outputs[2][..., :8], outputs[0][..., :8], atol=1e-6)  # left band's half
    assert not np.allclose(outputs[2][..., 8:], outputs[0][..., 8:])


def test_saved_model_reloads(tmp_path):
    model = build("tds_conv_ctc_model", input_dim=INPUT_DIM, **SMALL, kernel_size=3)
    features = np.random.default_rng(4).normal(size=(1, 20, INPUT_DIM)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(reloaded(features), model(features), atol=1e-6)


@pytest.mark.parametrize(
    "builder, arguments, message",
    [
        ("tds_conv_ctc_model", dict(input_dim=1000), "1000"),
        ("tds_conv_ctc_model", dict(input_dim=INPUT_DIM, mlp_features=(8,), block_channels=(5,)), r"\[5\]"),
        ("tds_conv_ctc_model", dict(input_dim=INPUT_DIM, kernel_size=8, padded=True), "8"),
        ("tds_conv_ctc_model", dict(input_dim=INPUT_DIM, kernel_size=0), "0"),
        ("typing_lstm_model", dict(input_dim=INPUT_DIM, mlp_features=(0,)), r"\[0\]"),
        ("tds_mhsa_typing_model", dict(input_dim=INPUT_DIM, offsets=()), r"\[\]"),
        ("typing_lstm_model", dict(input_dim=INPUT_DIM, units=0), "0"),
        ("typing_lstm_model", dict(input_dim=INPUT_DIM, recur_layers=0), "0"),
        ("tds_mhsa_typing_model", dict(input_dim=INPUT_DIM, attention_dim=10, num_heads=4), "10"),
    ],
)
def test_bad_arguments_name_the_value(builder, arguments, message):
    with pytest.raises(ValueError, match=message):
        build(builder, **arguments)


def test_unknown_pooling():
    with pytest.raises(ValueError, match="'median'"):
        RotationInvariantMLP((8,), pooling="median")


def test_every_builder_is_registered():
    for name in ["tds_conv_ctc_model", "typing_lstm_model", "tds_lstm_model", "tds_mhsa_typing_model"]:
        assert BUILDERS[name] is getattr(typing_models, name)
