"""How much Keras ``fit`` and the data generator cost next to the bare training step.

One run measures, on the current Keras backend (``KERAS_BACKEND=tensorflow`` or ``jax``):

1. **fit step vs raw step.** One real batch (the ``--minibatch-size`` training utterances
   closest to the median length) is trained on ``--warmup + --steps`` times

   * through ``train_utils.CTCTrainer`` compiled as ``train_utils.train_model`` compiles it and
     fed the way ``AudioGenerator.fit_data`` feeds fit ("fit step"), and
   * through a hand-written step on a fresh copy of the model with the same initial weights,
     the same loss (``ctc_batch_loss`` on ``registry.logits_model``) and the
     same optimizer (``--optimizer``: train_model's default or the course's SGD) ("raw step"):
     a ``tf.function`` with a ``tf.GradientTape`` on TensorFlow, a ``jax.jit`` of
     ``stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply`` on JAX.

   The two alternate step by step (the raw step runs inside the timing callback, after the fit
   step's time is taken), so load from other processes on a shared machine hits both alike;
   the generator batches of part 2 are timed in the same gaps. A fit step is timed from
   ``on_train_batch_begin`` to ``on_train_batch_end``, which Keras calls once the loss has
   reached Python, i.e. after the step finished. Warm-up steps (tracing, compilation) are
   dropped and medians are compared.
2. **generator vs step after the first epoch.** ``AudioGenerator`` keeps every utterance's
   features in memory once constructed, so a batch after the first epoch is only normalization
   and padding: ``__getitem__`` is timed on every batch of a shuffled epoch. A cold
   featurization of the fixed batch (no feature cache) shows what the cache saves.

Ratios are printed against targets (fit/raw <= 1.15, generator/step <= 5 %); nothing is
asserted. When fit/raw misses its target (or with ``--alternatives always``), fit is measured
again under other settings, each labeled with the ``train_utils`` change it stands for; only
the benchmark's own trainer is changed.

Usage, from the repository root (the default run takes about a minute on 2 CPU cores with
TensorFlow, two with JAX)::

    python benchmarks/train_step.py
    KERAS_BACKEND=jax python benchmarks/train_step.py --model 4 --steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from ctclab.data.features import FeatureCache, FeatureConfig
from ctclab.data.generator import AudioGenerator
from ctclab.models.registry import BUILDERS, build, logits_model
from ctclab.training.loss import CTCTrainer, ctc_batch_loss
from ctclab.training.trainer import StopOnNaN, course_optimizer, default_optimizer

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
COURSE_MODELS = ["simple_rnn_model", "rnn_model", "cnn_rnn_model", "deep_rnn_model", "bidirectional_rnn_model"]
FIT_TO_RAW_TARGET = 1.15  # Keras' per-step bookkeeping should cost at most 15 % of a step
GENERATOR_TO_STEP_TARGET = 0.05  # building a batch should cost at most 5 % of a step
MINIMUM_TIMED_STEPS = 5  # a fit stopped by --max-fit-seconds still keeps this many timed steps
NOTEBOOK_VERBOSE = 2  # what the course notebook passes to train_model (one line per epoch)
OPTIMIZERS: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
    "default": default_optimizer,  # train_model's when given none
    "course": course_optimizer,  # the course's SGD
}

Batch = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


@dataclass
class Timing:
    """Wall-clock seconds of every timed call, warm-up included, and the first call's loss."""

    seconds: list[float] = field(default_factory=list)
    first_loss: float = math.nan
    steps_per_call: int = 1  # >1 when one fit call runs several steps (steps_per_execution)

    def timed(self, warmup_steps: int) -> list[float]:
        """Seconds per step of the calls after the first ``warmup_steps`` steps."""
        calls_to_drop = math.ceil(warmup_steps / self.steps_per_call)
        return [seconds / self.steps_per_call for seconds in self.seconds[calls_to_drop:]]

    def median_ms(self, warmup_steps: int) -> float:
        return 1000.0 * statistics.median(self.timed(warmup_steps) or [math.nan])


class TimedStep:
    """Runs a zero-argument training step that returns its loss, timing every call."""

    def __init__(self, step: Callable[[], float]):
        self.step, self.timing = step, Timing()

    def __call__(self) -> None:
        started = time.perf_counter()
        loss = self.step()  # a Python float: the step has finished
        self.timing.seconds.append(time.perf_counter() - started)
        if len(self.timing.seconds) == 1:
            self.timing.first_loss = loss


