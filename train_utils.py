"""CTC training for any acoustic model of sample_models, with results saved under results/.

The loss is ``keras.ops.ctc_loss`` on the logits just before each model's softmax, with the
true number of output frames from the model's own ``output_length`` (not the padded time axis)
and the blank index from char_map. It is backend-agnostic (TensorFlow by default, JAX too)
because it lives in :meth:`CTCTrainer.compute_loss`, which every Keras 3 backend's train step
calls.

``train_model`` keeps the course's call shape. Each run owns ``results/<name>/`` where ``name``
is the stem of ``save_model_path``:

    history.json          loss / val_loss / seconds per epoch, appended every epoch
    <pickle_path>         the same history as a pickle (the course's format)
    model.keras           the acoustic model with the best validation loss so far
    builder.json          builder name + arguments (rebuild with :func:`load_trained_model`)
    normalization.json    the training feature mean / std the model was trained with
    features.json         the feature configuration
    training.json         the training options (precision, replicas, schedule, L2, SpecAugment)
    backup/               last epoch's weights + optimizer state; a re-run resumes from here

Training options (keyword arguments of ``train_model``; machinery in training_options.py):
warm-up + cosine / exponential learning-rate schedules (``schedule=OptimizerConfig(...)``),
gradient clipping (``clipnorm`` of any Keras optimizer), an L2 penalty on kernels (``l2``),
Xavier / Glorot re-initialization (``initializer``), SpecAugment in training only
(``spec_augment``), mixed precision (``mixed_precision``) and data-parallel training over all
local GPUs or logical CPUs (``distribute``, TensorFlow's MirroredStrategy).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

import decoding
import sample_models
import training_options
import utils
from char_map import ENGLISH, Alphabet, get_alphabet
from data_generator import AudioGenerator, Normalizer
from model_layers import SpecAugment
from training_options import OptimizerConfig

DEFAULT_TRAIN_JSON = "data/speech/train_corpus.json"
DEFAULT_VALID_JSON = "data/speech/valid_corpus.json"
SPEC_AUGMENT_FIELDS = ("frequency_mask_width", "time_mask_width", "frequency_masks", "time_masks")  # training.json


def ctc_batch_loss(labels, logits, label_length, logit_length, blank_index: int = ENGLISH.blank_index):
    """Per-utterance CTC negative log-likelihood.

    Args:
        labels: (B, L) int character indices; entries past ``label_length`` are ignored.
        logits: (B, T, C) unnormalized scores (a log-softmax is applied inside).
        label_length: (B,) true label lengths.
        logit_length: (B,) true output frames, e.g. ``model.output_length(input_length)``.
        blank_index: the alphabet's blank.

    Returns:
        (B,) float32 losses, -log p(labels | logits).
    """
    logits = ops.cast(logits, "float32")  # mixed precision: the forward-backward runs in fp32
    labels, label_length = ops.cast(labels, "int32"), ops.cast(label_length, "int32")
    if keras.backend.backend() == "tensorflow":
        # Same loss, faster kernel: tf.nn.ctc_loss runs a Python-level forward-backward for
        # dense labels but its C++ kernel for sparse ones (15x faster on 2 CPU cores at
        # B=20, T=320: 0.60 s vs 0.04 s per loss+gradient).
        labels = _sparse_labels(labels, label_length)
    return ops.ctc_loss(labels, logits, label_length, ops.cast(logit_length, "int32"), mask_index=blank_index)


def _sparse_labels(labels, label_length):
    """(B, L) padded labels -> tf.SparseTensor holding only the first label_length[b] of row b."""
    import tensorflow as tf

    positions = tf.where(tf.sequence_mask(label_length, tf.shape(labels)[1]))  # (N, 2) (row, column)
    return tf.SparseTensor(positions, tf.gather_nd(labels, positions), tf.cast(tf.shape(labels), tf.int64))


class CTCTrainer(keras.Model):
    """Wraps an acoustic model for ``fit``: batches in, mean CTC loss out.

    Args:
        acoustic_model: a sample_models builder's output (softmax named "softmax",
            ``output_length`` attribute).
        blank_index: the alphabet's blank.
        l2: weight of the L2 penalty on the model's kernels (0: none).
        augment: a layer applied to the features in training only (e.g. SpecAugment).
    """

    def __init__(self, acoustic_model: keras.Model, blank_index: int = ENGLISH.blank_index, l2: float = 0.0,
                 augment: keras.layers.Layer | None = None, **kwargs):
        super().__init__(name=f"{acoustic_model.name}_ctc", **kwargs)
        if not hasattr(acoustic_model, "output_length"):
            raise ValueError(f"model {acoustic_model.name!r} has no output_length; build it with sample_models")
        self.acoustic_model = acoustic_model
        self.logits_model = sample_models.logits_model(acoustic_model)
        self.blank_index, self.l2, self.augment = blank_index, l2, augment
        self.built = True  # the wrapped Functional model is built; no variables of its own

    def call(self, inputs, training=False):
        features = inputs["features"]  # (B, T, F)
        if self.augment is not None:
            features = self.augment(features, training=training)
        return self.logits_model(features, training=training)  # (B, T', C) logits

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Build only the optimizer (TensorFlow trainer hook, called by fit under a strategy).

        Keras 3.15 would average the first batch over the replicas to build the model, which
        fails when a batch does not split evenly between them; this trainer is built already.
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        output_length = self.acoustic_model.output_length(x["input_length"])
        losses = ctc_batch_loss(y["labels"], y_pred, y["label_length"], output_length, self.blank_index)  # (B,)
        # the mean, safe for the empty share a replica can get of a batch smaller than the replicas
        loss = ops.sum(losses) / ops.maximum(ops.cast(ops.shape(losses)[0], "float32"), 1.0)
        if self.losses:  # weight regularizers, if a builder added any
            loss = loss + ops.sum(self.losses)
        if self.l2:
            loss = loss + training_options.l2_penalty(self.acoustic_model, self.l2)
        return training_options.replica_share(loss)


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

    def __init__(self, json_path: Path, pickle_path: Path):
        super().__init__()
        self.json_path, self.pickle_path = json_path, pickle_path
        self.history = load_history(json_path) if json_path.is_file() else {}

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        for values in self.history.values():  # a resumed run rewrites epochs from here on
            del values[epoch:]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {}, epoch_seconds=time.perf_counter() - self.started)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.json_path.write_text(json.dumps(self.history, indent=1))
        with open(self.pickle_path, "wb") as handle:
            pickle.dump(self.history, handle)


class BestModelSaver(keras.callbacks.Callback):
    """Saves the acoustic model (not the training wrapper) when validation loss improves."""

    def __init__(self, acoustic_model: keras.Model, path: Path, history: dict):
        super().__init__()
        self.acoustic_model, self.path = acoustic_model, path
        self.best = min(history.get("val_loss", []), default=np.inf)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss", (logs or {}).get("loss"))
        if value is not None and np.isfinite(value) and value < self.best:
            self.best = value
            self.acoustic_model.save(self.path)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss with a message saying what to try."""

    def __init__(self):
        super().__init__()
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.message = (
                f"training stopped: the loss became {loss} at batch {batch}. Gradients exploded; "
                "lower the learning rate, tighten clipnorm, or use GRU/LSTM instead of SimpleRNN."
            )
            print(self.message)
            self.model.stop_training = True


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
    features: utils.FeatureConfig | None = None,
    alphabet: Alphabet = ENGLISH,
    results_dir: str | Path = "results",
    limit: int | None = None,
    valid_limit: int | None = None,
    resume: bool = True,
    feature_loader=None,
    schedule: OptimizerConfig | None = None,
    l2: float = 0.0,
    initializer: str | None = None,
    spec_augment: SpecAugment | None = None,
    mixed_precision: bool | str = False,
    distribute: bool = False,
) -> dict:
    """Train an acoustic model with CTC and save its history and best weights (course name).

    Args:
        input_to_softmax: an uncompiled model from sample_models.
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
            ``optimizer``; see training_options.OptimizerConfig).
        l2: weight of an L2 penalty on every kernel, added to the loss (the thesis tried 5e-4).
        initializer: re-draw every kernel first with this Keras initializer, e.g.
            "glorot_normal" (Xavier); None keeps the builder's initialization.
        spec_augment: a model_layers.SpecAugment applied to training batches only.
        mixed_precision: True for "mixed_float16" on a GPU / "mixed_bfloat16" on a CPU, or a
            policy name; the softmax, the CTC loss and the weights stay float32.
        distribute: train data-parallel with tf.distribute.MirroredStrategy over every visible
            GPU (or logical CPU device); each batch is split between the replicas.

    Returns:
        The full history dict (every epoch of this and earlier resumed runs).
    """
    if optimizer is not None and schedule is not None:
        raise ValueError("pass either optimizer or schedule, not both")
    policy = training_options.precision_policy(mixed_precision)
    features = features or utils.FeatureConfig(kind="spectrogram" if spectrogram else "mfcc", mfcc_dim=mfcc_dim)
    input_dim, output_dim = input_to_softmax.input_shape[-1], input_to_softmax.output_shape[-1]
    if input_dim != features.feature_dim:
        raise ValueError(f"model input_dim {input_dim} != feature_dim {features.feature_dim} of {features.kind}")
    if output_dim != alphabet.output_dim:
        raise ValueError(f"model output_dim {output_dim} != {alphabet.output_dim} outputs of {alphabet.name!r}")
    run_dir = Path(results_dir) / Path(save_model_path).stem
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in ("history.json", "backup"):
            _remove(run_dir / stale)

    common = dict(features=features, alphabet=alphabet, minibatch_size=minibatch_size,
                  max_duration=max_duration, output_length=input_to_softmax.output_length,
                  feature_loader=feature_loader)
    train_gen = AudioGenerator(train_json, sort_by_duration=sort_by_duration, limit=limit, **common)
    valid_gen = AudioGenerator(valid_json, shuffle=False, normalizer=train_gen.normalizer, limit=valid_limit, **common)
    train_gen.normalizer.save(run_dir / "normalization.json")
    (run_dir / "features.json").write_text(json.dumps(dataclasses.asdict(features)))
    (run_dir / "alphabet.txt").write_text(alphabet.name)
    builder_config = getattr(input_to_softmax, "builder_config", None)
    if builder_config:
        (run_dir / "builder.json").write_text(json.dumps(builder_config, indent=1))

    if initializer:
        training_options.initialize_kernels(input_to_softmax, initializer)
    history_logger = HistoryLogger(run_dir / "history.json", run_dir / pickle_path)
    stop_on_nan = StopOnNaN()
    with training_options.training_scope(input_to_softmax, policy, distribute) as (model, strategy):
        augment = SpecAugment.from_config(spec_augment.get_config()) if spec_augment else None  # made in scope
        trainer = CTCTrainer(model, alphabet.blank_index, l2=l2, augment=augment)
        if schedule is not None:
            optimizer = training_options.build_optimizer(schedule, len(train_gen), epochs)
        elif optimizer is not None and strategy is not None:  # its variables must live in the scope
            optimizer = optimizer.__class__.from_config(optimizer.get_config())
        # TensorFlow: no XLA; it compiles once per padded batch shape (30-60 s each on 2 cores),
        # which costs more than it saves. JAX: jax.jit is its only compiled path (30x faster steps,
        # benchmarks/train_step.py), so it stays on there.
        trainer.compile(optimizer=optimizer or default_optimizer(), jit_compile=keras.backend.backend() == "jax")
        options = {"precision": policy, "replicas": strategy.num_replicas_in_sync if strategy else 1, "l2": l2,
                   "initializer": initializer, "schedule": dataclasses.asdict(schedule) if schedule else None,
                   "spec_augment": {key: augment.get_config()[key] for key in SPEC_AUGMENT_FIELDS} if augment else None}
        (run_dir / "training.json").write_text(json.dumps(options, indent=1))
        callbacks = [
            stop_on_nan,
            history_logger,
            BestModelSaver(model, run_dir / "model.keras", history_logger.history),
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
        ]
        trainer.fit(
            train_gen.fit_data(), validation_data=valid_gen.fit_data(), epochs=epochs, verbose=verbose,
            callbacks=callbacks, shuffle=False,  # the generator shuffles (bucketed, SortaGrad)
        )
    if model is not input_to_softmax:  # trained as a rebuilt copy (mixed precision / replicas)
        input_to_softmax.set_weights(model.get_weights())
    history = dict(history_logger.history)
    if stop_on_nan.message:
        history["stopped"] = stop_on_nan.message
    return history


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ---------------------------------------------------------------------- results and evaluation


