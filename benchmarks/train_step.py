"""How much Keras ``fit`` and the data generator cost next to the bare training step.

One run measures, on the current Keras backend (``KERAS_BACKEND=tensorflow`` or ``jax``):

1. **fit step vs raw step.** One real batch (the ``--minibatch-size`` training utterances
   closest to the median length) is trained on ``--warmup + --steps`` times

   * through ``train_utils.CTCTrainer`` compiled as ``train_utils.train_model`` compiles it and
     fed by ``AudioGenerator.fit_data``'s own pipeline ("fit step"), and
   * through a hand-written step on a fresh copy of the model with the same initial weights,
     the same loss (``train_utils.ctc_batch_loss`` on ``sample_models.logits_model``) and the
     same optimizer (``train_utils.course_optimizer``) ("raw step"): a ``tf.function`` with a
     ``tf.GradientTape`` on TensorFlow, a ``jax.jit`` of ``stateless_call`` +
     ``jax.value_and_grad`` + ``optimizer.stateless_apply`` on JAX.

   Each step is timed from just before to just after it (``on_train_batch_begin`` / ``_end``
   for fit, which Keras calls after the loss reached Python, i.e. after the step finished);
   warm-up steps (graph tracing, XLA compilation) are dropped and the median is printed.
2. **generator vs step after the first epoch.** ``AudioGenerator`` keeps every utterance's
   features in memory once constructed, so a batch after the first epoch is only normalization
   and padding: ``__getitem__`` is timed over a whole shuffled epoch. A cold featurization of
   the same batch (no feature cache) shows what the cache saves.

Ratios are printed against targets (fit/raw <= 1.15, generator/step <= 5 %); nothing is
asserted. When fit/raw misses its target, alternatives are measured in the same process by
changing only the benchmark's own trainer, each labeled with what ``train_utils`` would change.

Usage, from the repository root (the default run takes 1-2 minutes on 2 CPU cores)::

    python benchmarks/train_step.py
    KERAS_BACKEND=jax python benchmarks/train_step.py --model 4 --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import sample_models
import train_utils
import utils
from data_generator import AudioGenerator, FeatureCache

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
COURSE_MODELS = ["simple_rnn_model", "rnn_model", "cnn_rnn_model", "deep_rnn_model", "bidirectional_rnn_model"]
FIT_TO_RAW_TARGET = 1.15  # Keras' per-step bookkeeping should cost at most 15 % of a step
GENERATOR_TO_STEP_TARGET = 0.05  # batch assembly should cost at most 5 % of a step

Batch = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


@dataclass
class Timing:
    """Wall-clock seconds of every timed step, warm-up included, and the first step's loss."""

    seconds: list[float]
    first_loss: float
    steps_per_call: int = 1  # >1 when one timed call runs several steps (steps_per_execution)

    def median_ms(self, warmup: int) -> float:
        """Median milliseconds per training step, after dropping ``warmup`` timed calls."""
        kept = self.seconds[warmup:] or self.seconds
        return 1000.0 * statistics.median(kept) / self.steps_per_call

    def count(self, warmup: int) -> int:
        return len(self.seconds[warmup:] or self.seconds)


class StepTimer(keras.callbacks.Callback):
    """Records each training batch's wall time, begin to end, and the first batch's loss.

    Overriding ``on_train_batch_end`` makes Keras dispatch batch callbacks synchronously, with
    the logs already converted to Python floats, so the end time is after the step completed.
    """

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.first_loss = float("nan")
        self._started = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)
        if len(self.seconds) == 1:
            self.first_loss = float((logs or {}).get("loss", float("nan")))


class RepeatedBatch(keras.utils.PyDataset):
    """One fixed batch served ``num_batches`` times through ``AudioGenerator.fit_data``.

    Borrowing ``fit_data`` (it only needs ``features``, ``len``, indexing and ``on_epoch_end``)
    feeds fit exactly as ``train_model`` does: on TensorFlow a ``tf.data`` generator with the
    same variable-length signature (so the step is traced for unknown T and L, as in real
    training) and a two-batch prefetch thread; on JAX this PyDataset itself. The only
    difference from training is that building the batch costs nothing here; part 2 measures
    that cost separately.
    """

    fit_data = AudioGenerator.fit_data

    def __init__(self, batch: Batch, num_batches: int, features: utils.FeatureConfig):
        super().__init__()
        self.batch, self.batch_count, self.features = batch, num_batches, features

    def __len__(self) -> int:
        return self.batch_count

    def __getitem__(self, index: int) -> Batch:
        return self.batch

    def on_epoch_end(self) -> None:
        pass


