"""Energy-based voice activity detection: split a long recording into pieces at its pauses.

Every 10 ms the energy of a 20 ms frame is compared with a threshold set from the recording
itself, between its noise floor and its loud frames (so it works on digital silence and on a
noisy room alike). Stretches above it are speech; a quieter stretch shorter than ``min_pause_s``
is inside speech (stop closures, short breaths) and is never cut. Every stretch of speech between
two pauses is one piece, as long as a training utterance is at most (``max_piece_s``: the model
was trained on clips of one sentence, 1-10 s, without long pauses inside); a piece keeps
``padding_s`` of context on each side, never more than half of the pause next to it.

The one exception to "cut only at pauses": speech longer than ``max_piece_s`` without any pause
is cut at its quietest 100 ms in the second half of the allowed length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENERGY_FLOOR = 1e-12  # added to frame energies before the log: digital silence is -120 dB


@dataclass(frozen=True)
class VADConfig:
    """How speech is told from pauses, and how long a piece may be.

    Attributes:
        frame_ms: energy window in milliseconds (20 ms, the features' analysis window).
        hop_ms: one speech / pause decision every this many milliseconds (10 ms).
        floor_percentile: the noise floor is this percentile of frame energies (in dB).
        peak_percentile: loud speech is this percentile (99: one click does not set it).
        threshold_ratio: threshold = floor + ratio * (peak - floor), in dB ...
        max_range_db: ... but never more than this far below the peak (digital silence would
            put the floor at -120 dB).
        min_pause_s: a quieter stretch shorter than this is inside speech (0.3 s: longer than
            stop closures and most between-word gaps).
        min_speech_s: louder stretches shorter than this (clicks) are not speech.
        padding_s: context kept before and after a piece's speech (soft onsets and releases
            fall below the threshold).
        max_piece_s: longest piece in seconds.
    """

    frame_ms: float = 20.0
    hop_ms: float = 10.0
    floor_percentile: float = 5.0
    peak_percentile: float = 99.0
    threshold_ratio: float = 0.3
    max_range_db: float = 40.0
    min_pause_s: float = 0.3
    min_speech_s: float = 0.05
    padding_s: float = 0.15
    max_piece_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_piece_s <= 2 * self.padding_s + self.min_pause_s:
            raise ValueError(f"max_piece_s {self.max_piece_s} s leaves no room for speech between the paddings")
        if not 0 < self.threshold_ratio < 1:
            raise ValueError(f"threshold_ratio must be in (0, 1), got {self.threshold_ratio}")


@dataclass(frozen=True)
class Piece:
    """One piece of a recording, ``samples[start:end]``, in samples."""

    start: int
    end: int

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        """(start, end) in seconds."""
        return self.start / sample_rate, self.end / sample_rate


def frame_energies_db(samples: np.ndarray, sample_rate: int, config: VADConfig = VADConfig()) -> np.ndarray:
    """Mean square of each frame in dB (full scale 1.0 gives 0 dB).

    Args:
        samples: (num_samples,) mono audio.

    Returns:
        (num_frames,) dB; frame i covers samples [i * hop, i * hop + frame).
    """
    frame, hop = _frame_and_hop(sample_rate, config)
    padded = np.pad(np.asarray(samples, np.float64), (0, max(0, frame - len(samples))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]  # (num_frames, frame)
    return 10 * np.log10(np.mean(frames**2, axis=1) + ENERGY_FLOOR)


def _frame_and_hop(sample_rate: int, config: VADConfig) -> tuple[int, int]:
    return int(round(config.frame_ms * sample_rate / 1000)), int(round(config.hop_ms * sample_rate / 1000))


def threshold_db(energies_db: np.ndarray, config: VADConfig = VADConfig()) -> float:
    """The speech threshold of a recording: between its floor and its peak (see VADConfig)."""
    floor = float(np.percentile(energies_db, config.floor_percentile))
    peak = float(np.percentile(energies_db, config.peak_percentile))
    return max(floor + config.threshold_ratio * (peak - floor), peak - config.max_range_db)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index ranges where ``mask`` is True, end exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def speech_regions(samples: np.ndarray, sample_rate: int, config: VADConfig = VADConfig()) -> list[tuple[int, int]]:
    """Stretches of speech, as (start, end) sample ranges, separated by pauses of at least min_pause_s.

    Args:
        samples: (num_samples,) mono audio.

    Returns:
        Sorted, non-overlapping (start, end) sample ranges (end exclusive).
    """
    frame, hop = _frame_and_hop(sample_rate, config)
    energies = frame_energies_db(samples, sample_rate, config)
    regions = _runs(energies > threshold_db(energies, config))  # in frames
    merged: list[list[int]] = []
    for start, end in regions:
        if merged and (start - merged[-1][1]) * hop < config.min_pause_s * sample_rate:
            merged[-1][1] = end  # a short dip is inside speech
        else:
            merged.append([start, end])
    last_sample = len(samples)
    return [
        (start * hop, min(last_sample, (end - 1) * hop + frame))
        for start, end in merged
        if (end - start) * hop >= config.min_speech_s * sample_rate
    ]


def _cut_long_region(
    samples: np.ndarray, start: int, end: int, sample_rate: int, config: VADConfig
) -> list[tuple[int, int]]:
    """A speech region longer than a piece, cut at its quietest 100 ms (the one cut inside speech)."""
    longest = int((config.max_piece_s - 2 * config.padding_s) * sample_rate)
    parts = []
    window = max(1, int(0.1 * sample_rate))
    while end - start > longest:
        search = np.asarray(samples[start + longest // 2 : start + longest], np.float64) ** 2
        smoothed = np.convolve(search, np.ones(window) / window, mode="valid")  # [i] = mean of search[i : i + window]
        cut = start + longest // 2 + int(np.argmin(smoothed)) + window // 2  # the quietest window's centre
        parts.append((start, cut))
        start = cut
    return parts + [(start, end)]


def split_at_pauses(samples: np.ndarray, sample_rate: int, config: VADConfig = VADConfig()) -> list[Piece]:
    """Pieces of a recording to decode one by one, cut only at pauses (see the module docstring).

    Args:
        samples: (num_samples,) mono audio.
        sample_rate: Hz.

    Returns:
        Pieces in time order, each at most ``max_piece_s`` long; none when no frame is speech.
    """
    regions = []
    for start, end in speech_regions(samples, sample_rate, config):
        regions += _cut_long_region(samples, start, end, sample_rate, config)
    padding = int(config.padding_s * sample_rate)
    pieces = []
    for index, (start, end) in enumerate(regions):
        low = 0 if index == 0 else (regions[index - 1][1] + start) // 2  # half-way into the pause
        high = len(samples) if index + 1 == len(regions) else (end + regions[index + 1][0]) // 2
        pieces.append(Piece(max(low, start - padding), min(high, end + padding)))
    return pieces
