"""Live features, chunk by chunk, against the same features of the whole recording."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from ctclab.data.features import FeatureConfig, featurize
from ctclab.emg import signal as emg_signal
from ctclab.live.feature_stream import AudioFeatureStream, EMGFeatureStream, FrameStream, InterpolationStream

CAUSAL = emg_signal.EMGFeatureConfig(causal=True)


def chunked(stream, x: np.ndarray, rng: np.random.Generator, largest: int = 400) -> np.ndarray:
    """Push x in random-sized chunks (some empty), then finish; all frames returned."""
    pieces, start = [], 0
    while start < x.shape[0]:
        size = int(rng.integers(0, largest))
        out = stream.push(x[start : start + size])
        start += size
        if out is not None:
            pieces.append(out)
    tail = stream.finish()
    if tail is not None:
        pieces.append(tail)
    return np.concatenate(pieces)


def emg_recording(rng: np.random.Generator, samples: int = 3000, channels: int = 8) -> np.ndarray:
    """Noise bursts + a 60 Hz hum + a per-channel offset and drift, in microvolts."""
    t = np.arange(samples) / 1000
    envelope = 1 + 4 * (np.sin(2 * np.pi * 1.5 * t) > 0.3)
    emg = rng.normal(size=(samples, channels)) * 20 * envelope[:, None]
    return emg + 30 * np.sin(2 * np.pi * 60 * t)[:, None] + rng.normal(size=channels) * 200 + 50 * t[:, None]


@pytest.mark.parametrize(
    "config",
    [
        CAUSAL,
        dataclasses.replace(emg_signal.EMGFeatureConfig.raw_emg(), causal=True),
        dataclasses.replace(emg_signal.EMGFeatureConfig.emg2qwerty(), causal=True),
        dataclasses.replace(CAUSAL, mains_hz=50.0, feature_rate=None),
    ],
    ids=["gaddy", "raw", "log_spectrogram", "gaddy-1000Hz-50Hz"],
)
def test_emg_stream_equals_the_whole_recording(config):
    rng = np.random.default_rng(3)
    emg = emg_recording(rng, channels=config.num_channels, samples=2500 if config.num_channels > 8 else 3000)
    whole = emg_signal.emg_features(emg, config)
    streamed = chunked(EMGFeatureStream(config), emg, rng)
    assert streamed.shape == whole.shape == (config.num_frames(emg.shape[0]), config.feature_dim)
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-5)


def test_single_sample_chunks_give_the_same_frames():
    rng = np.random.default_rng(4)
    emg = emg_recording(rng, samples=700)
    stream = EMGFeatureStream(CAUSAL)
    frames = [f for f in (stream.push(emg[i : i + 1]) for i in range(emg.shape[0])) if f is not None]
    tail = stream.finish()
    streamed = np.concatenate(frames + ([tail] if tail is not None else []))
    np.testing.assert_allclose(streamed, emg_signal.emg_features(emg, CAUSAL), rtol=1e-5, atol=1e-5)


def test_the_offline_features_cannot_be_streamed():
    """Zero-phase features differ from any causal stream: the stream refuses them, and they differ."""
    with pytest.raises(ValueError, match="causal=True"):
        EMGFeatureStream(emg_signal.EMGFeatureConfig())
    emg = emg_recording(np.random.default_rng(5))
    offline = emg_signal.emg_features(emg, emg_signal.EMGFeatureConfig())
    causal = emg_signal.emg_features(emg, CAUSAL)
    assert offline.shape == causal.shape
    assert np.max(np.abs(offline - causal)) > 1.0  # the control: the two feature sets are not the same


def test_causal_features_have_their_own_cache_name_and_the_old_names_stay():
    assert CAUSAL.cache_name() != emg_signal.EMGFeatureConfig().cache_name()
    # the name of the default configuration before the causal field existed
    settings = {k: v for k, v in dataclasses.asdict(emg_signal.EMGFeatureConfig()).items() if k != "causal"}
    import hashlib

    digest = hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()[:10]
    assert emg_signal.EMGFeatureConfig().cache_name() == f"emg-gaddy-{digest}"


def test_forward_filter_starts_settled_and_carries_its_state():
    """A settled high-pass passes a constant as 0 from the first sample; a notch passes it unchanged."""
    constant = np.full((500, 2), 123.0)
    highpass = emg_signal.highpass_sections(1000.0, 2.0)
    np.testing.assert_allclose(emg_signal.forward_filter(constant, highpass)[0], 0.0, atol=1e-9)
    notch = emg_signal.notch_sections(1000.0)
    np.testing.assert_allclose(emg_signal.forward_filter(constant, notch)[0], 123.0, rtol=1e-9)
    # chunked with the state equals scipy's lfilter of the whole signal from the same start
    x = np.random.default_rng(6).normal(size=(900, 2))
    first, state = emg_signal.forward_filter(x[:333], highpass)
    second, _ = emg_signal.forward_filter(x[333:], highpass, state)
    b, a = signal.sos2tf(highpass)
    initial = signal.lfilter_zi(b, a)[:, None] * x[0]
    expected, _ = signal.lfilter(b, a, x, axis=0, zi=initial)
    np.testing.assert_allclose(np.concatenate([first, second]), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("samples", [16, 17, 1000, 1001, 2347])
def test_interpolation_stream_equals_linear_interpolation(samples):
    rng = np.random.default_rng(samples)
    x = rng.normal(size=(samples, 3))
    stream = InterpolationStream(1000.0, 516.79)
    pieces, start = [], 0
    while start < samples:
        size = int(rng.integers(1, 50))
        pieces.append(stream.process(x[start : start + size]))
        start += size
    streamed = np.concatenate(pieces)
    times = np.arange(emg_signal.resampled_length(samples, 1000.0, 516.79)) / 516.79  # seconds
    expected = np.stack([np.interp(times, np.arange(samples) / 1000.0, x[:, c]) for c in range(3)], axis=1)
    assert streamed.shape == expected.shape
    np.testing.assert_allclose(streamed, expected, atol=1e-9)


@pytest.mark.parametrize("kind", ["spectrogram", "logmel", "mfcc"])
def test_audio_stream_equals_the_whole_clip(kind):
    rng = np.random.default_rng(7)
    audio = rng.normal(size=8123) * 0.1 + 0.3 * np.sin(2 * np.pi * 440 * np.arange(8123) / 16000)
    config = FeatureConfig(kind=kind)
    whole = featurize(audio, config)
    streamed = chunked(AudioFeatureStream(config), audio, rng, largest=900)
    assert streamed.shape == whole.shape == (config.num_frames(audio.shape[0]), config.feature_dim)
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-4)


def test_frame_stream_with_context_on_a_hand_computed_function():
    """Frames of 3 samples every 2, each reading 1 sample either side: sums of 5 samples, zero outside."""

    def sums(x):
        padded = np.concatenate([[0.0], x, [0.0]])
        return np.array([padded[k * 2 : k * 2 + 5].sum() for k in range(1 + (x.shape[0] - 3) // 2)])[:, None]

    x = np.arange(1.0, 12.0)  # 11 samples: frames 0..4; frame k needs samples up to 2k + 3
    stream = FrameStream(sums, length=3, hop=2, left=1, right=1)
    assert stream.push(x[:4])[:, 0].tolist() == [10.0]  # 0 + 1 + 2 + 3 + 4
    assert stream.push(x[4:9])[:, 0].tolist() == [20.0, 30.0]  # 2..6, 4..8
    assert stream.push(x[9:])[:, 0].tolist() == [40.0]  # 6..10
    assert stream.finish()[:, 0].tolist() == [38.0]  # 8 + 9 + 10 + 11 + the zero past the end


def test_lookahead_of_the_feature_streams():
    # a 20 ms window every 10 ms waits 10 ms past its first hop; Gaddy: (16 - 6 + 8) samples at 516.79 Hz
    assert AudioFeatureStream(FeatureConfig()).lookahead_ms == pytest.approx(10.0)
    assert EMGFeatureStream(CAUSAL).lookahead_ms == pytest.approx(1000 * 18 / 516.79)


def test_bad_chunks_are_named():
    stream = EMGFeatureStream(CAUSAL)
    with pytest.raises(ValueError, match=r"\(samples, 8\)"):
        stream.push(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        stream.push(np.full((10, 8), np.nan))
    with pytest.raises(ValueError, match="mono"):
        AudioFeatureStream(FeatureConfig()).push(np.zeros((10, 2)))