def load_history(path: str | Path) -> dict:
    """A run's history.json as a dict of lists."""
    return json.loads(Path(path).read_text())


def load_histories(results_dir: str | Path = "results", names=None) -> dict[str, dict]:
    """History of every run under ``results_dir`` (or only ``names``), keyed by run name."""
    runs = sorted(p.parent for p in Path(results_dir).glob("*/history.json"))
    return {run.name: load_history(run / "history.json") for run in runs if names is None or run.name in names}


def load_trained_model(
    run_dir: str | Path, feature_class=utils.FeatureConfig
) -> tuple[keras.Model, Normalizer, utils.FeatureConfig, Alphabet]:
    """Rebuild a run's acoustic model from builder.json and load its best weights.

    ``feature_class`` is the dataclass features.json is read into (another one for sEMG runs).

    Returns:
        (model with output_length, training normalizer, feature configuration, alphabet).
    """
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "builder.json").read_text())
    model = sample_models.build(config["builder"], **config["arguments"])
    model.load_weights(run_dir / "model.keras")
    features = feature_class(**json.loads((run_dir / "features.json").read_text()))
    alphabet = get_alphabet((run_dir / "alphabet.txt").read_text().strip())
    return model, Normalizer.load(run_dir / "normalization.json"), features, alphabet


