"""Every model builder on 2 CPU cores: parameters, training step time and inference real-time factor.

For each builder (the course's models 0-4 in their course configurations, then the deep and
attention builders in the sizes notebook 02 / 03 train) one run measures, on one backend:

- **train ms/batch**: median wall time of ``CTCTrainer.train_on_batch`` compiled as
  ``train_utils.train_model`` compiles it (``jit_compile`` on JAX only), on one fixed batch of
  ``--batch`` utterances of ``--seconds`` of 10 ms frames (random features, random 14-characters-
  per-second labels); the first ``--warmup`` steps (tracing, compilation) are dropped.
- **inference RTF**: median wall time of one compiled forward pass over one utterance of
  ``--seconds``, divided by ``--seconds`` (RTF 0.1 = ten times faster than real time).

The process pins itself to 2 cores (``os.sched_setaffinity``) so the numbers mean "a 2-core
laptop" on any machine. ``--backend both`` runs TensorFlow here and JAX in a subprocess with
``KERAS_BACKEND=jax`` (the backend is fixed when Keras is imported) and prints one table with
a JAX / TensorFlow ratio per model. Nothing is asserted; on a shared machine, run twice before
believing a small difference.

Usage, from the repository root::

    python benchmarks/models.py --quick              # a few minutes on 2 cores, both backends
    python benchmarks/models.py --backend tensorflow --batch 16 --seconds 4 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

# (label, builder, arguments); input_dim is the features each model trains on in the notebooks
MODELS = [
    ("model_0", "simple_rnn_model", dict(input_dim=161)),
    ("model_1", "rnn_model", dict(input_dim=161, units=200, activation="relu")),
    (
        "model_2",
        "cnn_rnn_model",
        dict(input_dim=161, filters=200, kernel_size=11, conv_stride=2, conv_border_mode="valid", units=200),
    ),
    ("model_3", "deep_rnn_model", dict(input_dim=161, units=200, recur_layers=2)),
    ("model_4", "bidirectional_rnn_model", dict(input_dim=161, units=200)),
    (
        "cnn_birnn",
        "cnn_birnn_model",
        dict(input_dim=161, filters=192, kernel_size=11, conv_stride=3, units=128, recur_layers=2),
    ),
    ("deep_birnn", "deep_birnn_model", dict(input_dim=161, units=128, recur_layers=2)),
    (
        "deep_speech2",
        "deep_speech2_model",
        dict(input_dim=161, conv_filters=(16, 16), units=128, recur_layers=2, fc_units=(256,)),
    ),
    (
        "rescnn_bigru",
        "residual_cnn_bigru_model",
        dict(input_dim=161, conv_filters=16, residual_blocks=2, units=128, recur_layers=2),
    ),
    ("transformer", "transformer_ctc_model", dict(input_dim=161)),
    ("conformer", "conformer_ctc_model", dict(input_dim=161)),
    ("tds_mhsa", "tds_mhsa_model", dict(input_dim=161)),
]


def pin_to_two_cores() -> list[int]:
    """Restrict this process (and the threads it starts) to 2 CPU cores; returns the cores."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cores)
    return cores


