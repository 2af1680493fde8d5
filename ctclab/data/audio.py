"""Reading audio: mono float32 samples in [-1, 1], with a clear error for every bad file.

Two readers share the same checks (unreadable, empty, NaN / inf samples, silent):

- :func:`read_audio` for corpus audio, which must already be at the model's rate (16 kHz);
- :func:`load_any_audio` for anything soundfile reads (wav, flac, ogg; any rate, any channel
  count, integer or float samples), mixed to mono and resampled by :func:`resample`, the one
  owner of sample-rate conversion for audio files (ingest and transcription use it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile

SILENCE_PEAK = 1e-4  # a clip whose absolute peak is below this (full scale 1.0) is silent


class AudioError(ValueError):
    """Raised for audio a feature pipeline cannot use; the message names the file."""


def _read_frames(path: str | Path) -> tuple[np.ndarray, int]:
    """(num_samples, channels) float32 samples and the file's rate; AudioError if unreadable."""
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or missing files
        raise AudioError(f"{path}: unreadable audio ({error})") from error
    if samples.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    nan, infinite = int(np.isnan(samples).sum()), int(np.isinf(samples).sum())
    if nan or infinite:
        num_samples, channels = samples.shape
        raise AudioError(
            f"{path}: non-finite samples: {nan} NaN and {infinite} inf of {num_samples * channels} "
            f"({num_samples} samples x {channels} channels)"
        )
    return samples, int(file_rate)


def _to_mono(path: str | Path, samples: np.ndarray) -> np.ndarray:
    """(num_samples, channels) -> (num_samples,) channel mean, AudioError if it is silent."""
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32)  # float64 sum: no float32 overflow
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(f"{path}: silent audio (peak below {SILENCE_PEAK})")
    return mono


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read a clip at ``sample_rate`` as float32 mono samples in [-1, 1].

    Multi-channel audio is averaged to mono.

    Returns:
        (num_samples,) float32.

    Raises:
        AudioError: unreadable file, wrong sample rate, empty clip, NaN / inf samples (counted)
            or silent clip; the message names the file and the problem.
    """
    samples, file_rate = _read_frames(path)
    if file_rate != sample_rate:
        raise AudioError(f"{path}: sample rate {file_rate} Hz, expected {sample_rate} Hz")
    return _to_mono(path, samples)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's ``resample_poly``: Kaiser-windowed FIR, anti-aliased).

    Args:
        samples: (num_samples,) or (num_samples, channels) audio at ``source_rate`` Hz.
        source_rate, target_rate: rates in Hz.

    Returns:
        ceil(num_samples * target_rate / source_rate) samples (same trailing axes), float32.
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {source_rate} and {target_rate}")
    if source_rate == target_rate:
        return np.asarray(samples, np.float32)
    import scipy.signal  # here, not at the top: ctclab.runs imports this module and stays light

    divisor = math.gcd(target_rate, source_rate)  # 16000 / 22050 -> up 320, down 441
    resampled = scipy.signal.resample_poly(samples, target_rate // divisor, source_rate // divisor, axis=0)
    return resampled.astype(np.float32)


def load_any_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read any file soundfile reads as mono float32 at ``sample_rate`` (mixed, then resampled).

    Returns:
        (num_samples,) float32 at ``sample_rate`` Hz.

    Raises:
        AudioError: unreadable file, empty clip, NaN / inf samples (counted) or silent clip;
            the message names the file and the problem.
    """
    samples, file_rate = _read_frames(path)
    return resample(_to_mono(path, samples), file_rate, sample_rate)