def predict_texts(model: keras.Model, generator: AudioGenerator, batch_size: int = 32) -> list[str]:
    """Greedy transcripts of every utterance of ``generator``, in its utterance order."""
    hypotheses = []
    for start in range(0, len(generator.texts), batch_size):
        indices = list(range(start, min(start + batch_size, len(generator.texts))))
        inputs, _ = generator.get_batch(indices)
        # the compiled predict function: 5-10x faster than an eager call for recurrent models
        probabilities = np.asarray(model.predict_on_batch(inputs["features"]))  # (B, T', C)
        lengths = np.asarray(model.output_length(inputs["input_length"]))
        hypotheses += [
            decoding.greedy_decode(p, int(n), generator.alphabet) for p, n in zip(probabilities, lengths)
        ]
    return hypotheses


def evaluate_model(
    run_dir: str | Path, desc_file: str | Path, limit: int | None = None, verbose: bool = False,
    feature_loader=None, feature_class=utils.FeatureConfig,
) -> dict:
    """Greedy WER / CER of a trained run on a descriptor file (e.g. the unseen-voice test split).

    ``feature_loader`` / ``feature_class`` are for non-audio runs (see :func:`train_model`).

    Returns:
        {"wer", "cer", "utterances", "skipped", "references", "hypotheses", "builder", "parameters"}.
    """
    model, normalizer, features, alphabet = load_trained_model(run_dir, feature_class)
    generator = AudioGenerator(
        desc_file, features=features, alphabet=alphabet, shuffle=False, normalizer=normalizer,
        output_length=model.output_length, limit=limit, verbose=verbose, feature_loader=feature_loader,
    )
    hypotheses = predict_texts(model, generator)
    return {
        "wer": decoding.wer(generator.texts, hypotheses),
        "cer": decoding.cer(generator.texts, hypotheses),
        "utterances": len(hypotheses),
        "skipped": len(generator.skipped),
        "references": list(generator.texts),
        "hypotheses": hypotheses,
        "builder": model.builder_config["builder"],
        "parameters": model.count_params(),
    }


