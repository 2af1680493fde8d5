"""Features of a live stream, computed once per sample: equal to featurizing the whole recording.

A stateful streaming model (:mod:`ctclab.live.stateful`) runs each feature frame once, so the
frames have to arrive once too, and be the frames the model was trained on. Three pieces:

- :class:`FrameStream` frames any frame-wise feature function: frame ``k`` covers samples
  ``k * hop .. k * hop + length - 1`` and may read ``left`` samples before and ``right`` after
  them (pre-emphasis, centred smoothing). Each push returns the frames whose samples (and
  context) have all arrived; :meth:`FrameStream.finish` returns the ones the end of the signal
  completes, computed as the whole-signal function computes its last frames.
- :class:`InterpolationStream` is :func:`ctclab.emg.signal.resample`'s linear interpolation onto
  a slower grid (1000 -> 516.79 Hz), output sample by output sample as its neighbours arrive.
- :class:`EMGFeatureStream` chains the forward filters (``emg_signal.forward_filter`` with
  carried state), the interpolation and a FrameStream of ``emg_signal.frame_features``: for an
  ``EMGFeatureConfig(causal=True)`` its frames equal ``emg_features`` of the whole recording.
  :class:`AudioFeatureStream` does the same for the speech features (``data.features``).

Both expose ``lookahead_ms``: how far past a frame's own span the stream has to read before
the frame is out (the frame's length beyond one hop, plus its right context).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ctclab.data.features import FeatureConfig, featurize
from ctclab.emg import signal as emg_signal


class FrameStream:
    """Frame-wise features of a growing signal, each frame computed once it is complete.

    Args:
        function: (T, C) or (T,) signal -> (frames, D) features, frame k from samples
            k * hop .. k * hop + length - 1, reading ``left`` / ``right`` samples beyond them
            (the function sees zeros or an edge rule outside the signal, as on a whole recording).
        length: samples per frame.
        hop: samples between frame starts.
        left, right: context samples a frame reads before its first / after its last sample.
        num_frames: frames ``function`` returns for n samples (default 1 + (n - length) // hop;
            a function that pads its tail, like python_speech_features, says so here).
    """

    def __init__(
        self,
        function: Callable[[np.ndarray], np.ndarray],
        length: int,
        hop: int,
        left: int = 0,
        right: int = 0,
        num_frames: Callable[[int], int] | None = None,
    ):
        if length < 1 or hop < 1 or left < 0 or right < 0:
            raise ValueError(f"need length, hop >= 1 and context >= 0, got {length}, {hop}, {left}, {right}")
        self.function, self.length, self.hop, self.left, self.right = function, length, hop, left, right
        self.num_frames = num_frames or (lambda n: max(0, 1 + (n - length) // hop))
        self.back = math.ceil(left / hop)  # frames of left context kept before the next frame
        self.buffer: np.ndarray | None = None
        self.start = 0  # stream index of buffer[0], a frame start
        self.total = 0  # samples pushed
        self.next = 0  # next frame to return

    def _frames(self, ready: int) -> np.ndarray | None:
        """Frames next .. ready - 1, computed on the buffer (which starts on a frame boundary)."""
        if self.buffer is None or ready <= self.next:
            return None
        first = (self.next * self.hop - self.start) // self.hop  # the next frame, in buffer frames
        frames = np.asarray(self.function(self.buffer))[first : first + ready - self.next]
        self.next += frames.shape[0]
        keep = max(0, self.next - self.back) * self.hop  # the next frame's start minus its left context
        self.buffer, self.start = self.buffer[keep - self.start :], max(self.start, keep)
        return frames

    def push(self, samples: np.ndarray) -> np.ndarray | None:
        """Add samples (n, ...) of the stream; returns the frames now complete, or None."""
        if samples.shape[0] == 0:
            return None
        self.buffer = samples if self.buffer is None else np.concatenate([self.buffer, samples], axis=0)
        self.total += samples.shape[0]
        ready = max(0, (self.total - self.length - self.right) // self.hop + 1)  # frames with all their samples
        return self._frames(ready)

    def finish(self) -> np.ndarray | None:
        """The end of the signal: the frames it completes (those whose right context ran past the end)."""
        return self._frames(self.num_frames(self.total))

    @property
    def lookahead_samples(self) -> int:
        """Samples after a frame's first hop the stream waits for before the frame is out."""
        return self.length - self.hop + self.right


