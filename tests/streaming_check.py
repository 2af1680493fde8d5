"""Run under any KERAS_BACKEND: streaming builders chunk by chunk against the whole utterance.

For every (builder, arguments) case, a small model with random weights (and random batch-norm
statistics) is run on whole utterances of several lengths (the reference: ``model(x)``) and
through :class:`ctclab.live.stateful.StatefulStream` in several chunkings. Prints one JSON line
``{case: largest absolute difference of the posteriors}`` (a case whose frame counts differ
prints inf). tests/test_streaming_models.py runs it on TensorFlow in-process and with
KERAS_BACKEND=jax in a subprocess, there with ``--brief``: lengths 2 and 9 and three chunkings
(every case still streams several chunks and a single one; JAX traces anew for every shape, so the
full grid costs it about two minutes).
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np

import ctclab.models  # noqa: F401  (registers the builders)
from ctclab.live.stateful import StatefulStream
from ctclab.models.registry import build

INPUT_DIM = 6
CASES = [
    ("gru_lookahead_2", "lookahead_rnn_model", {"conv_stride": 2, "lookahead_frames": 2}),
    ("gru_stride_1_no_lookahead", "lookahead_rnn_model", {"conv_stride": 1, "lookahead_frames": 0}),
    ("lstm_stride_3", "lookahead_rnn_model", {"conv_stride": 3, "rnn_type": "lstm", "lookahead_frames": 3}),
    ("simple_rnn_kernel_1", "lookahead_rnn_model", {"kernel_size": 1, "rnn_type": "simple_rnn"}),
    ("chunked_4_left_1", "chunked_transformer_model", {"chunk_frames": 4, "left_chunks": 1}),
    ("chunked_3_left_0_stride_1", "chunked_transformer_model", {"chunk_frames": 3, "left_chunks": 0, "conv_stride": 1}),
    ("chunked_5_left_2", "chunked_transformer_model", {"chunk_frames": 5, "left_chunks": 2}),
]
SMALL = {
    "lookahead_rnn_model": {"conv_filters": 8, "units": 7, "recur_layers": 2},
    "chunked_transformer_model": {
        "conv_filters": 8,
        "model_dim": 8,
        "num_heads": 2,
        "ff_dim": 12,
        "num_blocks": 2,
        "dropout_rate": 0.0,
    },
}
LENGTHS = (1, 2, 9, 31)
CHUNKINGS = ([1], [3], [7, 1, 2], [1000])  # chunk sizes, repeated until the utterance is used up
BRIEF_LENGTHS, BRIEF_CHUNKINGS = (2, 9), ([1], [7, 1, 2], [1000])


def small_model(builder: str, arguments: dict) -> keras.Model:
    keras.utils.set_random_seed(3)
    model = build(builder, input_dim=INPUT_DIM, **SMALL[builder], **arguments)
    rng = np.random.default_rng(5)
    for layer in model.layers:  # batch norm with statistics of its own, so inference mode is not the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape).astype("float32"))
    for layer in model.layers:  # a look-ahead that really mixes in the future
        if layer.name == "lookahead":
            layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    return model


def chunks(frames: np.ndarray, sizes: list[int]):
    start, index = 0, 0
    while start < len(frames):
        size = sizes[index % len(sizes)]
        yield frames[start : start + size]
        start, index = start + size, index + 1


def streamed(stream: StatefulStream, frames: np.ndarray, sizes: list[int]) -> np.ndarray:
    stream.reset()
    pieces = [stream.process(piece) for piece in chunks(frames, sizes)]
    return np.concatenate([*pieces, stream.finish()])


def run_cases(lengths=LENGTHS, chunkings=CHUNKINGS) -> dict[str, float]:
    differences = {}
    rng = np.random.default_rng(0)
    for name, builder, arguments in CASES:
        model = small_model(builder, arguments)
        stream = StatefulStream(model)
        worst = 0.0
        for length in lengths:
            frames = rng.normal(size=(length, INPUT_DIM)).astype("float32")
            whole = np.asarray(model(frames[None], training=False))[0]
            if len(whole) != int(model.output_length(length)):
                worst = float("inf")
            for sizes in chunkings:
                posteriors = streamed(stream, frames, sizes)
                if posteriors.shape != whole.shape:
                    worst = float("inf")
                    continue
                worst = max(worst, float(np.max(np.abs(posteriors - whole))))
        differences[name] = worst
    return differences


if __name__ == "__main__":
    brief = "--brief" in sys.argv[1:]
    print(json.dumps(run_cases(BRIEF_LENGTHS, BRIEF_CHUNKINGS) if brief else run_cases()))
