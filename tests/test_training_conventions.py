"""train_model's conventions: user callbacks, TensorBoard event files, validation CER, early stopping."""

import jiwer
import keras
import numpy as np
import pytest
import tensorflow as tf

from ctclab.data.generator import AudioGenerator
from ctclab.decoding.greedy import greedy_decode
from ctclab.models.course import cnn_rnn_model, simple_rnn_model
from ctclab.runs import Run
from ctclab.training.callbacks import patience_exhausted
from ctclab.training.loss import CTCTrainer
from ctclab.training.options import OptimizerConfig
from ctclab.training.trainer import train_model


def small_model():
    keras.utils.set_random_seed(0)
    return cnn_rnn_model(161, filters=16, kernel_size=5, conv_stride=2, units=16, rnn_type="gru")


def train(tone_corpus, tmp_path, model=None, **kwargs):
    options = dict(minibatch_size=3, epochs=2, verbose=0)
    options.update(kwargs)
    return train_model(
        model or small_model(),
        "conv.pickle",
        "conv.keras",
        train_json=tone_corpus,
        valid_json=tone_corpus,
        results_dir=tmp_path / "results",
        **options,
    )


def read_scalars(folder):
    """{tag: [(step, value), ...]} from every TensorBoard event file in ``folder``, read with TensorFlow's reader."""
    scalars: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


class LogRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


@pytest.mark.parametrize(
    "losses, patience, expected",
    [
        ([3.0, 2.0, 2.5, 2.4], 2, True),  # best at epoch 1, two epochs since
        ([3.0, 2.0, 2.5], 2, False),
        ([3.0, 2.0, 2.0, 2.0], 2, True),  # equal is no improvement
        ([3.0, 2.0, 1.0], 1, False),
        ([np.nan, np.nan], 1, False),  # nothing finite yet
        ([np.nan, 2.0, 3.0], 1, True),
        ([], 1, False),
    ],
)
def test_patience_exhausted(losses, patience, expected):
    assert patience_exhausted(losses, patience) is expected


@pytest.mark.slow
def test_tensorboard_events_val_cer_learning_rate_and_user_callbacks(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    recorder, model = LogRecorder(), small_model()
    # 6 utterances / 3 per batch = 2 steps per epoch: 2 warm-up steps, then cosine decay over 2 steps
    schedule = OptimizerConfig(peak_learning_rate=1e-3, warmup_epochs=1, decay="cosine", final_fraction=0.05)
    history = train(tone_corpus, tmp_path, model, tensorboard=True, schedule=schedule, callbacks=[recorder])
    log_dir = Run(tmp_path / "results" / "conv").folder / "tensorboard"

    # the learning rate after each epoch's last step: lr(2) = peak (warm-up over), lr(4) = final = 0.05 peak
    assert history["learning_rate"] == pytest.approx([1e-3, 5e-5], rel=1e-5)
    # the validation CER of the last epoch, decoded independently: the model now holds the last weights
    generator = AudioGenerator(
        tone_corpus, shuffle=False, normalizer=Run(tmp_path / "results" / "conv").normalizer(), verbose=False
    )
    hypotheses = []
    for index in range(len(generator.texts)):
        feature = generator.normalized_feature(index)[None]  # (1, T, F)
        hypotheses.append(greedy_decode(np.asarray(model(feature))[0], model.output_length(feature.shape[1])))
    expected_cer = jiwer.cer(generator.texts, hypotheses)
    assert len(history["val_cer"]) == 2 and history["val_cer"][-1] == pytest.approx(expected_cer, abs=1e-6)

    train_scalars, val_scalars = read_scalars(log_dir / "train"), read_scalars(log_dir / "validation")
    assert [step for step, _ in train_scalars["epoch_loss"]] == [0, 1]
    assert [v for _, v in train_scalars["epoch_loss"]] == pytest.approx(history["loss"], rel=1e-6)
    assert [v for _, v in train_scalars["epoch_learning_rate"]] == pytest.approx([1e-3, 5e-5], rel=1e-5)
    assert [v for _, v in val_scalars["epoch_loss"]] == pytest.approx(history["val_loss"], rel=1e-6)
    assert [v for _, v in val_scalars["epoch_cer"]] == pytest.approx(history["val_cer"], abs=1e-6)

    # the user's callback ran after ours: it saw every epoch, with the validation CER in its logs
    assert [logs["val_cer"] for logs in recorder.logs] == pytest.approx(history["val_cer"])
    assert [logs["loss"] for logs in recorder.logs] == pytest.approx(history["loss"])


@pytest.mark.slow
def test_val_cer_counts_only_the_first_utterances(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    model = small_model()
    history = train(tone_corpus, tmp_path, model, epochs=1, val_cer=2)
    assert not (tmp_path / "results" / "conv" / "tensorboard").exists()  # val_cer alone writes no events
    generator = AudioGenerator(
        tone_corpus, shuffle=False, normalizer=Run(tmp_path / "results" / "conv").normalizer(), verbose=False
    )
    hypotheses = []
    for index in range(2):  # the first two descriptor lines
        feature = generator.normalized_feature(index)[None]
        hypotheses.append(greedy_decode(np.asarray(model(feature))[0], model.output_length(feature.shape[1])))
    assert history["val_cer"] == pytest.approx([jiwer.cer(generator.texts[:2], hypotheses)], abs=1e-6)


@pytest.mark.slow
def test_early_stopping_counts_resumed_epochs_and_keeps_the_best_model(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))

    # a learning rate of 0 leaves the weights of a model without batch normalization alone: every
    # epoch's validation loss equals the first, so the best epoch stays epoch 1 and patience p stops
    # after p + 1 epochs
    def frozen():
        return dict(epochs=10, optimizer=keras.optimizers.SGD(0.0), model=simple_rnn_model(161))

    history = train(tone_corpus, tmp_path, early_stopping=2, **frozen())
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    assert history["val_loss"] == pytest.approx([history["val_loss"][0]] * 3, rel=1e-6)
    assert "since epoch 1" in history["stopped_early"]
    run = Run(tmp_path / "results" / "conv")
    assert run.history()["val_loss"] == history["val_loss"] and run.model_path.is_file()

    # a re-run with the same patience trains nothing more
    again = train(tone_corpus, tmp_path, early_stopping=2, **frozen())
    assert again["loss"] == history["loss"] and "stopped_early" in again

    # more patience resumes and counts from the best epoch of the whole history: 1 + 5 epochs
    # (a fresh count, as Keras' EarlyStopping keeps, would stop at 3 + 5 = 8)
    longer = train(tone_corpus, tmp_path, early_stopping=5, **frozen())
    assert len(longer["loss"]) == 6 and longer["loss"][:3] == history["loss"]
    assert run.history() == {key: value for key, value in longer.items() if key != "stopped_early"}

    # a real optimizer: model.keras holds the epoch of the lowest validation loss, stopped early or not
    trained = train(tone_corpus, tmp_path, epochs=4, resume=False, early_stopping=1, model=simple_rnn_model(161))
    assert 2 <= len(trained["loss"]) <= 4
    model, normalizer, features, _ = run.load_model()
    generator = AudioGenerator(tone_corpus, features=features, shuffle=False, normalizer=normalizer, verbose=False)
    evaluator = CTCTrainer(model)
    evaluator.compile(optimizer="sgd")
    saved_loss = evaluator.evaluate(generator.fit_data(), verbose=0)
    assert saved_loss == pytest.approx(min(trained["val_loss"]), rel=1e-4)
