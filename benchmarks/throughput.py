"""Training throughput on 2 CPU cores: frames per second, achieved GFLOP/s and MFU against a measured peak.

For the course's models 0-4 in course configuration (``reset_after=False``: the course's parameter
counts 16,617 / 223,829 / 442,029 / 465,229 / 446,029), the final model and the TDS + MHSA
attention model (configured as ``benchmarks/models.py`` configures them) one run measures, on one
backend:

- **step ms**: median wall time of ``CTCTrainer.train_on_batch`` compiled as ``train_model``
  compiles it (Adam, ``jit_compile`` on JAX only) on one fixed batch of ``--batch`` utterances of
  ``--seconds`` of 10 ms frames, 161 random features (``benchmarks/models.py``'s ``fixed_batch``);
  the first ``--warmup`` steps (tracing, compilation) are dropped, the median of ``--steps`` counts.
- **frames/s**: input frames per second of training, batch x T / step time.
- **GFLOP/step**: the FLOPs of one training step counted analytically from the layer shapes:
  3 x the forward FLOPs (the backward pass costs about twice the forward: one product for the
  gradient of the inputs, one for the weights). Forward multiply-adds count 2 FLOPs each, per
  layer with the concrete time length it sees on this batch (one probe forward pass reads every
  layer's input and output shapes):

  - Dense: 2 * rows * in * out (rows = batch x time);
  - Conv1D / Conv2D: 2 * output positions * kernel taps * in channels * filters; depthwise:
    2 * output positions * channels * taps;
  - SimpleRNN / GRU / LSTM with g = 1 / 3 / 4 gates per sequence of T frames: the input
    projection 2 * T * in * g * units plus the recurrence 2 * T * units * g * units;
    Bidirectional: both directions;
  - attention: the query, key, value and output projections (and the relative-position
    projection), plus the two T x T products (scores and weighted values; the relative-position
    attention adds its T x (2T - 1) position scores).

  Elementwise operations, activations, normalization, dropout, masks, softmax, the CTC loss and
  the optimizer update are not counted, so the GFLOP figures are lower bounds of the work done.
- **GFLOP/s** = GFLOP/step / step time, and **MFU %** = GFLOP/s / the machine's dense float32
  matrix-product peak, measured in the same run with the same threads: ``tf.linalg.matmul``
  (``jnp.matmul`` under ``jax.jit`` on JAX) of 1024 x 1024 and 2048 x 2048 float32 inside a
  ``tf.function``, best of several repetitions, and NumPy's ``@`` likewise. The peak is measured
  before every model and once at the end (the machine is shared and noisy); the denominator is
  the best backend figure of the run, and the spread of the measurements is printed.

A last pair times model 3 built by hand from plain ``keras.layers.GRU`` against the registry's
model 3 on the same batch, steps alternating (A, B, A, B, ...), and prints the speed-up
keras / registry; the two must have the same parameter count (asserted).

The process pins itself to 2 cores (``os.sched_setaffinity``, as ``benchmarks/models.py`` does).
The backend is fixed when Keras is imported: ``--backend`` sets ``KERAS_BACKEND`` first, and
``--backend both`` runs TensorFlow then JAX, each in a fresh interpreter. Nothing else is
asserted; on a shared machine, run twice before believing a small difference. The default run
takes about 3 minutes on 2 cores.

Usage, from the repository root::

    python benchmarks/throughput.py
    python benchmarks/throughput.py --models model_3 model_3_pair --steps 10
    python benchmarks/throughput.py --backend jax --batch 16 --seconds 2
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from models import MODELS, fixed_batch, pin_to_two_cores, sizing_arguments

from ctclab.benchmarking import alternated_seconds, seconds

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
INPUT_DIM = 161
COURSE_PARAMETERS = {"model_0": 16_617, "model_1": 223_829, "model_2": 442_029, "model_3": 465_229, "model_4": 446_029}
PAIR = "model_3_pair"  # the label that selects the keras.layers.GRU vs registry model 3 pair

# (label, builder, arguments): models 0-4 as benchmarks/models.py builds them, in course configuration
# (the Keras 2 GRU bias, reset_after=False), then the final model and models.py's TDS + MHSA attention model
_CONFIGURED = {label: (builder, arguments) for label, builder, arguments in MODELS}
THROUGHPUT_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    *[
        (label, _CONFIGURED[label][0], dict(_CONFIGURED[label][1], reset_after=False))
        for label in ("model_0", "model_1", "model_2", "model_3", "model_4")
    ],
    ("final", "final_model", dict(input_dim=INPUT_DIM)),
    ("tds_mhsa", *_CONFIGURED["tds_mhsa"]),
]
LABELS = [label for label, _, _ in THROUGHPUT_MODELS] + [PAIR]

Shape = tuple[int, ...]


# ---------------------------------------------------------------------------------------------- FLOPs


def _rnn_flops(layer: Any, input_shape: Shape) -> int:
    """A SimpleRNN, GRU or LSTM over (B, T, in): input projection + recurrence, every frame of every sequence."""
    import keras

    gates = 4 if isinstance(layer, keras.layers.LSTM) else 3 if isinstance(layer, keras.layers.GRU) else 1
    batch, frames, width = input_shape[0], input_shape[1], input_shape[-1]
    units = layer.units
    return 2 * batch * frames * gates * units * (width + units)


def layer_forward_flops(layer: Any, input_shapes: Sequence[Shape], output_shape: Shape) -> int | None:
    """Forward FLOPs (multiply-add = 2) of ``layer`` on concrete shapes; None for a layer type not counted."""
    import keras

    x = input_shapes[0] if input_shapes else ()
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(x[:-1]) * x[-1] * layer.units
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        taps = math.prod(layer.kernel_size)
        return 2 * math.prod(output_shape[:-1]) * taps * (x[-1] // layer.groups) * layer.filters
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return 2 * math.prod(output_shape) * math.prod(layer.kernel_size)
    if isinstance(layer, (keras.layers.SimpleRNN, keras.layers.GRU, keras.layers.LSTM)):
        return _rnn_flops(layer, x)
    if isinstance(layer, keras.layers.Bidirectional):
        return _rnn_flops(layer.forward_layer, x) + _rnn_flops(layer.backward_layer, x)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        query, value = x, input_shapes[1] if len(input_shapes) > 1 else x
        batch, query_frames, key_frames = query[0], query[1], value[1]
        heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
        projections = (
            2 * batch * heads * (query_frames * query[-1] * key_dim + key_frames * value[-1] * (key_dim + value_dim))
            + 2 * batch * query_frames * heads * value_dim * output_shape[-1]
        )
        return projections + 2 * batch * heads * query_frames * key_frames * (key_dim + value_dim)
    if type(layer).__name__ == "RelativePositionAttention":  # ctclab.models.layers: Transformer-XL positions
        batch, frames, width = x
        heads, head_dim = layer.num_heads, layer.head_dim
        inner = heads * head_dim
        projections = 2 * batch * frames * width * inner * 4 + 2 * (2 * frames - 1) * width * inner  # q, k, v, out; r
        products = 2 * batch * heads * frames * head_dim * (frames + (2 * frames - 1) + frames)  # scores, r, values
        return projections + products
    return None


def _concrete(shape: Sequence[int | None], batch: int) -> Shape:
    return (batch, *(int(size) for size in shape[1:]))  # type: ignore[arg-type]


def forward_flops(model: Any, features: Any) -> tuple[int, list[str]]:
    """Forward FLOPs of ``model`` on ``features`` (B, T, F); also the weighted layer types not counted.

    One probe forward pass over the first utterance (every utterance of the fixed batch has the
    same length) gives every layer's concrete input and output shapes; the batch size is put back.
    """
    import keras

    batch = features.shape[0]
    model_inputs = {id(tensor) for tensor in model.inputs}
    layers, tensors, seen = [], [], set(model_inputs)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs, outputs = keras.tree.flatten(layer.input), keras.tree.flatten(layer.output)
        layers.append((layer, inputs, outputs))
        for tensor in inputs + outputs:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append(tensor)
    probe = keras.Model(model.input, tensors, name=f"{model.name}_probe")
    values = keras.tree.flatten(probe(features[:1], training=False))
    shapes = {id(tensor): tuple(keras.ops.shape(value)) for tensor, value in zip(tensors, values)}
    shapes.update({id(tensor): tuple(features[:1].shape) for tensor in model.inputs})
    total, uncounted = 0, set()
    for layer, inputs, outputs in layers:
        input_shapes = [_concrete(shapes[id(tensor)], batch) for tensor in inputs]
        flops = layer_forward_flops(layer, input_shapes, _concrete(shapes[id(outputs[0])], batch))
        if flops is None:
            normalization = isinstance(
                layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
            )  # elementwise: not counted by rule
            if layer.trainable_weights and not normalization:
                uncounted.add(type(layer).__name__)
            continue
        total += flops
    return total, sorted(uncounted)


# ------------------------------------------------------------------------------------------- peaks


def matmul_peaks(backend: str, repetitions: int = 6) -> dict[str, float]:
    """Best GFLOP/s of a float32 square matrix product (2 n^3 FLOPs), backend and NumPy, n = 1024 and 2048."""
    peaks = {}
    for size in (1024, 2048):
        times = repetitions if size == 1024 else max(2, repetitions // 2)
        for name in (backend, "numpy"):
            peaks[f"{name} {size}"] = 2 * size**3 / _best_matmul_seconds(name, size, times) / 1e9
    return peaks


def _best_matmul_seconds(library: str, size: int, repetitions: int) -> float:
    """Fastest of ``repetitions`` (size x size) @ (size x size) float32 products in ``library``, after one untimed."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    if library == "jax":
        import jax
        import jax.numpy as jnp

        jitted = jax.jit(lambda p, q: jnp.sum(jnp.matmul(p, q)))
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        product: Callable[[], Any] = lambda: jitted(ja, jb).block_until_ready()  # noqa: E731
    elif library == "tensorflow":
        import tensorflow as tf

        traced = tf.function(lambda p, q: tf.reduce_sum(tf.linalg.matmul(p, q)))
        ta, tb = tf.constant(a), tf.constant(b)
        product = lambda: traced(ta, tb).numpy()  # noqa: E731
    else:
        product = lambda: a @ b  # noqa: E731
    product()  # tracing, first touch
    return min(seconds(product) for _ in range(repetitions))


