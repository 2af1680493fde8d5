"""Live decoding of an OpenBCI / BrainFlow stream with a trained sEMG model, and how well it did.

Glue between :mod:`openbci` (boards, sessions, BrainFlow files), :mod:`streaming` (the windowed
decoder) and the sEMG modules (features, trained runs):

- :func:`write_playback_file` lays recordings with known text (the synthetic sEMG corpus) out
  as a BrainFlow playback file, so BrainFlow's own playback board streams known sentences;
- :func:`run_stream` drains a :class:`openbci.BoardSession`, feeds a
  :class:`streaming.WindowedDecoder`, and returns a :class:`StreamReport` (transcript, per-window
  latency, samples in vs processed, samples the board lost by its package counter);
- :func:`emg_decoder` builds the decoder for an sEMG run: Gaddy-style features at 1000 Hz with
  the run's feature configuration, the mains notches and high-pass moved out of the per-window
  feature function into the stream's causal filter (same cut-offs), so each window is filtered
  once, continuously, instead of forward-backward inside every window;
- :func:`score_playback` compares a playback session's transcript with the known sentences.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from brainflow.data_filter import DataFilter
from scipy.signal import resample_poly

from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.metrics import cer
from ctclab.live.openbci import BoardLayout, BoardSession, BoardStalledError
from ctclab.live.streaming import StreamConfig, StreamDecoder, WindowedDecoder, WindowResult
from ctclab.runs import best_scored_run, save_streaming_summary

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from ctclab.alphabet import Alphabet
    from ctclab.data.features import Normalizer
    from ctclab.emg.signal import EMGFeatureConfig
    from ctclab.live.stateful import StatefulDecoder
    from ctclab.profiles import Profile


@dataclass
class PlaybackScript:
    """What a playback file written by :func:`write_playback_file` holds, saved beside it as JSON.

    Attributes:
        path: the playback file.
        master_board: the board layout it uses.
        sampling_rate: its sample rate in Hz (the master board's).
        speed: replay speed (2.0 replays twice as fast as real time).
        texts: the utterances' transcripts, in order.
        starts: first sample of each utterance (its marker is utterance index + 1).
        num_samples: samples in the file.
    """

    path: str
    master_board: str
    sampling_rate: int
    speed: float
    texts: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    num_samples: int = 0

    @property
    def duration_s(self) -> float:
        """Signal time in seconds (wall time of a replay is duration_s / speed)."""
        return self.num_samples / self.sampling_rate

    def save(self) -> Path:
        sidecar = Path(self.path).with_suffix(".json")
        sidecar.write_text(json.dumps(asdict(self), indent=1))
        return sidecar

    @classmethod
    def load(cls, path: str | Path) -> PlaybackScript:
        return cls(**json.loads(Path(path).with_suffix(".json").read_text()))


def write_playback_file(
    path: str | Path,
    recordings: Sequence[tuple[np.ndarray, str]],
    source_rate: int,
    master_board: str = "cyton_wifi",
    speed: float = 1.0,
    start_time: float = 1.7e9,
) -> PlaybackScript:
    """Lay recordings with known text out as a BrainFlow playback file of ``master_board``.

    Each recording is resampled (polyphase, anti-aliased) from ``source_rate`` to the board's
    rate and the recordings are concatenated. Rows follow the board's getters: the package
    counter (0-255), the EMG in the first EXG rows (other rows 0), timestamps spaced
    ``1 / (rate * speed)`` apart (the playback board sleeps by their differences), and the
    marker row holding utterance index + 1 on each utterance's first sample.

    Args:
        path: the file to write (a ``.json`` sidecar with the :class:`PlaybackScript` is
            written next to it).
        recordings: (emg (T, C) in microvolts at ``source_rate``, transcript) pairs.
        source_rate: rate of the recordings in Hz (1000 for the Gaddy-style corpus).
        master_board: the layout to write ("cyton_wifi": 1000 Hz like Gaddy's recordings;
            "cyton": 250 Hz, which keeps nothing of the EMG above 125 Hz).
        speed: replay speed factor (> 1 replays faster than real time).
        start_time: unix time of the first sample (arrival times replace it on replay).

    Returns:
        The script: texts, start samples, rate.
    """
    layout = BoardLayout.of(master_board)
    if not recordings:
        raise ValueError("no recordings to write")
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    channels = {emg.shape[1] for emg, _ in recordings}
    if len(channels) != 1 or channels.pop() > len(layout.exg_rows):
        raise ValueError(f"recordings need one channel count <= {len(layout.exg_rows)} EXG rows of {master_board}")
    factor = math.gcd(layout.sampling_rate, int(source_rate))
    up, down = layout.sampling_rate // factor, int(source_rate) // factor
    pieces = [resample_poly(np.asarray(emg, np.float64), up, down, axis=0) for emg, _ in recordings]  # (T_i', C)
    starts = np.cumsum([0] + [piece.shape[0] for piece in pieces[:-1]])
    emg = np.concatenate(pieces, axis=0)  # (N, C)
    data = np.zeros((layout.num_rows, emg.shape[0]), np.float64)  # (rows, N)
    data[layout.package_row] = np.arange(emg.shape[0]) % 256
    data[list(layout.exg_rows[: emg.shape[1]])] = emg.T
    data[layout.timestamp_row] = start_time + np.arange(emg.shape[0]) / (layout.sampling_rate * speed)
    data[layout.marker_row, starts] = np.arange(1, len(recordings) + 1)
    DataFilter.write_file(data, str(path), "w")
    script = PlaybackScript(
        str(path),
        master_board,
        layout.sampling_rate,
        float(speed),
        [text for _, text in recordings],
        [int(start) for start in starts],
        int(emg.shape[0]),
    )
    script.save()
    return script


@dataclass
class StreamReport:
    """What a live decoding run did.

    Attributes:
        transcript: the decoded text.
        windows: every window's result.
        samples_in: board samples drained from BrainFlow; samples_filtered: of those, through
            resampler and filter; samples_resampled / samples_decoded: model-rate samples made
            by the resampler / covered by decoded centres (equal once flushed).
        board_gaps: samples missing from the package counter's sequence (lost before BrainFlow).
        signal_s: seconds of signal (samples_in / board rate); wall_s: seconds the run took.
    """

    transcript: str
    windows: list[WindowResult] = field(default_factory=list)
    samples_in: int = 0
    samples_filtered: int = 0
    samples_resampled: int = 0
    samples_decoded: int = 0
    board_gaps: int = 0
    signal_s: float = 0.0
    wall_s: float = 0.0

    def summary(self) -> dict:
        """Median and 95th-percentile processing and latency in ms, real-time factor, sample counts."""
        processing = [1000 * window.processing_s for window in self.windows]
        latency = [1000 * window.latency_s for window in self.windows if window.latency_s is not None]

        def percentile(values: list[float], q: float) -> float:
            return float(np.percentile(values, q)) if values else math.nan

        return {
            "windows": len(self.windows),
            "processing ms median": percentile(processing, 50),
            "processing ms p95": percentile(processing, 95),
            "latency ms median": percentile(latency, 50),
            "latency ms p95": percentile(latency, 95),
            # processing time per second of signal: below 1 keeps up with the board
            "real-time factor": sum(processing) / 1000 / self.signal_s if self.signal_s else math.nan,
            "samples in": self.samples_in,
            "samples filtered": self.samples_filtered,
            "resampled": self.samples_resampled,
            "decoded": self.samples_decoded,
            "board gaps": self.board_gaps,
            "signal s": self.signal_s,
            "wall s": self.wall_s,
        }


def run_stream(
    session: BoardSession,
    decoder: StreamDecoder,
    max_samples: int | None = None,
    max_seconds: float | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> StreamReport:
    """Drain ``session`` until ``max_samples`` board samples or ``max_seconds``, decoding live.

    Args:
        session: an open board session; its first ``decoder.channels`` EXG rows are decoded.
        decoder: a fresh decoder at the session's sampling rate (WindowedDecoder, StatefulDecoder).
        max_samples: stop after this many samples (a playback file's length); None: no limit.
        max_seconds: stop after this much wall time; None: no limit (one of the two is needed).
        on_window: called with every WindowResult as soon as it is decoded (live display).

    Raises:
        BoardStalledError: no sample for ``decoder.config.stall_timeout_s`` (the buffer stays
            empty: board off, cable out, playback file exhausted before max_samples).
        BoardDisconnectedError: the session vanished (from session.read).
    """
    if max_samples is None and max_seconds is None:
        raise ValueError("give max_samples or max_seconds, or the stream never ends")
    layout = session.layout
    if session.sampling_rate != decoder.input_rate:
        raise ValueError(
            f"the {session.config.label} streams at {session.sampling_rate} Hz, "
            f"the decoder expects {decoder.input_rate} Hz"
        )
    rows = list(layout.exg_rows[: decoder.channels])
    started = last_data = time.monotonic()
    report, last_package = StreamReport(""), None
    while (max_samples is None or decoder.samples_in < max_samples) and (
        max_seconds is None or time.monotonic() - started < max_seconds
    ):
        data = session.read()  # (num_rows, n)
        if data.shape[1] == 0:
            if time.monotonic() - last_data > decoder.config.stall_timeout_s:
                raise BoardStalledError(
                    f"no samples from the {session.config.label} for {decoder.config.stall_timeout_s} s after "
                    f"{decoder.samples_in} samples: the buffer stays empty (board off or out of range, or the "
                    "playback file ended)"
                )
            time.sleep(decoder.config.poll_s)
            continue
        last_data = time.monotonic()
        packages = data[layout.package_row]
        steps = np.diff(packages if last_package is None else np.concatenate([[last_package], packages])) % 256
        report.board_gaps += int(np.sum((steps[steps != 1] - 1) % 256))
        last_package = packages[-1]
        for result in decoder.push(data[rows].T, data[layout.timestamp_row]):
            if on_window:
                on_window(result)
    return finish_stream(decoder, report, started, on_window)


def finish_stream(
    decoder: StreamDecoder,
    report: StreamReport,
    started: float,
    on_window: Callable[[WindowResult], None] | None = None,
) -> StreamReport:
    """Flush ``decoder`` at the end of a stream and fill ``report`` (started: ``time.monotonic()``)."""
    for result in decoder.flush():
        if on_window:
            on_window(result)
    report.transcript, report.windows = decoder.transcript, list(decoder.results)
    report.samples_in, report.samples_filtered = decoder.samples_in, decoder.samples_filtered
    report.samples_resampled, report.samples_decoded = decoder.samples_resampled, decoder.samples_decoded
    report.signal_s, report.wall_s = decoder.samples_in / decoder.input_rate, time.monotonic() - started
    return report


def print_window(result: WindowResult) -> None:
    """An ``on_window`` callback: one line per window that added text, with its latency."""
    if result.text:
        latency = "" if result.latency_s is None else f"latency {1000 * result.latency_s:4.0f} ms, "
        print(f"window {result.index:3d}: {latency}processing {1000 * result.processing_s:3.0f} ms  +{result.text!r}")


def emg_decoder(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: EMGFeatureConfig,
    alphabet: Alphabet,
    input_rate: int,
    config: StreamConfig | None = None,
) -> WindowedDecoder:
    """A WindowedDecoder for an sEMG run (e.g. ``runs.load_trained_model(run_dir)``'s four values).

    Args:
        model, normalizer, feature_config, alphabet: the trained run; ``feature_config`` is an
            ``emg_signal.EMGFeatureConfig`` (raw input at ``sample_rate``, 1000 Hz).
        input_rate: the board's sampling rate in Hz (resampled to ``feature_config.sample_rate``).
        config: window sizes (default StreamConfig()); the stream is notched and high-passed
            with ``feature_config``'s settings.
    """
    from ctclab.emg import signal as emg_signal

    # the stream is filtered causally once; the per-window features only resample and frame
    window_features = dataclasses.replace(feature_config, mains_hz=None, highpass_hz=None)
    return WindowedDecoder(
        model,
        functools.partial(emg_signal.emg_features, config=window_features),
        normalizer,
        input_rate=input_rate,
        model_rate=int(feature_config.sample_rate),
        channels=feature_config.num_channels,
        frame_hop_samples=feature_config.frame_hop_ms * feature_config.sample_rate / 1000,
        alphabet=alphabet,
        config=config or StreamConfig(),
        signal_config=feature_config,
    )


def stateful_emg_decoder(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: EMGFeatureConfig,
    alphabet: Alphabet,
    input_rate: int,
    config: StreamConfig | None = None,
) -> StatefulDecoder:
    """A StatefulDecoder for an sEMG run of a streaming builder on causal features.

    Args:
        model, normalizer, feature_config, alphabet: the trained run (``feature_config.causal``).
        input_rate: the board's sampling rate in Hz (resampled to ``feature_config.sample_rate``).
        config: the chunk size (``hop_ms``, default 100 ms), polling and stall timeout.
    """
    from ctclab.live.feature_stream import EMGFeatureStream
    from ctclab.live.stateful import StatefulDecoder

    return StatefulDecoder(
        model,
        EMGFeatureStream(feature_config),
        normalizer,
        input_rate=input_rate,
        model_rate=int(feature_config.sample_rate),
        channels=feature_config.num_channels,
        alphabet=alphabet,
        config=config or StreamConfig(hop_ms=100.0),
    )


def score_playback(decoder: StreamDecoder, script: PlaybackScript) -> tuple[pd.DataFrame, float]:
    """Per-sentence transcripts of a played-back session against the sentences it holds.

    Returns:
        (pandas.DataFrame with columns reference, hypothesis, CER, one row per sentence,
        corpus CER over all sentences).
    """
    import pandas as pd

    hypotheses = decoder.split_transcript(script.starts)
    rows = [
        {"reference": reference, "hypothesis": hypothesis, "CER": cer(reference, hypothesis)}
        for reference, hypothesis in zip(script.texts, hypotheses)
    ]
    return pd.DataFrame(rows), cer(script.texts, hypotheses)


# ------------------------------------------------------------- the notebook's sentences and model


def playback_recordings(
    corpus_root: str | Path, count: int, split: str = "test", silent: bool = False
) -> list[tuple[np.ndarray, str]]:
    """The first ``count`` utterances of a Gaddy-layout corpus split: (emg (T, 8) at 1000 Hz, text).

    Args:
        corpus_root: e.g. ``emg.emg_corpus_dir(profile)``.
        split: "train", "dev" or "test" (test: unseen voices, i.e. unseen timing).
        silent: the silently mouthed recordings instead of the voiced ones.
    """
    from ctclab.emg import loaders as emg_loaders

    chosen = [u for u in emg_loaders.load_gaddy(corpus_root) if u.split == split and u.silent == silent][:count]
    if not chosen:
        raise ValueError(f"{corpus_root}: no {'silent' if silent else 'voiced'} utterances in split {split!r}")
    return [(utterance.emg, utterance.text) for utterance in chosen]


def find_emg_run(results_dir: str | Path) -> Path | None:
    """The best trained sEMG run under ``results_dir`` (e.g. ``profile.results_for("emg")``).

    Only runs on Gaddy-style features qualify (not the typing runs); among them the one with the
    lowest CER in its scores.json, else the most recently trained. None when there is none.
    """
    run = best_scored_run(results_dir, where=lambda run: getattr(run.features(), "kind", None) == "gaddy")
    return None if run is None else run.folder


def train_fallback_emg_run(profile: Profile) -> Path:
    """A small sEMG model trained here when notebook 04 left no run (train_model, H3's features).

    Sized by ``profile`` (smoke: 1 epoch on 40 utterances); saved as
    ``<profile.results_for("emg")>/streaming_fallback``.
    """
    from ctclab.emg import corpus as emg_corpus
    from ctclab.emg import training as emg
    from ctclab.emg.signal import EMGFeatureConfig
    from ctclab.models.course import cnn_rnn_model
    from ctclab.training.trainer import train_model

    root = emg.emg_corpus_dir(profile)
    emg_corpus.build_emg_corpus(root, profile.corpus_dir, emg_corpus.corpus_config_for(profile.name))  # cached
    descriptors = emg.gaddy_descriptor_set(root, Path(profile.results_dir) / "streaming" / "descriptors")
    config = EMGFeatureConfig()
    units = profile.pick(smoke=32, quick=128, full=200)
    model = cnn_rnn_model(
        config.feature_dim,
        filters=units,
        kernel_size=5,
        conv_stride=2,
        conv_border_mode="same",
        units=units,
        rnn_type="gru",
    )
    train_model(
        model,
        "streaming_fallback.pickle",
        "streaming_fallback.keras",
        descriptors["train"],
        descriptors["dev"],
        epochs=profile.pick(smoke=1, quick=6, full=20),
        features=config,
        feature_loader=emg.EMGFeatureLoader(config),
        results_dir=profile.results_for("emg"),
        limit=profile.train_limit,
        valid_limit=profile.valid_limit,
        minibatch_size=profile.minibatch_size,
        verbose=2,
    )
    return Path(profile.results_for("emg")) / "streaming_fallback"


def offline_transcripts(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: EMGFeatureConfig,
    alphabet: Alphabet,
    recordings: Sequence[tuple[np.ndarray, str]],
) -> list[str]:
    """Greedy transcripts of whole recordings with the training features: the streaming upper bound."""
    from ctclab.emg import signal as emg_signal

    return whole_transcripts(
        model, normalizer, functools.partial(emg_signal.emg_features, config=feature_config), alphabet, recordings
    )


def whole_transcripts(
    model: keras.Model,
    normalizer: Normalizer,
    featurize: Callable[[np.ndarray], np.ndarray],
    alphabet: Alphabet,
    recordings: Sequence[tuple[np.ndarray, str]],
) -> list[str]:
    """Greedy transcript of each whole (signal, text) recording: ``featurize(signal)`` -> model."""
    hypotheses = []
    for signal, _ in recordings:
        features = normalizer(featurize(signal))[None].astype(np.float32)  # (1, T, F)
        hypotheses.append(greedy_decode(np.asarray(model(features, training=False))[0], alphabet=alphabet))
    return hypotheses


def save_summary(results_dir: str | Path, summary: dict) -> Path:
    """Write the live-decoding figures beside the profile's runs (the report's table)."""
    return save_streaming_summary(
        results_dir, {key: (round(value, 4) if isinstance(value, float) else value) for key, value in summary.items()}
    )
