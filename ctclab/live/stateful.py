"""Stateful streaming inference: a streaming model run once over a stream, chunk by chunk.

:class:`StatefulStream` runs the layers a streaming builder lists in ``model.stream_layers``
(:mod:`ctclab.models.streaming_models`) on each new chunk of feature frames and keeps, between
chunks, exactly what the next chunk needs, so every input frame is processed once:

- a causal ``Conv1D``: the last ``(kernel - 1) * dilation`` frames, and the stride's phase;
- a unidirectional recurrent layer: its state (h, or h and c);
- ``LookAhead``: the frames still waiting for their future;
- ``ChunkedTransformerBlock``: the incomplete chunk, and the ``left_chunks`` chunks before it;
- every other layer (Dense, normalization in inference mode, activations, dropout) maps frames
  one by one and keeps nothing.

:meth:`StatefulStream.finish` ends the stream (the look-ahead sees zeros past the end, the last
partial chunk is attended), so the posteriors of all chunks plus the finish equal the model's
posteriors on the whole utterance, whatever the chunking (tests/test_streaming_models.py).

:class:`StatefulDecoder` is the live decoder around it: board-rate chunks are resampled to the
model's rate, featurized once per sample (:mod:`ctclab.live.feature_stream`), normalized, run
through the StatefulStream every ``hop_ms`` of signal and greedy-decoded, with the counters,
timestamps and transcript splitting every live decoder has (:class:`streaming.StreamDecoder`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import layers, ops

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.live.streaming import StreamConfig, StreamDecoder, StreamResampler, WindowResult, output_unit
from ctclab.models.streaming_models import ChunkedTransformerBlock, LookAhead

if TYPE_CHECKING:
    from ctclab.data.features import Normalizer
    from ctclab.live.feature_stream import AudioFeatureStream, EMGFeatureStream

FRAME_WISE = (
    layers.Dense,
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.Activation,
    layers.ReLU,
    layers.Dropout,
)


class _FrameWise:
    def __init__(self, layer: layers.Layer):
        self.layer = layer

    def process(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.layer(x, training=False))

    def finish(self) -> np.ndarray | None:
        return None


class _CausalConv:
    """Keeps the padded frames from the next output's first tap on (starts with the causal zeros)."""

    def __init__(self, layer: layers.Conv1D):
        if layer.padding != "causal" or layer.data_format != "channels_last":
            raise ValueError(f"{layer.name}: only a causal, channels_last Conv1D streams")
        self.layer = layer
        (self.stride,), (dilation,) = layer.strides, layer.dilation_rate
        self.span = (layer.kernel_size[0] - 1) * dilation
        self.pending = np.zeros((1, self.span, layer.kernel.shape[1]), np.float32)
        self.skip = 0  # frames between the last output's taps and the next one's first (stride > span + 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        dropped = min(self.skip, x.shape[1])
        self.pending, self.skip = np.concatenate([self.pending, x[:, dropped:]], axis=1), self.skip - dropped
        available = self.pending.shape[1] - self.span  # outputs t with t * stride + span inside pending
        outputs = max(0, (available - 1) // self.stride + 1)
        if outputs == 0:
            return np.zeros((1, 0, self.layer.filters), np.float32)
        window = self.pending[:, : (outputs - 1) * self.stride + self.span + 1]
        layer = self.layer
        y = ops.conv(window, layer.kernel, strides=self.stride, padding="valid", dilation_rate=layer.dilation_rate)
        if layer.use_bias:
            y = y + layer.bias
        self.skip = max(0, outputs * self.stride - self.pending.shape[1])
        self.pending = self.pending[:, outputs * self.stride :]
        return np.asarray(layer.activation(y))

    def finish(self) -> np.ndarray | None:
        return None  # every output was due on its last input


class _Recurrent:
    def __init__(self, layer: layers.RNN):
        if layer.go_backwards or not layer.return_sequences:
            raise ValueError(f"{layer.name}: only a forward recurrent layer returning sequences streams")
        self.layer, self.states = layer, layer.get_initial_state(1)

    def process(self, x: np.ndarray) -> np.ndarray:
        _, outputs, states = self.layer.inner_loop(ops.convert_to_tensor(x), self.states, None, False)
        self.states = list(states) if isinstance(states, (list, tuple)) else [states]
        return np.asarray(outputs)

    def finish(self) -> np.ndarray | None:
        return None


class _LookAhead:
    def __init__(self, layer: LookAhead):
        self.layer = layer
        self.pending: np.ndarray | None = None  # frames still waiting for their future

    def process(self, x: np.ndarray) -> np.ndarray:
        self.pending = x if self.pending is None else np.concatenate([self.pending, x], axis=1)
        ready = self.pending.shape[1] - self.layer.frames
        if ready <= 0:
            return np.zeros((1, 0, x.shape[2]), np.float32)
        y = np.asarray(self.layer.combine(self.pending))
        self.pending = self.pending[:, ready:]
        return y

    def finish(self) -> np.ndarray | None:
        if self.pending is None or self.pending.shape[1] == 0:
            return None
        zeros = np.zeros((1, self.layer.frames, self.pending.shape[2]), np.float32)  # the end: zeros, as in call
        return np.asarray(self.layer.combine(np.concatenate([self.pending, zeros], axis=1)))


class _Chunked:
    """Attends each complete chunk with its left context (whole chunks, so chunk borders line up)."""

    def __init__(self, layer: ChunkedTransformerBlock):
        self.layer = layer
        self.pending: np.ndarray | None = None  # the incomplete chunk
        self.context: np.ndarray | None = None  # the left context: whole chunks

    def _attend(self, chunk: np.ndarray) -> np.ndarray:
        sequence = chunk if self.context is None else np.concatenate([self.context, chunk], axis=1)
        y = np.asarray(self.layer(sequence, training=False))[:, -chunk.shape[1] :]
        keep = self.layer.left_chunks * self.layer.chunk_frames
        self.context = sequence[:, sequence.shape[1] - keep :] if keep else None
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        self.pending = x if self.pending is None else np.concatenate([self.pending, x], axis=1)
        size, outputs = self.layer.chunk_frames, []
        while self.pending.shape[1] >= size:
            outputs.append(self._attend(self.pending[:, :size]))
            self.pending = self.pending[:, size:]
        return np.concatenate(outputs, axis=1) if outputs else np.zeros((1, 0, x.shape[2]), np.float32)

    def finish(self) -> np.ndarray | None:
        if self.pending is None or self.pending.shape[1] == 0:
            return None
        return self._attend(self.pending)


def _adapter(layer: layers.Layer) -> Any:
    if isinstance(layer, layers.Conv1D):
        return _CausalConv(layer)
    if isinstance(layer, layers.RNN):
        return _Recurrent(layer)
    if isinstance(layer, LookAhead):
        return _LookAhead(layer)
    if isinstance(layer, ChunkedTransformerBlock):
        return _Chunked(layer)
    if isinstance(layer, FRAME_WISE):
        return _FrameWise(layer)
    raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no streaming form")


class StatefulStream:
    """Posteriors of a streaming model, chunk by chunk, each input frame processed once.

    Args:
        model: a model from a streaming builder (it has ``stream_layers``), e.g.
            ``Run(folder).load_model()[0]``.

    Use: ``process(frames)`` for each chunk of normalized feature frames (n, F), any n >= 0,
    returns the (m, C) posteriors that became final; ``finish()`` returns the rest and
    ``reset()`` starts a new stream.
    """

    def __init__(self, model: keras.Model):
        names = getattr(model, "stream_layers", None)
        if names is None:
            raise ValueError(
                f"model {model.name} has no streaming form (no stream_layers): build it with "
                "lookahead_rnn_model or chunked_transformer_model"
            )
        self.model, self.names = model, list(names)
        self.input_dim, self.output_dim = model.input_shape[-1], model.output_shape[-1]
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero states, empty buffers."""
        self.adapters = [_adapter(self.model.get_layer(name)) for name in self.names]

    def _run(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        """(1, n, D) frames through the adapters from ``start`` on; no adapter is handed zero frames."""
        for adapter in self.adapters[start:]:
            if x.shape[1] == 0:
                return np.zeros((1, 0, self.output_dim), np.float32)
            x = adapter.process(x)
        return x

    def process(self, frames: np.ndarray) -> np.ndarray:
        """(n, F) new feature frames -> (m, C) posteriors now final (m may be 0)."""
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.input_dim:
            raise ValueError(f"expected frames of shape (n, {self.input_dim}), got {frames.shape}")
        if not np.all(np.isfinite(frames)):
            raise ValueError("the chunk holds non-finite feature values (NaN or inf)")
        return self._run(frames[None])[0]

    def finish(self) -> np.ndarray:
        """End of stream: the posteriors still held back by look-ahead or an incomplete chunk."""
        pieces = [np.zeros((0, self.output_dim), np.float32)]
        for index, adapter in enumerate(self.adapters):  # in order: a tail passes through the later layers first
            tail = adapter.finish()
            if tail is not None:
                pieces.append(self._run(tail, index + 1)[0])
        return np.concatenate(pieces)


class StatefulDecoder(StreamDecoder):
    """Board-rate chunks in, transcript out, every sample processed once.

    Per ``config.hop_ms`` of new signal (the chunk; 100 ms by default here): resample to the
    model's rate (:class:`streaming.StreamResampler`), push through the feature stream (causal
    filters, framing), normalize, run the new frames through a :class:`StatefulStream` and feed
    the posteriors that became final to the greedy decoder. Output frame j stands for the
    model-rate signal from j * unit on (unit = feature hop x model stride), as in the windowed
    decoder; a chunk's latency is measured to the end of the newest frame it emitted, so it
    holds the feature stream's and the model's look-ahead (``lookahead_ms``) and the processing.

    Args:
        model: a streaming model (``stream_layers``; :mod:`ctclab.models.streaming_models`).
        features: a fresh :class:`~ctclab.live.feature_stream.EMGFeatureStream` or
            :class:`~ctclab.live.feature_stream.AudioFeatureStream` at ``model_rate``.
        normalizer: the training feature standardization.
        input_rate: the board's (or the recording's) sampling rate in Hz.
        model_rate: the rate the features expect in Hz.
        channels: channels decoded (the first ``channels`` EXG rows; 1 for audio).
        alphabet: the model's alphabet.
        config: the chunk (``hop_ms``), polling and stall timeout; the contexts are unused (the
            model carries its own state).
    """

    def __init__(
        self,
        model: keras.Model,
        features: EMGFeatureStream | AudioFeatureStream,
        normalizer: Normalizer,
        input_rate: int,
        model_rate: int,
        channels: int,
        alphabet: Alphabet = ENGLISH,
        config: StreamConfig = StreamConfig(hop_ms=100.0),
    ):
        super().__init__(input_rate, model_rate, channels, config, alphabet)
        self.model, self.features, self.normalizer = model, features, normalizer
        self.stream = StatefulStream(model)
        frame_ms = 1000 * features.frame_hop_samples / self.model_rate
        self.lookahead_ms = features.lookahead_ms + model.lookahead_ms(frame_ms)
        self.unit = output_unit(model, features.frame_hop_samples)  # model-rate samples per output frame
        self.chunk = round(config.hop_ms * self.model_rate / 1000)
        if self.chunk < 1:
            raise ValueError(f"hop_ms {config.hop_ms} is shorter than one sample at {model_rate} Hz")
        self.resampler = StreamResampler(self.input_rate, self.model_rate)
        self.pending: list[np.ndarray] = []  # model-rate samples not yet featurized
        self.resampled = self.featurized = self.frames_out = 0  # model-rate samples made / featurized
        warm_up = StatefulStream(model)  # build every layer's eager path now, not in the first chunk
        warm_up.process(np.zeros((32, self.stream.input_dim), np.float32))
        warm_up.finish()

    @property
    def samples_resampled(self) -> int:
        return self.resampled

    def push(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> list[WindowResult]:
        """Add (n, channels) board-rate samples (and their (n,) unix timestamps); decode full chunks."""
        self._check_chunk(chunk)
        self._stamp(chunk, timestamps)
        resampled = self.resampler.process(np.asarray(chunk, np.float64))
        self.samples_filtered += chunk.shape[0]
        self.resampled += resampled.shape[0]
        self.pending.append(resampled)
        if self.resampled - self.featurized < self.chunk:
            return []
        return [self._decode()]

    def flush(self) -> list[WindowResult]:
        """End of stream: the frames held back by the features' and the model's look-ahead."""
        return [self._decode(final=True)]

    def _decode(self, final: bool = False) -> WindowResult:
        began = time.perf_counter()
        block = np.concatenate(self.pending) if self.pending else np.zeros((0, self.channels))
        self.pending, self.featurized = [], self.resampled
        pushed = [self.features.push(block)] + ([self.features.finish()] if final else [])
        frames = [f for f in pushed if f is not None and f.shape[0]]
        posteriors = [self.stream.process(self.normalizer(f)) for f in frames]
        if final:
            posteriors.append(self.stream.finish())
        output = np.concatenate(posteriors) if posteriors else np.zeros((0, self.stream.output_dim), np.float32)
        first, self.frames_out = self.frames_out, self.frames_out + output.shape[0]
        covered = self.resampled if final else min(self.resampled, int(self.frames_out * self.unit))
        centre, self.samples_decoded = (self.samples_decoded, covered), max(self.samples_decoded, covered)
        newest_end = (
            min(self.resampled, int(np.ceil(self.frames_out * self.unit))) - 1
        )  # the newest frame's last sample
        return self._emit(
            output,
            self.unit * np.arange(first, self.frames_out),
            centre,
            began,
            newest_end if output.shape[0] and newest_end >= 0 else None,
        )

    def offline_posteriors(self, signal: np.ndarray) -> np.ndarray:
        """Reference: the same resampling, features and model over a whole (T, channels) recording."""
        resampled = StreamResampler(self.input_rate, self.model_rate).process(np.asarray(signal, np.float64))
        features = self.normalizer(self.features.whole(resampled))[None].astype(np.float32)  # (1, frames, F)
        return np.asarray(self.model(features, training=False))[0]