# ------------------------------------------------------------------------------------------- steps


def compiled_trainer(model: Any) -> Any:
    """``CTCTrainer`` compiled as ``ctclab.training.trainer.train_model`` compiles it."""
    import keras

    from ctclab.training.loss import CTCTrainer
    from ctclab.training.trainer import default_optimizer

    trainer = CTCTrainer(model)
    trainer.compile(optimizer=default_optimizer(), jit_compile=keras.backend.backend() == "jax")
    return trainer


def keras_gru_model_3(input_dim: int = INPUT_DIM, units: int = 200, output_dim: int = 29) -> Any:
    """Model 3 by hand from plain Keras layers, with the layer names and ``output_length`` the trainer needs."""
    import keras

    inputs = x = keras.Input(shape=(None, input_dim), name="the_input")
    for index in (1, 2):
        x = keras.layers.GRU(units, activation="tanh", return_sequences=True, reset_after=False, name=f"rnn_{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_rnn_{index}")(x)
    logits = keras.layers.Dense(output_dim, name="time_dense")(x)
    outputs = keras.layers.Activation("softmax", name="softmax", dtype="float32")(logits)
    model = keras.Model(inputs, outputs, name="keras_deep_rnn_model")
    model.output_length = lambda length: length
    return model


def row(label: str, model: Any, seconds: Sequence[float], x: dict, training_flops: int, note: str = "") -> dict:
    """One table row from a model's timed steps."""
    step = statistics.median(seconds)
    frames = x["features"].shape[0] * x["features"].shape[1]
    return {
        "model": label,
        "params": model.count_params(),
        "frames/s": frames / step,
        "step ms": 1000 * step,
        "GFLOP/step": training_flops / 1e9,
        "GFLOP/s": training_flops / step / 1e9,
        "note": note,
    }


