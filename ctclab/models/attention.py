"""Attention acoustic models for CTC: Transformer, Conformer, and TDS sandwiched by MHSA.

All three read features (B, T, F) of any ``input_dim`` and return per-frame probabilities
(B, T', C). Attention is masked by every utterance's true length, and every convolution sees
zeros on padded frames, so appending padding never changes the outputs on real frames (see
ctclab.models.layers: the length comes from the zero padding the data generator adds).

- :func:`transformer_ctc_model`: convolutional subsampling, absolute sinusoidal positions,
  pre-norm Transformer encoder blocks (Keras MultiHeadAttention).
- :func:`conformer_ctc_model`: the same front end, then Conformer blocks (Gulati et al. 2020):
  half feed-forward, relative-position MHSA, convolution module, half feed-forward.
- :func:`tds_mhsa_model`: time-depth separable convolution blocks (Hannun et al. 2019) with
  "same" padding (no frames lost), between two subsampled relative-position MHSA modules, the
  best emg2qwerty variant of seed 001; used for speech and for sEMG.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ctclab.alphabet import ENGLISH
from ctclab.models.layers import (
    PaddingMask,
    PositionalEncoding,
    RelativePositionAttention,
    TimeReduction,
    ZeroPadding,
    padded_conv1d,
    reduced_length,
)
from ctclab.models.registry import features_input, finish_model, model_builder, time_dense_softmax


def _check_odd(name: str, value: int) -> None:
    if value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be a positive odd number (symmetric 'same' padding), got {value}")


def _check_encoder(num_blocks: int, model_dim: int, num_heads: int) -> None:
    if num_blocks < 1 or num_heads < 1 or model_dim % num_heads:
        raise ValueError(
            f"need num_blocks >= 1 and model_dim divisible by num_heads, got {num_blocks}, {model_dim}, {num_heads}"
        )


def conv_subsampling(
    features: keras.KerasTensor, filters: int, strides: Sequence[int], kernel_size: int, name: str = "subsample"
) -> tuple[keras.KerasTensor, list[TimeReduction]]:
    """GELU Conv1D layers with ``kernel_size // 2`` zero frames on each side and the given strides.

    Explicit padding (:func:`ctclab.models.layers.padded_conv1d`) keeps the real frames independent of the padding.

    Args:
        features: (B, T, F) model input.
        filters: channels of every convolution.
        strides: one convolution per entry; e.g. (2, 2) subsamples time 4x.
        kernel_size: odd kernel length in frames.

    Returns:
        ((B, T', filters) tensor, list of TimeReduction), T' = reduced_length(T, reductions).
    """
    _check_odd("conv_kernel_size", kernel_size)
    if any(stride < 1 for stride in strides):
        raise ValueError(f"conv strides must be positive, got {list(strides)}")
    x = features
    reductions: list[TimeReduction] = []
    for index, stride in enumerate(strides, start=1):
        x = padded_conv1d(
            x, features, reductions, filters, kernel_size, stride, activation="gelu", name=f"{name}_conv_{index}"
        )
    return x, reductions


def _feed_forward(
    x: keras.KerasTensor, hidden_dim: int, dropout_rate: float, activation: str, name: str
) -> keras.KerasTensor:
    """Pre-norm position-wise feed-forward: LN -> Dense(hidden) -> Dense(D). (B, T, D) -> (B, T, D)."""
    model_dim = x.shape[-1]
    x = layers.LayerNormalization(name=f"{name}_norm")(x)
    x = layers.Dense(hidden_dim, activation=activation, name=f"{name}_dense_1")(x)
    x = layers.Dropout(dropout_rate, name=f"{name}_dropout_1")(x)
    x = layers.Dense(model_dim, name=f"{name}_dense_2")(x)
    return layers.Dropout(dropout_rate, name=f"{name}_dropout_2")(x)


@model_builder
def transformer_ctc_model(
    input_dim: int,
    model_dim: int = 144,
    num_heads: int = 4,
    num_blocks: int = 4,
    feed_forward_dim: int = 576,
    conv_strides: Sequence[int] = (2,),
    conv_kernel_size: int = 3,
    dropout_rate: float = 0.1,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Convolutional subsampling + sinusoidal positions + pre-norm Transformer encoder + CTC softmax.

    Args:
        input_dim: feature size F.
        model_dim: width D of the encoder (144: the Conformer-S size).
        num_heads: attention heads; ``model_dim`` must divide evenly among them.
        num_blocks: encoder blocks.
        feed_forward_dim: hidden width of each block's feed-forward layer (4 x model_dim).
        conv_strides: strides of the front-end convolutions; (2,) halves the frame rate to 50 per
            second, still above the 22 characters per second of the fastest corpus speakers.
        conv_kernel_size: odd kernel length of the front-end convolutions, in frames.
        dropout_rate: dropout after attention and feed-forward layers.
        output_dim: characters + blank.
    """
    _check_encoder(num_blocks, model_dim, num_heads)
    inputs = features_input(input_dim)  # (B, T, F)
    x, reductions = conv_subsampling(inputs, model_dim, conv_strides, conv_kernel_size)  # (B, T', D)
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x)  # (B, T')
    x = PositionalEncoding(name="positions")(layers.Dense(model_dim, name="input_projection")(x))
    x = layers.Dropout(dropout_rate, name="input_dropout")(x)
    for block in range(1, num_blocks + 1):
        name = f"block_{block}"
        normed = layers.LayerNormalization(name=f"{name}_attention_norm")(x)
        attended = layers.MultiHeadAttention(
            num_heads, model_dim // num_heads, dropout=dropout_rate, name=f"{name}_attention"
        )(normed, normed, value_mask=mask)  # padded keys get no weight
        x = layers.Add(name=f"{name}_attention_residual")(
            [x, layers.Dropout(dropout_rate, name=f"{name}_attention_dropout")(attended)]
        )
        x = layers.Add(name=f"{name}_ffn_residual")(
            [x, _feed_forward(x, feed_forward_dim, dropout_rate, "gelu", f"{name}_ffn")]
        )
    x = layers.LayerNormalization(name="final_norm")(x)
    return finish_model(
        inputs,
        time_dense_softmax(x, output_dim),
        "transformer_ctc_model",
        lambda length: reduced_length(length, reductions),
    )


def _half_feed_forward(x: keras.KerasTensor, dropout_rate: float, name: str) -> keras.KerasTensor:
    """The Conformer's macaron half step: x + 0.5 * FFN(x), FFN 4x wide with swish."""
    half = layers.Rescaling(0.5, name=f"{name}_half")(_feed_forward(x, 4 * x.shape[-1], dropout_rate, "silu", name))
    return layers.Add(name=f"{name}_residual")([x, half])


def _conformer_block(
    x: keras.KerasTensor, mask: keras.KerasTensor, num_heads: int, conv_kernel_size: int, dropout_rate: float, name: str
) -> keras.KerasTensor:
    """FFN/2 -> relative MHSA -> convolution module -> FFN/2 -> LayerNorm; (B, T, D) -> (B, T, D)."""
    model_dim = x.shape[-1]
    x = _half_feed_forward(x, dropout_rate, f"{name}_ffn_1")
    normed = layers.LayerNormalization(name=f"{name}_attention_norm")(x)
    attended = RelativePositionAttention(num_heads, model_dim // num_heads, dropout_rate, name=f"{name}_attention")(
        normed, mask
    )
    x = layers.Add(name=f"{name}_attention_residual")(
        [x, layers.Dropout(dropout_rate, name=f"{name}_attention_dropout")(attended)]
    )
    # convolution module: pointwise (2D) -> GLU -> depthwise over time -> BN -> swish -> pointwise
    y = layers.LayerNormalization(name=f"{name}_conv_norm")(x)
    # GLU of a pointwise conv to 2D, written as its two halves: value * sigmoid(gate)
    value = layers.Dense(model_dim, name=f"{name}_conv_pointwise_value")(y)
    gate = layers.Dense(model_dim, activation="sigmoid", name=f"{name}_conv_pointwise_gate")(y)
    y = layers.Multiply(name=f"{name}_conv_glu")([value, gate])  # (B, T, D)
    y = ZeroPadding(name=f"{name}_conv_zero")(y, mask)  # padded frames must not leak into real ones
    y = layers.DepthwiseConv1D(conv_kernel_size, padding="same", name=f"{name}_conv_depthwise")(y)
    y = layers.Activation("silu", name=f"{name}_conv_swish")(layers.BatchNormalization(name=f"{name}_conv_bn")(y))
    y = layers.Dropout(dropout_rate, name=f"{name}_conv_dropout")(
        layers.Dense(model_dim, name=f"{name}_conv_pointwise_2")(y)
    )
    x = layers.Add(name=f"{name}_conv_residual")([x, y])
    x = _half_feed_forward(x, dropout_rate, f"{name}_ffn_2")
    return layers.LayerNormalization(name=f"{name}_norm")(x)


@model_builder
def conformer_ctc_model(
    input_dim: int,
    model_dim: int = 144,
    num_heads: int = 4,
    num_blocks: int = 4,
    conv_kernel_size: int = 15,
    conv_strides: Sequence[int] = (2,),
    subsample_kernel_size: int = 3,
    dropout_rate: float = 0.1,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Convolutional subsampling + Conformer blocks + CTC softmax.

    Args:
        input_dim: feature size F.
        model_dim: encoder width D (144: Conformer-S); divisible by ``num_heads``.
        num_heads: relative-position attention heads.
        num_blocks: Conformer blocks.
        conv_kernel_size: odd depthwise kernel of the convolution module, in output frames
            (15 frames at 50 per second = 300 ms of context).
        conv_strides: strides of the front-end convolutions (see transformer_ctc_model).
        subsample_kernel_size: odd kernel of the front-end convolutions.
        dropout_rate: dropout in every module.
        output_dim: characters + blank.
    """
    _check_encoder(num_blocks, model_dim, num_heads)
    _check_odd("conv_kernel_size", conv_kernel_size)
    inputs = features_input(input_dim)  # (B, T, F)
    x, reductions = conv_subsampling(inputs, model_dim, conv_strides, subsample_kernel_size)  # (B, T', D)
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x)  # (B, T')
    x = layers.Dropout(dropout_rate, name="input_dropout")(layers.Dense(model_dim, name="input_projection")(x))
    for block in range(1, num_blocks + 1):
        x = _conformer_block(x, mask, num_heads, conv_kernel_size, dropout_rate, f"block_{block}")
    return finish_model(
        inputs,
        time_dense_softmax(x, output_dim),
        "conformer_ctc_model",
        lambda length: reduced_length(length, reductions),
    )


def _subsampled_attention(
    x: keras.KerasTensor, mask: keras.KerasTensor, attention_dim: int, num_heads: int, dropout_rate: float, name: str
) -> keras.KerasTensor:
    """Seed 001's MHSA module: LN -> 1x1 conv down to ``attention_dim`` -> relative MHSA ->
    dropout -> 1x1 conv back up -> residual. (B, T, D) -> (B, T, D)."""
    y = layers.LayerNormalization(name=f"{name}_norm")(x)
    y = layers.Dense(attention_dim, name=f"{name}_reduce")(y)  # (B, T, A)
    y = RelativePositionAttention(num_heads, attention_dim // num_heads, dropout_rate, name=f"{name}_attention")(
        y, mask
    )
    y = layers.Dense(x.shape[-1], name=f"{name}_expand")(layers.Dropout(dropout_rate, name=f"{name}_dropout")(y))
    return layers.Add(name=f"{name}_residual")([x, y])


def _tds_block(
    x: keras.KerasTensor, mask: keras.KerasTensor, channels: int, kernel_size: int, name: str
) -> keras.KerasTensor:
    """TDS convolution block then TDS fully connected block; (B, T, D) -> (B, T, D), D = channels * width.

    The convolution runs over time only, on (B, T, width, channels): each of the ``width``
    columns is convolved with the same (kernel x 1) filters that mix the ``channels``.
    """
    num_features = x.shape[-1]
    width = num_features // channels
    y = ZeroPadding(name=f"{name}_zero")(x, mask)
    y = layers.Reshape((-1, width, channels), name=f"{name}_split")(y)  # (B, T, width, channels)
    y = layers.Conv2D(channels, (kernel_size, 1), padding="same", activation="relu", name=f"{name}_conv")(y)
    y = layers.Reshape((-1, num_features), name=f"{name}_merge")(y)  # (B, T, D)
    x = layers.LayerNormalization(name=f"{name}_conv_norm")(layers.Add(name=f"{name}_conv_residual")([x, y]))
    y = layers.Dense(num_features, activation="relu", name=f"{name}_fc_1")(x)
    y = layers.Dense(num_features, name=f"{name}_fc_2")(y)
    return layers.LayerNormalization(name=f"{name}_fc_norm")(layers.Add(name=f"{name}_fc_residual")([x, y]))


@model_builder
def tds_mhsa_model(
    input_dim: int,
    num_features: int = 384,
    block_channels: Sequence[int] = (24, 24, 24, 24),
    kernel_size: int = 9,
    attention_dim: int = 128,
    num_heads: int = 4,
    dropout_rate: float = 0.1,
    output_dim: int = ENGLISH.output_dim,
    frame_stride: int = 1,
) -> keras.Model:
    """Dense front end -> MHSA module -> padded TDS blocks -> MHSA module -> CTC softmax (seed 001).

    With ``frame_stride`` 1 (the seed's design) no layer changes the frame rate and
    ``output_length`` is the identity; a larger stride replaces the Dense front end by a
    GELU convolution of that stride (kernel ``2 * frame_stride - 1``, as :func:`conv_subsampling`),
    so everything after it runs on a frame in ``frame_stride``: that many times cheaper.

    Args:
        input_dim: feature size F (any: spectrograms, 112-dim EMG features, ...).
        num_features: width D of the TDS encoder; every entry of ``block_channels`` divides it.
        block_channels: one TDS block per entry, with that many convolution channels.
        kernel_size: odd TDS convolution length in frames (9: the seed's best padded TDS).
        attention_dim: width the MHSA modules reduce to before attending (128 in the seed).
        num_heads: attention heads; ``attention_dim`` must divide evenly among them.
        dropout_rate: dropout after the attention modules and in front of the output layer.
        output_dim: characters + blank.
        frame_stride: input frames per encoder frame (1: the seed's full rate).
    """
    _check_odd("kernel_size", kernel_size)
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be positive, got {frame_stride}")
    if not block_channels or any(c < 1 or num_features % c for c in block_channels):
        raise ValueError(
            f"every block channel count must divide num_features {num_features}, got {list(block_channels)}"
        )
    if attention_dim % num_heads:
        raise ValueError(f"attention_dim {attention_dim} is not divisible by num_heads {num_heads}")
    inputs = features_input(input_dim)  # (B, T, F)
    reductions: list[TimeReduction] = []
    if frame_stride == 1:
        x = layers.Dense(num_features, activation="relu", name="input_mlp")(inputs)  # (B, T, D)
    else:
        x, reductions = conv_subsampling(inputs, num_features, (frame_stride,), 2 * frame_stride - 1)  # (B, T', D)
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x)  # (B, T')
    x = _subsampled_attention(x, mask, attention_dim, num_heads, dropout_rate, "attention_in")
    for block, channels in enumerate(block_channels, start=1):
        x = _tds_block(x, mask, channels, kernel_size, f"tds_{block}")
    x = _subsampled_attention(x, mask, attention_dim, num_heads, dropout_rate, "attention_out")
    x = layers.Dropout(dropout_rate, name="output_dropout")(x)
    return finish_model(
        inputs, time_dense_softmax(x, output_dim), "tds_mhsa_model", lambda length: reduced_length(length, reductions)
    )
