"""Audio I/O, speech features (log spectrogram, MFCC, log-mel) and plotting helpers.

Feature conventions (course defaults): 16 kHz mono audio, 20 ms analysis windows every 10 ms.
All features are arrays of shape ``(time_frames, feature_dim)`` in float32.

- ``spectrogram``: log power spectral density of Hann-windowed frames, one-sided, 161 bins from
  0 to 8 kHz for a 20 ms window (the course's ``calc_feat_dim(20, 8000) == 161``).
- ``mfcc``: 13 cepstra from python_speech_features (25 ms window, 10 ms step, its defaults).
- ``logmel``: log of a librosa mel filterbank applied to the same power spectrum.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile

FEATURE_KINDS = ("spectrogram", "mfcc", "logmel")
LOG_FLOOR = 1e-14  # added before the log so silence gives a finite floor (about -32)
SILENCE_PEAK = 1e-4  # a clip whose absolute peak is below this (full scale 1.0) is silent


class AudioError(ValueError):
    """Raised for audio a feature pipeline cannot use; the message names the file."""


@dataclass(frozen=True)
class FeatureConfig:
    """What features to compute from the audio.

    Attributes:
        kind: "spectrogram" (161-dim), "mfcc" (mfcc_dim) or "logmel" (num_mels).
        sample_rate: expected audio rate in Hz; other rates are rejected, not resampled.
        window_ms: analysis window length in milliseconds (20 ms, the course's value).
        step_ms: hop between windows in milliseconds (10 ms gives 100 frames per second).
        max_freq: highest spectrogram frequency kept, in Hz (8000 = Nyquist at 16 kHz).
        mfcc_dim: number of cepstral coefficients (13, the course's value).
        num_mels: mel bands for "logmel" (80, a common ASR choice; DS2 variants use 128).
    """

    kind: str = "spectrogram"
    sample_rate: int = 16000
    window_ms: float = 20.0
    step_ms: float = 10.0
    max_freq: float = 8000.0
    mfcc_dim: int = 13
    num_mels: int = 80

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind {self.kind!r} is not one of {FEATURE_KINDS}")
        if self.max_freq > self.sample_rate / 2:
            raise ValueError(f"max_freq {self.max_freq} Hz is above Nyquist ({self.sample_rate / 2} Hz)")

    @property
    def feature_dim(self) -> int:
        """Size of one feature frame."""
        if self.kind == "spectrogram":
            return calc_feat_dim(self.window_ms, self.max_freq)
        return self.mfcc_dim if self.kind == "mfcc" else self.num_mels

    @property
    def window_samples(self) -> int:
        return int(round(self.window_ms * self.sample_rate / 1000))

    @property
    def hop_samples(self) -> int:
        return int(round(self.step_ms * self.sample_rate / 1000))

    def num_frames(self, num_samples: int) -> int:
        """Frames a clip of ``num_samples`` gives (trailing partial window dropped)."""
        if self.kind == "mfcc":  # python_speech_features pads the tail and keeps it
            window = int(round(0.025 * self.sample_rate))
            return 1 + max(0, int(np.ceil((num_samples - window) / self.hop_samples)))
        return max(0, 1 + (num_samples - self.window_samples) // self.hop_samples)

    def cache_name(self) -> str:
        """A short stable name for this configuration, used for cache folders."""
        digest = hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:10]
        return f"{self.kind}-{digest}"


def calc_feat_dim(window_ms: float, max_freq: float) -> int:
    """Spectrogram bins from 0 Hz to ``max_freq`` for a window of ``window_ms`` (course name)."""
    return int(0.001 * window_ms * max_freq) + 1


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read a clip as float32 mono samples in [-1, 1].

    Multi-channel audio is averaged to mono.

    Raises:
        AudioError: unreadable file, wrong sample rate, empty or silent clip; the message
            names the file and the problem.
    """
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or missing files
        raise AudioError(f"{path}: unreadable audio ({error})") from error
    if file_rate != sample_rate:
        raise AudioError(f"{path}: sample rate {file_rate} Hz, expected {sample_rate} Hz")
    samples = samples.mean(axis=1)  # (num_samples, channels) -> (num_samples,)
    if samples.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if np.abs(samples).max() < SILENCE_PEAK:
        raise AudioError(f"{path}: silent audio (peak below {SILENCE_PEAK})")
    return samples


def _frames(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(num_samples,) -> (T, window_samples) overlapping frames every hop; the tail is dropped."""
    if samples.shape[0] < config.window_samples:
        raise ValueError(f"{samples.shape[0]} samples is shorter than one window ({config.window_samples})")
    return np.lib.stride_tricks.sliding_window_view(samples, config.window_samples)[:: config.hop_samples]


def spectrogram(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log power spectral density of Hann-windowed frames.

    Each frame is multiplied by a periodic Hann window, transformed with a real FFT of the window
    length, and scaled to a one-sided density: |X|^2 / (sample_rate * sum(window^2)), doubled
    for every bin but DC and Nyquist (this is scipy's ``scaling="density"``).

    Args:
        samples: (num_samples,) mono audio at ``config.sample_rate``.
        config: window, hop and max_freq.

    Returns:
        (num_frames, calc_feat_dim(window_ms, max_freq)) float32 log densities.
    """
    window_length = config.window_samples
    window = np.hanning(window_length + 1)[:-1]  # periodic Hann (the DFT-even form)
    spectrum = np.fft.rfft(_frames(samples, config) * window, axis=1)  # (T, W // 2 + 1)
    power = np.abs(spectrum) ** 2 / (config.sample_rate * np.sum(window**2))
    power[:, 1 : (window_length + 1) // 2] *= 2.0  # fold negative frequencies (not DC/Nyquist)
    frequencies = np.fft.rfftfreq(window_length, d=1.0 / config.sample_rate)
    keep = frequencies <= config.max_freq
    return np.log(power[:, keep] + LOG_FLOOR).astype(np.float32)


def mfcc(samples: np.ndarray, config: FeatureConfig = FeatureConfig(kind="mfcc")) -> np.ndarray:
    """MFCCs from python_speech_features, (num_frames, mfcc_dim) float32."""
    from python_speech_features import mfcc as psf_mfcc

    features = psf_mfcc(
        samples, samplerate=config.sample_rate, winstep=config.step_ms / 1000, numcep=config.mfcc_dim
    )
    return features.astype(np.float32)


def logmel(samples: np.ndarray, config: FeatureConfig = FeatureConfig(kind="logmel")) -> np.ndarray:
    """Log mel energies: a librosa mel filterbank over the windowed power spectrum.

    Returns:
        (num_frames, num_mels) float32.
    """
    import librosa

    window_length = config.window_samples
    window = np.hanning(window_length + 1)[:-1]  # periodic Hann, as in spectrogram()
    power = np.abs(np.fft.rfft(_frames(samples, config) * window, axis=1)) ** 2  # (T, W // 2 + 1)
    mel_basis = librosa.filters.mel(
        sr=config.sample_rate, n_fft=window_length, n_mels=config.num_mels, fmax=config.max_freq
    )  # (num_mels, W // 2 + 1)
    return np.log(power @ mel_basis.T + LOG_FLOOR).astype(np.float32)


FEATURE_FUNCTIONS = {"spectrogram": spectrogram, "mfcc": mfcc, "logmel": logmel}


def featurize(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of ``config.kind`` for one clip: (num_frames, config.feature_dim) float32."""
    return FEATURE_FUNCTIONS[config.kind](samples, config)


def featurize_file(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Read ``path`` (checked by :func:`read_audio`) and compute its features."""
    samples = read_audio(path, config.sample_rate)
    if samples.shape[0] < config.window_samples:
        raise AudioError(f"{path}: {samples.shape[0]} samples is shorter than one analysis window")
    return featurize(samples, config)


# ----------------------------------------------------------------------------------- plots


def plot_raw_audio(samples: np.ndarray, sample_rate: int = 16000, title: str = "Audio signal"):
    """Waveform against time in seconds. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 3))
    axis.plot(np.arange(samples.shape[0]) / sample_rate, samples, linewidth=0.5)
    axis.set(title=title, xlabel="time (s)", ylabel="amplitude")
    figure.tight_layout()
    return figure


def _plot_feature(feature: np.ndarray, title: str, ylabel: str, step_ms: float):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 4))
    seconds = feature.shape[0] * step_ms / 1000
    image = axis.imshow(
        feature.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, feature.shape[1])
    )
    figure.colorbar(image, ax=axis, pad=0.01)
    axis.set(title=title, xlabel="time (s)", ylabel=ylabel)
    figure.tight_layout()
    return figure


def plot_spectrogram_feature(feature: np.ndarray, step_ms: float = 10.0):
    """Heat map of a (frames, bins) spectrogram; bins run 0 Hz (bottom) to max_freq."""
    return _plot_feature(feature, "Normalized spectrogram", "frequency bin", step_ms)


def plot_mfcc_feature(feature: np.ndarray, step_ms: float = 10.0):
    """Heat map of a (frames, coefficients) MFCC matrix."""
    return _plot_feature(feature, "Normalized MFCC", "coefficient", step_ms)


def plot_loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = "CTC loss"):
    """Training and validation loss of several models in one seaborn figure.

    Args:
        histories: model name -> Keras history dict with "loss" and optionally "val_loss".

    Returns:
        The matplotlib figure (solid lines: training; dashed: validation).
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rows = [
        {"model": name, "epoch": epoch + 1, "split": split, "loss": value}
        for name, history in histories.items()
        for key, split in (("loss", "training"), ("val_loss", "validation"))
        for epoch, value in enumerate(history.get(key, []))
    ]
    if not rows:
        raise ValueError("no loss values to plot: every history is empty")
    figure, axis = plt.subplots(figsize=(10, 5))
    sns.lineplot(
        data=pd.DataFrame(rows), x="epoch", y="loss", hue="model", style="split", marker="o", ax=axis
    )
    axis.set(title=title, ylabel="CTC loss per utterance")
    axis.set_yscale("log")
    axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    figure.tight_layout()
    return figure
