"""Deep and attention builders: seed parameter counts, exact output_length, padding masks, attention."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_check_script
from hypothesis import given, settings
from hypothesis import strategies as st

from ctclab.alphabet import ENGLISH
from ctclab.models.layers import PaddingMask, RelativePositionAttention, TimeReduction, reduced_length
from ctclab.models.registry import BUILDERS, build, cnn_output_length

# Seed 003's printout, layer by layer, with PyTorch's formulas: Conv2d c_in*c_out*9 + c_out;
# LayerNorm 2 * features; GRU per direction 3 * (in*h + h*h + 2h); Linear in*out + out.
SEED_003_LAYERS = [
    ("conv", 1 * 32 * 9 + 32),
    ("residual_1", 2 * (32 * 32 * 9 + 32) + 2 * (2 * 64)),
    ("residual_2", 2 * (32 * 32 * 9 + 32) + 2 * (2 * 64)),
    ("fully_connected", 2048 * 512 + 512),
    ("birnn_1", 2 * 3 * (512 * 512 + 512 * 512 + 2 * 512) + 2 * 512),
    ("birnn_2", 2 * 3 * (1024 * 512 + 512 * 512 + 2 * 512) + 2 * 1024),
    ("birnn_3", 2 * 3 * (1024 * 512 + 512 * 512 + 2 * 512) + 2 * 1024),
    ("classifier", 1024 * 512 + 512 + 512 * 29 + 29),
]


def parameters_by_prefix(model, prefixes):
    counts = dict.fromkeys(prefixes, 0)
    for layer in model.layers:
        owner = "classifier" if layer.name in ("classifier_hidden", "time_dense") else layer.name.split("_norm")[0]
        owner = next((p for p in prefixes if owner == p or owner.startswith(p + "_")), None)
        if owner:
            counts[owner] += layer.count_params()
    return counts


def test_residual_cnn_bigru_matches_seed_003_layer_by_layer():
    model = build("residual_cnn_bigru_model", input_dim=128, residual_blocks=2, units=512, recur_layers=3)
    assert model.count_params() == 14_233_053 == sum(count for _, count in SEED_003_LAYERS)
    assert parameters_by_prefix(model, [name for name, _ in SEED_003_LAYERS]) == dict(SEED_003_LAYERS)


def test_residual_cnn_bigru_tutorial_default_size():
    """The AssemblyAI tutorial's 3 residual blocks and 5 BiGRUs: 23,705,373 (same formula)."""
    model = build("residual_cnn_bigru_model", input_dim=128, residual_blocks=3, recur_layers=5)
    assert model.count_params() == 14_233_053 + 18_752 + 2 * SEED_003_LAYERS[-2][1] == 23_705_373


SMALL = {
    "cnn_birnn_model": [
        dict(filters=8, kernel_size=5, units=8, conv_layers=2, dilation=2, pool_size=2),
        dict(filters=8, kernel_size=11, conv_border_mode="valid", units=8, rnn_type="lstm"),
        dict(filters=8, kernel_size=4, conv_stride=3, conv_border_mode="causal", units=8, rnn_type="simple_rnn"),
    ],
    "deep_birnn_model": [dict(units=8, recur_layers=2, normalization="layer")],
    "deep_speech2_model": [
        dict(
            conv_filters=(4, 4),
            conv_kernels=((5, 5), (5, 3)),
            conv_strides=((2, 2), (1, 2)),
            units=8,
            recur_layers=2,
            fc_units=(16,),
        ),
        dict(
            conv_type="1d",
            conv_filters=(8,),
            conv_kernels=(5,),
            conv_strides=(3,),
            units=8,
            recur_layers=1,
            fc_units=(),
        ),
    ],
    "residual_cnn_bigru_model": [dict(conv_filters=4, residual_blocks=1, units=8, recur_layers=2)],
    "transformer_ctc_model": [dict(model_dim=16, num_heads=2, num_blocks=2, feed_forward_dim=32, conv_strides=(2, 2))],
    "conformer_ctc_model": [dict(model_dim=16, num_heads=2, num_blocks=1, conv_kernel_size=5)],
    "tds_mhsa_model": [
        dict(num_features=24, block_channels=(4, 6), kernel_size=5, attention_dim=8, num_heads=2),
        dict(num_features=24, block_channels=(4,), kernel_size=5, attention_dim=8, num_heads=2, frame_stride=2),
    ],
}
CASES = [(builder, arguments) for builder, variants in SMALL.items() for arguments in variants]
CASE_IDS = [f"{builder}-{index}" for builder, variants in SMALL.items() for index in range(len(variants))]
LENGTHS = [11, 12, 13, 14, 15, 17, 32, 63, 100]


def traced(model):
    """The model in a tf.function with unknown batch and time sizes, as training traces it."""
    spec = tf.TensorSpec((None, None, model.input_shape[-1]), tf.float32)
    return tf.function(lambda features: model(features), input_signature=[spec])


