"""Callbacks ``train_model`` adds for its conventions: validation CER, learning rate, TensorBoard, early stopping.

- :class:`ValidationCER`: greedy-decodes a validation generator after every epoch (train_model
  gives it the first :data:`VAL_CER_UTTERANCES` validation utterances) and puts the CER in the
  epoch's logs as ``val_cer`` (so the history and TensorBoard get it).
- :class:`LearningRateLogger`: the optimizer's learning rate at the end of every epoch, as
  ``learning_rate`` in the logs.
- :class:`TensorBoardScalars`: every epoch's logs as TensorBoard scalars (train/ and validation/),
  written with TensorFlow alone (the ``tensorboard`` package is needed only to view them).
- :class:`PatienceStop`: stops when the best ``val_loss`` of the whole history (resumed epochs
  included) is ``patience`` epochs old; :func:`patience_exhausted` is the same test on a history.

Callbacks that add to the logs must come before those that read them (HistoryLogger,
TensorBoard): Keras hands every callback the same logs dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ctclab.data.generator import AudioGenerator
from ctclab.decoding.metrics import cer
from ctclab.training.evaluation import predict_texts

VAL_CER_UTTERANCES = 64  # validation utterances greedy-decoded per epoch for val_cer
DATA_CLASS_SCALAR = 1  # tensorboard's SummaryMetadata.data_class for a scalar time series


def patience_exhausted(val_losses: Sequence[float], patience: int) -> bool:
    """True when the lowest finite value of ``val_losses`` came ``patience`` or more epochs before the last.

    Args:
        val_losses: validation loss per epoch, oldest first.
        patience: epochs without improvement allowed (at least 1).
    """
    values = np.asarray(val_losses, np.float64)
    finite = np.flatnonzero(np.isfinite(values))
    if not finite.size:
        return False
    best = finite[np.argmin(values[finite])]  # the first epoch with the lowest value
    return len(values) - 1 - int(best) >= patience


@contextlib.contextmanager
def undistributed() -> Iterator[None]:
    """No Keras distribution (JAX's DataParallel) in force inside: predictions on one device, any batch size."""
    current = keras.distribution.distribution()
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


class ValidationCER(keras.callbacks.Callback):
    """Greedy CER over a validation generator, as ``val_cer`` in every epoch's logs.

    Decoding is :func:`ctclab.training.evaluation.predict_texts` (best path, the model's
    ``output_length``) and scoring :func:`ctclab.decoding.metrics.cer`, as the evaluators do.

    Args:
        acoustic_model: the acoustic model being trained (its weights are read every epoch).
        generator: a fixed-order validation generator; every utterance of it is decoded.
        predictor: a model of the same architecture to decode with instead, given the trained
            weights every epoch: the original float32, undistributed model when training runs
            on a rebuilt copy (mixed precision, replicas), so decoding needs no strategy (and
            on JAX runs outside the data-parallel distribution, whatever the batch size).
    """

    def __init__(
        self,
        acoustic_model: keras.Model,
        generator: AudioGenerator,
        predictor: keras.Model | None = None,
    ) -> None:
        super().__init__()
        self.acoustic_model, self.generator, self.predictor = acoustic_model, generator, predictor

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        model = self.acoustic_model
        if self.predictor is not None:
            self.predictor.set_weights(model.get_weights())
            model = self.predictor
        if logs is not None:
            with undistributed():
                logs["val_cer"] = cer(self.generator.texts, predict_texts(model, self.generator))


class LearningRateLogger(keras.callbacks.Callback):
    """The optimizer's learning rate after each epoch's last step, as ``learning_rate`` in the logs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class PatienceStop(keras.callbacks.Callback):
    """Early stopping on ``val_loss`` judged on the whole history, so a resumed run keeps counting.

    Keras' EarlyStopping forgets its count when a run resumes; this reads the history the
    HistoryLogger keeps (put it after the logger). The best weights are BestModelSaver's file.

    Args:
        history: the run's history dict, updated by the HistoryLogger every epoch.
        patience: epochs without a lower ``val_loss`` before training stops.
    """

    def __init__(self, history: dict, patience: int) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError(f"early_stopping patience must be at least 1, got {patience}")
        self.history, self.patience = history, patience
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if patience_exhausted(self.history.get("val_loss", []), self.patience):
            self.stopped_epoch = epoch
            self.model.stop_training = True


class TensorBoardScalars(keras.callbacks.Callback):
    """Every epoch's logs as TensorBoard scalars, named as ``keras.callbacks.TensorBoard`` names them.

    ``<log_dir>/train/`` gets ``epoch_<name>`` for the training logs (loss, learning_rate, ...),
    ``<log_dir>/validation/`` the ``val_`` logs without the prefix (``epoch_loss``, ``epoch_cer``),
    at step = epoch (0-based), so the two loss curves share one chart. Written with
    ``tf.summary.write`` and the scalars plugin's metadata: Keras' own callback needs the
    ``tensorboard`` package to write, this one needs it only to view.

    Args:
        log_dir: the folder to write to (created when the first epoch ends).
    """

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writers: dict[str, Any] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        logs = logs or {}
        splits = {
            "train": {key: value for key, value in logs.items() if not key.startswith("val_")},
            "validation": {key[4:]: value for key, value in logs.items() if key.startswith("val_")},
        }
        metadata = tf.compat.v1.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"  # what tensorboard.summary.scalar writes
        metadata.data_class = DATA_CLASS_SCALAR
        for split, values in splits.items():
            if not values:
                continue
            if split not in self.writers:
                self.writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
            with self.writers[split].as_default():
                for name, value in values.items():
                    tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), epoch, metadata)
            self.writers[split].flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