def fixed_batch(batch_size: int, seconds: float, input_dim: int, seed: int = 0):
    """A padded CTC batch of random features and labels (14 characters per second, as the corpus)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frames, characters = int(seconds * 100), max(1, int(seconds * 14))
    x = {
        "features": rng.normal(size=(batch_size, frames, input_dim)).astype(np.float32),
        "input_length": np.full(batch_size, frames, np.int32),
    }
    y = {
        "labels": rng.integers(2, 28, size=(batch_size, characters)).astype(np.int32),
        "label_length": np.full(batch_size, characters, np.int32),
    }
    return x, y


def median_ms(function, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def measure(label: str, builder: str, arguments: dict, options) -> dict:
    """Parameters, train ms/batch and inference RTF of one builder on the current backend."""
    import keras
    import numpy as np

    from ctclab.models.registry import build
    from ctclab.training.loss import CTCTrainer
    from ctclab.training.trainer import default_optimizer

    keras.utils.set_random_seed(0)
    model = build(builder, **arguments)
    x, y = fixed_batch(options.batch, options.seconds, arguments["input_dim"])
    trainer = CTCTrainer(model)
    trainer.compile(optimizer=default_optimizer(), jit_compile=keras.backend.backend() == "jax")
    train_ms = median_ms(lambda: trainer.train_on_batch(x, y), options.warmup, options.steps)
    utterance = x["features"][:1]
    if keras.backend.backend() == "jax":
        import jax

        state = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
        forward = jax.jit(lambda inputs: model.stateless_call(*state, inputs, training=False)[0])
        infer = lambda: np.asarray(forward(utterance))  # noqa: E731  (np.asarray waits for the result)
    else:
        import tensorflow as tf

        forward = tf.function(lambda inputs: model(inputs, training=False))
        infer = lambda: forward(utterance).numpy()  # noqa: E731
    inference_ms = median_ms(infer, options.warmup, options.steps)
    return {
        "model": label,
        "builder": builder,
        "parameters": model.count_params(),
        "backend": keras.backend.backend(),
        "train ms/batch": train_ms,
        "inference RTF": inference_ms / 1000 / options.seconds,
    }


def run_backend(options) -> list[dict]:
    """Measure every selected model on this process's backend, printing one JSON line each."""
    rows = []
    for label, builder, arguments in MODELS:
        if options.models and label not in options.models:
            continue
        row = measure(label, builder, arguments, options)
        print("ROW " + json.dumps(row), flush=True)
        rows.append(row)
    return rows


def run_subprocess(backend: str, argv: list[str]) -> list[dict]:
    """Run this script with ``--backend backend`` in a fresh interpreter; its rows."""
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, __file__, *argv, "--backend", backend],
        env=environment,
        capture_output=True,
        text=True,
        cwd=REPOSITORY_ROOT,
        check=False,
    )
    if completed.returncode:
        print(f"{backend} run failed:\n{completed.stderr[-3000:]}")
        return []
    return [json.loads(line[4:]) for line in completed.stdout.splitlines() if line.startswith("ROW ")]


def print_table(rows: list[dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(rows).pivot_table(
        index=["model", "parameters"], columns="backend", values=["train ms/batch", "inference RTF"], sort=False
    )
    if {"jax", "tensorflow"} <= set(table.columns.get_level_values(1)):
        table[("train ms/batch", "jax/tf")] = table[("train ms/batch", "jax")] / table[("train ms/batch", "tensorflow")]
        table[("inference RTF", "jax/tf")] = table[("inference RTF", "jax")] / table[("inference RTF", "tensorflow")]
    order = [label for label, _, _ in MODELS]
    table = table.reindex(sorted(table.index, key=lambda key: order.index(key[0]))).sort_index(
        axis=1, level=0, sort_remaining=False
    )
    print(table.to_string(float_format="{:.3f}".format))


def sizing_arguments(options) -> list[str]:
    """The batch, length, step and model options as command-line arguments, for a run in a subprocess."""
    return [
        f"--batch={options.batch}",
        f"--seconds={options.seconds}",
        f"--steps={options.steps}",
        f"--warmup={options.warmup}",
    ] + (["--models", *options.models] if options.models else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["tensorflow", "jax", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="batch 8 of 2 s, 3 timed steps: a few minutes in all")
    parser.add_argument("--batch", type=int, default=16, help="utterances per training batch")
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length (100 frames per second)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (tracing, compilation)")
    parser.add_argument("--models", nargs="*", help=f"labels to run (default all): {[m[0] for m in MODELS]}")
    options = parser.parse_args()
    if options.quick:
        options.batch, options.seconds, options.steps = 8, 2.0, 3
    cores = pin_to_two_cores()
    passed = sizing_arguments(options)
    if options.backend == "both":
        print(f"pinned to cores {cores}; batch {options.batch} x {options.seconds} s, median of {options.steps} steps")
        rows = run_subprocess("tensorflow", passed) + run_subprocess("jax", passed)
        print_table(rows)
    else:
        import keras

        if keras.backend.backend() != options.backend:
            raise SystemExit(f"KERAS_BACKEND is {keras.backend.backend()!r}; run with KERAS_BACKEND={options.backend}")
        run_backend(options)


if __name__ == "__main__":
    main()
