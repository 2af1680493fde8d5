"""Reading audio: 16 kHz mono samples in [-1, 1], with a clear error for every bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

SILENCE_PEAK = 1e-4  # a clip whose absolute peak is below this (full scale 1.0) is silent


class AudioError(ValueError):
    """Raised for audio a feature pipeline cannot use; the message names the file."""


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
