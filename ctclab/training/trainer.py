"""CTC training for any registered acoustic model; each run's files are written through :class:`ctclab.runs.Run`.

Training options (keyword arguments of ``train_model``; machinery in :mod:`ctclab.training.options`):
warm-up + cosine / exponential learning-rate schedules (``schedule=OptimizerConfig(...)``),
gradient clipping (``clipnorm`` of any Keras optimizer), an L2 penalty on kernels (``l2``),
Xavier / Glorot re-initialization (``initializer``), SpecAugment in training only
(``spec_augment``), acoustic augmentation of the training audio (``augment``), mixed precision (``mixed_precision``) and data-parallel training over all
local GPUs or logical CPUs (``distribute=True``, TensorFlow's MirroredStrategy; Keras' DataParallel on JAX)
or over several processes or machines (``distribute="multi_worker"``, TensorFlow's MultiWorkerMirroredStrategy
configured by ``TF_CONFIG``).

Conventions (callbacks in :mod:`ctclab.training.callbacks`): the user's own Keras ``callbacks`` run after
ours; ``tensorboard=True`` writes event files to ``<run folder>/tensorboard/`` (train / validation loss,
learning rate, validation CER per epoch); ``val_cer`` adds the greedy CER of the first validation
utterances to the history; ``early_stopping=N`` stops after N epochs without a lower validation loss.

Multi-worker training: every worker runs the same program with its own ``TF_CONFIG`` task index and
calls :func:`ctclab.training.options.multi_worker_strategy` before building its model. Every worker
reads the whole descriptor files and draws the same global batches (the generator's order is a pure
function of its seed and the epoch); tf.data's DATA auto-sharding splits each global batch between
the replicas of all workers, and the gradients are summed across them, so a step is the step one
process would take on the global batch (exactly when each batch splits evenly). Only the chief
(worker 0) writes the run folder; the others write to a temporary folder, deleted at the end.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from ctclab import paths
from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.data.augment import AugmentConfig
from ctclab.data.features import FeatureConfig
from ctclab.data.generator import AudioGenerator
from ctclab.models.layers import SpecAugment
from ctclab.runs import Run
from ctclab.training import callbacks as training_callbacks
from ctclab.training import options as training_options
from ctclab.training.loss import CTCTrainer
from ctclab.training.options import OptimizerConfig

if TYPE_CHECKING:
    from ctclab.emg.signal import EMGFeatureConfig

DEFAULT_TRAIN_JSON = "data/speech/train_corpus.json"  # under paths.home(), like every relative default


DEFAULT_VALID_JSON = "data/speech/valid_corpus.json"


SPEC_AUGMENT_FIELDS = ("frequency_mask_width", "time_mask_width", "frequency_masks", "time_masks")  # training.json


def default_optimizer() -> keras.optimizers.Optimizer:
    """Adam, lr 1e-3, clipnorm 5: our default.

    The course's SGD (:func:`course_optimizer`) sends the course's model 2 (SimpleRNN, ReLU) to
    a NaN loss within its first epoch on the embedded corpus; Adam with the same clipping trains
    every model 0-4.
    """
    return keras.optimizers.Adam(learning_rate=1e-3, clipnorm=5.0)


def course_optimizer() -> keras.optimizers.Optimizer:
    """The course's SGD: lr 0.02, Nesterov momentum 0.9, clipnorm 5, 1e-6 inverse-time decay."""
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.02, decay_steps=1, decay_rate=1e-6)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True, clipnorm=5.0)


class HistoryLogger(keras.callbacks.Callback):
    """Appends every epoch's logs and wall time to history.json (and the course pickle)."""

    def __init__(self, run: Run, pickle_name: str | None = None):
        super().__init__()
        self.run, self.pickle_name = run, pickle_name
        self.history = run.history()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        for values in self.history.values():  # a resumed run rewrites epochs from here on
            del values[epoch:]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {}, epoch_seconds=time.perf_counter() - self.started)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.run.save_history(self.history, self.pickle_name)


