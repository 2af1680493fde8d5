"""Layers the deep models share: length bookkeeping, padding masks, SpecAugment, attention.

Padding. A batch is padded with all-zero frames after normalization (data_generator), so a
model can recover every utterance's true length from its features alone: the index of its last
frame with any non-zero value, plus one. :class:`PaddingMask` does this and follows the length
through the model's time reductions (strided convolutions, pooling) with the same arithmetic as
``model.output_length``, so attention never looks at padding and convolutions see zeros there
(:class:`ZeroPadding` re-zeroes padded frames before every layer that mixes time). A real frame
that happens to be exactly zero everywhere would only shorten the length if it were the last one.

Time reductions are written as :class:`TimeReduction` tuples; :func:`reduced_length` applies
them in order, for Python ints, NumPy arrays and backend tensors alike.

Every layer here is registered for Keras serialization under the package "ctc_lab".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
from keras import layers, ops

PACKAGE = "ctc_lab"

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array) or a NumPy array
Length = Any  # frame counts: a Python int, a NumPy array or a backend tensor; or None
DType = Any  # a dtype name ("float32") or a backend dtype (tf.DType, np.dtype)
Shape = tuple[int | None, ...]  # a Keras shape; None for an unknown size


class TimeReduction(NamedTuple):
    """One layer's effect on the time axis: a convolution or pooling with explicit zero padding.

    Attributes:
        kernel_size: frames one output looks at (before dilation).
        stride: frames between consecutive outputs.
        padding: zero frames added in total (left + right).
        dilation: spacing between the kernel's taps.
    """

    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1


def reduced_length(length: Length, reductions: Sequence[Sequence[int]]) -> Length:
    """Frames left after ``reductions``: per step, (L + padding - dilation*(kernel-1) - 1) // stride + 1.

    This is the standard output size of a convolution (PyTorch's formula; Keras "valid" after
    explicit padding). ``None`` stays ``None``.
    """
    if length is None:
        return None
    for reduction in reductions:
        kernel_size, stride, padding, dilation = TimeReduction(*reduction)
        length = (length + padding - dilation * (kernel_size - 1) - 1) // stride + 1
    return length


def true_lengths(features: Tensor) -> Tensor:
    """(B, T, F) zero-padded features -> (B,) int32 lengths: the last frame with a non-zero value, + 1."""
    nonzero = ops.any(ops.not_equal(features, 0), axis=-1)  # (B, T)
    positions = ops.arange(1, ops.shape(features)[1] + 1, dtype="int32")  # (T,) 1-based
    return ops.max(ops.where(nonzero, positions[None, :], 0), axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PaddingMask(layers.Layer):
    """(features (B, T, F), x (B, T', ...)) -> (B, T') bool: True on ``x``'s real frames.

    Args:
        reductions: the time reductions between ``features`` and ``x`` (list of
            :class:`TimeReduction` fields); empty when ``x`` has the input's frame rate.
    """

    def __init__(self, reductions: Sequence[Sequence[int]] = (), **kwargs):
        super().__init__(**kwargs)
        self.reductions = [list(TimeReduction(*reduction)) for reduction in reductions]

    def call(self, features: Tensor, x: Tensor) -> Tensor:
        lengths = reduced_length(true_lengths(features), self.reductions)  # (B,)
        frames = ops.arange(ops.shape(x)[1], dtype="int32")  # (T',)
        return ops.less(frames[None, :], lengths[:, None])  # (B, T')

    def compute_output_spec(self, features: keras.KerasTensor, x: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor((x.shape[0], x.shape[1]), dtype="bool")

    def get_config(self) -> dict:
        return dict(super().get_config(), reductions=self.reductions)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadding(layers.Layer):
    """(x (B, T, ...), mask (B, T)) -> x with every padded frame set to zero."""

    def call(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = ops.cast(mask, x.dtype)  # (B, T)
        for _ in range(len(x.shape) - 2):
            keep = ops.expand_dims(keep, -1)  # (B, T, 1, ...) broadcasts over feature axes
        return x * keep

    def compute_output_spec(self, x: keras.KerasTensor, mask: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor(x.shape, dtype=x.dtype)


def padded_conv1d(
    x: keras.KerasTensor,
    features: keras.KerasTensor,
    reductions: list[TimeReduction],
    filters: int,
    kernel_size: int,
    stride: int = 1,
    border_mode: str = "same",
    dilation: int = 1,
    activation: str | Callable | None = None,
    name: str = "conv1d",
) -> keras.KerasTensor:
    """A Conv1D whose output frame j always sees input frames [j*stride - left, ...), padding-proof.

    Keras' own "same" padding splits its zeros according to the padded batch length when
    stride > 1, which shifts every output frame when more padding is appended; here the zeros
    are explicit: "same" puts dilation*(kernel-1)//2 frames on the left and the rest on the
    right, "causal" all on the left, "valid" none. Output lengths equal
    :func:`ctclab.models.registry.cnn_output_length`. Padded frames of ``x`` are re-zeroed first when earlier
    reductions made them non-zero.

    Args:
        x: (B, T_in, C) input of the convolution.
        features: (B, T, F) model input, the source of the padding mask.
        reductions: the TimeReductions from ``features`` to ``x``; this convolution's is appended.
        filters, kernel_size, stride, dilation, activation: as for keras.layers.Conv1D.
        border_mode: "same", "valid" or "causal".
        name: layer name prefix.

    Returns:
        (B, T_out, filters), T_out = reduced_length(T, reductions) after the append.
    """
    if border_mode not in ("same", "valid", "causal"):
        raise ValueError(f"border_mode must be 'same', 'valid' or 'causal', got {border_mode!r}")
    if reductions:
        x = ZeroPadding(name=f"{name}_zero")(x, PaddingMask(reductions, name=f"{name}_mask")(features, x))
    padding = 0 if border_mode == "valid" else dilation * (kernel_size - 1)
    left = padding if border_mode == "causal" else padding // 2
    if padding:
        x = layers.ZeroPadding1D((left, padding - left), name=f"{name}_pad")(x)
    x = layers.Conv1D(filters, kernel_size, strides=stride, dilation_rate=dilation, activation=activation, name=name)(x)
    reductions.append(TimeReduction(kernel_size, stride, padding, dilation))
    return x


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecAugment(layers.Layer):
    """SpecAugment time and frequency masking (Park et al. 2019), active only in training.

    Each utterance gets ``frequency_masks`` bands of ``f ~ U{0..frequency_mask_width}``
    consecutive feature bins and ``time_masks`` runs of ``t ~ U{0..time_mask_width}`` consecutive
    frames set to zero (the training mean after normalization), each at a uniformly drawn start
    (torchaudio's FrequencyMasking / TimeMasking). At inference the layer is the identity.
    The last real frame of an utterance is never time-masked, so the length PaddingMask reads
    from the zero padding stays true (frequency masks must stay narrower than F for that).

    Args:
        frequency_mask_width: widest frequency band, in feature bins (15 in the seed-003 setup).
        time_mask_width: longest time mask, in frames (35 in the seed-003 setup).
        frequency_masks, time_masks: masks of each kind per utterance.
        seed: seed of the layer's random generator.

    Input (B, T, F) -> output (B, T, F).
    """

    def __init__(
        self,
        frequency_mask_width: int = 15,
        time_mask_width: int = 35,
        frequency_masks: int = 1,
        time_masks: int = 1,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in [
            ("frequency_mask_width", frequency_mask_width),
            ("time_mask_width", time_mask_width),
            ("frequency_masks", frequency_masks),
            ("time_masks", time_masks),
        ]:
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.frequency_mask_width, self.time_mask_width = frequency_mask_width, time_mask_width
        self.frequency_masks, self.time_masks, self.seed = frequency_masks, time_masks, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and self.frequency_mask_width >= input_shape[-1]:
            raise ValueError(
                f"frequency_mask_width {self.frequency_mask_width} must be below the {input_shape[-1]} features"
            )

    def _band_masks(self, batch: int | Tensor, size: int | Tensor, count: int, max_width: int) -> Tensor:
        """(B, size) bool: the union of ``count`` random runs of width U{0..max_width} per row."""
        positions = ops.arange(size, dtype="float32")[None, :]  # (1, size)
        masked = ops.zeros((batch, size), dtype="bool")
        for _ in range(count):
            width = ops.floor(keras.random.uniform((batch, 1), 0.0, max_width + 1.0, seed=self.seed_generator))
            start = ops.floor(
                keras.random.uniform((batch, 1), seed=self.seed_generator)
                * ops.maximum(ops.cast(size, "float32") - width + 1.0, 1.0)
            )
            masked = ops.logical_or(masked, ops.logical_and(positions >= start, positions < start + width))
        return masked

    def call(self, features: Tensor, training: bool | None = False) -> Tensor:
        if not training:
            return features
        batch, time_steps, feature_dim = ops.shape(features)[0], ops.shape(features)[1], ops.shape(features)[2]
        frequency = self._band_masks(batch, feature_dim, self.frequency_masks, self.frequency_mask_width)  # (B, F)
        time = self._band_masks(batch, time_steps, self.time_masks, self.time_mask_width)  # (B, T)
        last_real = true_lengths(features) - 1  # (B,)
        time = ops.logical_and(time, ops.arange(time_steps)[None, :] != last_real[:, None])  # keep the length
        masked = ops.logical_or(frequency[:, None, :], time[:, :, None])  # (B, T, F)
        return ops.where(masked, ops.zeros_like(features), features)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> dict:
        return dict(
            super().get_config(),
            frequency_mask_width=self.frequency_mask_width,
            time_mask_width=self.time_mask_width,
            frequency_masks=self.frequency_masks,
            time_masks=self.time_masks,
            seed=self.seed,
        )


def sinusoids(positions: Tensor, dim: int, dtype: DType = "float32") -> Tensor:
    """Sinusoidal encodings of ``positions`` (N,) -> (N, dim): sin in even, cos in odd columns.

    Frequencies 1 / 10000^(2i / dim), as in "Attention is all you need".
    """
    half = dim // 2
    frequencies = ops.exp(ops.arange(half, dtype="float32") * (-math.log(10000.0) / max(half, 1)))  # (dim/2,)
    angles = ops.cast(positions, "float32")[:, None] * frequencies[None, :]  # (N, dim/2)
    encoding = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (-1, 2 * half))  # interleave
    if dim % 2:
        encoding = ops.pad(encoding, [[0, 0], [0, 1]])
    return ops.cast(encoding, dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionalEncoding(layers.Layer):
    """Adds absolute sinusoidal position encodings: (B, T, D) -> (B, T, D), any T."""

    def call(self, x: Tensor) -> Tensor:
        return x + sinusoids(ops.arange(ops.shape(x)[1]), x.shape[-1], x.dtype)[None]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class RelativePositionAttention(layers.Layer):
    """Multi-head self-attention with Transformer-XL relative position encodings.

    The score of query frame i for key frame j is, per head,

        (q_i + u) . k_j  +  (q_i + v) . W_r r_{i-j}

    divided by sqrt(head_dim), where r_d is the sinusoidal encoding of the distance d = i - j,
    W_r a learned projection and u, v learned biases (Dai et al. 2019; the Conformer's MHSA).
    Scores of padded keys are masked out, so padding never changes a real frame's output.

    With ``chunk_frames`` the frames are cut into chunks of that many from the first, and a query
    sees only the keys of its own chunk and of the ``left_chunks`` chunks before it (chunk-wise
    attention for streaming: a chunk's outputs are final once the chunk has arrived, and since
    the scores depend on i - j only, a chunk and its left context give the same outputs wherever
    they stand in the utterance).

    Args:
        num_heads: attention heads.
        head_dim: size of each head's queries, keys and values.
        dropout_rate: dropout on the attention weights.
        chunk_frames: None (every frame sees every frame) or the chunk length in frames.
        left_chunks: chunks of left context, with ``chunk_frames``.

    Call: x (B, T, D), mask (B, T) bool or None -> (B, T, D).
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        dropout_rate: float = 0.0,
        chunk_frames: int | None = None,
        left_chunks: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads < 1 or head_dim < 1:
            raise ValueError(f"num_heads and head_dim must be positive, got {num_heads} and {head_dim}")
        if (chunk_frames is not None and chunk_frames < 1) or left_chunks < 0:
            raise ValueError(
                f"need chunk_frames >= 1 (or None) and left_chunks >= 0, got {chunk_frames}, {left_chunks}"
            )
        self.num_heads, self.head_dim, self.dropout_rate = num_heads, head_dim, dropout_rate
        self.chunk_frames, self.left_chunks = chunk_frames, left_chunks
        inner = num_heads * head_dim
        self.query, self.key, self.value = (
            layers.Dense(inner, name=n, dtype=self.dtype_policy) for n in ("query", "key", "value")
        )
        self.position = layers.Dense(inner, use_bias=False, name="position", dtype=self.dtype_policy)
        self.dropout = layers.Dropout(dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape: Shape) -> None:
        model_dim = input_shape[-1]
        inner = self.num_heads * self.head_dim
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.position.build((None, model_dim))
        self.output_dense = layers.Dense(model_dim, name="output", dtype=self.dtype_policy)
        self.output_dense.build((None, None, inner))
        self.content_bias = self.add_weight((self.num_heads, self.head_dim), initializer="zeros", name="content_bias")
        self.position_bias = self.add_weight((self.num_heads, self.head_dim), initializer="zeros", name="position_bias")

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, H * d) -> (B, H, T, d)."""
        shape = ops.shape(x)
        return ops.transpose(ops.reshape(x, (shape[0], shape[1], self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, x: Tensor, mask: Tensor | None = None, training: bool | None = False) -> Tensor:
        time_steps = ops.shape(x)[1]
        query, key, value = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        distances = ops.arange(time_steps - 1, -time_steps, -1)  # (2T-1,): T-1, ..., -(T-1)
        relative = self.position(sinusoids(distances, x.shape[-1], x.dtype))  # (2T-1, H * d)
        relative = ops.transpose(ops.reshape(relative, (-1, self.num_heads, self.head_dim)), (1, 0, 2))  # (H, 2T-1, d)
        content_bias = ops.cast(self.content_bias, query.dtype)[None, :, None, :]  # (1, H, 1, d)
        position_bias = ops.cast(self.position_bias, query.dtype)[None, :, None, :]
        content = ops.einsum("bhid,bhjd->bhij", query + content_bias, key)  # (B, H, T, T)
        by_distance = ops.einsum("bhid,hrd->bhir", query + position_bias, relative)  # (B, H, T, 2T-1)
        # Column r of by_distance is distance i - j = T-1-r, so key j of query i is r = T-1-i+j.
        rows, columns = ops.arange(time_steps)[:, None], ops.arange(time_steps)[None, :]
        index = ops.broadcast_to((time_steps - 1 - rows + columns)[None, None], ops.shape(content))
        position = ops.take_along_axis(by_distance, index, axis=-1)  # (B, H, T, T)
        scores = ops.cast(content + position, "float32") / math.sqrt(self.head_dim)  # softmax in float32
        if mask is not None:
            scores = ops.where(ops.cast(mask, "bool")[:, None, None, :], scores, -1e9)  # mask padded keys
        if self.chunk_frames is not None:
            chunk = ops.arange(time_steps) // self.chunk_frames  # (T,) chunk of each frame
            behind = chunk[:, None] - chunk[None, :]  # (T, T): query's chunk - key's chunk
            visible = ops.logical_and(behind >= 0, behind <= self.left_chunks)
            scores = ops.where(visible[None, None], scores, -1e9)
        weights = self.dropout(ops.cast(ops.softmax(scores, axis=-1), value.dtype), training=training)
        attended = ops.einsum("bhij,bhjd->bhid", weights, value)  # (B, H, T, d)
        shape = ops.shape(attended)
        merged = ops.reshape(
            ops.transpose(attended, (0, 2, 1, 3)), (shape[0], shape[2], self.num_heads * self.head_dim)
        )
        return self.output_dense(merged)  # (B, T, D)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> dict:
        return dict(
            super().get_config(),
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            dropout_rate=self.dropout_rate,
            chunk_frames=self.chunk_frames,
            left_chunks=self.left_chunks,
        )
