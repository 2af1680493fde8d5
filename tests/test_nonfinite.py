"""Non-finite audio and features: a clear error naming the file, a named and counted skip in the
generator and ingest, training that stays finite, and a NaN stop message that says what it checked."""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest
import soundfile
from conftest import write_descriptors, write_tone

from ctclab.data import ingest
from ctclab.data.audio import AudioError, load_any_audio, read_audio
from ctclab.data.features import FeatureCache, FeatureConfig, featurize_file
from ctclab.data.generator import AudioGenerator
from ctclab.models.course import cnn_rnn_model
from ctclab.training.trainer import StopOnNaN, train_model

RATE = 16000


def write_nonfinite(path, nan: int, inf: int, channels: int = 1, rate: int = RATE, seconds: float = 1.0):
    """A float WAV of a tone with ``nan`` NaN and ``inf`` +-inf values planted in its first channel."""
    time = np.arange(int(seconds * rate)) / rate
    samples = np.repeat((0.3 * np.sin(2 * np.pi * 300 * time))[:, None], channels, axis=1).astype(np.float32)
    samples[100 : 100 + nan, 0] = np.nan
    samples[5000 : 5000 + inf, 0] = np.where(np.arange(inf) % 2, np.inf, -np.inf)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "nan, inf, channels, expected",
    [
        (3, 0, 1, "3 NaN and 0 inf of 16000 (16000 samples x 1 channels)"),
        (0, 2, 1, "0 NaN and 2 inf of 16000"),
        (7, 4, 2, "7 NaN and 4 inf of 32000 (16000 samples x 2 channels)"),
    ],
)
def test_read_audio_names_the_file_and_counts_nonfinite_samples(tmp_path, nan, inf, channels, expected):
    path = write_nonfinite(tmp_path / "bad.wav", nan, inf, channels)
    with pytest.raises(AudioError) as error:
        read_audio(path)
    assert str(path) in str(error.value) and "non-finite samples" in str(error.value)
    assert expected in str(error.value)


def test_load_any_audio_rejects_nonfinite_samples_at_any_rate(tmp_path):
    path = write_nonfinite(tmp_path / "bad44k.wav", 1, 1, channels=2, rate=44100)
    with pytest.raises(AudioError, match="1 NaN and 1 inf of 88200"):
        load_any_audio(path)


def test_features_that_come_out_nonfinite_name_the_file(tmp_path):
    """Finite samples near float32's largest value: MFCC's pre-emphasis overflows to inf."""
    path = tmp_path / "loud.wav"
    square = 3e38 * np.sign(np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE))
    soundfile.write(str(path), square.astype(np.float32), RATE, subtype="FLOAT")
    assert np.isfinite(read_audio(path)).all()  # the audio itself passes
    with pytest.raises(ValueError, match="non-finite mfcc features") as error, np.errstate(all="ignore"):
        featurize_file(path, FeatureConfig(kind="mfcc"))
    assert str(path) in str(error.value) and not isinstance(error.value, AudioError)


def test_a_stale_cached_nan_feature_is_refused(tmp_path):
    """A cache file written before the check existed must not bring NaN back."""
    audio = write_tone(tmp_path / "good.wav", 1.0)
    cache = FeatureCache(FeatureConfig(), tmp_path / "cache")
    clean = cache.get(str(audio))
    (cached,) = list((tmp_path / "cache").rglob("*.npy"))
    np.save(cached, np.full_like(clean, np.nan))
    with pytest.raises(ValueError, match=f"{audio}: non-finite spectrogram features: {clean.size} of {clean.size}"):
        cache.get(str(audio))


@pytest.fixture
def corpus_with_a_nan_file(tmp_path):
    """Five good tone utterances and, third in the file, a float WAV holding NaN samples."""
    records = []
    for index, text in enumerate(["hi", "go left", "one two", "ace", "stop"]):
        seconds = 0.6 + 0.2 * index
        write_tone(tmp_path / "wav" / f"{index}.wav", seconds, frequency=200 + 100 * index, seed=index)
        records.append({"key": f"wav/{index}.wav", "duration": seconds, "text": text})
    write_nonfinite(tmp_path / "wav" / "nan.wav", nan=40, inf=0)
    records.insert(2, {"key": "wav/nan.wav", "duration": 1.0, "text": "it's on"})
    return write_descriptors(tmp_path / "train_corpus.json", records)