# ------------------------------------------------------------------------------ measurements


def median_length_batch(generator: AudioGenerator, minibatch_size: int) -> tuple[list[int], Batch]:
    """The ``minibatch_size`` utterances whose frame counts are closest to the median, padded.

    Returns:
        (utterance indices, (x, y) as served by ``AudioGenerator.get_batch``).
    """
    lengths = np.asarray([feature.shape[0] for feature in generator.feats])
    closest = np.argsort(np.abs(lengths - np.median(lengths)), kind="stable")[:minibatch_size]
    indices = sorted(int(index) for index in closest)
    return indices, generator.get_batch(indices)


def time_fit(
    model: keras.Model,
    batch: Batch,
    features: utils.FeatureConfig,
    num_calls: int,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
    verbose: int = 0,
) -> Timing:
    """Train ``model`` on ``batch`` through CTCTrainer.fit, timing every batch callback.

    Args:
        model: a sample_models acoustic model (trained in place).
        batch: the fixed (x, y) batch.
        features: the feature configuration (for the tf.data signature).
        num_calls: timed calls of the train function (each runs ``steps_per_execution`` steps).
        jit_compile, steps_per_execution, verbose: compile / fit settings. The defaults are
            train_model's: ``trainer.compile(optimizer=course_optimizer(), jit_compile=False)``
            and one step per call; train_model's default ``verbose=1`` adds a progress bar,
            measured separately as an alternative.

    Returns:
        Seconds per timed call and the first batch's loss.
    """
    trainer = train_utils.CTCTrainer(model)
    trainer.compile(
        optimizer=train_utils.course_optimizer(), jit_compile=jit_compile, steps_per_execution=steps_per_execution
    )
    timer = StepTimer()
    # StopOnNaN is train_model's only per-batch callback; its other callbacks act once an epoch.
    callbacks = [train_utils.StopOnNaN(), timer]
    data = RepeatedBatch(batch, num_calls * steps_per_execution, features).fit_data()
    with contextlib.redirect_stdout(io.StringIO()):  # the progress bar, when verbose=1
        trainer.fit(data, epochs=1, verbose=verbose, callbacks=callbacks)
    return Timing(timer.seconds, timer.first_loss, steps_per_execution)


def time_raw_tensorflow(model: keras.Model, batch: Batch, features: utils.FeatureConfig, num_calls: int) -> Timing:
    """A hand-written ``tf.function`` training step on ``model``, timed call by call."""
    import tensorflow as tf

    logits_model = sample_models.logits_model(model)
    optimizer = train_utils.course_optimizer()
    variables = logits_model.trainable_variables
    # The same variable-length input signature fit's train function is traced with.
    signature = list(RepeatedBatch(batch, 1, features).fit_data().element_spec)

    @tf.function(input_signature=signature)
    def train_step(inputs, targets):
        with tf.GradientTape() as tape:
            logits = logits_model(inputs["features"], training=True)  # (B, T', C)
            output_length = model.output_length(inputs["input_length"])  # (B,)
            losses = train_utils.ctc_batch_loss(targets["labels"], logits, targets["label_length"], output_length)
            loss = tf.reduce_mean(losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    inputs, targets = batch
    seconds, losses = [], []
    for _ in range(num_calls):
        started = time.perf_counter()
        losses.append(float(train_step(inputs, targets)))  # float() waits for the step
        seconds.append(time.perf_counter() - started)
    return Timing(seconds, losses[0])


def time_raw_jax(model: keras.Model, batch: Batch, num_calls: int) -> Timing:
    """A hand-written ``jax.jit`` stateless training step on ``model``, timed call by call."""
    import jax

    logits_model = sample_models.logits_model(model)
    optimizer = train_utils.course_optimizer()
    optimizer.build(logits_model.trainable_variables)

    def loss_and_updates(trainable, non_trainable, inputs, targets):
        logits, non_trainable = logits_model.stateless_call(
            trainable, non_trainable, inputs["features"], training=True
        )  # (B, T', C); non_trainable carries the updated batch-norm statistics
        output_length = model.output_length(inputs["input_length"])  # (B,)
        losses = train_utils.ctc_batch_loss(targets["labels"], logits, targets["label_length"], output_length)
        return keras.ops.mean(losses), non_trainable

    gradient_function = jax.value_and_grad(loss_and_updates, has_aux=True)

    def train_step(state, inputs, targets):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), gradients = gradient_function(trainable, non_trainable, inputs, targets)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, gradients, trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    jitted_step = jax.jit(train_step, donate_argnums=0)  # donated state, as Keras' JAX trainer does
    state = tuple(
        [variable.value for variable in variables]
        for variables in (logits_model.trainable_variables, logits_model.non_trainable_variables, optimizer.variables)
    )
    inputs, targets = batch
    seconds, losses = [], []
    for _ in range(num_calls):
        started = time.perf_counter()
        loss, state = jitted_step(state, inputs, targets)
        losses.append(float(loss))  # float() waits for JAX's asynchronous dispatch
        seconds.append(time.perf_counter() - started)
    return Timing(seconds, losses[0])