@pytest.mark.parametrize("builder, arguments", CASES, ids=CASE_IDS)
def test_output_length_matches_real_output_eager_and_in_graph(builder, arguments):
    model = build(builder, input_dim=13, **arguments)
    assert model(np.zeros((2, 11, 13), np.float32)).shape == (2, model.output_length(11), ENGLISH.output_dim)
    graph = traced(model)
    for batch, length in [(3, n) for n in LENGTHS] + [(5, 77)]:
        assert tuple(graph(np.zeros((batch, length, 13), np.float32)).shape) == (batch, model.output_length(length), 29)
    assert list(model.output_length(np.array(LENGTHS))) == [model.output_length(n) for n in LENGTHS]


@pytest.mark.parametrize("builder, arguments", CASES, ids=CASE_IDS)
def test_padding_never_changes_real_frames(builder, arguments):
    """An utterance alone, with extra zero padding, and batched with a longer one: same real outputs."""
    model = build(builder, input_dim=13, **arguments)
    run = traced(model)
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(37, 13)).astype(np.float32), rng.normal(size=(61, 13)).astype(np.float32)
    alone = np.asarray(run(short[None]))[0]
    padded = np.concatenate([short, np.zeros((29, 13), np.float32)])
    together = np.asarray(run(np.stack([padded[:61], long])))[0]
    longer = np.asarray(run(padded[None]))[0]
    frames = model.output_length(37)
    np.testing.assert_allclose(together[:frames], alone[:frames], atol=2e-6)
    np.testing.assert_allclose(longer[:frames], alone[:frames], atol=2e-6)


@pytest.mark.parametrize(
    "builder, arguments, lengths",
    [  # hand-computed frames out for 10, 11, 100, 101 frames in
        ("residual_cnn_bigru_model", dict(input_dim=128, units=4, recur_layers=1), [5, 6, 50, 51]),  # (T - 1) // 2 + 1
        (
            "deep_speech2_model",
            dict(input_dim=161, units=4, recur_layers=1),
            [5, 6, 50, 51],
        ),  # 11x41 stride 2, stride 1
        ("transformer_ctc_model", dict(input_dim=80, conv_strides=(2, 2)), [3, 3, 25, 26]),  # twice (T - 1) // 2 + 1
        ("conformer_ctc_model", dict(input_dim=80), [5, 6, 50, 51]),
        ("tds_mhsa_model", dict(input_dim=112), [10, 11, 100, 101]),  # "same" TDS: no frame lost
        ("tds_mhsa_model", dict(input_dim=112, frame_stride=3), [4, 4, 34, 34]),  # (T + 4 - 5) // 3 + 1
        (
            "cnn_birnn_model",
            dict(input_dim=161, kernel_size=11, conv_stride=2, conv_border_mode="valid"),
            [0, 1, 45, 46],
        ),
        ("cnn_birnn_model", dict(input_dim=161, conv_stride=1, pool_size=3), [3, 3, 33, 33]),
        ("deep_birnn_model", dict(input_dim=13), [10, 11, 100, 101]),
    ],
)
def test_output_length_table(builder, arguments, lengths):
    assert [BUILDERS[builder](**arguments).output_length(n) for n in (10, 11, 100, 101)] == lengths


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 400),
    kernel=st.integers(1, 12),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
    border_mode=st.sampled_from(["same", "valid", "causal"]),
)
def test_reduced_length_agrees_with_course_formula(length, kernel, stride, dilation, border_mode):
    padding = 0 if border_mode == "valid" else dilation * (kernel - 1)
    expected = cnn_output_length(length, kernel, border_mode, stride, dilation)
    if expected >= 1:
        assert reduced_length(length, [TimeReduction(kernel, stride, padding, dilation)]) == expected