class StepTimer(keras.callbacks.Callback):
    """Times each training batch of fit, begin to end, then runs ``between_steps``.

    Overriding ``on_train_batch_end`` makes Keras dispatch batch callbacks synchronously, with
    the logs already converted to Python floats, so the end time is after the step completed.

    Args:
        between_steps: called ``steps_per_call`` times after each batch is timed (the raw step).
        steps_per_call: training steps per fit batch callback (``steps_per_execution``).
        warmup_steps: steps not counted against ``max_seconds``.
        max_seconds: stop fit once the timed steps took this long (and at least
            MINIMUM_TIMED_STEPS were timed), to bound a very slow fit path.
    """

    def __init__(self, between_steps: Callable[[], None], steps_per_call: int, warmup_steps: int, max_seconds: float):
        super().__init__()
        self.between_steps, self.warmup_steps, self.max_seconds = between_steps, warmup_steps, max_seconds
        self.timing = Timing(steps_per_call=steps_per_call)
        self._started = 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.timing.seconds.append(time.perf_counter() - self._started)
        if len(self.timing.seconds) == 1:
            self.timing.first_loss = float((logs or {}).get("loss", math.nan))
        for _ in range(self.timing.steps_per_call):
            self.between_steps()
        timed = self.timing.timed(self.warmup_steps)
        if len(timed) >= MINIMUM_TIMED_STEPS and sum(timed) * self.timing.steps_per_call > self.max_seconds:
            self.model.stop_training = True


class RepeatedBatch(keras.utils.PyDataset):
    """One fixed batch served ``batch_count`` times: fit's input on backends other than TensorFlow."""

    def __init__(self, batch: Batch, batch_count: int):
        super().__init__()
        self.batch, self.batch_count = batch, batch_count

    def __len__(self) -> int:
        return self.batch_count

    def __getitem__(self, index: int) -> Batch:
        return self.batch


def repeated_fit_input(batch: Batch, batch_count: int, generator: AudioGenerator):
    """``batch`` ``batch_count`` times, in the form ``generator.fit_data()`` hands to fit.

    On TensorFlow that is a ``tf.data`` generator with fit_data's own variable-length signature
    (so the step is traced for unknown T and L, as in real training) and, like fit_data, a
    two-batch prefetch thread; on JAX a PyDataset read in the training loop. The one difference
    from training is that building the batch costs nothing here; the generator is timed apart.
    """
    if keras.backend.backend() != "tensorflow":
        return RepeatedBatch(batch, batch_count)
    import tensorflow as tf

    signature = generator.fit_data().element_spec  # builds the dataset only; reads no batch
    dataset = tf.data.Dataset.from_generator(lambda: (batch for _ in range(batch_count)), output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(batch_count)).prefetch(2)


# ---------------------------------------------------------------------------- the two steps


@dataclass
class FitSettings:
    """How the benchmark compiles and fits; the defaults are the course's training path.

    ``train_model`` compiles with ``trainer.compile(optimizer=optimizer or default_optimizer(),
    jit_compile=False)`` and fits with ``shuffle=False``; the course notebook passes ``verbose=2``.
    """

    optimizer: str = "default"  # a key of OPTIMIZERS
    jit_compile: bool = False
    steps_per_execution: int = 1
    verbose: int = NOTEBOOK_VERBOSE


def time_fit(
    model: keras.Model,
    batch: Batch,
    generator: AudioGenerator,
    settings: FitSettings,
    num_steps: int,
    warmup_steps: int,
    between_steps: Callable[[], None],
    max_seconds: float,
) -> Timing:
    """Train ``model`` (in place) on ``batch`` through CTCTrainer.fit, timing every batch.

    Args:
        model: a sample_models acoustic model.
        batch: the fixed (x, y) batch.
        generator: the training generator (fit's input takes the form its fit_data has).
        settings: compile and fit arguments.
        num_steps: training steps, warm-up included.
        warmup_steps: steps not counted against ``max_seconds``.
        between_steps: run after each timed step (the raw step).
        max_seconds: see StepTimer.

    Returns:
        Seconds per fit batch callback and the first batch's loss.
    """
    trainer = CTCTrainer(model)
    trainer.compile(
        optimizer=OPTIMIZERS[settings.optimizer](),
        jit_compile=settings.jit_compile,
        steps_per_execution=settings.steps_per_execution,
    )
    timer = StepTimer(between_steps, settings.steps_per_execution, warmup_steps, max_seconds)
    # StopOnNaN is train_model's only per-batch callback; its other callbacks act once an epoch.
    callbacks = [StopOnNaN(), timer]
    data = repeated_fit_input(batch, num_steps, generator)
    with contextlib.redirect_stdout(io.StringIO()):  # the progress output of verbose=1 / 2
        trainer.fit(data, epochs=1, verbose=settings.verbose, callbacks=callbacks, shuffle=False)
    return timer.timing


