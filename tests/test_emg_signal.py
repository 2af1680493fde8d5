"""emg_signal: filters against scipy's analytic responses, features against hand-computed values
(sine, constant, white noise) and against librosa, the library Gaddy & Klein's code calls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ctclab.emg import signal as emg_signal
from ctclab.emg.signal import EMGFeatureConfig

RATE = 1000.0


def tone(frequency: float, seconds: float = 4.0, rate: float = RATE, amplitude: float = 1.0, phase: float = 0.0):
    time = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * time + phase)


def steady_gain_db(filtered: np.ndarray, original: np.ndarray) -> float:
    """Output / input rms in dB over the middle half (away from filtfilt's edge transients)."""
    quarter = len(original) // 4
    middle = slice(quarter, -quarter)
    return 20 * np.log10(np.std(filtered[middle]) / np.std(original[middle]))


def filtfilt_gain_db(sections: np.ndarray, frequency: float, rate: float = RATE) -> float:
    """Analytic forward-backward gain: |H(f)|^2 from scipy.signal.sosfreqz, in dB."""
    _, response = signal.sosfreqz(sections, worN=[frequency], fs=rate)
    return 20 * np.log10(np.abs(response[0]) ** 2)


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize("mains_hz", [60.0, 50.0])
def test_notch_removes_mains_and_every_harmonic_below_nyquist(mains_hz):
    for multiple in range(1, 8):
        frequency = mains_hz * multiple
        if frequency >= RATE / 2:
            continue
        hum = tone(frequency, amplitude=30.0)
        assert steady_gain_db(emg_signal.notch_filter(hum, RATE, mains_hz), hum) < -40, frequency


@pytest.mark.parametrize("frequency", [25.0, 45.0, 90.0, 150.0, 205.0, 333.0, 450.0])
def test_notch_passes_other_frequencies_as_scipy_predicts(frequency):
    sections = emg_signal.notch_sections(RATE, 60.0, 7, 30.0)
    expected = filtfilt_gain_db(sections, frequency)
    measured = steady_gain_db(emg_signal.notch_filter(tone(frequency), RATE), tone(frequency))
    assert measured == pytest.approx(expected, abs=0.1)
    assert expected > -1.0  # and these really pass


def test_notch_sections_are_scipy_iirnotch():
    """Each section is scipy's own notch (b, a) at a multiple of mains, normalized to a0 = 1."""
    sections = emg_signal.notch_sections(RATE, 60.0, 7, 30.0)
    assert len(sections) == 7  # 60 ... 420 Hz, all below 500 Hz
    b, a = signal.iirnotch(180.0, 30.0, fs=RATE)
    np.testing.assert_allclose(sections[2], np.r_[b / a[0], a / a[0]], rtol=1e-12)


def test_highpass_matches_butterworth_response_and_removes_drift():
    sections = emg_signal.highpass_sections(RATE, 2.0, 3)
    for frequency in (2.0, 5.0, 20.0, 100.0):
        x = tone(frequency, seconds=20.0)
        measured = steady_gain_db(emg_signal.highpass(x, RATE, 2.0), x)
        assert measured == pytest.approx(filtfilt_gain_db(sections, frequency), abs=0.1)
    assert filtfilt_gain_db(sections, 2.0) == pytest.approx(20 * np.log10(0.5), abs=1e-6)  # |H|^2 at cutoff
    drift = tone(0.2, seconds=40.0, amplitude=300.0) + 500.0  # slow wander plus a DC offset
    assert steady_gain_db(emg_signal.highpass(drift, RATE, 2.0), drift - 500.0) < -40


def test_filters_reject_bad_arguments():
    with pytest.raises(ValueError, match="cutoff_hz"):
        emg_signal.highpass(tone(10.0), RATE, 600.0)
    with pytest.raises(ValueError, match="mains_hz"):
        emg_signal.notch_filter(tone(10.0), RATE, mains_hz=0.0)


def test_resample_is_exact_on_lines_and_follows_a_slow_sine():
    ramp = 3.0 * np.arange(2000) / RATE + 1.0  # a line is reproduced exactly by linear interpolation
    out = emg_signal.resample(ramp, RATE, 516.79, antialias=False)
    new_times = np.arange(emg_signal.resampled_length(2000, RATE, 516.79)) / 516.79
    np.testing.assert_allclose(out, 3.0 * new_times + 1.0, rtol=1e-12)
    assert len(out) == int(2000 * 516.79 / 1000)
    sine = emg_signal.resample(tone(20.0), RATE, 516.79)  # 20 Hz: far below the anti-alias corner
    expected = np.sin(2 * np.pi * 20.0 * np.arange(len(sine)) / 516.79)
    assert np.max(np.abs(sine - expected)[100:-100]) < 0.01


def test_resample_antialias_removes_what_would_fold():
    """400 Hz at 1 kHz would alias to 116.79 Hz at 516.79 Hz; the low-pass removes it first."""
    x = tone(400.0)
    assert (
        np.std(emg_signal.resample(x, RATE, 516.79, antialias=False)[200:-200]) > 0.3
    )  # interpolation damps it a little
    assert np.std(emg_signal.resample(x, RATE, 516.79)[200:-200]) < 0.01


# ---------------------------------------------------------------------- Gaddy & Klein features


def channel_features(x: np.ndarray) -> np.ndarray:
    """(N, 14) features of a single channel at the feature rate."""
    return emg_signal.gaddy_features(x[:, None])


def test_constant_signal_has_all_zero_features():
    assert np.all(channel_features(np.full(400, 37.5)) == 0.0)


@pytest.mark.parametrize("bin_index", [2, 3, 5])
def test_sine_on_an_fft_bin_gives_the_hann_window_magnitudes(bin_index):
    """A periodic Hann window of 16 has DFT 8 at 0 and -4 at +-1: amplitude A gives 4A, 2A, 0."""
    amplitude = 3.0
    x = amplitude * np.sin(2 * np.pi * bin_index * np.arange(640) / 16)  # whole periods: the mean is 0
    spectrum = channel_features(x)[:, 5:]  # (N, 9)
    expected = np.zeros(9)
    expected[bin_index], expected[bin_index - 1], expected[bin_index + 1] = 4 * amplitude, 2 * amplitude, 2 * amplitude
    np.testing.assert_allclose(spectrum, np.broadcast_to(expected, spectrum.shape), atol=1e-4)


def test_quarter_rate_sine_time_domain_features_by_hand():
    """x = A sin(pi n / 2 + pi / 4): samples +-A/sqrt2. The 9-point box has gain sin(9pi/4)/(9 sin(pi/4)) = 1/9
    at a quarter of the rate, so w = x / 81, p = 80 x / 81, |p| = 80 A / (81 sqrt 2) everywhere,
    and p changes sign every 2 samples: 7 changes in a 16-sample frame."""
    amplitude = 2.0
    x = amplitude * np.sin(np.pi * np.arange(800) / 2 + np.pi / 4)
    features = channel_features(x)[5:-5]  # frames away from the 'same' convolution edges
    level = amplitude / np.sqrt(2)
    np.testing.assert_allclose(features[:, 0], 0.0, atol=1e-9)  # mean(w)
    np.testing.assert_allclose(features[:, 1], level / 81, rtol=1e-4)  # rms(w)
    np.testing.assert_allclose(features[:, 2], 80 * level / 81, rtol=1e-4)  # rms(r)
    np.testing.assert_allclose(features[:, 3], 7 / 16)  # zero-crossing rate of p
    np.testing.assert_allclose(features[:, 4], 80 * level / 81, rtol=1e-4)  # mean(r)


def test_white_noise_feature_statistics():
    """For white noise of variance s^2: w = h * x with h = box9 * box9 (taps 1..9..1 / 81), so
    var(p) = s^2 (1 - 2 h0 + sum h^2) = s^2 (1 - 18/81 + 489/6561); E|FFT_k|^2 = s^2 sum(hann^2) = 6 s^2."""
    sigma = 5.0
    x = sigma * np.random.default_rng(0).standard_normal(300_000)
    features = channel_features(x)
    residual_variance = sigma**2 * (1 - 18 / 81 + 489 / 6561)
    assert np.mean(features[:, 2] ** 2) == pytest.approx(residual_variance, rel=0.01)
    assert np.mean(features[:, 1] ** 2) == pytest.approx(sigma**2 * 489 / 6561, rel=0.02)
    np.testing.assert_allclose(np.mean(features[:, 6:13] ** 2, axis=0), 6 * sigma**2, rtol=0.03)


def test_gaddy_features_equal_librosa_on_random_signals():
    """The reference implementation's calls: librosa frame / rms / zero_crossing_rate / stft, center=False."""
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(1).standard_normal((700, 3)) * [1.0, 10.0, 100.0]
    ours = emg_signal.gaddy_features(x).reshape(-1, 3, 14)  # (N, C, 14), channel-major
    for channel in range(3):
        column = x[:, channel] - x[:, channel].mean()
        smooth = np.convolve(np.convolve(column, np.ones(9) / 9, "same"), np.ones(9) / 9, "same")
        residual = column - smooth
        frame = dict(frame_length=16, hop_length=6)
        reference = np.column_stack(
            [
                librosa.util.frame(smooth, **frame).mean(axis=0),
                librosa.feature.rms(y=smooth, center=False, **frame)[0],
                librosa.feature.rms(y=np.abs(residual), center=False, **frame)[0],
                librosa.feature.zero_crossing_rate(residual, center=False, **frame)[0],
                librosa.util.frame(np.abs(residual), **frame).mean(axis=0),
                np.abs(librosa.stft(np.ascontiguousarray(column), n_fft=16, hop_length=6, center=False)).T,
            ]
        )
        np.testing.assert_allclose(ours[:, channel], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


# ------------------------------------------------------------------------ emg2qwerty features


def test_log_spectrogram_of_a_bin_centred_sine():
    """Amplitude A at bin k of a 64-point periodic Hann: |X_k| = A N / 4 and sum(w^2) = 3N/8, so the
    normalized power is (A N / 4)^2 / (3 N / 8) = A^2 N / 6."""
    amplitude, bin_index = 2.0, 8  # 8 * 2000 / 64 = 250 Hz
    x = amplitude * np.sin(2 * np.pi * bin_index * np.arange(640) / 64)
    spectrum = emg_signal.log_spectrogram(x[:, None], n_fft=64, hop=16)
    assert spectrum.shape == (1 + (640 - 64) // 16, 33)
    np.testing.assert_allclose(spectrum[:, bin_index], np.log10(amplitude**2 * 64 / 6 + 1e-6), rtol=1e-5)
    assert np.all(spectrum[:, 20] < -5)  # far from the tone: only the 1e-6 floor and leakage


# ------------------------------------------------------------------------------ the pipeline


@pytest.mark.parametrize(
    "config, num_samples",
    [
        (EMGFeatureConfig(), 3000),
        (EMGFeatureConfig(mains_hz=50.0, highpass_hz=None), 777),
        (EMGFeatureConfig.emg2qwerty(), 600),  # one 300 ms window at 2 kHz
    ],
)
def test_emg_features_shape_and_frame_count(config, num_samples):
    emg = np.random.default_rng(2).standard_normal((num_samples, config.num_channels)) * 20 + 300
    features = emg_signal.emg_features(emg, config)
    assert features.dtype == np.float32
    assert features.shape == (config.num_frames(num_samples), config.feature_dim)
    assert len(emg_signal.feature_names(config)) == config.feature_dim


def test_feature_dimensions_match_the_papers():
    assert EMGFeatureConfig().feature_dim == 112  # 8 channels x (5 + 9)
    assert EMGFeatureConfig.emg2qwerty().feature_dim == 2 * 16 * 33
    assert EMGFeatureConfig().frame_hop_ms == pytest.approx(1000 * 6 / 516.79)  # 86.13 frames/s
    assert EMGFeatureConfig.emg2qwerty().frame_hop_ms == pytest.approx(8.0)  # 125 frames/s


def test_emg_features_ignore_mains_hum_and_offset():
    """Hum at 60-420 Hz plus a DC offset barely changes the features of a muscle-like signal."""
    rng = np.random.default_rng(3)
    muscle = signal.sosfiltfilt(
        signal.butter(4, [20, 200], "bandpass", fs=RATE, output="sos"), rng.standard_normal((4000, 8)) * 30, axis=0
    )
    hum = sum(tone(60.0 * k, amplitude=20.0 / k)[:, None] for k in range(1, 8)) + 400.0
    clean, hummed = emg_signal.emg_features(muscle), emg_signal.emg_features(muscle + hum)
    middle = slice(30, -30)
    assert np.abs(hummed - clean)[middle].mean() < 0.05 * np.abs(clean)[middle].mean()


@pytest.mark.parametrize(
    "emg, message",
    [
        (np.zeros((1000, 7)), "shape"),
        (np.zeros(1000), "shape"),
        (np.zeros((20, 8)), "too short"),
        (np.full((1000, 8), np.nan), "non-finite"),
    ],
)
def test_emg_features_reject_bad_input(emg, message):
    with pytest.raises(ValueError, match=message):
        emg_signal.emg_features(emg)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="kind"):
        EMGFeatureConfig(kind="mfcc")
    with pytest.raises(ValueError, match="feature_rate"):
        EMGFeatureConfig(feature_rate=2000.0)


def test_plots_draw_every_channel():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    raw = np.random.default_rng(4).standard_normal((1000, 8))
    figure = emg_signal.plot_emg_channels(raw, emg_signal.highpass(raw, RATE, 2.0))
    assert len(figure.axes) == 8
    features = emg_signal.emg_features(raw)
    figure = emg_signal.plot_emg_features(features)
    assert figure.axes[0].images[0].get_array().shape == features.T.shape