@pytest.mark.parametrize("lengths", [[5, 3, 1], [8, 8, 2], [1, 1, 1]])
def test_padding_mask_reads_lengths_from_zero_padding(lengths):
    features = np.zeros((3, 8, 4), np.float32)
    for row, length in enumerate(lengths):
        features[row, :length] = 1.0
        if length > 2:
            features[row, 1] = 0.0  # an all-zero frame inside the utterance does not end it
    mask = np.asarray(PaddingMask([TimeReduction(3, 2, 2)])(features, np.zeros((3, 4, 1), np.float32)))
    expected = [[frame < (length - 1) // 2 + 1 for frame in range(4)] for length in lengths]
    np.testing.assert_array_equal(mask, expected)


def numpy_sinusoids(positions, dim):
    table = np.zeros((len(positions), dim))
    for row, position in enumerate(positions):
        for pair in range(dim // 2):
            angle = position / 10000 ** (2 * pair / dim)
            table[row, 2 * pair], table[row, 2 * pair + 1] = math.sin(angle), math.cos(angle)
    return table


def test_relative_attention_against_a_loop_over_query_key_pairs():
    heads, head_dim, model_dim, time_steps, length = 2, 3, 6, 7, 5
    rng = np.random.default_rng(0)
    layer = RelativePositionAttention(heads, head_dim)
    x = rng.normal(size=(1, time_steps, model_dim)).astype(np.float32)
    mask = np.arange(time_steps)[None] < length
    layer(x, mask)
    for weight in layer.weights:  # random biases too, so every term matters
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    output = np.asarray(layer(x, mask))[0]
    w = {weight.path.split("/", 1)[1]: np.array(weight, np.float64) for weight in layer.weights}
    project = lambda name, v: v @ w[f"{name}/kernel"] + w.get(f"{name}/bias", 0.0)  # noqa: E731
    q, k, v = (project(name, x[0]).reshape(time_steps, heads, head_dim) for name in ("query", "key", "value"))
    expected = np.zeros((time_steps, heads, head_dim))
    for h in range(heads):
        for i in range(time_steps):
            scores = np.full(time_steps, -np.inf)
            for j in range(length):  # padded keys never get weight
                r = (numpy_sinusoids([i - j], model_dim) @ w["position/kernel"]).reshape(heads, head_dim)[h]
                scores[j] = (
                    (q[i, h] + w["content_bias"][h]) @ k[j, h] + (q[i, h] + w["position_bias"][h]) @ r
                ) / math.sqrt(head_dim)
            weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            expected[i, h] = weights @ v[:, h]
    expected = expected.reshape(time_steps, heads * head_dim) @ w["output/kernel"] + w["output/bias"]
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-4)


def test_deep_speech2_clipped_relu_and_summed_directions():
    model = build(
        "deep_speech2_model",
        input_dim=13,
        conv_type="1d",
        conv_filters=(4,),
        conv_kernels=(3,),
        conv_strides=(1,),
        units=6,
        recur_layers=1,
        fc_units=(5,),
    )
    assert model.get_layer("birnn_1").output.shape[-1] == 6  # DS2 sums the two directions
    clip = model.get_layer("fc_1_clipped_relu")
    np.testing.assert_array_equal(
        np.asarray(clip(np.array([-5.0, 0.0, 3.0, 20.0, 25.0], np.float32))), [0, 0, 3, 20, 20]
    )


@pytest.mark.parametrize("builder, arguments", CASES[:1] + CASES[-3:], ids=CASE_IDS[:1] + CASE_IDS[-3:])
def test_builder_config_round_trips_through_json_and_keras_files(builder, arguments, tmp_path):
    model = build(builder, input_dim=13, **arguments)
    config = json.loads(json.dumps(model.builder_config))  # tuples become lists in builder.json
    rebuilt = build(config["builder"], **config["arguments"])
    assert rebuilt.count_params() == model.count_params() and rebuilt.output_length(100) == model.output_length(100)
    features = np.random.default_rng(0).normal(size=(2, 40, 13)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(features)), np.asarray(model(features)), atol=1e-6)


@pytest.mark.parametrize("input_dim", [1, 16, 112, 161])
def test_tds_mhsa_accepts_any_input_dim(input_dim):
    model = build(
        "tds_mhsa_model", input_dim=input_dim, num_features=24, block_channels=(4,), attention_dim=8, num_heads=2
    )
    assert model(np.ones((1, 9, input_dim), np.float32)).shape == (1, 9, 29)


@pytest.mark.parametrize(
    "builder, arguments, message",
    [
        ("cnn_birnn_model", dict(input_dim=13, conv_border_mode="full"), "border_mode must be"),
        ("cnn_birnn_model", dict(input_dim=13, pool_size=0), "pool_size must be at least 1"),
        ("deep_birnn_model", dict(input_dim=13, recur_layers=0), "recur_layers must be at least 1, got 0"),
        ("deep_birnn_model", dict(input_dim=13, normalization="group"), "normalization must be one of"),
        ("deep_speech2_model", dict(input_dim=13, conv_type="3d"), "conv_type must be"),
        ("transformer_ctc_model", dict(input_dim=13, model_dim=10, num_heads=4), "divisible by num_heads"),
        ("conformer_ctc_model", dict(input_dim=13, conv_kernel_size=4), "conv_kernel_size must be a positive odd"),
        ("tds_mhsa_model", dict(input_dim=13, num_features=30, block_channels=(4,)), "divide num_features 30"),
        ("tds_mhsa_model", dict(input_dim=13, kernel_size=8), "kernel_size must be a positive odd number"),
        ("residual_cnn_bigru_model", dict(input_dim=0), "input_dim must be positive, got 0"),
    ],
)
def test_bad_arguments(builder, arguments, message):
    with pytest.raises(ValueError, match=message):
        build(builder, **arguments)


@pytest.mark.slow
def test_jax_backend_builds_and_masks_every_deep_builder_and_trains_two():
    pytest.importorskip("jax")
    result = run_check_script("deep_backend_check.py", "jax")
    assert result["backend"] == "jax" and sorted(result["models"]) == sorted(SMALL)
    for name, checks in result["models"].items():
        assert checks["shape_ok"] and checks["padding_difference"] < 1e-5, name
    for name in ("cnn_birnn_model", "tds_mhsa_model"):
        losses = result["models"][name]["losses"]
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], name
