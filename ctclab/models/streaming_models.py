"""Streaming-native CTC models: each output frame depends on a bounded, stated stretch of the future.

A bidirectional model re-run on overlapping windows (:mod:`ctclab.live.streaming`) pays for its
backward pass twice: every window is recomputed, and frames near a window's edge never see
their real future. The two builders here are meant to be run once over a stream, chunk by chunk,
carrying their state (:mod:`ctclab.live.stateful`):

- :func:`lookahead_rnn_model`: Deep Speech 2's deployment design (Amodei et al. 2016, section 7):
  a causal strided convolution, unidirectional recurrent layers, then a **look-ahead ("row")
  convolution** that mixes each frame with the next ``lookahead_frames`` frames, one weight per
  feature and offset, so the model sees a fixed, small future instead of the whole utterance.
- :func:`chunked_transformer_model`: a causal convolutional front end, then Transformer blocks whose
  relative-position self-attention is limited to the query's chunk and ``left_chunks`` chunks
  before it (chunk-wise attention, as in streaming Conformers): a chunk's outputs are final once
  the chunk has arrived, so the look-ahead is at most one chunk.

Every builder attaches, besides ``output_length``:

- ``stream_layers``: the names of the layers a single unpadded utterance flows through, in order
  (the padding-mask layers that keep batched training exact are left out: one utterance has no
  padding). :class:`ctclab.live.stateful.StatefulStream` runs exactly these layers.
- ``lookahead_input_frames``: the most input frames past an output frame's own position that it
  waits for; ``lookahead_ms(frame_ms)`` converts it (10 ms per frame for the course's spectrogram).

Padding never changes a real frame's output (the convolutions are causal; the look-ahead and the
attention mask padded frames), so training on padded batches learns what streaming computes.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from ctclab.alphabet import ENGLISH
from ctclab.models.layers import PACKAGE, PaddingMask, RelativePositionAttention, TimeReduction, reduced_length
from ctclab.models.registry import features_input, finish_model, model_builder, recurrent_layer, time_dense_softmax

Tensor = Any


@keras.saving.register_keras_serializable(package=PACKAGE)
class LookAhead(layers.Layer):
    """DS2's row convolution: out_t = sum_{j=0..frames} W_j * x_{t+j}, per feature (zeros past the end).

    Args:
        frames: future frames each output mixes in (0: a per-feature scale).

    Call: x (B, T, D), mask (B, T) bool or None -> (B, T, D); padded frames count as zeros.
    """

    def __init__(self, frames: int, **kwargs):
        super().__init__(**kwargs)
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        self.frames = frames

    def build(self, input_shape: tuple) -> None:
        first = [1.0] + [0.0] * self.frames  # starts as the identity: the frame itself, no future

        def initializer(shape: tuple, dtype: Any = None) -> Tensor:
            return ops.cast(ops.broadcast_to(ops.convert_to_tensor(first)[:, None], shape), dtype or "float32")

        self.kernel = self.add_weight((self.frames + 1, input_shape[-1]), initializer=initializer, name="kernel")

    def combine(self, window: Tensor) -> Tensor:
        """(B, n + frames, D) consecutive frames -> (B, n, D) outputs of the first n (no padding added)."""
        steps = ops.shape(window)[1] - self.frames
        kernel = ops.cast(self.kernel, window.dtype)
        total = window[:, :steps] * kernel[0]
        for offset in range(1, self.frames + 1):
            total = total + window[:, offset : offset + steps] * kernel[offset]
        return total

    def call(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:
            x = x * ops.cast(mask, x.dtype)[:, :, None]
        return self.combine(ops.pad(x, [[0, 0], [0, self.frames], [0, 0]]))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return dict(super().get_config(), frames=self.frames)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChunkedTransformerBlock(layers.Layer):
    """A pre-norm Transformer block with chunk-wise relative-position self-attention.

    x + Dropout(MHSA(LN(x))), then + Dropout(FFN(LN(.))); the attention of
    :class:`~ctclab.models.layers.RelativePositionAttention` with ``chunk_frames`` / ``left_chunks``.
    One layer, so a streaming runner can re-run it on a chunk and its left context.

    Call: x (B, T, D), mask (B, T) bool or None -> (B, T, D).
    """

    def __init__(
        self,
        num_heads: int,
        ff_dim: int,
        chunk_frames: int,
        left_chunks: int,
        dropout_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads, self.ff_dim, self.dropout_rate = num_heads, ff_dim, dropout_rate
        self.chunk_frames, self.left_chunks = chunk_frames, left_chunks

    def build(self, input_shape: tuple) -> None:
        model_dim = input_shape[-1]
        if model_dim % self.num_heads:
            raise ValueError(f"model_dim {model_dim} is not divisible by num_heads {self.num_heads}")
        policy = self.dtype_policy
        self.attention_norm = layers.LayerNormalization(name="attention_norm", dtype=policy)
        self.attention = RelativePositionAttention(
            self.num_heads,
            model_dim // self.num_heads,
            self.dropout_rate,
            chunk_frames=self.chunk_frames,
            left_chunks=self.left_chunks,
            name="attention",
            dtype=policy,
        )
        self.ff_norm = layers.LayerNormalization(name="ff_norm", dtype=policy)
        self.ff_in = layers.Dense(self.ff_dim, activation="relu", name="ff_in", dtype=policy)
        self.ff_out = layers.Dense(model_dim, name="ff_out", dtype=policy)
        self.dropout = layers.Dropout(self.dropout_rate, dtype=policy)
        for sublayer, shape in (
            (self.attention_norm, input_shape),
            (self.attention, input_shape),
            (self.ff_norm, input_shape),
            (self.ff_in, input_shape),
            (self.ff_out, (*input_shape[:-1], self.ff_dim)),
        ):
            sublayer.build(shape)

    def call(self, x: Tensor, mask: Tensor | None = None, training: bool | None = False) -> Tensor:
        attended = self.attention(self.attention_norm(x), mask=mask, training=training)
        x = x + self.dropout(attended, training=training)
        inner = self.dropout(self.ff_in(self.ff_norm(x)), training=training)
        return x + self.dropout(self.ff_out(inner), training=training)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return dict(
            super().get_config(),
            num_heads=self.num_heads,
            ff_dim=self.ff_dim,
            chunk_frames=self.chunk_frames,
            left_chunks=self.left_chunks,
            dropout_rate=self.dropout_rate,
        )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")


def _attach_streaming(model: keras.Model, stream_layers: list[str], lookahead_input_frames: int) -> keras.Model:
    model.stream_layers = stream_layers
    model.lookahead_input_frames = lookahead_input_frames
    model.lookahead_ms = lambda frame_ms: lookahead_input_frames * frame_ms
    return model


@model_builder
def lookahead_rnn_model(
    input_dim: int,
    conv_filters: int = 128,
    kernel_size: int = 5,
    conv_stride: int = 2,
    units: int = 200,
    recur_layers: int = 2,
    rnn_type: str = "gru",
    lookahead_frames: int = 2,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """DS2's streaming model: causal Conv1D (stride) + BN + ReLU, unidirectional RNNs + BN, look-ahead, softmax.

    Args:
        input_dim: features per frame.
        conv_filters, kernel_size, conv_stride: the causal front-end convolution.
        units, recur_layers, rnn_type: the unidirectional recurrent layers ("gru", "lstm",
            "simple_rnn"; the GRU with one bias per gate, reset_after=False, as the course's).
        lookahead_frames: output frames of future each output mixes in; the look-ahead is
            ``lookahead_frames * conv_stride`` input frames (40 ms at 2 x 2 x 10 ms).
        output_dim: output classes (blank last).
    """
    _check_positive(conv_filters=conv_filters, kernel_size=kernel_size, conv_stride=conv_stride, units=units)
    _check_positive(recur_layers=recur_layers)
    features = features_input(input_dim)
    x = layers.Conv1D(conv_filters, kernel_size, strides=conv_stride, padding="causal", name="conv")(features)
    x = layers.BatchNormalization(name="conv_bn")(x)
    x = layers.ReLU(name="conv_relu")(x)
    names = ["conv", "conv_bn", "conv_relu"]
    for index in range(recur_layers):
        name = f"rnn_{index + 1}"
        extra = {"reset_after": False} if rnn_type == "gru" else {}
        x = recurrent_layer(rnn_type, units, name, **extra)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        names += [name, f"{name}_bn"]
    reductions = [TimeReduction(kernel_size, conv_stride, kernel_size - 1)]  # causal: all padding on the left
    mask = PaddingMask(reductions, name="frame_mask")(features, x)
    x = LookAhead(lookahead_frames, name="lookahead")(x, mask)
    x = layers.ReLU(name="lookahead_relu")(x)
    outputs = time_dense_softmax(x, output_dim)
    names += ["lookahead", "lookahead_relu", "time_dense", "softmax"]
    model = finish_model(features, outputs, "lookahead_rnn", lambda length: reduced_length(length, reductions))
    return _attach_streaming(model, names, lookahead_frames * conv_stride)


@model_builder
def chunked_transformer_model(
    input_dim: int,
    conv_filters: int = 128,
    kernel_size: int = 5,
    conv_stride: int = 2,
    model_dim: int = 128,
    num_heads: int = 4,
    ff_dim: int = 256,
    num_blocks: int = 4,
    chunk_frames: int = 8,
    left_chunks: int = 2,
    dropout_rate: float = 0.1,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Causal Conv1D (stride) + ReLU, Dense to model_dim, chunk-wise Transformer blocks, LN, softmax.

    Args:
        input_dim: features per frame.
        conv_filters, kernel_size, conv_stride: the causal front-end convolution (its kernel
            gives the attention the local order; the attention itself sees distances only).
        model_dim, num_heads, ff_dim, num_blocks: the Transformer blocks.
        chunk_frames: attention chunk in output frames; the look-ahead is at most
            ``(chunk_frames - 1) * conv_stride`` input frames (140 ms at 8 x 2 x 10 ms).
        left_chunks: chunks of left context each block attends to.
        dropout_rate: dropout in the blocks.
        output_dim: output classes (blank last).
    """
    _check_positive(conv_filters=conv_filters, kernel_size=kernel_size, conv_stride=conv_stride)
    _check_positive(model_dim=model_dim, num_heads=num_heads, ff_dim=ff_dim, num_blocks=num_blocks)
    _check_positive(chunk_frames=chunk_frames)
    if left_chunks < 0:
        raise ValueError(f"left_chunks must be >= 0, got {left_chunks}")
    features = features_input(input_dim)
    x = layers.Conv1D(conv_filters, kernel_size, strides=conv_stride, padding="causal", name="conv")(features)
    x = layers.ReLU(name="conv_relu")(x)
    x = layers.Dense(model_dim, name="projection")(x)
    names = ["conv", "conv_relu", "projection"]
    reductions = [TimeReduction(kernel_size, conv_stride, kernel_size - 1)]
    mask = PaddingMask(reductions, name="frame_mask")(features, x)
    for index in range(num_blocks):
        name = f"block_{index + 1}"
        x = ChunkedTransformerBlock(num_heads, ff_dim, chunk_frames, left_chunks, dropout_rate, name=name)(x, mask)
        names.append(name)
    x = layers.LayerNormalization(name="final_norm")(x)
    outputs = time_dense_softmax(x, output_dim)
    names += ["final_norm", "time_dense", "softmax"]
    model = finish_model(features, outputs, "chunked_transformer", lambda length: reduced_length(length, reductions))
    return _attach_streaming(model, names, (chunk_frames - 1) * conv_stride)
