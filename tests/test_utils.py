"""Features against independent computations (scipy, librosa, python_speech_features), audio errors."""

import numpy as np
import pytest
import soundfile
from conftest import write_tone
from scipy import signal

from ctclab.data.audio import AudioError, read_audio
from ctclab.data.features import (
    FEATURE_KINDS,
    LOG_FLOOR,
    FeatureConfig,
    calc_feat_dim,
    featurize_file,
    logmel,
    spectrogram,
)
from ctclab.report.plots import plot_loss_curves, plot_raw_audio, plot_spectrogram_feature

RATE = 16000


@pytest.fixture
def speechlike():
    rng = np.random.default_rng(1)
    time = np.arange(int(1.23 * RATE)) / RATE
    return (
        0.4 * np.sin(2 * np.pi * 300 * time) * np.sin(2 * np.pi * 3 * time) + 0.05 * rng.normal(size=time.size)
    ).astype(np.float32)


def test_course_feature_dim():
    assert calc_feat_dim(20, 8000) == 161
    assert FeatureConfig().feature_dim == 161
    assert FeatureConfig(kind="mfcc").feature_dim == 13
    assert FeatureConfig(kind="logmel", num_mels=64).feature_dim == 64


def test_spectrogram_matches_scipy_density(speechlike):
    ours = spectrogram(speechlike)
    _, _, density = signal.spectrogram(
        speechlike, fs=RATE, window="hann", nperseg=320, noverlap=160, detrend=False, scaling="density", mode="psd"
    )  # (161, T)
    assert ours.shape == (density.shape[1], 161) == (1 + (speechlike.size - 320) // 160, 161)
    np.testing.assert_allclose(ours, np.log(density.T + LOG_FLOOR), rtol=1e-4, atol=1e-3)


def test_spectrogram_peak_at_tone_frequency():
    time = np.arange(RATE) / RATE
    feature = spectrogram(np.sin(2 * np.pi * 1000 * time))
    assert np.all(np.argmax(feature, axis=1) == 20)  # 1000 Hz / (16000 / 320) Hz per bin = bin 20


def test_max_freq_truncates_bins(speechlike):
    feature = spectrogram(speechlike, FeatureConfig(max_freq=4000))
    assert feature.shape[1] == calc_feat_dim(20, 4000) == 81


def test_mfcc_matches_python_speech_features(speechlike):
    from python_speech_features import mfcc

    expected = mfcc(speechlike, samplerate=RATE, winstep=0.01, numcep=13)
    np.testing.assert_allclose(mfcc(speechlike), expected, rtol=1e-4, atol=1e-4)


def test_logmel_matches_librosa(speechlike):
    import librosa

    mel = librosa.feature.melspectrogram(
        y=speechlike, sr=RATE, n_fft=320, hop_length=160, window="hann", center=False, power=2.0, n_mels=80, fmax=8000
    )  # (80, T)
    np.testing.assert_allclose(logmel(speechlike), np.log(mel.T + LOG_FLOOR), rtol=1e-4, atol=1e-3)


def test_featurize_file_all_kinds(tmp_path):
    path = write_tone(tmp_path / "a.wav", 0.5)
    for kind in FEATURE_KINDS:
        config = FeatureConfig(kind=kind)
        feature = featurize_file(path, config)
        assert feature.dtype == np.float32 and feature.shape[1] == config.feature_dim
        assert feature.shape[0] == config.num_frames(8000)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b"RIFF not really a wav"), "unreadable audio"),
        (
            lambda p: soundfile.write(p, np.full(8000, 0.3, np.float32) * np.sin(np.arange(8000)), 8000),
            "sample rate 8000 Hz, expected 16000",
        ),
        (lambda p: soundfile.write(p, np.zeros(16000, np.float32), RATE), "silent audio"),
        (lambda p: soundfile.write(p, np.zeros(0, np.float32), RATE), "empty audio"),
    ],
)
def test_bad_audio_names_file_and_problem(tmp_path, make, problem):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as error:
        read_audio(path)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_stereo_is_averaged(tmp_path):
    left = np.full(1600, 0.5, np.float32)
    soundfile.write(tmp_path / "s.wav", np.stack([left, -0.25 * np.ones(1600, np.float32)], axis=1), RATE)
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav"), 0.125, atol=1e-4)


def test_plots_return_figures(speechlike):
    import matplotlib

    matplotlib.use("Agg")
    assert plot_raw_audio(speechlike).axes
    assert plot_spectrogram_feature(spectrogram(speechlike)).axes
    figure = plot_loss_curves({"a": {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}, "b": {"loss": [4.0, 1.0]}})
    assert len(figure.axes[0].lines) >= 3
    with pytest.raises(ValueError, match="no loss values"):
        plot_loss_curves({"a": {}})


def test_feature_pair_shares_one_colour_scale_and_time_axis():
    import matplotlib

    from ctclab.report.plots import plot_feature_pair

    matplotlib.use("Agg")
    short, long = np.full((50, 4), -1.0), np.arange(120 * 4, dtype=float).reshape(120, 4)
    figure = plot_feature_pair({"clean": short, "augmented": long})
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == ["clean", "augmented"]
    assert all(axis.images[0].get_clim() == (-1.0, 479.0) for axis in panels)  # min and max over both
    assert all(axis.get_xlim() == (0.0, 1.2) for axis in panels)  # 120 frames of 10 ms
