"""Training options for ``train_model``: schedules, initialization, precision, devices.

- :class:`WarmupDecay`: linear warm-up to a peak learning rate, then cosine or exponential decay
  (a ``keras.optimizers.schedules.LearningRateSchedule``).
- :class:`OptimizerConfig` / :func:`build_optimizer`: Adam (or AdamW) with that schedule and
  gradient clipping, sized by train_model once it knows the steps per epoch.
- :func:`initialize_kernels`: re-draw every kernel with e.g. Xavier / Glorot normal (seed 002).
- :func:`precision_policy`: "mixed_float16" on a GPU, "mixed_bfloat16" on a CPU.
- :func:`training_scope`: builds a fresh copy of a model under a dtype policy and / or a
  data-parallel strategy (Keras layers take both when they are created): TensorFlow's
  ``MirroredStrategy`` on one machine (``distribute=True``), its ``MultiWorkerMirroredStrategy``
  over several processes or machines configured by ``TF_CONFIG`` (``distribute="multi_worker"``),
  or on JAX Keras' ``keras.distribution.DataParallel`` over the local devices (``distribute=True``).
- :func:`multi_worker_strategy` / :func:`is_chief`: the process's multi-worker strategy (create it
  first thing in a worker's program) and whether this process is the one that writes the run folder.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
from keras import ops

from ctclab.models.registry import build

if TYPE_CHECKING:
    import tensorflow as tf

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array) or a NumPy array

Strategy = Any  # a tf.distribute.Strategy, a keras.distribution.Distribution (JAX) or None

DECAYS = ("cosine", "exponential", "constant")
DISTRIBUTE_MODES = (False, True, "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@keras.saving.register_keras_serializable(package="ctc_lab")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate per optimizer step: linear warm-up, then decay to ``final_learning_rate``.

    lr(s) = peak * (s + 1) / warmup_steps                       for s < warmup_steps
    lr(s) = final + (peak - final) * (1 + cos(pi * p)) / 2      cosine, p = (s - warmup) / decay_steps
    lr(s) = peak * (final / peak) ** p                          exponential
    lr(s) = peak                                                constant
    with p clipped to [0, 1], so the rate stays at ``final_learning_rate`` after decay_steps.

    Args:
        peak_learning_rate: rate reached at the end of the warm-up.
        warmup_steps: steps of linear warm-up (0: start at the peak).
        decay_steps: steps from the peak to the final rate.
        decay: "cosine", "exponential" or "constant".
        final_learning_rate: rate at the end of the decay (> 0 for "exponential").
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        decay_steps: int,
        decay: str = "cosine",
        final_learning_rate: float = 0.0,
    ):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        if peak_learning_rate <= 0 or warmup_steps < 0 or decay_steps < 1:
            raise ValueError(
                f"need peak_learning_rate > 0, warmup_steps >= 0, decay_steps >= 1; got "
                f"{peak_learning_rate}, {warmup_steps}, {decay_steps}"
            )
        if decay == "exponential" and not 0 < final_learning_rate <= peak_learning_rate:
            raise ValueError(f"exponential decay needs 0 < final_learning_rate <= peak, got {final_learning_rate}")
        self.peak_learning_rate, self.warmup_steps, self.decay_steps = peak_learning_rate, warmup_steps, decay_steps
        self.decay, self.final_learning_rate = decay, final_learning_rate

    def __call__(self, step: Tensor) -> Tensor:
        step = ops.cast(step, "float32")
        peak, final = self.peak_learning_rate, self.final_learning_rate
        warm = peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            decayed = final + (peak - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "exponential":
            decayed = peak * ops.power(final / peak, progress)
        else:
            decayed = ops.full_like(progress, peak)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict:
        return dict(
            peak_learning_rate=self.peak_learning_rate,
            warmup_steps=self.warmup_steps,
            decay_steps=self.decay_steps,
            decay=self.decay,
            final_learning_rate=self.final_learning_rate,
        )


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam with a warm-up / decay schedule; train_model turns epochs into steps.

    Attributes:
        peak_learning_rate: Adam's rate after the warm-up (1e-3, Adam's usual default).
        warmup_epochs: epochs of linear warm-up (fractions allowed); CTC's first updates are
            large, a short warm-up keeps them from wrecking a fresh recurrent layer.
        decay: "cosine", "exponential" or "constant" after the warm-up, until the last epoch.
        final_fraction: learning rate at the last step as a fraction of the peak.
        clipnorm: gradient-norm clipping, as the default optimizer (the course used 5).
        weight_decay: decoupled AdamW weight decay; None for plain Adam.
    """

    peak_learning_rate: float = 1e-3
    warmup_epochs: float = 1.0
    decay: str = "cosine"
    final_fraction: float = 0.05
    clipnorm: float = 5.0
    weight_decay: float | None = None