class InterpolationStream:
    """Chunk-wise linear interpolation from ``source_rate`` to ``target_rate`` (a slower grid).

    Output sample n is the input interpolated at n * source_rate / target_rate, the formula of
    ``emg_signal.resample`` without its zero-phase low-pass (run a causal one first), and there
    are ``resampled_length`` of them for the samples so far, so the outputs of all chunks equal
    one call on the whole signal.
    """

    def __init__(self, source_rate: float, target_rate: float):
        if not 0 < target_rate <= source_rate:
            raise ValueError(f"interpolates onto a grid no faster than the input, got {source_rate} -> {target_rate}")
        self.source_rate, self.target_rate = source_rate, target_rate
        self.ratio = source_rate / target_rate
        self.same = target_rate == source_rate
        self.previous: np.ndarray | None = None  # the last few input samples
        self.received = 0
        self.made = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """(n, C) input samples -> (m, C) output samples whose right neighbour has arrived."""
        if self.same or x.shape[0] == 0:
            return x
        joined = x if self.previous is None else np.concatenate([self.previous, x], axis=0)
        base = self.received - (joined.shape[0] - x.shape[0])  # stream index of joined[0]
        self.received += x.shape[0]
        self.previous = joined[-(int(self.ratio) + 2) :]  # the next output's left neighbour is among these
        count = emg_signal.resampled_length(self.received, self.source_rate, self.target_rate)  # as for the whole
        positions = np.arange(self.made, count) * self.ratio
        positions = positions[positions.astype(np.int64) + 1 < self.received]  # both neighbours here
        self.made += positions.shape[0]
        left = positions.astype(np.int64)
        fraction = (positions - left)[:, None]
        return joined[left - base] * (1 - fraction) + joined[left - base + 1] * fraction


class EMGFeatureStream:
    """Raw EMG chunks (n, C) at ``config.sample_rate`` in, the causal features' frames out.

    Args:
        config: an ``EMGFeatureConfig`` with ``causal=True`` (a zero-phase filter needs the whole
            recording, so its features cannot be computed live sample by sample).
    """

    def __init__(self, config: emg_signal.EMGFeatureConfig):
        if not config.causal:
            raise ValueError(
                "these features run their filters forward and backward over the whole recording, which a "
                "live stream cannot do: train the model on EMGFeatureConfig(causal=True) features"
            )
        self.config = config
        self.sections = emg_signal.preprocessing_sections(config)
        self.state: np.ndarray | None = None
        self.interpolation = InterpolationStream(config.sample_rate, config.frame_rate)
        context = config.frame_context
        self.frames = FrameStream(
            lambda x: emg_signal.frame_features(x, config),
            config.frame_length,
            config.frame_hop,
            left=context,
            right=context,
        )

    def push(self, emg: np.ndarray) -> np.ndarray | None:
        """(n, channels) microvolts -> the (m, feature_dim) frames now complete, or None."""
        x = np.asarray(emg, np.float64)
        if x.ndim != 2 or x.shape[1] != self.config.num_channels:
            raise ValueError(f"expected EMG of shape (samples, {self.config.num_channels}), got {x.shape}")
        if x.shape[0] == 0:
            return None
        if not np.all(np.isfinite(x)):
            raise ValueError(f"the chunk holds {np.count_nonzero(~np.isfinite(x))} non-finite EMG samples")
        if self.sections is not None:
            x, self.state = emg_signal.forward_filter(x, self.sections, self.state)
        return self.frames.push(self.interpolation.process(x))

    def finish(self) -> np.ndarray | None:
        return self.frames.finish()

    def whole(self, emg: np.ndarray) -> np.ndarray:
        """The offline reference: the same features of a whole (T, C) recording at once."""
        return emg_signal.emg_features(emg, self.config)

    @property
    def frame_hop_samples(self) -> float:
        """Input samples (at ``config.sample_rate``) between frames."""
        return self.config.frame_hop_ms * self.config.sample_rate / 1000

    @property
    def lookahead_ms(self) -> float:
        return 1000 * self.frames.lookahead_samples / self.config.frame_rate


class AudioFeatureStream:
    """Mono audio chunks (n,) at ``config.sample_rate`` in, the speech features' frames out.

    Spectrogram and log-mel frames are windows of their own samples; MFCC frames also read one
    sample before them (python_speech_features' pre-emphasis) and its last frame is zero-padded.
    """

    def __init__(self, config: FeatureConfig):
        self.config = config
        if config.kind == "mfcc":
            length, left = int(round(0.025 * config.sample_rate)), 1  # its 25 ms window and pre-emphasis
        else:
            length, left = config.window_samples, 0
        self.frames = FrameStream(
            lambda x: featurize(x, config), length, config.hop_samples, left=left, num_frames=config.num_frames
        )

    def push(self, audio: np.ndarray) -> np.ndarray | None:
        """(n,) or (n, 1) samples -> the (m, feature_dim) frames now complete, or None."""
        x = np.asarray(audio, np.float64)
        x = x[:, 0] if x.ndim == 2 and x.shape[1] == 1 else x
        if x.ndim != 1:
            raise ValueError(f"expected mono audio of shape (samples,) or (samples, 1), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"the chunk holds {np.count_nonzero(~np.isfinite(x))} non-finite audio samples")
        return self.frames.push(x)

    def finish(self) -> np.ndarray | None:
        return self.frames.finish()

    def whole(self, audio: np.ndarray) -> np.ndarray:
        """The offline reference: the same features of a whole clip ((T,) or (T, 1)) at once."""
        return featurize(np.asarray(audio, np.float64).reshape(-1), self.config)

    @property
    def frame_hop_samples(self) -> float:
        return float(self.config.hop_samples)

    @property
    def lookahead_ms(self) -> float:
        return 1000 * self.frames.lookahead_samples / self.config.sample_rate
