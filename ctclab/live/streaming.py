"""Streaming CTC decoding, chunk by chunk: resample, filter, featurize windows, decode, merge.

Pure computation on (samples, channels) chunks; :mod:`ctclab.live.decoding` feeds it from a BrainFlow
board (:mod:`openbci`). Per chunk:

1. **Resample** board rate -> model rate with a polyphase FIR that keeps its history between
   chunks (:class:`StreamResampler`), so chunked output equals resampling the whole stream.
2. **Filter** with mains notches and a high-pass as one ``scipy.signal.sosfilt`` cascade whose
   state ``zi`` is carried from chunk to chunk (:class:`CausalFilter`). BrainFlow's DataFilter
   filters a whole array in place and starts every call from rest, so each chunk border would
   ring like a new step; sosfilt with carried state is exactly the filter run once over the
   stream, and it is causal, as a live filter must be (no filtfilt).
3. **Window**: every ``hop_ms`` of new signal, one fixed-size window = left context + centre
   (the hop) + right context is featurized and run through the model (one compiled call with a
   fixed shape, no ``model.predict``).
4. **Merge**: only the output frames of each window's centre are kept; the centres tile the
   stream without overlap, and the kept frame posteriors are greedy-decoded as one sequence
   (:class:`IncrementalGreedyDecoder` carries the previous frame's label across windows). A
   character whose frames straddle a border is therefore emitted once, and a doubled letter
   keeps the blank between its two runs, exactly as decoding the concatenated posteriors at
   once would. Joining per-window *texts* instead would duplicate or drop border characters.
   The right context is look-ahead: it adds its length to the latency but lets a bidirectional
   model see the future of the centre's last frames.

Latency per window: processing (features + model + decoding) and acquisition-to-text (the
wall clock when the text is out minus BrainFlow's timestamp of the centre's last sample).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.emg import signal as emg_signal

if TYPE_CHECKING:
    import keras

    from ctclab.data.features import Normalizer


class SampleRing:
    """The newest ``capacity`` samples of an endless (samples, channels) stream.

    Attributes:
        total: samples ever appended; sample ``i`` of the stream is readable while
            ``total - capacity <= i < total``.
    """

    def __init__(self, capacity: int, channels: int):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.buffer = np.zeros((capacity, channels), np.float64)  # (capacity, C)
        self.total = 0

    def append(self, chunk: np.ndarray) -> None:
        """Add (n, channels) samples, overwriting the oldest."""
        capacity = self.buffer.shape[0]
        positions = np.arange(self.total, self.total + chunk.shape[0])[-capacity:] % capacity
        self.buffer[positions] = chunk[-capacity:]
        self.total += chunk.shape[0]

    def read(self, start: int, length: int) -> np.ndarray:
        """Stream samples ``start .. start + length - 1`` as a (length, channels) copy."""
        capacity = self.buffer.shape[0]
        if start < self.total - capacity or start + length > self.total or length > capacity:
            raise ValueError(
                f"samples {start}..{start + length} are not in the ring (has {self.total - capacity}..{self.total})"
            )
        indices = np.arange(start, start + length) % capacity
        return self.buffer[indices]


class StreamResampler:
    """Chunk-by-chunk polyphase resampling that equals ``scipy.signal.upfirdn`` on the whole stream.

    The FIR is resample_poly's (Kaiser window, beta 5, 10 taps per phase each side); its group
    delay is dropped from the start, so output sample m sits at time m / output_rate like the
    input sample at the same time.
    """

    def __init__(self, input_rate: int, output_rate: int):
        factor = math.gcd(int(input_rate), int(output_rate))
        self.up, self.down = int(output_rate) // factor, int(input_rate) // factor
        self.inputs = self.outputs = 0  # input samples consumed, output samples made (incl. delay)
        if self.up == self.down:
            return
        half_length = 10 * max(self.up, self.down)
        self.taps = self.up * signal.firwin(2 * half_length + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
        self.delay = round(half_length / self.down)  # output samples of group delay (whole for 125-1000 Hz)
        self.history = np.zeros((0, 0))
        self.history_start = 0  # stream index of history[0], a multiple of self.down

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(n, C) samples at the input rate -> (m, C) at the output rate (m may be 0)."""
        if self.up == self.down or chunk.shape[0] == 0:
            return chunk
        if self.history.shape[1] != chunk.shape[1]:
            self.history = np.zeros((0, chunk.shape[1]))
        self.history = np.concatenate([self.history, chunk], axis=0)
        self.inputs += chunk.shape[0]
        available = (self.up * self.inputs - 1) // self.down + 1  # outputs no future input changes
        offset = self.history_start * self.up // self.down  # global index of this upfirdn's output 0
        output = signal.upfirdn(self.taps, self.history, self.up, self.down, axis=0)[
            self.outputs - offset : available - offset
        ]
        first_new = self.outputs
        self.outputs = available
        # keep the inputs the next output needs: from (outputs*down - taps + 1) / up, aligned to down
        needed = max(0, (self.outputs * self.down - len(self.taps) + 1) // self.up)
        keep_from = needed // self.down * self.down
        self.history = self.history[keep_from - self.history_start :]
        self.history_start = keep_from
        return output[max(0, self.delay - first_new) :]


class CausalFilter:
    """Mains notches (every harmonic below Nyquist) and a Butterworth high-pass, with carried state.

    Args:
        sample_rate: rate of the signal in Hz.
        channels: number of channels filtered independently.
        mains_hz: mains frequency (60 in the Americas, 50 elsewhere); None for no notch.
        harmonics: how many multiples of mains_hz to notch (7 below 500 Hz, like Gaddy & Klein).
        notch_quality: notch Q (30: a band about 2 Hz wide at 60 Hz).
        highpass_hz: high-pass cutoff removing electrode drift and DC offset; None for none.
        highpass_order: Butterworth order (3).
    """

    def __init__(
        self,
        sample_rate: float,
        channels: int,
        mains_hz: float | None = 60.0,
        harmonics: int = 7,
        notch_quality: float = 30.0,
        highpass_hz: float | None = 2.0,
        highpass_order: int = 3,
    ):
        # the same sections the offline sEMG features run forward-backward; here forward only
        sections = [emg_signal.notch_sections(sample_rate, mains_hz, harmonics, notch_quality)] if mains_hz else []
        if highpass_hz:
            sections.append(emg_signal.highpass_sections(sample_rate, highpass_hz, highpass_order))
        self.sos = np.concatenate(sections) if sections else None  # (sections, 6)
        self.channels = channels
        self.state: np.ndarray | None = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """(n, channels) -> (n, channels) filtered; the first sample sets a settled initial state."""
        if self.sos is None or chunk.shape[0] == 0:
            return chunk
        # the first call starts as if its first value had always been there: no DC step
        output, self.state = emg_signal.forward_filter(chunk, self.sos, self.state)
        return output


class IncrementalGreedyDecoder:
    """Best-path CTC decoding fed a few frames at a time; equals greedy decoding of the concatenation.

    Attributes:
        text: everything decoded so far.
        character_frames: output frame index at which each character of ``text`` was emitted.
    """

    def __init__(self, alphabet: Alphabet = ENGLISH):
        self.alphabet, self.previous = alphabet, None
        self.text, self.frames = "", 0
        self.character_frames: list[int] = []

    def feed(self, probabilities: np.ndarray) -> str:
        """Add (T, C) frame scores; returns the text they add."""
        added = []
        for offset, index in enumerate(np.argmax(probabilities, axis=-1)):
            if index != self.previous and index != self.alphabet.blank_index:
                added.append(int(index))
                self.character_frames.append(self.frames + offset)
            self.previous = index
        self.frames += probabilities.shape[0]
        new_text = self.alphabet.int_sequence_to_text(added)
        self.text += new_text
        return new_text


def compiled_model_call(model: keras.Model, num_frames: int, feature_dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """(num_frames, feature_dim) float32 -> (T', C) probabilities of a Keras model, compiled once.

    TensorFlow: a ``tf.function`` with a fixed input signature and XLA (``jit_compile``), which
    fuses a recurrent layer's time loop (a 64-unit bidirectional GRU over 86 frames: 23 ms as a
    plain graph, 2 ms with XLA, on 2 shared cores); JAX: ``jax.jit``. ``model.predict`` would
    build a data pipeline on every call (250-400 ms per window here). Compiling takes a few
    seconds, once, before the first window.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        graph = tf.function(
            lambda x: model(x, training=False),
            jit_compile=True,
            input_signature=[tf.TensorSpec((1, num_frames, feature_dim), tf.float32)],
        )
    elif backend == "jax":
        import jax

        graph = jax.jit(lambda x: model(x, training=False))
    else:

        def graph(x: np.ndarray):  # other backends: eager
            return model(x, training=False)

    def call(features: np.ndarray) -> np.ndarray:
        return np.asarray(graph(np.asarray(features, np.float32)[None]))[0]

    call(np.zeros((num_frames, feature_dim), np.float32))  # trace / compile now, not in the first window
    return call


@dataclass(frozen=True)
class StreamConfig:
    """Window sizes and polling of the live decoder (its filters follow the model's feature config).

    Attributes:
        hop_ms: new signal per window (the kept centre), in ms (300: the emg2qwerty window).
        left_context_ms: signal before the centre the model also sees, in ms.
        right_context_ms: look-ahead after the centre, in ms; adds directly to the latency.
        poll_s: how often the board's buffer is drained, in seconds.
        stall_timeout_s: no new sample for this long raises BoardStalledError.
    """

    hop_ms: float = 300.0
    left_context_ms: float = 600.0
    right_context_ms: float = 120.0
    poll_s: float = 0.02
    stall_timeout_s: float = 3.0


@dataclass
class WindowResult:
    """One decoded window.

    Attributes:
        index: window number.
        text: characters this window added to the transcript.
        centre: (first, end) model-rate samples of the kept centre.
        processing_s: features + model + decoding time, in seconds.
        latency_s: text-out wall clock minus the acquisition timestamp of the centre's last
            sample (None without timestamps).
    """

    index: int
    text: str
    centre: tuple[int, int]
    processing_s: float
    latency_s: float | None


class StreamDecoder:
    """What every live decoder keeps: counters, acquisition timestamps, the greedy transcript.

    A subclass turns board-rate chunks into frame posteriors (:meth:`push`, :meth:`flush`) and
    hands each batch of final frames to :meth:`_emit` with their model-rate sample positions.

    Attributes:
        samples_in: board-rate samples pushed; samples_filtered: of those, through the
            resampler and the filter; samples_decoded: model-rate samples covered by decoded
            frames (``samples_resampled`` once flushed); transcript; results (one WindowResult
            per window or chunk); posteriors / positions: every emitted frame and its position.
        lookahead_ms: signal after a frame's own span the decoder waits for before the frame is
            out (part of every latency).
    """

    lookahead_ms: float = 0.0

    def __init__(self, input_rate: int, model_rate: int, channels: int, config: StreamConfig, alphabet: Alphabet):
        self.input_rate, self.model_rate, self.channels, self.config = (
            int(input_rate),
            int(model_rate),
            channels,
            config,
        )
        self.timestamps = SampleRing(4 * (self.input_rate + config_samples(config, self.input_rate)) + 4096, 1)
        self.greedy = IncrementalGreedyDecoder(alphabet)
        self.results: list[WindowResult] = []
        self.posteriors: list[np.ndarray] = []  # (frames, C) of every window or chunk
        self.positions: list[np.ndarray] = []  # model-rate sample position of every emitted frame
        self.samples_in = self.samples_filtered = self.samples_decoded = 0

    @property
    def transcript(self) -> str:
        return self.greedy.text

    @property
    def samples_resampled(self) -> int:
        """Model-rate samples the resampler has made so far."""
        raise NotImplementedError

    def push(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> list[WindowResult]:
        raise NotImplementedError

    def flush(self) -> list[WindowResult]:
        raise NotImplementedError

    def _check_chunk(self, chunk: np.ndarray) -> None:
        if chunk.ndim != 2 or chunk.shape[1] != self.channels:
            raise ValueError(f"expected a (samples, {self.channels}) chunk, got shape {chunk.shape}")

    def _stamp(self, part: np.ndarray, timestamps: np.ndarray | None) -> None:
        """Record the acquisition times of ``part`` (NaN without timestamps) and count it in."""
        self.samples_in += part.shape[0]
        self.timestamps.append(
            np.full((part.shape[0], 1), np.nan) if timestamps is None else np.asarray(timestamps, np.float64)[:, None]
        )

    def _emit(
        self,
        probabilities: np.ndarray,
        positions: np.ndarray,
        centre: tuple[int, int],
        began: float,
        last_sample: int | None,
    ) -> WindowResult:
        """Greedy-decode final frames; latency is measured to ``last_sample`` (model rate; None: none)."""
        text = self.greedy.feed(probabilities)
        self.posteriors.append(probabilities)
        self.positions.append(positions)
        processing = time.perf_counter() - began
        stamp = np.nan if last_sample is None else self.timestamps.read(self._input_index(last_sample), 1)[0, 0]
        latency = None if np.isnan(stamp) else time.time() - stamp
        result = WindowResult(len(self.results), text, centre, processing, latency)
        self.results.append(result)
        return result

    def _input_index(self, model_sample: int) -> int:
        """The board-rate sample at the time of ``model_sample`` (clamped to what is readable)."""
        index = model_sample * self.input_rate // self.model_rate
        return int(np.clip(index, self.timestamps.total - self.timestamps.buffer.shape[0], self.timestamps.total - 1))

    def split_transcript(self, starts: list[int]) -> list[str]:
        """The transcript cut at utterance starts given in board-rate samples (PlaybackScript.starts).

        A character belongs to the utterance in which the frame that emitted it lies.
        """
        positions = np.concatenate(self.positions) if self.positions else np.zeros(0)
        boundaries = np.asarray(starts[1:], np.float64) * self.model_rate / self.input_rate  # model-rate samples
        pieces: list[list[str]] = [[] for _ in starts]
        for character, frame in zip(self.transcript, self.greedy.character_frames):
            pieces[int(np.searchsorted(boundaries, positions[frame], side="right"))].append(character)
        return [" ".join("".join(piece).split()) for piece in pieces]


def output_unit(model: keras.Model, frame_hop_samples: float) -> float:
    """Model-rate samples per output frame: the feature hop times the model's stride."""
    stride = 10_000 / int(model.output_length(20_000) - model.output_length(10_000))  # input frames per output
    return frame_hop_samples * stride


def config_samples(config: StreamConfig, rate: int) -> int:
    """Board-rate samples of one window of ``config`` (left context + hop + right context)."""
    return round((config.left_context_ms + config.hop_ms + config.right_context_ms) * rate / 1000)


class WindowedDecoder(StreamDecoder):
    """Board-rate chunks in, transcript out: resample, filter, fixed windows, kept centres, greedy.

    Output frame j of a window starting at model-rate sample s stands for the signal from
    s + j * unit on (unit = feature hop x model stride, in samples, any real number). A window
    keeps the frames whose position lies in its centre, so consecutive windows hand over at the
    centre borders without a repeated or skipped frame position. When unit is a whole number
    and the hop and left context are multiples of it, the kept frames are exactly those of a
    whole-stream pass wherever the model's receptive field fits in the context (tested).

    Args:
        model: a trained acoustic model (features (B, T, F) -> (B, T', C), ``output_length``).
        feature_function: (samples, channels) at ``model_rate`` -> (frames, F), one frame every
            ``frame_hop_samples`` (e.g. ``functools.partial(emg_signal.emg_features, config=...)``).
        normalizer: the training feature standardization (:class:`ctclab.data.features.Normalizer`).
        input_rate: the board's sampling rate in Hz.
        model_rate: the rate the features expect in Hz (1000 for the sEMG models).
        channels: EMG channels used (the first ``channels`` EXG rows).
        frame_hop_samples: feature hop in model-rate samples (11.61 for Gaddy's features).
        alphabet: the model's alphabet.
        config: window sizes.
        signal_config: the ``emg_signal.EMGFeatureConfig`` whose mains notch and high-pass the
            stream is filtered with (causally, once); the trained run's, so live and training
            signals are conditioned alike. Default: EMGFeatureConfig()'s (Gaddy & Klein's values).

    Attributes:
        samples_in: board-rate samples pushed; samples_filtered: of those, through the resampler
        and the filter; samples_decoded: model-rate samples covered by decoded centres (equals
        ``signal.total``, the resampler's output, once flushed); transcript; results.
    """

    def __init__(
        self,
        model: keras.Model,
        feature_function: Callable[[np.ndarray], np.ndarray],
        normalizer: Normalizer,
        input_rate: int,
        model_rate: int,
        channels: int,
        frame_hop_samples: float,
        alphabet: Alphabet = ENGLISH,
        config: StreamConfig = StreamConfig(),
        signal_config: emg_signal.EMGFeatureConfig | None = None,
    ):
        def samples(ms: float) -> int:
            return round(ms * model_rate / 1000)

        super().__init__(input_rate, model_rate, channels, config, alphabet)
        self.model, self.feature_function, self.normalizer = model, feature_function, normalizer
        self.signal_config = signal_config or emg_signal.EMGFeatureConfig()
        self.hop, self.left = samples(config.hop_ms), samples(config.left_context_ms)
        self.window = self.left + self.hop + samples(config.right_context_ms)  # model-rate samples
        self.lookahead_ms = config.right_context_ms
        if self.hop < 1:
            raise ValueError(f"hop_ms {config.hop_ms} is shorter than one sample at {model_rate} Hz")
        self.window_frames, self.feature_dim = feature_function(np.zeros((self.window, channels))).shape
        self.unit = output_unit(model, frame_hop_samples)
        if int(model.output_length(self.window_frames)) < self._frame(self.left + self.hop):
            raise ValueError(
                f"right_context_ms {config.right_context_ms} is too short: the window's last "
                "output frames fall short of the centre (the model trims its edges)"
            )
        self.model_call = compiled_model_call(model, self.window_frames, self.feature_dim)
        self.resampler = StreamResampler(input_rate, model_rate)
        self.filter = self._new_filter()
        self.signal = SampleRing(self.window + self.hop, channels)  # filtered, model rate

    def _new_filter(self) -> CausalFilter:
        settings = self.signal_config
        return CausalFilter(
            self.model_rate,
            self.channels,
            settings.mains_hz,
            settings.notch_harmonics,
            settings.notch_quality,
            settings.highpass_hz,
            settings.highpass_order,
        )

    def _frame(self, offset: float) -> int:
        """First output frame of a window whose position is at or after ``offset`` samples into it."""
        return math.ceil(offset / self.unit - 1e-9)

    @property
    def samples_resampled(self) -> int:
        return self.signal.total

    def push(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> list[WindowResult]:
        """Add (n, channels) board-rate samples (and their (n,) unix timestamps); decode full windows."""
        self._check_chunk(chunk)
        results = []
        piece = max(1, self.hop * self.input_rate // self.model_rate)  # never outrun the ring
        for start in range(0, chunk.shape[0], piece):
            part = chunk[start : start + piece]
            self._stamp(part, None if timestamps is None else timestamps[start : start + piece])
            self.signal.append(self.filter.process(self.resampler.process(part)))
            self.samples_filtered += part.shape[0]
            while self.signal.total >= self._next_end():
                end = self._next_end()
                results.append(self._decode(end - self.window, end - self.window + self.left + self.hop))
        return results

    def _next_end(self) -> int:
        """End sample of the next steady-state window: its centre starts where decoding stopped."""
        return max(self.samples_decoded - self.left, 0) + self.window

    def flush(self) -> list[WindowResult]:
        """Decode what is left after the last full window (call when the stream ends)."""
        total = self.signal.total
        if total <= self.samples_decoded:
            return []
        start = max(0, math.floor((total - self.window) / self.unit) * self.unit)  # on the frame grid
        return [self._decode(int(start), total, final=True)]

    def _decode(self, start: int, centre_end: int, final: bool = False) -> WindowResult:
        began = time.perf_counter()
        length = min(self.window, self.signal.total - start)
        features = self.normalizer(self.feature_function(self.signal.read(start, length)))  # (frames, F)
        padded = np.zeros((self.window_frames, self.feature_dim), np.float32)  # zeros = training padding
        padded[: features.shape[0]] = features
        probabilities = self.model_call(padded)  # (T', C)
        first = self._frame(self.samples_decoded - start)
        last = int(self.model.output_length(features.shape[0])) if final else self._frame(centre_end - start)
        positions = start + self.unit * np.arange(first, max(first, last))
        centre, self.samples_decoded = (self.samples_decoded, centre_end), centre_end
        return self._emit(probabilities[first:last], positions, centre, began, centre_end - 1)  # the centre's frames

    def offline_posteriors(self, emg: np.ndarray) -> np.ndarray:
        """Reference: the same resampling, filter, features and model over a whole recording at once.

        Args:
            emg: (T, channels) at the board rate.

        Returns:
            (T', C) probabilities (the model called on the full feature sequence).
        """
        resampled = StreamResampler(self.input_rate, self.model_rate).process(emg)
        filtered = self._new_filter().process(resampled)
        features = self.normalizer(self.feature_function(filtered))[None].astype(np.float32)  # (1, frames, F)
        return np.asarray(self.model(features, training=False))[0]