def time_generator_epoch(generator: AudioGenerator) -> list[float]:
    """Seconds of ``generator[index]`` for every batch of one shuffled (second) epoch."""
    generator.on_epoch_end()  # the order of epoch 2: shuffled, features already in memory
    seconds = []
    for index in range(len(generator)):
        started = time.perf_counter()
        generator[index]
        seconds.append(time.perf_counter() - started)
    return seconds


def time_feature_loading(generator: AudioGenerator, indices: list[int], cache_dir: Path | None) -> float:
    """Seconds to load the features of ``indices`` through a FeatureCache (None: featurize)."""
    cache = FeatureCache(generator.features, cache_dir)
    cache.get(generator.keys[indices[0]])  # first-call costs (imports, FFT plans) excluded
    started = time.perf_counter()
    for index in indices:
        cache.get(generator.keys[index])
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- report


def build_model(name: str, input_dim: int, weights: list[np.ndarray] | None = None) -> keras.Model:
    model = sample_models.build(name, input_dim=input_dim)
    if weights is not None:
        model.set_weights(weights)
    return model


def row(label: str, value: str, note: str = "") -> str:
    return f"{label:<46} {value:>10}  {note}".rstrip()


def measure_alternatives(
    builder_name: str, weights: list[np.ndarray], batch: Batch, features: utils.FeatureConfig,
    num_calls: int, warmup: int, raw_ms: float,
) -> list[tuple[str, Timing, int]]:
    """Fit step under other settings, each labeled with the train_utils change it stands for.

    Returns:
        (label, timing, warm-up calls to drop) for every alternative.
    """
    backend = keras.backend.backend()
    alternatives: list[tuple[str, dict]] = [
        ("train_model default verbose=1 (progress bar)", dict(verbose=1)),
    ]
    if backend == "jax":
        # jit_compile=False makes Keras' JAX trainer call train_step un-jitted (op by op).
        alternatives.append(("jit_compile=True (on JAX: jax.jit the step)", dict(jit_compile=True)))
    else:
        alternatives.append(("steps_per_execution=5", dict(steps_per_execution=5)))
    results = []
    for label, settings in alternatives:
        steps_per_execution = settings.get("steps_per_execution", 1)
        calls = max(2, -(-num_calls // steps_per_execution))  # same number of steps, ceil
        calls_to_drop = -(-warmup // steps_per_execution)
        timing = time_fit(build_model(builder_name, features.feature_dim, weights), batch, features,
                          calls + calls_to_drop, **settings)
        results.append((label, timing, calls_to_drop))
    return results


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="2",
                        help="course model 0-4 or a sample_models builder name (default 2: cnn_rnn_model)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps after warm-up (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps: tracing, compilation (default 5)")
    parser.add_argument("--minibatch-size", type=int, default=20, help="utterances per batch (default 20)")
    parser.add_argument("--train-json", type=Path, default=REPOSITORY_ROOT / "data/speech/train_corpus.json")
    parser.add_argument("--cache-dir", type=Path, default=REPOSITORY_ROOT / "data/features",
                        help="the feature cache AudioGenerator reads (default data/features)")
    parser.add_argument("--alternatives", choices=("auto", "always", "never"), default="auto",
                        help="measure fit under other settings: auto = when fit/raw misses its target")
    arguments = parser.parse_args()
    if arguments.model.isdigit():
        if not 0 <= int(arguments.model) < len(COURSE_MODELS):
            parser.error(f"--model {arguments.model}: the course's models are 0-{len(COURSE_MODELS) - 1}")
        arguments.model = COURSE_MODELS[int(arguments.model)]
    if arguments.model not in sample_models.BUILDERS:
        parser.error(f"--model {arguments.model!r}: choose 0-4 or one of {sorted(sample_models.BUILDERS)}")
    if arguments.steps < 1 or arguments.warmup < 1 or arguments.minibatch_size < 1:
        parser.error("--steps, --warmup and --minibatch-size must be at least 1")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise SystemExit(f"KERAS_BACKEND={backend}: this benchmark supports tensorflow and jax")
    keras.utils.set_random_seed(0)
    features = utils.FeatureConfig()
    model = build_model(arguments.model, features.feature_dim)
    initial_weights = model.get_weights()  # the raw step starts from these too

    started = time.perf_counter()
    generator = AudioGenerator(arguments.train_json, features=features, minibatch_size=arguments.minibatch_size,
                               output_length=model.output_length, cache_dir=arguments.cache_dir, verbose=False)
    construction_seconds = time.perf_counter() - started
    indices, batch = median_length_batch(generator, arguments.minibatch_size)
    num_calls = arguments.warmup + arguments.steps

    fit = time_fit(model, batch, features, num_calls)
    raw_model = build_model(arguments.model, features.feature_dim, initial_weights)
    if backend == "tensorflow":
        raw = time_raw_tensorflow(raw_model, batch, features, num_calls)
        raw_label = "raw step   (tf.function + GradientTape)"
    else:
        raw = time_raw_jax(raw_model, batch, num_calls)
        raw_label = "raw step   (jax.jit stateless step)"
    fit_ms, raw_ms = fit.median_ms(arguments.warmup), raw.median_ms(arguments.warmup)

    generator_seconds = time_generator_epoch(generator)
    generator_ms = 1000.0 * statistics.median(generator_seconds)
    cold_ms = 1000.0 * time_feature_loading(generator, indices, cache_dir=None)
    disk_ms = 1000.0 * time_feature_loading(generator, indices, cache_dir=arguments.cache_dir)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    time_steps = batch[0]["features"].shape[1]
    print(f"backend {backend}, model {arguments.model} ({model.count_params():,} params), "
          f"batch {arguments.minibatch_size} x {time_steps} frames, {cores} CPU cores")
    print(row("fit step   (train_model's compile, fit_data)", f"{fit_ms:.1f} ms",
              f"(median of {fit.count(arguments.warmup)} after {arguments.warmup} warm-up)"))
    print(row(raw_label, f"{raw_ms:.1f} ms", f"(median of {raw.count(arguments.warmup)})"))
    print(row("ratio fit/raw", f"{fit_ms / raw_ms:.2f}", f"(target <= {FIT_TO_RAW_TARGET})"))
    print(row("first-step loss, fit / raw (same work?)", f"{fit.first_loss:.2f}", f"/ {raw.first_loss:.2f}"))
    print(row("generator  (cached, per batch)", f"{generator_ms:.2f} ms",
              f"(median of {len(generator_seconds)} batches of a shuffled epoch)"))
    print(row("ratio generator/fit step", f"{100 * generator_ms / fit_ms:.1f} %",
              f"(target <= {100 * GENERATOR_TO_STEP_TARGET:.0f} %)"))
    print(row("cold featurization of the batch (no cache)", f"{cold_ms:.0f} ms",
              f"({cold_ms / generator_ms:.0f}x the in-memory batch)"))
    print(row("disk-cache load of the batch (.npy)", f"{disk_ms:.1f} ms",
              f"(AudioGenerator loads all {len(generator.texts)} in {construction_seconds:.1f} s at construction)"))

    if arguments.alternatives == "always" or (arguments.alternatives == "auto" and fit_ms / raw_ms > FIT_TO_RAW_TARGET):
        print("alternatives (benchmark-only changes to the fit step above; train_utils untouched):")
        for label, timing, calls_to_drop in measure_alternatives(
            arguments.model, initial_weights, batch, features, arguments.steps, arguments.warmup, raw_ms
        ):
            alternative_ms = timing.median_ms(calls_to_drop)
            print(row(f"  fit with {label}", f"{alternative_ms:.1f} ms", f"fit/raw {alternative_ms / raw_ms:.2f}"))


if __name__ == "__main__":
    main()