class BestModelSaver(keras.callbacks.Callback):
    """Saves the acoustic model (not the training wrapper) when validation loss improves."""

    def __init__(self, acoustic_model: keras.Model, path: Path, history: dict):
        super().__init__()
        self.acoustic_model, self.path = acoustic_model, path
        self.best = min(history.get("val_loss", []), default=np.inf)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_loss", (logs or {}).get("loss"))
        if value is not None and np.isfinite(value) and value < self.best:
            self.best = value
            self.acoustic_model.save(self.path)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and says what was non-finite and what was checked.

    Checked at the stop, cheaply: the training features the generator holds, its normalization
    statistics and the model's weights. Nothing else is known (the gradients are not kept), so
    the message names no cause it did not check.

    Args:
        generator: the training generator (its keys, features and normalizer are checked);
            None checks only the weights.
    """

    def __init__(self, generator: AudioGenerator | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.epoch = 0
        self.message: str | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            checks = " ".join([self._input_check(), self._weight_check()])
            self.message = (
                f"training stopped: the loss became {loss} at epoch {self.epoch + 1}, batch {batch}. {checks} "
                "The gradients were not checked. If the inputs are finite, lower the learning rate or "
                "tighten clipnorm and see whether the loss stays finite."
            )
            print(self.message)
            self.model.stop_training = True

    def _input_check(self) -> str:
        if self.generator is None:
            return "The inputs were not checked."
        keys, feats, normalizer = self.generator.keys, self.generator.feats, self.generator.normalizer
        bad = [key for key, feature in zip(keys, feats) if not np.isfinite(feature).all()]
        statistics = (
            "finite" if np.isfinite(normalizer.mean).all() and np.isfinite(normalizer.std).all() else "NOT finite"
        )
        named = f": {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}" if bad else ""
        return (
            f"Inputs checked: {len(bad)} of {len(keys)} training utterances have non-finite features "
            f"(as loaded, before any augmentation){named}; "
            f"the normalization mean / std are {statistics}."
        )

    def _weight_check(self) -> str:
        weights = self.model.weights
        bad = [weight.path for weight in weights if not np.isfinite(keras.ops.convert_to_numpy(weight)).all()]
        named = f" ({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''})" if bad else ""
        return f"Weights checked: {len(bad)} of {len(weights)} weight tensors hold non-finite values{named}."


class MultiWorkerCTCTrainer(CTCTrainer):
    """CTCTrainer for MultiWorkerMirroredStrategy: each step's logs as (1,) tensors, not scalars.

    Keras 3.15 reduces a multi-worker step's logs with ``strategy.reduce("MEAN", value, axis=0)``,
    which fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388); over a (1,) axis it gives the scalar mean. The epoch's logs are
    read from the metrics themselves, which the strategy keeps summed over every worker.
    """

    def train_step(self, data: Any) -> dict:
        return {key: keras.ops.reshape(value, (1,)) for key, value in super().train_step(data).items()}

    def test_step(self, data: Any) -> dict:
        return {key: keras.ops.reshape(value, (1,)) for key, value in super().test_step(data).items()}


def train_model(
    input_to_softmax: keras.Model,
    pickle_path: str,
    save_model_path: str,
    train_json: str | Path = DEFAULT_TRAIN_JSON,
    valid_json: str | Path = DEFAULT_VALID_JSON,
    minibatch_size: int = 20,
    spectrogram: bool = True,
    mfcc_dim: int = 13,
    optimizer: keras.optimizers.Optimizer | None = None,
    epochs: int = 20,
    verbose: int = 1,
    sort_by_duration: bool = False,
    max_duration: float = 10.0,
    features: FeatureConfig | EMGFeatureConfig | None = None,
    alphabet: Alphabet = ENGLISH,
    results_dir: str | Path = "results",
    limit: int | None = None,
    valid_limit: int | None = None,
    resume: bool = True,
    feature_loader: Callable[[str], np.ndarray] | None = None,
    schedule: OptimizerConfig | None = None,
    l2: float = 0.0,
    initializer: str | None = None,
    spec_augment: SpecAugment | None = None,
    augment: AugmentConfig | None = None,
    mixed_precision: bool | str = False,
    distribute: bool | str = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool = False,
    val_cer: bool | int | None = None,
    early_stopping: int | None = None,
) -> dict:
    """Train an acoustic model with CTC and save its history and best weights (course name).

    Args:
        input_to_softmax: an uncompiled model from a registered builder.
        pickle_path: file name of the pickled history inside the run folder.
        save_model_path: names the run: results/<stem>/ (e.g. "model_0.keras" -> results/model_0/).
        train_json, valid_json: JSON-lines descriptors.
        minibatch_size: utterances per batch.
        spectrogram: True for the 161-bin spectrogram, False for MFCC (ignored if ``features``).
        mfcc_dim: MFCC size when ``spectrogram`` is False.
        optimizer: defaults to :func:`default_optimizer` (the course's SGD is :func:`course_optimizer`).
        epochs: total epochs, counting epochs a resumed run already did.
        verbose: Keras progress output (0 silent, 1 bar, 2 one line per epoch).
        sort_by_duration: SortaGrad (shortest-first first epoch).
        max_duration: longer clips are skipped, in seconds.
        features: explicit feature configuration (overrides spectrogram / mfcc_dim).
        alphabet: label alphabet; the model's output_dim must equal ``alphabet.output_dim``.
        results_dir: parent folder of the run folder.
        limit, valid_limit: use only the first N training / validation utterances.
        resume: continue from results/<name>/backup when it exists.
        feature_loader: ``key -> (T, F)`` features for non-audio data (the sEMG path); then
            ``features`` is that loader's configuration dataclass (see AudioGenerator).
        schedule: Adam with warm-up and cosine / exponential decay over ``epochs`` (instead of
            ``optimizer``; see :class:`ctclab.training.options.OptimizerConfig`).
        l2: weight of an L2 penalty on every kernel, added to the loss (the thesis tried 5e-4).
        initializer: re-draw every kernel first with this Keras initializer, e.g.
            "glorot_normal" (Xavier); None keeps the builder's initialization.
        spec_augment: a :class:`ctclab.models.layers.SpecAugment` applied to training batches only.
        augment: acoustic augmentation of the training audio (noise, reverberation, speed, gain,
            telephone band; :class:`ctclab.data.augment.AugmentConfig`), drawn afresh for every
            batch; validation never augments.
        mixed_precision: True for "mixed_float16" on a GPU / "mixed_bfloat16" on a CPU, or a
            policy name; the softmax, the CTC loss and the weights stay float32.
        distribute: True: train data-parallel with tf.distribute.MirroredStrategy over every
            visible GPU (or logical CPU device), on JAX with keras.distribution.DataParallel over
            keras.distribution.list_devices(); each batch is split between the replicas.
            "multi_worker": tf.distribute.MultiWorkerMirroredStrategy over the workers ``TF_CONFIG``
            names (see the module docstring; create it first with
            :func:`ctclab.training.options.multi_worker_strategy`). Only the chief writes the run folder.
        callbacks: the user's own Keras callbacks, run after ours (they see ``val_cer`` and
            ``learning_rate`` in the epoch logs when those are on).
        tensorboard: write TensorBoard event files to ``<run folder>/tensorboard/`` (train/ and
            validation/: loss, learning rate, and the validation CER unless ``val_cer=False``);
            a run that starts over (no history) clears the folder first.
        val_cer: greedy CER of the first validation utterances after every epoch, as
            ``history["val_cer"]``: True decodes the first
            :data:`ctclab.training.callbacks.VAL_CER_UTTERANCES` (64) validation descriptor lines,
            an int that many; None (default) follows ``tensorboard``.
        early_stopping: stop when the lowest validation loss of the whole history (resumed
            epochs included) is this many epochs old; model.keras keeps the best epoch's model
            (BestModelSaver), the history and backup the last epoch. A re-run of a run that stopped
            trains no further epochs. None never stops early.

    Returns:
        The full history dict (every epoch of this and earlier resumed runs); "stopped" says why
        a non-finite loss stopped training and "stopped_early" when early stopping did.
    """
    if optimizer is not None and schedule is not None:
        raise ValueError("pass either optimizer or schedule, not both")
    policy = training_options.precision_policy(mixed_precision)
    features = features or FeatureConfig(kind="spectrogram" if spectrogram else "mfcc", mfcc_dim=mfcc_dim)
    input_dim, output_dim = input_to_softmax.input_shape[-1], input_to_softmax.output_shape[-1]
    if input_dim != features.feature_dim:
        raise ValueError(f"model input_dim {input_dim} != feature_dim {features.feature_dim} of {features.kind}")
    if output_dim != alphabet.output_dim:
        raise ValueError(f"model output_dim {output_dim} != {alphabet.output_dim} outputs of {alphabet.name!r}")
    run = Run.named(paths.resolve(results_dir), save_model_path)
    worker_folder = None  # a multi-worker run's other workers write to a temporary folder instead
    if distribute == "multi_worker" and not training_options.is_chief(training_options.multi_worker_strategy()):
        run, worker_folder = _worker_run(run, resume)
    builder_config = getattr(input_to_softmax, "builder_config", None)
    run.start(resume, builder_config, input_to_softmax.count_params())

    common = dict(
        features=features,
        alphabet=alphabet,
        minibatch_size=minibatch_size,
        max_duration=max_duration,
        output_length=input_to_softmax.output_length,
        feature_loader=feature_loader,
    )
    # the course's defaults name the repository's corpus (see ctclab.paths); other paths are used as given
    train_json = paths.resolve(train_json) if train_json == DEFAULT_TRAIN_JSON else train_json
    valid_json = paths.resolve(valid_json) if valid_json == DEFAULT_VALID_JSON else valid_json
    train_gen = AudioGenerator(train_json, sort_by_duration=sort_by_duration, limit=limit, augment=augment, **common)
    valid_gen = AudioGenerator(valid_json, shuffle=False, normalizer=train_gen.normalizer, limit=valid_limit, **common)
    run.save_setup(train_gen.normalizer, features, alphabet, builder_config, input_to_softmax.count_params())

    if initializer:
        training_options.initialize_kernels(input_to_softmax, initializer)
    history_logger = HistoryLogger(run, pickle_path)
    stop_on_nan = StopOnNaN(train_gen)
    val_cer = tensorboard if val_cer is None else val_cer
    cer_utterances = training_callbacks.VAL_CER_UTTERANCES if val_cer is True else int(val_cer)
    cer_gen = valid_gen
    if cer_utterances and len(valid_gen.texts) > cer_utterances:
        cer_gen = AudioGenerator(
            valid_json, shuffle=False, normalizer=train_gen.normalizer, limit=cer_utterances, verbose=False, **common
        )
    log_dir = run.folder / "tensorboard"
    if tensorboard and not history_logger.history:  # starting over: no stale curves
        shutil.rmtree(log_dir, ignore_errors=True)
    patience_stop = training_callbacks.PatienceStop(history_logger.history, early_stopping) if early_stopping else None
    fit_epochs = epochs
    if early_stopping and training_callbacks.patience_exhausted(
        history_logger.history.get("val_loss", []), early_stopping
    ):
        fit_epochs = min(epochs, len(history_logger.history["val_loss"]))  # stopped before: restore, train nothing
    if distribute and keras.backend.backend() == "jax":
        _check_batches_split(train_gen, valid_gen, len(keras.distribution.list_devices()))
    with training_options.training_scope(input_to_softmax, policy, distribute) as (model, strategy):
        masks = SpecAugment.from_config(spec_augment.get_config()) if spec_augment else None  # made in scope
        trainer_class = MultiWorkerCTCTrainer if distribute == "multi_worker" else CTCTrainer
        trainer = trainer_class(model, alphabet.blank_index, l2=l2, augment=masks)
        if schedule is not None:
            optimizer = training_options.build_optimizer(schedule, len(train_gen), epochs)
        elif optimizer is not None and strategy is not None:  # its variables must live in the scope
            optimizer = optimizer.__class__.from_config(optimizer.get_config())
        # TensorFlow: no XLA; it compiles once per padded batch shape (30-60 s each on 2 cores),
        # which costs more than it saves. JAX: jax.jit is its only compiled path (30x faster steps,
        # benchmarks/train_step.py), so it stays on there.
        trainer.compile(optimizer=optimizer or default_optimizer(), jit_compile=keras.backend.backend() == "jax")
        options = {
            "precision": policy,
            "replicas": training_options.replicas(strategy),
            "distribute": distribute,
            "l2": l2,
            "initializer": initializer,
            "schedule": dataclasses.asdict(schedule) if schedule else None,
            "spec_augment": {key: masks.get_config()[key] for key in SPEC_AUGMENT_FIELDS} if masks else None,
            "augment": dataclasses.asdict(augment) if augment else None,
        }
        run.save_training_options(options)
        if distribute == "multi_worker":  # a worker resuming alone would wait for the others forever
            _check_workers_agree(strategy, len(history_logger.history.get("loss", [])), fit_epochs)
        # the callbacks that add to the logs come before those that record them
        ours: list[keras.callbacks.Callback] = [stop_on_nan]
        if cer_utterances:  # decoded with the undistributed float32 model when training runs on a copy
            predictor = None if model is input_to_softmax else input_to_softmax
            ours.append(training_callbacks.ValidationCER(model, cer_gen, predictor))
        if tensorboard:
            ours.append(training_callbacks.LearningRateLogger())
        ours += [
            history_logger,
            BestModelSaver(model, run.model_path, history_logger.history),
            keras.callbacks.BackupAndRestore(str(run.backup_dir), delete_checkpoint=False),
        ]
        if patience_stop:
            ours.append(patience_stop)
        if tensorboard:
            ours.append(training_callbacks.TensorBoardScalars(log_dir))
        trainer.fit(
            _fit_data(train_gen, distribute),
            validation_data=_fit_data(valid_gen, distribute),
            epochs=fit_epochs,
            verbose=verbose,
            callbacks=ours + list(callbacks),
            shuffle=False,  # the generator shuffles (bucketed, SortaGrad)
        )
    if worker_folder is not None:
        shutil.rmtree(worker_folder, ignore_errors=True)
    if model is not input_to_softmax:  # trained as a rebuilt copy (mixed precision / replicas)
        input_to_softmax.set_weights(model.get_weights())
    history = dict(history_logger.history)
    if stop_on_nan.message:
        history["stopped"] = stop_on_nan.message
    if patience_stop and training_callbacks.patience_exhausted(history.get("val_loss", []), patience_stop.patience):
        best = int(np.nanargmin(history["val_loss"]))
        history["stopped_early"] = (
            f"early stopping: the validation loss has not improved for {patience_stop.patience} epochs "
            f"since epoch {best + 1} ({history['val_loss'][best]:.4f}, the model in model.keras)"
        )
    return history


def _check_batches_split(train_gen: AudioGenerator, valid_gen: AudioGenerator, devices: int) -> None:
    """Raise unless every training and validation batch splits evenly between ``devices`` (JAX's DataParallel).

    The batches hold ``minibatch_size`` utterances, the last of an epoch the remainder.

    Raises:
        ValueError: a batch size is not a multiple of ``devices``.
    """
    for generator in (train_gen, valid_gen):
        sizes = {generator.minibatch_size, len(generator.texts) % generator.minibatch_size} - {0}
        if any(size % devices for size in sizes):
            raise ValueError(
                f"{generator.desc_file.name}: batches of {sorted(sizes)} utterances do not split between "
                f"{devices} devices (Keras' DataParallel on JAX shards every batch evenly); pick a minibatch_size "
                f"and limit / valid_limit ({len(generator.texts)} utterances kept) that are multiples of {devices}"
            )


def _check_workers_agree(strategy: training_options.Strategy, epochs_done: int, epochs: int) -> None:
    """Raise on every worker unless all resume from the same epoch and train to the same one.

    Raises:
        RuntimeError: the workers disagree (typically a non-chief worker that cannot see the run
            folder's backup while the chief resumes from it).
    """
    done = training_options.worker_values(strategy, epochs_done)
    targets = training_options.worker_values(strategy, epochs)
    if len(set(done)) > 1 or len(set(targets)) > 1:
        raise RuntimeError(
            f"the workers would start at epochs {done} and stop at {targets}: resuming a multi-worker run "
            "needs its run folder (backup/, history.json) on storage every worker reads; or pass resume=False"
        )


def _worker_run(run: Run, resume: bool) -> tuple[Run, Path]:
    """A non-chief worker's stand-in for ``run`` in a temporary folder, and that folder (to delete).

    To resume, it copies the run's history and backup when it can read them: resuming needs the run
    folder on storage every worker reads (a shared file system). A worker that cannot see it would
    start at epoch 0 while the chief resumes; :func:`_check_workers_agree` then stops all of them.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"ctclab-{run.name}-worker-"))
    atexit.register(shutil.rmtree, folder, True)  # also when training fails; train_model removes it at its end
    stand_in = Run(folder / run.name)
    stand_in.folder.mkdir()
    # what resuming reads; the chief rewrites both only at an epoch's end, after every worker has started
    if resume and run.history_path.is_file():
        shutil.copy2(run.history_path, stand_in.history_path)
    if resume and run.backup_dir.is_dir():
        shutil.copytree(run.backup_dir, stand_in.backup_dir)
    return stand_in, folder


def _fit_data(generator: AudioGenerator, distribute: bool | str) -> Any:
    """The generator's fit data; for multi-worker training with tf.data's DATA auto-sharding.

    Every worker iterates the same global batches; DATA sharding splits each batch between the
    replicas of all workers (a generator-made dataset has no files to shard by).
    """
    data = generator.fit_data()
    if distribute == "multi_worker":
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = data.with_options(options)
    return data
