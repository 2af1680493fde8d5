"""The raw-EMG model: convolutions learn the features from the filtered signal (seed 000's second route).

Gaddy & Klein's recognizer reads no hand-made features: 8 channels of notched, high-passed EMG
resampled to 689.06 Hz (:meth:`ctclab.emg.signal.EMGFeatureConfig.raw_emg`) go through three
residual convolution blocks of stride 2 and then a Transformer encoder. Each block is

    x -> conv k3 / stride s -> BN -> ReLU -> conv k3 -> BN --(+)--> ReLU
    x -> conv k1 / stride s -> BN ---------------------------'      (when s > 1 or the width changes)

with PyTorch's one zero frame of padding on each side of every k3 convolution. Three stride-2
blocks take 689.06 Hz to 86.13 Hz, the frame rate of the 112-feature models, which is still
several frames per character.

:func:`raw_emg_model` keeps the blocks and puts either bidirectional recurrent layers (the
project's fast GRU / LSTM) or pre-norm relative-position attention blocks after them. Gaddy &
Klein's size is ``conv_channels=(768, 768, 768)``, ``encoder="attention", units=768,
encoder_layers=6, num_heads=8, feed_forward_dim=3072``, dropout 0.2 (56.8 M parameters here);
the defaults here are sized for CPU training. Not reproduced: their random shift of the raw
input by 0-7 samples during training, and their learned (rather than sinusoidal) relative
position embeddings clipped at distance 100.

Padding: every convolution re-zeroes padded frames first and the encoder is masked, so real
output frames never depend on padding (see :mod:`ctclab.models.layers`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ctclab.alphabet import ENGLISH
from ctclab.models.attention import _check_encoder, _check_odd, _feed_forward
from ctclab.models.deep import _bidirectional_stack
from ctclab.models.layers import PaddingMask, RelativePositionAttention, TimeReduction, padded_conv1d, reduced_length
from ctclab.models.registry import RNN_LAYERS, features_input, finish_model, model_builder, time_dense_softmax

ENCODERS = (*sorted(RNN_LAYERS), "attention")  # bidirectional RNNs of that cell type, or attention blocks


def _residual_block(
    x: keras.KerasTensor,
    features: keras.KerasTensor,
    reductions: list[TimeReduction],
    channels: int,
    kernel_size: int,
    stride: int,
    name: str,
) -> keras.KerasTensor:
    """Gaddy & Klein's ResBlock (module docstring): (B, T, C_in) -> (B, ceil(T / stride), channels).

    Appends the main path's two reductions to ``reductions``. The shortcut's 1 x 1 convolution
    of stride s is written as its definition, frames 0, s, 2s, ... (a 1-frame MaxPooling1D of
    stride s) through a Dense: the same function, parameters and length (T - 1) // s + 1, and it
    never sees a padded frame. (TensorFlow 2.21's oneDNN filter gradient of a strided 1 x 1 Conv1D
    with 8 input channels corrupts the heap once the batch length changes between steps.)
    """
    y = padded_conv1d(x, features, reductions, channels, kernel_size, stride, name=f"{name}_conv_1")
    y = layers.Activation("relu", name=f"{name}_relu_1")(layers.BatchNormalization(name=f"{name}_bn_1")(y))
    y = padded_conv1d(y, features, reductions, channels, kernel_size, 1, name=f"{name}_conv_2")
    y = layers.BatchNormalization(name=f"{name}_bn_2")(y)  # (B, T', channels)
    shortcut = x
    if stride != 1:
        shortcut = layers.MaxPooling1D(1, strides=stride, name=f"{name}_shortcut_frames")(shortcut)  # (B, T', C_in)
    if stride != 1 or x.shape[-1] != channels:
        shortcut = layers.Dense(channels, name=f"{name}_shortcut")(shortcut)  # the 1 x 1 convolution
        shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)  # (B, T', channels)
    return layers.Activation("relu", name=f"{name}_relu_2")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _attention_block(
    x: keras.KerasTensor,
    mask: keras.KerasTensor,
    num_heads: int,
    feed_forward_dim: int,
    dropout_rate: float,
    name: str,
) -> keras.KerasTensor:
    """Pre-norm relative-position MHSA then feed-forward, each with a residual: (B, T, D) -> (B, T, D)."""
    model_dim = x.shape[-1]
    normed = layers.LayerNormalization(name=f"{name}_attention_norm")(x)
    attended = RelativePositionAttention(num_heads, model_dim // num_heads, dropout_rate, name=f"{name}_attention")(
        normed, mask
    )
    x = layers.Add(name=f"{name}_attention_residual")(
        [x, layers.Dropout(dropout_rate, name=f"{name}_attention_dropout")(attended)]
    )
    return layers.Add(name=f"{name}_ffn_residual")(
        [x, _feed_forward(x, feed_forward_dim, dropout_rate, "gelu", f"{name}_ffn")]
    )


@model_builder
def raw_emg_model(
    input_dim: int = 8,
    conv_channels: Sequence[int] = (64, 96, 128),
    conv_strides: Sequence[int] = (2, 2, 2),
    kernel_size: int = 3,
    encoder: str = "gru",
    units: int = 128,
    encoder_layers: int = 2,
    num_heads: int = 4,
    feed_forward_dim: int | None = None,
    dropout_rate: float = 0.2,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Residual strided convolutions over raw EMG -> recurrent or attention encoder -> CTC softmax.

    Shapes: (B, T, input_dim) raw samples -> blocks -> (B, T', conv_channels[-1]) -> encoder ->
    (B, T', output_dim). ``output_length``: each block maps L to (L + 2p - k) // s + 1 with
    p = (k - 1) // 2, i.e. (L - 1) // s + 1 = ceil(L / s), and its second convolution keeps L, so
    T' = ceil(ceil(ceil(T / 2) / 2) / 2) = ceil(T / 8) with the default strides (689.06 -> 86.13 Hz).

    Args:
        input_dim: EMG channels (8 for Gaddy & Klein).
        conv_channels: width of each residual block (Gaddy & Klein: 768 each).
        conv_strides: stride of each block's first convolution and shortcut (Gaddy & Klein: 2, 2, 2).
        kernel_size: odd kernel length of the block convolutions, in samples (3).
        encoder: "gru", "lstm" or "simple_rnn" (bidirectional layers, directions concatenated,
            batch norm and dropout after each) or "attention" (a Dense to ``units``, then
            relative-position MHSA blocks and a final LayerNorm).
        units: units per direction of each recurrent layer, or the attention encoder's width D.
        encoder_layers: recurrent layers or attention blocks.
        num_heads: attention heads (``units`` must divide among them); unused by RNN encoders.
        feed_forward_dim: hidden width of each attention block's feed-forward layer (None: 4 x units).
        dropout_rate: after each recurrent layer, or in the attention blocks.
        output_dim: characters + blank.
    """
    if not conv_channels or len(conv_channels) != len(conv_strides):
        raise ValueError(
            f"need one stride per residual block, got conv_channels {list(conv_channels)} and "
            f"conv_strides {list(conv_strides)}"
        )
    if any(stride < 1 for stride in conv_strides) or any(channels < 1 for channels in conv_channels):
        raise ValueError(
            f"conv strides and channels must be positive, got {list(conv_strides)} and {list(conv_channels)}"
        )
    _check_odd("kernel_size", kernel_size)
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if units < 1 or encoder_layers < 1:
        raise ValueError(f"need units >= 1 and encoder_layers >= 1, got {units}, {encoder_layers}")
    if encoder == "attention":
        _check_encoder(encoder_layers, units, num_heads)
    inputs = x = features_input(input_dim)  # (B, T, C) raw samples
    reductions: list[TimeReduction] = []
    for index, (channels, stride) in enumerate(zip(conv_channels, conv_strides), start=1):
        x = _residual_block(x, inputs, reductions, channels, kernel_size, stride, f"block_{index}")  # (B, T_i, ch)
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x)  # (B, T')
    if encoder == "attention":
        x = layers.Dense(units, name="input_projection")(x)  # (B, T', D): Gaddy & Klein's w_raw_in
        for block in range(1, encoder_layers + 1):
            x = _attention_block(x, mask, num_heads, feed_forward_dim or 4 * units, dropout_rate, f"attention_{block}")
        x = layers.LayerNormalization(name="final_norm")(x)
    else:
        x = _bidirectional_stack(x, mask, units, encoder_layers, encoder, "concat", "batch", dropout_rate, True)
    return finish_model(
        inputs, time_dense_softmax(x, output_dim), "raw_emg_model", lambda length: reduced_length(length, reductions)
    )