def tensorflow_raw_step(
    model: keras.Model, batch: Batch, generator: AudioGenerator, optimizer: keras.optimizers.Optimizer
) -> Callable[[], float]:
    """A hand-written ``tf.function`` training step on ``model`` and ``batch``.

    The batch is converted to tensors once, so the step is pure compute: a lower bound for
    fit, whose prefetch thread converts each batch while the previous step runs.
    """
    import tensorflow as tf

    to_logits = logits_model(model)
    variables = to_logits.trainable_variables
    # The same variable-length signature that fit's train function is traced with.
    signature = list(generator.fit_data().element_spec)

    @tf.function(input_signature=signature)
    def train_step(inputs, targets):
        with tf.GradientTape() as tape:
            logits = to_logits(inputs["features"], training=True)  # (B, T', C)
            output_length = model.output_length(inputs["input_length"])  # (B,)
            losses = ctc_batch_loss(targets["labels"], logits, targets["label_length"], output_length)
            loss = tf.reduce_mean(losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    inputs, targets = tf.nest.map_structure(tf.convert_to_tensor, batch)
    return lambda: float(train_step(inputs, targets))


def jax_raw_step(model: keras.Model, batch: Batch, optimizer: keras.optimizers.Optimizer) -> Callable[[], float]:
    """A hand-written ``jax.jit`` stateless training step on ``model`` and ``batch``.

    The batch is put on the device once (see :func:`tensorflow_raw_step`); the state lives in
    the closure, donated to each step as Keras' JAX trainer donates its state.
    """
    import jax

    to_logits = logits_model(model)
    optimizer.build(to_logits.trainable_variables)

    def loss_and_updates(trainable, non_trainable, inputs, targets):
        logits, non_trainable = to_logits.stateless_call(
            trainable, non_trainable, inputs["features"], training=True
        )  # (B, T', C); non_trainable comes back with updated batch-norm statistics
        output_length = model.output_length(inputs["input_length"])  # (B,)
        losses = ctc_batch_loss(targets["labels"], logits, targets["label_length"], output_length)
        return keras.ops.mean(losses), non_trainable

    gradient_function = jax.value_and_grad(loss_and_updates, has_aux=True)

    def train_step(state, inputs, targets):
        trainable, non_trainable, optimizer_variables = state
        (loss, non_trainable), gradients = gradient_function(trainable, non_trainable, inputs, targets)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, gradients, trainable)
        return loss, (trainable, non_trainable, optimizer_variables)

    jitted_step = jax.jit(train_step, donate_argnums=0)
    state = [
        [variable.value for variable in variables]
        for variables in (to_logits.trainable_variables, to_logits.non_trainable_variables, optimizer.variables)
    ]
    inputs, targets = jax.device_put(batch)

    def step() -> float:
        loss, state[:] = jitted_step(tuple(state), inputs, targets)
        return float(loss)  # waits for JAX's asynchronous dispatch

    return step


# --------------------------------------------------------------------------------- the data


def median_length_batch(generator: AudioGenerator, minibatch_size: int) -> tuple[list[int], Batch]:
    """The ``minibatch_size`` utterances whose frame counts are closest to the median, padded.

    Returns:
        (utterance indices, (x, y) as served by ``AudioGenerator.get_batch``).
    """
    lengths = np.asarray([feature.shape[0] for feature in generator.feats])
    closest = np.argsort(np.abs(lengths - np.median(lengths)), kind="stable")[:minibatch_size]
    indices = sorted(int(index) for index in closest)
    return indices, generator.get_batch(indices)


class GeneratorEpochTimer:
    """Times ``generator[index]`` over one shuffled (second) epoch, a few batches per call.

    Called between training steps, it spreads the epoch over the steps so the generator is
    timed under the same machine load as the steps it is compared with.

    Args:
        generator: the training generator (features already in memory).
        calls: how many calls the epoch should be spread over.
    """

    def __init__(self, generator: AudioGenerator, calls: int):
        generator.on_epoch_end()  # the order of epoch 2: shuffled, features already in memory
        self.generator, self.next_index = generator, 0
        self.batches_per_call = math.ceil(len(generator) / calls)
        self.seconds: list[float] = []
        self.shapes: set[tuple[int, int]] = set()  # padded (T, L) of the epoch's batches

    def __call__(self) -> None:
        for index in range(self.next_index, min(self.next_index + self.batches_per_call, len(self.generator))):
            started = time.perf_counter()
            inputs, targets = self.generator[index]
            self.seconds.append(time.perf_counter() - started)
            self.shapes.add((inputs["features"].shape[1], targets["labels"].shape[1]))
        self.next_index += self.batches_per_call

    def finish(self) -> list[float]:
        """Time the batches not reached yet (a fit stopped early) and return all seconds."""
        while self.next_index < len(self.generator):
            self()
        return self.seconds