def revision() -> str:
    """The git revision of the checkout ``ctclab`` is imported from, "+ modified ctclab/" when it differs."""
    import ctclab

    package = Path(ctclab.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{package.parent} (not a git checkout)"
    return f"{head}{' + modified ctclab/' if dirty else ''} ({package.parent})"


# ------------------------------------------------------------------------------------------- run


def run(options: argparse.Namespace) -> None:
    """Measure the selected models on this process's backend and print the tables."""
    import keras

    import ctclab.models  # noqa: F401  (registers the builders)
    from ctclab.models.registry import build

    backend = keras.backend.backend()
    x, y = fixed_batch(options.batch, options.seconds, INPUT_DIM)
    batch, frames = x["features"].shape[:2]
    print(
        f"backend {backend}, Keras {keras.__version__}, ctclab at {revision()}\n"
        f"pinned to cores {sorted(os.sched_getaffinity(0))}; batch {batch} x {frames} frames x {INPUT_DIM} features, "
        f"{options.warmup} warm-up steps, median of {options.steps}\n",
        flush=True,
    )
    peaks: list[dict[str, float]] = [matmul_peaks(backend)]
    rows, notes = [], []
    selected = [entry for entry in THROUGHPUT_MODELS if not options.models or entry[0] in options.models]
    for label, builder, arguments in selected:
        keras.utils.set_random_seed(0)
        try:
            model = build(builder, **arguments)
        except Exception as error:  # a builder that fails is reported, not fixed here
            print(f"{label}: {builder}({arguments}) failed to build: {type(error).__name__}: {error}", flush=True)
            notes.append(f"{label} failed to build: {type(error).__name__}: {error}")
            continue
        flops, uncounted = forward_flops(model, x["features"])
        trainer = compiled_trainer(model)
        (step_times,) = alternated_seconds([partial(trainer.train_on_batch, x, y)], options.warmup, options.steps)
        course = COURSE_PARAMETERS.get(label)
        note = f"course count {course:,}" if course is not None and course != model.count_params() else ""
        if uncounted:
            notes.append(f"{label}: layers with weights not counted: {', '.join(uncounted)}")
        rows.append(row(label, model, step_times, x, 3 * flops, note))
        print(f"  {label}: {rows[-1]['step ms']:.0f} ms/step", flush=True)
        peaks.append(matmul_peaks(backend))
    pair = None
    if not options.models or PAIR in options.models:
        keras.utils.set_random_seed(0)
        plain = keras_gru_model_3()
        keras.utils.set_random_seed(0)
        ours = build("deep_rnn_model", input_dim=INPUT_DIM, units=200, recur_layers=2, reset_after=False)
        print(
            f"  model_3 pair: parameters keras {plain.count_params():,}, registry {ours.count_params():,}", flush=True
        )
        assert plain.count_params() == ours.count_params(), (plain.count_params(), ours.count_params())
        trainers = [compiled_trainer(plain), compiled_trainer(ours)]
        times = alternated_seconds(
            [partial(trainer.train_on_batch, x, y) for trainer in trainers],
            options.warmup,
            options.steps,
        )
        flops = 3 * forward_flops(ours, x["features"])[0]
        pair = [
            row("model_3 with keras.layers.GRU", plain, times[0], x, flops),
            row("model_3 (registry)", ours, times[1], x, flops),
        ]
        rows += pair
        peaks.append(matmul_peaks(backend))
    print_results(backend, rows, peaks, pair, notes, options)


def print_results(
    backend: str,
    rows: list[dict],
    peaks: list[dict[str, float]],
    pair: list[dict] | None,
    notes: list[str],
    options: argparse.Namespace,
) -> None:
    """The peaks, the Markdown table, the pair's ratio and the counting rule."""
    keys = list(peaks[0])
    backend_best = [max(p[k] for k in keys if k.startswith(backend)) for p in peaks]
    peak = max(backend_best)
    peak_key = max(((k, p[k]) for p in peaks for k in keys if k.startswith(backend)), key=lambda item: item[1])[0]
    print(f"\nfloat32 matmul peak, GFLOP/s ({len(peaks)} measurements: before every model and at the end)\n")
    print("| matmul | best | median | worst |\n|---|---|---|---|")
    for key in keys:
        values = [p[key] for p in peaks]
        print(f"| {key} | {max(values):.1f} | {statistics.median(values):.1f} | {min(values):.1f} |")
    spread = 100 * (max(backend_best) - min(backend_best)) / peak
    print(
        f"\nMFU denominator: {peak:.1f} GFLOP/s, the best {backend} measurement ({peak_key} x {peak_key.split()[-1]}); "
        f"{backend} peak spread over the run {min(backend_best):.1f}-{max(backend_best):.1f} GFLOP/s ({spread:.0f} %)\n"
    )
    print("| model | params | frames/s | step ms | GFLOP/step | GFLOP/s | MFU % |\n|---|---|---|---|---|---|---|")
    for entry in rows:
        print(
            f"| {entry['model']} | {entry['params']:,} | {entry['frames/s']:,.0f} | {entry['step ms']:.0f} "
            f"| {entry['GFLOP/step']:.2f} | {entry['GFLOP/s']:.1f} | {100 * entry['GFLOP/s'] / peak:.1f} |"
        )
    if pair:
        keras_ms, ours_ms = pair[0]["step ms"], pair[1]["step ms"]
        print(
            f"\nmodel_3 pair ({pair[0]['params']:,} parameters each, steps alternated, median of {options.steps}): "
            f"keras.layers.GRU {keras_ms:.0f} ms, registry {ours_ms:.0f} ms; speed-up keras/ours {keras_ms / ours_ms:.2f}x"
        )
    for entry in rows:
        if entry["note"]:
            print(f"{entry['model']}: {entry['params']:,} parameters, {entry['note']}")
    for note in notes:
        print(note)
    print(
        "\nGFLOP/step = 3 x forward FLOPs (backward ~ 2 x forward), counted from the layer shapes: Dense, Conv, "
        "RNN input projections and recurrences (x2 bidirectional), attention projections and T x T products; "
        "elementwise ops, activations, normalization, softmax, CTC and the optimizer update are not counted. "
        f"MFU % = GFLOP/s / {peak:.1f} GFLOP/s."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["tensorflow", "jax", "both"], default="tensorflow")
    parser.add_argument("--batch", type=int, default=32, help="utterances per training batch")
    parser.add_argument("--seconds", type=float, default=3.0, help="utterance length (100 frames per second)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (tracing, compilation)")
    parser.add_argument("--models", nargs="*", choices=LABELS, help="labels to run (default all)")
    options = parser.parse_args()
    if options.backend == "both":
        passed = sizing_arguments(options)
        for backend in ("tensorflow", "jax"):
            print(f"\n=== {backend} ===", flush=True)
            subprocess.run([sys.executable, __file__, *passed, "--backend", backend], cwd=REPOSITORY_ROOT, check=False)
        return
    os.environ["KERAS_BACKEND"] = options.backend  # before Keras is imported: it fixes the backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pin_to_two_cores()
    run(options)


if __name__ == "__main__":
    main()