def compare_models(run_dirs, desc_file: str | Path, limit: int | None = None):
    """One row per trained run: size, training time, best validation loss and held-out WER / CER.

    Also writes each run's scores, size and first decoded examples to ``<run_dir>/scores.json``
    for the report.

    Args:
        run_dirs: run folders (results/<profile>/<name>).
        desc_file: the held-out descriptor file to score (the unseen-voice test split).
        limit: score only the first N utterances.

    Returns:
        (pandas.DataFrame sorted by CER, {run name: evaluate_model result}).
    """
    import pandas as pd

    rows, evaluations = [], {}
    for run_dir in map(Path, run_dirs):
        history = load_history(run_dir / "history.json")
        evaluation = evaluations[run_dir.name] = evaluate_model(run_dir, desc_file, limit=limit)
        scores = {key: evaluation[key] for key in ("wer", "cer", "utterances", "skipped", "parameters")}
        examples = [{"truth": truth, "prediction": prediction}
                    for truth, prediction in zip(evaluation["references"][:8], evaluation["hypotheses"][:8])]
        (run_dir / "scores.json").write_text(
            json.dumps(dict(scores, desc_file=str(desc_file), examples=examples), indent=1)
        )
        rows.append({
            "model": run_dir.name,
            "builder": evaluation["builder"],
            "parameters": evaluation["parameters"],
            "epochs": len(history["loss"]),
            "seconds/epoch": float(np.mean(history["epoch_seconds"])),
            "best val loss": min(history.get("val_loss", [np.nan])),
            "WER": evaluation["wer"],
            "CER": evaluation["cer"],
        })
    return pd.DataFrame(rows).sort_values("CER").reset_index(drop=True), evaluations
