"""Streaming-native models and stateful inference: chunk by chunk equals the whole utterance.

The reference is the model itself run on the whole utterance (tests/streaming_check.py, on both
backends); the look-ahead each builder states is checked by perturbing one input frame at a time
and seeing which outputs move (brute force); padding a batch never changes a real frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import streaming_check
from conftest import run_check_script

import ctclab.models  # noqa: F401  (registers the builders)
from ctclab.live.stateful import StatefulStream
from ctclab.models.registry import build

TOLERANCE = 1e-5
CASE_NAMES = {case[0] for case in streaming_check.CASES}


def test_chunk_by_chunk_equals_the_whole_utterance_on_tensorflow():
    differences = streaming_check.run_cases()
    assert set(differences) == CASE_NAMES
    assert {name: d for name, d in differences.items() if d > TOLERANCE} == {}


def test_chunk_by_chunk_equals_the_whole_utterance_on_jax():
    differences = run_check_script("streaming_check.py", "jax", "--brief")
    assert set(differences) == CASE_NAMES
    assert {name: d for name, d in differences.items() if d > TOLERANCE} == {}


@pytest.mark.parametrize("name, builder, arguments", streaming_check.CASES[:1] + streaming_check.CASES[4:5])
def test_without_the_carried_state_the_chunks_differ(name, builder, arguments):
    """The control: restarting the stream at every chunk (no state) does not reproduce the whole."""
    model = streaming_check.small_model(builder, arguments)
    frames = np.random.default_rng(1).normal(size=(31, streaming_check.INPUT_DIM)).astype("float32")
    whole = np.asarray(model(frames[None], training=False))[0]
    stream = StatefulStream(model)
    restarted = []
    for piece in streaming_check.chunks(frames, [8]):
        stream.reset()
        restarted.append(np.concatenate([stream.process(piece), stream.finish()]))
    restarted = np.concatenate(restarted)
    assert restarted.shape == whole.shape and np.max(np.abs(restarted - whole)) > 1e-3


def latest_input_seen(model, length: int) -> np.ndarray:
    """For every output frame, the last input frame whose change moves it (perturbation, brute force)."""
    frames = np.random.default_rng(2).normal(size=(length, streaming_check.INPUT_DIM)).astype("float32")
    base = np.asarray(model(frames[None], training=False))[0]
    latest = np.full(len(base), -1)
    for index in range(length):
        moved = frames.copy()
        moved[index] += 3.0
        changed = np.max(np.abs(np.asarray(model(moved[None], training=False))[0] - base), axis=1) > 1e-6
        latest[changed] = index
    return latest


@pytest.mark.parametrize(
    "builder, arguments, stride",
    [
        ("lookahead_rnn_model", {"conv_stride": 2, "lookahead_frames": 2}, 2),
        ("lookahead_rnn_model", {"conv_stride": 3, "lookahead_frames": 1, "rnn_type": "lstm"}, 3),
        ("chunked_transformer_model", {"chunk_frames": 4, "left_chunks": 1}, 2),
    ],
)
def test_the_stated_look_ahead_is_the_furthest_future_an_output_depends_on(builder, arguments, stride):
    model = streaming_check.small_model(builder, arguments)
    length = 40
    latest = latest_input_seen(model, length)
    own_position = np.arange(len(latest)) * stride  # output t's own (last) input frame under causal striding
    interior = own_position + model.lookahead_input_frames < length  # outputs whose future is not cut off
    assert int(np.max((latest - own_position)[interior])) == model.lookahead_input_frames
    assert model.lookahead_ms(10.0) == 10.0 * model.lookahead_input_frames


@pytest.mark.parametrize("name, builder, arguments", streaming_check.CASES)
def test_padding_a_batch_changes_no_real_frame_and_output_length_is_exact(name, builder, arguments):
    model = streaming_check.small_model(builder, arguments)
    rng = np.random.default_rng(4)
    lengths = [5, 17, 30]
    batch = np.zeros((len(lengths), max(lengths), streaming_check.INPUT_DIM), np.float32)
    for row, length in enumerate(lengths):
        batch[row, :length] = rng.normal(size=(length, streaming_check.INPUT_DIM))
    padded = np.asarray(model(batch, training=False))
    for row, length in enumerate(lengths):
        alone = np.asarray(model(batch[row : row + 1, :length], training=False))[0]
        assert len(alone) == int(model.output_length(length))
        np.testing.assert_allclose(padded[row, : len(alone)], alone, atol=TOLERANCE)


def test_rebuilt_from_its_builder_config_it_still_streams():
    model = streaming_check.small_model("lookahead_rnn_model", {})
    config = model.builder_config
    rebuilt = build(config["builder"], **config["arguments"])
    rebuilt.set_weights(model.get_weights())
    frames = np.random.default_rng(6).normal(size=(12, streaming_check.INPUT_DIM)).astype("float32")
    np.testing.assert_allclose(
        streaming_check.streamed(StatefulStream(rebuilt), frames, [5]),
        np.asarray(model(frames[None], training=False))[0],
        atol=TOLERANCE,
    )


def test_a_model_without_a_streaming_form_and_bad_chunks_are_refused():
    with pytest.raises(ValueError, match="no streaming form .* lookahead_rnn_model"):
        StatefulStream(build("rnn_model", input_dim=6, units=4))
    stream = StatefulStream(streaming_check.small_model("lookahead_rnn_model", {}))
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        stream.process(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        stream.process(np.full((3, 6), np.nan))
    assert stream.process(np.zeros((0, 6))).shape == (0, 29)


@pytest.mark.parametrize(
    "builder, arguments, message",
    [
        ("lookahead_rnn_model", {"lookahead_frames": -1}, "frames must be >= 0"),
        ("lookahead_rnn_model", {"conv_stride": 0}, "conv_stride must be positive"),
        ("chunked_transformer_model", {"chunk_frames": 0}, "chunk_frames must be positive"),
        ("chunked_transformer_model", {"left_chunks": -1}, "left_chunks must be >= 0"),
        ("chunked_transformer_model", {"model_dim": 10, "num_heads": 4}, "not divisible"),
    ],
)
def test_builders_reject_impossible_settings(builder, arguments, message):
    with pytest.raises(ValueError, match=message):
        build(builder, input_dim=6, **arguments)