def build_optimizer(config: OptimizerConfig, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The optimizer ``config`` describes, its schedule spread over ``epochs`` of ``steps_per_epoch``."""
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    schedule = WarmupDecay(
        config.peak_learning_rate,
        warmup_steps,
        max(epochs * steps_per_epoch - warmup_steps, 1),
        config.decay,
        config.final_fraction * config.peak_learning_rate,
    )
    if config.weight_decay is None:
        return keras.optimizers.Adam(learning_rate=schedule, clipnorm=config.clipnorm)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, clipnorm=config.clipnorm)


def kernel_variables(model: keras.Model) -> list:
    """Every input kernel of the model's layers (Dense, Conv, RNN input and depthwise kernels).

    Recurrent kernels (orthogonal by default), biases and normalization weights are left out.
    """
    return [v for v in model.trainable_variables if v.name.endswith("kernel") and v.name != "recurrent_kernel"]


def l2_penalty(model: keras.Model, weight: float) -> Tensor:
    """weight * sum of squared kernel entries (the thesis' lambda ||W||_F^2), a float32 scalar."""
    return weight * sum(ops.sum(ops.square(ops.cast(v, "float32"))) for v in kernel_variables(model))


def initialize_kernels(model: keras.Model, initializer: str = "glorot_normal", seed: int = 0) -> int:
    """Re-draw every kernel of :func:`kernel_variables` with a Keras initializer, in place.

    "glorot_normal" is Xavier initialization: std sqrt(2 / (fan_in + fan_out)), with fans
    counting the receptive field of convolutions (Glorot & Bengio 2010; seed 002, 2.7.1).

    Returns:
        The number of kernels re-drawn.
    """
    kernels = kernel_variables(model)
    for index, variable in enumerate(kernels):
        draw = keras.initializers.get({"class_name": initializer, "config": {"seed": seed + index}})
        variable.assign(draw(variable.shape, dtype=variable.dtype))
    return len(kernels)


def precision_policy(mixed_precision: bool | str) -> str:
    """The dtype policy for a ``mixed_precision`` flag: True picks float16 on a GPU, bfloat16 on a CPU.

    float16 is fast on GPU tensor cores but needs loss scaling (Keras adds a LossScaleOptimizer);
    CPUs have no float16 matrix units, and bfloat16 keeps float32's range.
    """
    if mixed_precision is False or mixed_precision is None:
        return "float32"
    if mixed_precision is True:
        return "mixed_float16" if _has_gpu() else "mixed_bfloat16"
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be True, False or one of {PRECISIONS}, got {mixed_precision!r}")
    return mixed_precision


def _has_gpu() -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return False


@functools.lru_cache(maxsize=1)
def mirrored_strategy() -> tf.distribute.MirroredStrategy:
    """The process's one MirroredStrategy over all visible GPUs (else all logical CPUs).

    One per process: a second MirroredStrategy's all-reduce ops collide with the first's
    (TensorFlow aborts with "Shape mismatch in the collective instance").
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


@functools.lru_cache(maxsize=1)
def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy, its cluster read from ``TF_CONFIG``.

    ``TF_CONFIG`` is JSON: ``{"cluster": {"worker": ["host0:port", "host1:port"]}, "task":
    {"type": "worker", "index": i}}`` (the same cluster on every worker, its own index on each);
    without it the strategy runs one worker. TensorFlow configures its collective ops when it
    starts, so call this first thing in a worker's program, before any model is built; a later
    ``train_model(distribute="multi_worker")`` uses the same strategy. Every worker must start
    (the first collective waits for all of them).

    Raises:
        RuntimeError: TensorFlow was already initialized (a model or tensor was made first).
    """
    import tensorflow as tf

    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise RuntimeError(
            f"{error}: call ctclab.training.options.multi_worker_strategy() at the start of each worker's "
            "program, before building a model, then train_model(distribute='multi_worker')"
        ) from error


def is_chief(strategy: Strategy = None) -> bool:
    """Whether this process writes the run folder: True unless a multi-worker strategy says otherwise.

    The chief is the task of type "chief", or worker 0 when ``TF_CONFIG``'s cluster has no chief
    (TensorFlow's convention); a single process is always its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_values(strategy: Strategy, value: int) -> list[int]:
    """``value`` as every worker of a multi-worker strategy has it (one entry per replica), by an all-gather.

    A collective: every worker must call it. Without a multi-worker strategy, ``[value]``.
    """
    if getattr(strategy, "cluster_resolver", None) is None or replicas(strategy) == 1:
        return [value]
    import tensorflow as tf

    local = strategy.run(lambda: tf.constant([value], tf.int64))
    return [int(item) for item in strategy.gather(local, axis=0).numpy()]


def replicas(strategy: Strategy) -> int:
    """Model replicas that share each batch: the strategy's replicas in sync, a JAX mesh's devices, else 1."""
    if strategy is None:
        return 1
    if hasattr(strategy, "num_replicas_in_sync"):
        return int(strategy.num_replicas_in_sync)
    return int(strategy.device_mesh.devices.size)  # keras.distribution.DataParallel


def _strategy(distribute: bool | str) -> Strategy:
    """The strategy ``distribute`` names (see :func:`training_scope`), None for False."""
    if distribute not in DISTRIBUTE_MODES:
        raise ValueError(f"distribute must be one of {DISTRIBUTE_MODES}, got {distribute!r}")
    if not distribute:
        return None
    backend = keras.backend.backend()
    if backend == "jax" and distribute in (True, "mirrored"):
        return keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    if backend != "tensorflow":
        raise ValueError(
            f"distribute={distribute!r} uses tf.distribute and needs the TensorFlow backend, not {backend!r}"
            + (" (on JAX, distribute=True is Keras' DataParallel over the local devices)" if backend == "jax" else "")
        )
    return multi_worker_strategy() if distribute == "multi_worker" else mirrored_strategy()


@contextlib.contextmanager
def training_scope(
    model: keras.Model, policy: str = "float32", distribute: bool | str = False
) -> Iterator[tuple[keras.Model, Strategy]]:
    """Yield ``(model to train, strategy or None)`` with the policy and strategy in force.

    When a policy other than float32 or a strategy is asked for, the model is rebuilt from its
    ``builder_config`` inside them (layers pick their dtype policy and their variables' devices
    when created) and given ``model``'s current weights; copy the trained weights back with
    ``model.set_weights(trained.get_weights())``. Otherwise ``model`` itself is yielded.

    Args:
        model: a model made by a registered builder.
        policy: a Keras dtype policy name (see :func:`precision_policy`).
        distribute: False; True or "mirrored" for TensorFlow's MirroredStrategy over the local GPUs
            (or logical CPUs), on JAX Keras' DataParallel over ``keras.distribution.list_devices()``;
            "multi_worker" for TensorFlow's MultiWorkerMirroredStrategy (:func:`multi_worker_strategy`).

    Raises:
        ValueError: a rebuild is needed but the model was not made by a registered builder, or
            ``distribute`` is not one of :data:`DISTRIBUTE_MODES` or not available on this backend.
    """
    strategy = _strategy(distribute)
    if policy == "float32" and strategy is None:
        yield model, None
        return
    config = getattr(model, "builder_config", None)
    if not config:
        raise ValueError(
            f"model {model.name!r} has no builder_config: build it with a sample_models builder "
            "to train it with mixed precision or on several devices"
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            trained = build(config["builder"], **config["arguments"])
            trained.set_weights(model.get_weights())
            yield trained, strategy
    finally:
        keras.config.set_dtype_policy(previous)


def replica_share(loss: Tensor) -> Tensor:
    """Divide a per-replica loss by the replicas in sync (TensorFlow), as Keras' own losses do.

    A MirroredStrategy sums the replicas' gradients; each replica's mean loss must count 1/N.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            return loss / replicas
    return loss