def time_feature_loading(generator: AudioGenerator, indices: list[int], cache_dir: Path | None) -> float:
    """Seconds to get the features of ``indices`` through a FeatureCache (None: featurize)."""
    cache = FeatureCache(generator.features, cache_dir)
    cache.get(generator.keys[indices[0]])  # first-call costs (imports, FFT set-up) excluded
    started = time.perf_counter()
    for index in indices:
        cache.get(generator.keys[index])
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------- report


def build_model(name: str, input_dim: int, weights: list[np.ndarray] | None = None) -> keras.Model:
    model = build(name, input_dim=input_dim)
    if weights is not None:
        model.set_weights(weights)
    return model


def row(label: str, value: str, note: str = "") -> str:
    return f"{label:<56} {value:>10}  {note}".rstrip()


def alternative_settings(optimizer: str) -> list[tuple[str, FitSettings]]:
    """Fit settings to try when fit/raw misses its target, labeled with the train_utils change."""
    if keras.backend.backend() == "jax":
        # Keras' JAX trainer jax.jit's train_step only when jit_compile is true; train_model's
        # jit_compile=False (meant to keep TensorFlow off XLA) runs every JAX step op by op.
        return [
            ("jit_compile=True", FitSettings(optimizer, jit_compile=True)),
            ("jit_compile=True, verbose=0", FitSettings(optimizer, jit_compile=True, verbose=0)),
        ]
    return [
        ("verbose=0", FitSettings(optimizer, verbose=0)),
        ("verbose=1 (progress bar, train_model's default)", FitSettings(optimizer, verbose=1)),
        ("steps_per_execution=5", FitSettings(optimizer, steps_per_execution=5)),
    ]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="2", help="course model 0-4 or a sample_models builder name (default 2: cnn_rnn_model)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed training steps after warm-up (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps: tracing, compilation (default 5)")
    parser.add_argument("--minibatch-size", type=int, default=20, help="utterances per batch (default 20)")
    parser.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="default",
        help="default: train_model's (default_optimizer); course: the course's SGD",
    )
    parser.add_argument(
        "--max-fit-seconds",
        type=float,
        default=30.0,
        help=f"stop a fit once its timed steps took this long (>= {MINIMUM_TIMED_STEPS} kept; default 30)",
    )
    parser.add_argument(
        "--alternatives",
        choices=("auto", "always", "never"),
        default="auto",
        help="measure fit under other settings; auto: when fit/raw misses its target",
    )
    parser.add_argument("--train-json", type=Path, default=REPOSITORY_ROOT / "data/speech/train_corpus.json")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=REPOSITORY_ROOT / "data/features",
        help="the feature cache AudioGenerator reads (default data/features)",
    )
    arguments = parser.parse_args()
    if arguments.model.isdigit():
        if not 0 <= int(arguments.model) < len(COURSE_MODELS):
            parser.error(f"--model {arguments.model}: the course's models are 0-{len(COURSE_MODELS) - 1}")
        arguments.model = COURSE_MODELS[int(arguments.model)]
    if arguments.model not in BUILDERS:
        parser.error(f"--model {arguments.model!r}: choose 0-4 or one of {sorted(BUILDERS)}")
    if min(arguments.steps, arguments.warmup, arguments.minibatch_size) < 1:
        parser.error("--steps, --warmup and --minibatch-size must be at least 1")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise SystemExit(f"KERAS_BACKEND={backend}: this benchmark supports tensorflow and jax")
    keras.utils.set_random_seed(0)
    features = FeatureConfig()
    model = build_model(arguments.model, features.feature_dim)
    initial_weights = model.get_weights()  # the raw step's model starts from these too

    started = time.perf_counter()
    generator = AudioGenerator(
        arguments.train_json,
        features=features,
        minibatch_size=arguments.minibatch_size,
        output_length=model.output_length,
        cache_dir=arguments.cache_dir,
        verbose=False,
    )
    construction_seconds = time.perf_counter() - started
    indices, batch = median_length_batch(generator, arguments.minibatch_size)

    # Part 1: fit and raw steps, alternating.
    raw_model = build_model(arguments.model, features.feature_dim, initial_weights)
    raw_optimizer = OPTIMIZERS[arguments.optimizer]()
    if backend == "tensorflow":
        raw_step = tensorflow_raw_step(raw_model, batch, generator, raw_optimizer)
        raw_label = "raw step   (tf.function + GradientTape)"
    else:
        raw_step, raw_label = jax_raw_step(raw_model, batch, raw_optimizer), "raw step   (jax.jit stateless step)"
    steps, warmup = arguments.warmup + arguments.steps, arguments.warmup

    def measure(
        fit_model: keras.Model, settings: FitSettings, also: Callable[[], None] = lambda: None
    ) -> tuple[Timing, Timing]:
        """(fit timing, raw timing), the raw step (then ``also``) running after each fit step."""
        timed_raw_step = TimedStep(raw_step)

        def between_steps() -> None:
            timed_raw_step()
            also()

        fit = time_fit(fit_model, batch, generator, settings, steps, warmup, between_steps, arguments.max_fit_seconds)
        return fit, timed_raw_step.timing

    # Part 2 runs inside part 1: a shuffled epoch of generator batches, spread between the steps.
    generator_timer = GeneratorEpochTimer(generator, calls=steps)
    fit, raw = measure(model, FitSettings(arguments.optimizer), also=generator_timer)
    fit_ms, raw_ms = fit.median_ms(warmup), raw.median_ms(warmup)
    generator_seconds = generator_timer.finish()
    generator_ms = 1000.0 * statistics.median(generator_seconds)
    cold_ms = 1000.0 * time_feature_loading(generator, indices, cache_dir=None)
    disk_ms = 1000.0 * time_feature_loading(generator, indices, cache_dir=arguments.cache_dir)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"backend {backend}, model {arguments.model} ({model.count_params():,} params), "
        f"batch {arguments.minibatch_size} x {batch[0]['features'].shape[1]} frames, {arguments.optimizer} optimizer, "
        f"{cores} CPU cores"
    )
    print(
        row(
            f"fit step   (train_model's compile, fit_data, verbose={NOTEBOOK_VERBOSE})",
            f"{fit_ms:.1f} ms",
            f"(median of {len(fit.timed(warmup))} after {warmup} warm-up)",
        )
    )
    print(row(raw_label, f"{raw_ms:.1f} ms", f"(median of {len(raw.timed(warmup))}, alternating with fit)"))
    print(row("ratio fit/raw", f"{fit_ms / raw_ms:.2f}", f"(target <= {FIT_TO_RAW_TARGET})"))
    print(row("first step, fit / raw (tracing, compilation)", f"{fit.seconds[0]:.1f} s", f"/ {raw.seconds[0]:.1f} s"))
    print(row("first-step loss, fit / raw (same work)", f"{fit.first_loss:.3f}", f"/ {raw.first_loss:.3f}"))
    print(
        row(
            "generator  (cached, per batch)",
            f"{generator_ms:.2f} ms",
            f"(median of all {len(generator_seconds)} batches of a shuffled epoch, "
            f"{len(generator_timer.shapes)} padded shapes)",
        )
    )
    print(
        row(
            "ratio generator/fit step",
            f"{100 * generator_ms / fit_ms:.1f} %",
            f"(target <= {100 * GENERATOR_TO_STEP_TARGET:.0f} %)",
        )
    )
    print(row("generator / raw step", f"{100 * generator_ms / raw_ms:.1f} %"))
    print(
        row(
            "cold featurization of the batch (no cache)",
            f"{cold_ms:.0f} ms",
            f"({cold_ms / generator_ms:.0f}x the in-memory batch)",
        )
    )
    print(
        row(
            "disk-cache load of the batch (.npy)",
            f"{disk_ms:.1f} ms",
            f"(the generator loaded all {len(generator.texts)} in {construction_seconds:.1f} s, once)",
        )
    )

    missed = fit_ms / raw_ms > FIT_TO_RAW_TARGET
    if arguments.alternatives == "always" or (arguments.alternatives == "auto" and missed):
        print("alternatives: fit again, changing only the benchmark's trainer (train_utils untouched)")
        for label, settings in alternative_settings(arguments.optimizer):
            alternative_fit, alternative_raw = measure(
                build_model(arguments.model, features.feature_dim, initial_weights), settings
            )
            alternative_ms, paired_raw_ms = alternative_fit.median_ms(warmup), alternative_raw.median_ms(warmup)
            print(
                row(
                    f"  fit with {label}",
                    f"{alternative_ms:.1f} ms",
                    f"raw {paired_raw_ms:.1f} ms, fit/raw {alternative_ms / paired_raw_ms:.2f}, "
                    f"first step {alternative_fit.seconds[0]:.1f} s",
                )
            )


if __name__ == "__main__":
    main()
