"""Speech features (log spectrogram, MFCC, log-mel), their on-disk cache and the training normalizer.

Feature conventions (course defaults): 16 kHz mono audio, 20 ms analysis windows every 10 ms.
All features are arrays of shape ``(time_frames, feature_dim)`` in float32.

- ``spectrogram``: log power spectral density of Hann-windowed frames, one-sided, 161 bins from
  0 to 8 kHz for a 20 ms window (the course's ``calc_feat_dim(20, 8000) == 161``).
- ``mfcc``: 13 cepstra from python_speech_features (25 ms window, 10 ms step, its defaults).
- ``logmel``: log of a librosa mel filterbank applied to the same power spectrum.

:class:`FeatureCache` computes a file's features once per configuration and stores them as
``.npy``; :class:`Normalizer` standardizes every dimension with training statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctclab import paths
from ctclab.data.audio import AudioError, read_audio

FEATURE_KINDS = ("spectrogram", "mfcc", "logmel")


LOG_FLOOR = 1e-14  # added before the log so silence gives a finite floor (about -32)


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

    features = psf_mfcc(samples, samplerate=config.sample_rate, winstep=config.step_ms / 1000, numcep=config.mfcc_dim)
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


def check_finite(feature: np.ndarray, source: str | Path, kind: str) -> np.ndarray:
    """``feature`` itself if every value is finite; ValueError naming ``source`` otherwise.

    Args:
        feature: (T, F) features.
        source: the file (or file and piece) they were computed from, for the message.
        kind: the feature kind, for the message.
    """
    bad = int(feature.size - np.count_nonzero(np.isfinite(feature)))
    if bad:
        frames = int(np.count_nonzero(~np.isfinite(feature).all(axis=1)))
        raise ValueError(
            f"{source}: non-finite {kind} features: {bad} of {feature.size} values "
            f"({frames} of {feature.shape[0]} frames)"
        )
    return feature


def featurize_file(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Read ``path`` (checked by :func:`read_audio`) and compute its features.

    Returns:
        (num_frames, config.feature_dim) float32.

    Raises:
        AudioError: for bad audio (see :func:`read_audio`) or a clip shorter than one window.
        ValueError: when the features come out NaN or infinite (the message names the file).
    """
    samples = read_audio(path, config.sample_rate)
    if samples.shape[0] < config.window_samples:
        raise AudioError(f"{path}: {samples.shape[0]} samples is shorter than one analysis window")
    return check_finite(featurize(samples, config), path, config.kind)


class FeatureCache:
    """Features of audio files, computed once per configuration and stored as ``.npy``."""

    def __init__(self, config: FeatureConfig, cache_dir: str | Path | None = "data/features"):
        self.config = config
        self.folder = None if cache_dir is None else paths.resolve(cache_dir) / config.cache_name()

    def _path(self, audio_path: str) -> Path:
        assert self.folder is not None  # only called with a cache folder (see get)
        stat = Path(audio_path).stat()
        identity = f"{Path(audio_path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / f"{hashlib.sha1(identity.encode()).hexdigest()}.npy"

    def get(self, audio_path: str) -> np.ndarray:
        """(T, F) features of ``audio_path``; AudioError for bad audio, ValueError for non-finite features."""
        if not Path(audio_path).is_file():
            raise AudioError(f"{audio_path}: audio file does not exist")
        if self.folder is None:
            return featurize_file(audio_path, self.config)
        path = self._path(audio_path)
        if path.is_file():  # checked again: a cache written before the check may hold NaN
            return check_finite(np.load(path), audio_path, self.config.kind)
        feature = featurize_file(audio_path, self.config)
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npy")  # per process: workers may fill one cache
        np.save(temporary, feature)
        temporary.replace(path)  # atomic: a killed run never leaves a half-written cache file
        return feature


class FrameStatistics:
    """Running per-dimension mean and variance of feature frames, float64 (Chan et al.'s merge).

    Each added (T, F) array's own mean and sum of squared deviations are merged into the totals
    with Chan, Golub & LeVeque's pairwise formula, which stays accurate where the naive sum of
    squares loses everything to cancellation (a large mean with a small spread).
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None  # (F,) float64
        self.m2: np.ndarray | None = None  # (F,) sum of squared deviations from the mean

    def add(self, feature: np.ndarray) -> None:
        """Merge the frames of one (T, F) array."""
        frames = np.asarray(feature, np.float64)
        n = frames.shape[0]
        if n == 0:
            return
        mean = frames.mean(axis=0)
        m2 = ((frames - mean) ** 2).sum(axis=0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def normalizer(self) -> Normalizer:
        """The population mean and std so far (std floored at 1e-6)."""
        if self.mean is None or self.m2 is None:
            raise ValueError("no frames to fit a normalizer on")
        std = np.sqrt(self.m2 / self.count)
        return Normalizer(self.mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))


@dataclass
class Normalizer:
    """Per-dimension feature standardization fitted on training features.

    Attributes:
        mean: (feature_dim,) mean of every training frame.
        std: (feature_dim,) standard deviation, floored at 1e-6 so constant bins stay finite.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: Iterable[np.ndarray]) -> Normalizer:
        """Mean and std over all frames of ``features`` ((T_i, F) arrays), in one streaming pass.

        Nothing is concatenated: :class:`FrameStatistics` merges each array's moments, so memory
        stays at one array whatever the corpus size.
        """
        statistics = FrameStatistics()
        for feature in features:
            statistics.add(feature)
        return statistics.normalizer()

    def __call__(self, feature: np.ndarray) -> np.ndarray:
        return (feature - self.mean) / self.std

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"mean": self.mean.tolist(), "std": self.std.tolist()}))

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        data = json.loads(Path(path).read_text())
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))