def test_generator_skips_and_names_the_nan_file(corpus_with_a_nan_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    generator = AudioGenerator(corpus_with_a_nan_file, minibatch_size=2, verbose=False)
    assert generator.skipped.counts == {"bad audio": 1}
    ((key, reason, detail),) = generator.skipped.items
    assert key.endswith("nan.wav") and "nan.wav" in detail and "40 NaN and 0 inf" in detail
    assert "it's on" not in generator.texts and len(generator.texts) == 5
    assert np.isfinite(generator.normalizer.mean).all() and np.isfinite(generator.normalizer.std).all()
    for index in range(len(generator)):
        inputs, _ = generator[index]
        assert np.isfinite(inputs["features"]).all()
    assert "nan.wav" in generator.skipped.summary("train", len(generator.texts))


def small_model():
    return cnn_rnn_model(161, filters=16, kernel_size=5, conv_stride=2, units=16, rnn_type="gru")


def train_small(corpus, results_dir, name: str, **options) -> dict:
    """Two epochs of the small model on ``corpus`` (batches of 2), validated on the same file."""
    return train_model(
        small_model(),
        f"{name}.pickle",
        f"{name}.keras",
        train_json=corpus,
        valid_json=corpus,
        minibatch_size=2,
        epochs=2,
        verbose=0,
        results_dir=results_dir,
        **options,
    )


def test_training_on_a_file_with_a_nan_clip_keeps_finite_losses(corpus_with_a_nan_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    history = train_small(corpus_with_a_nan_file, tmp_path / "results", "nan_corpus")
    assert "stopped" not in history
    assert len(history["loss"]) == 2 and all(math.isfinite(value) for value in history["loss"] + history["val_loss"])
    printed = capsys.readouterr().out
    assert "5 utterances kept, 1 skipped {'bad audio': 1}" in printed and "nan.wav" in printed
    assert (tmp_path / "results" / "nan_corpus" / "model.keras").is_file()


def test_nan_stop_message_says_what_it_checked(tone_corpus, tmp_path, monkeypatch, capsys):
    """Finite inputs, a learning rate of 1e8: the first update diverges, the second batch's loss is NaN."""
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    history = train_small(tone_corpus, tmp_path / "results", "diverged", optimizer=keras.optimizers.SGD(1e8))
    message = history["stopped"]
    # at this rate the loss turns nan or inf at the second batch, depending on the draws
    assert re.search(r"the loss became (nan|inf) at epoch 1, batch 1", message), message
    assert "0 of 6 training utterances have non-finite features" in message
    assert "normalization mean / std are finite" in message
    held = int(message.split("Weights checked: ")[1].split(" of ")[0])
    assert held > 0 and "weight tensors hold non-finite values (" in message
    assert "SimpleRNN" not in message and "exploded" not in message
    assert message in capsys.readouterr().out


def test_nan_stop_names_utterances_with_nonfinite_features(tone_corpus, tmp_path, monkeypatch):
    """The callback on its own: features planted with NaN after loading are found and named."""
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    generator = AudioGenerator(tone_corpus, minibatch_size=3, verbose=False)
    planted = generator.feats[4]  # the store hands out copies; write the planted one back
    planted[0, 3] = np.nan
    generator.feats[4] = planted
    callback = StopOnNaN(generator)
    callback.set_model(small_model())
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(1, {"loss": 0.5})
    assert callback.message is None and not getattr(callback.model, "stop_training", False)
    callback.on_train_batch_end(1, {"loss": float("inf")})
    assert callback.message is not None and callback.model.stop_training
    assert "the loss became inf at epoch 3, batch 1" in callback.message
    assert "1 of 6 training utterances have non-finite features" in callback.message
    assert f"before any augmentation): {generator.keys[4]};" in callback.message
    assert generator.keys[4].endswith("wav/4.wav")
    assert "0 of" in callback.message and "weight tensors hold non-finite values." in callback.message


def test_ingest_skips_a_nan_clip_that_needs_resampling(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    write_tone(root / "wavs" / "LJ001-0001.wav", 0.5, sample_rate=22050)
    write_nonfinite(root / "wavs" / "LJ001-0002.wav", nan=5, inf=0, rate=22050, seconds=0.5)
    (root / "metadata.csv").write_text("LJ001-0001|Hello.|hello\nLJ001-0002|Again.|again\n")
    report = ingest.ingest(root, tmp_path / "lj.json", "ljspeech")
    assert report.written == 1
    ((where, reason),) = report.skipped
    assert where.endswith("metadata.csv:2") and reason.startswith("bad audio") and "LJ001-0002.wav" in reason
    assert "5 NaN and 0 inf of 11025" in reason
