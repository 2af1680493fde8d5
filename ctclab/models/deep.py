"""Deep convolutional + bidirectional recurrent acoustic models for CTC (notebook 02).

- :func:`cnn_birnn_model`: the course's "final model" ideas: convolution (optionally dilated,
  optionally max-pooled) in front of a deep bidirectional RNN, with dropout.
- :func:`deep_birnn_model`: a stack of bidirectional GRU / LSTM / SimpleRNN layers.
- :func:`deep_speech2_model`: Deep Speech 2 (Amodei et al. 2016; seed 002): 2-D convolutions over
  time x frequency (or 1-D over time), bidirectional RNNs with summed directions, fully connected
  layers, clipped ReLU min(max(x, 0), 20), batch norm.
- :func:`residual_cnn_bigru_model`: the AssemblyAI / DeepSpeech-pytorch variant (seed 003):
  Conv2D stride 2, residual CNN blocks with LayerNorm over frequency, GELU and dropout, a linear
  layer, BiGRU layers with LayerNorm, and a GELU classifier. 128 mel features, 2 residual
  blocks, 3 BiGRUs of 512 and 29 outputs give the seed's 14,233,053 parameters (Keras
  ``reset_after=True`` GRUs have PyTorch's two biases per gate).

Recurrent layers get the padding mask (:class:`ctclab.models.layers.PaddingMask`) when ``mask_padding`` is on,
so the backward direction starts at each utterance's last real frame rather than in the padding.
Time-strided convolutions use explicit zero padding where the seeds' PyTorch code pads, so
``output_length`` is PyTorch's formula (see :func:`ctclab.models.layers.reduced_length`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from ctclab.alphabet import ENGLISH
from ctclab.models.layers import PaddingMask, TimeReduction, ZeroPadding, padded_conv1d, reduced_length
from ctclab.models.registry import features_input, finish_model, model_builder, recurrent_layer, time_dense_softmax

NORMALIZATIONS = ("batch", "layer", "none")


def _normalization(kind: str, name: str) -> layers.Layer:
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")
    if kind == "batch":
        return layers.BatchNormalization(name=name)
    return layers.LayerNormalization(name=name) if kind == "layer" else layers.Identity(name=name)


def _bidirectional_stack(
    x: keras.KerasTensor,
    mask: keras.KerasTensor | None,
    units: int,
    recur_layers: int,
    rnn_type: str,
    merge_mode: str,
    normalization: str,
    dropout_rate: float,
    reset_after: bool,
    name: str = "birnn",
) -> keras.KerasTensor:
    """``recur_layers`` x (bidirectional RNN -> normalization -> dropout); (B, T, H) -> (B, T, 2 units or units)."""
    if recur_layers < 1:
        raise ValueError(f"recur_layers must be at least 1, got {recur_layers}")
    for index in range(1, recur_layers + 1):
        rnn = recurrent_layer(rnn_type, units, f"{name}_{index}_rnn", reset_after=reset_after)
        x = layers.Bidirectional(rnn, merge_mode=merge_mode, name=f"{name}_{index}")(x, mask=mask)
        x = _normalization(normalization, f"{name}_{index}_norm")(x)
        x = layers.Dropout(dropout_rate, name=f"{name}_{index}_dropout")(x)
    return x


@model_builder
def cnn_birnn_model(
    input_dim: int,
    filters: int = 200,
    kernel_size: int = 11,
    conv_stride: int = 2,
    conv_border_mode: str = "same",
    dilation: int = 1,
    conv_layers: int = 1,
    pool_size: int = 1,
    units: int = 200,
    recur_layers: int = 2,
    rnn_type: str = "gru",
    normalization: str = "batch",
    dropout_rate: float = 0.2,
    mask_padding: bool = True,
    output_dim: int = ENGLISH.output_dim,
    reset_after: bool = True,
) -> keras.Model:
    """Conv1D stack (+ max pooling) -> deep bidirectional RNN -> time dense -> softmax.

    Args:
        input_dim: feature size F.
        filters, kernel_size: every convolution's channels and length in frames.
        conv_stride: stride of the first convolution (later ones use 1).
        conv_border_mode: "same", "valid" or "causal", for every convolution.
        dilation: dilation of every convolution with stride 1 (a dilated kernel of k taps spans
            dilation * (k - 1) + 1 frames); a strided first convolution is not dilated.
        conv_layers: number of convolutions, each followed by batch norm, ReLU and dropout.
        pool_size: max pooling over this many frames after the convolutions (1: none).
        units: units per direction of each recurrent layer.
        recur_layers: bidirectional recurrent layers.
        rnn_type: "gru", "lstm" or "simple_rnn".
        normalization: after each recurrent layer: "batch", "layer" or "none".
        dropout_rate: dropout after every convolution and recurrent layer.
        mask_padding: give the RNNs the padding mask (see module docstring).
        output_dim: characters + blank.
        reset_after: GRU bias convention (True: Keras 3 / cuDNN / PyTorch).
    """
    if conv_layers < 1 or pool_size < 1:
        raise ValueError(f"conv_layers and pool_size must be at least 1, got {conv_layers} and {pool_size}")
    inputs = x = features_input(input_dim)  # (B, T, F)
    reductions: list[TimeReduction] = []
    for index in range(1, conv_layers + 1):
        stride = conv_stride if index == 1 else 1
        rate = dilation if stride == 1 else 1  # Keras convolutions cannot both stride and dilate
        x = padded_conv1d(
            x, inputs, reductions, filters, kernel_size, stride, conv_border_mode, rate, name=f"conv1d_{index}"
        )  # (B, T_i, filters)
        x = layers.Activation("relu", name=f"conv1d_{index}_relu")(
            layers.BatchNormalization(name=f"bn_conv1d_{index}")(x)
        )
        x = layers.Dropout(dropout_rate, name=f"conv1d_{index}_dropout")(x)
    if pool_size > 1:
        x = layers.MaxPooling1D(pool_size, name="max_pool")(x)  # (B, T_c // pool_size, filters)
        reductions.append(TimeReduction(pool_size, pool_size))
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x) if mask_padding else None
    x = _bidirectional_stack(x, mask, units, recur_layers, rnn_type, "concat", normalization, dropout_rate, reset_after)
    return finish_model(
        inputs, time_dense_softmax(x, output_dim), "cnn_birnn_model", lambda length: reduced_length(length, reductions)
    )


@model_builder
def deep_birnn_model(
    input_dim: int,
    units: int = 200,
    recur_layers: int = 3,
    rnn_type: str = "gru",
    normalization: str = "batch",
    dropout_rate: float = 0.2,
    mask_padding: bool = True,
    output_dim: int = ENGLISH.output_dim,
    reset_after: bool = True,
) -> keras.Model:
    """``recur_layers`` x (bidirectional RNN -> normalization -> dropout) -> time dense -> softmax.

    Arguments as in :func:`cnn_birnn_model`. No layer changes the frame rate.
    """
    inputs = features_input(input_dim)  # (B, T, F)
    mask = PaddingMask(name="padding_mask")(inputs, inputs) if mask_padding else None
    x = _bidirectional_stack(
        inputs, mask, units, recur_layers, rnn_type, "concat", normalization, dropout_rate, reset_after
    )
    return finish_model(inputs, time_dense_softmax(x, output_dim), "deep_birnn_model", lambda length: length)


def _conv2d_front_end(
    inputs: keras.KerasTensor,
    input_dim: int,
    filters: Sequence[int],
    kernels: Sequence[Sequence[int]],
    strides: Sequence[Sequence[int]],
    activation: Callable[[keras.KerasTensor, int], keras.KerasTensor],
    name: str,
) -> tuple[keras.KerasTensor, list[TimeReduction]]:
    """Conv2D layers over (time, frequency) with PyTorch-style symmetric zero padding (kernel // 2).

    Returns:
        ((B, T', F' * filters[-1]) tensor, list of TimeReduction of the time axis).
    """
    x = layers.Reshape((-1, input_dim, 1), name=f"{name}_to_image")(inputs)  # (B, T, F, 1)
    frequency = input_dim
    reductions: list[TimeReduction] = []
    for index, (channels, kernel, stride) in enumerate(zip(filters, kernels, strides), start=1):
        (time_kernel, frequency_kernel), (time_stride, frequency_stride) = kernel, stride
        padding = (time_kernel // 2, frequency_kernel // 2)
        if reductions:  # padded frames are non-zero after a conv + norm: re-zero them
            x = ZeroPadding(name=f"{name}_zero_{index}")(
                x, PaddingMask(reductions, name=f"{name}_mask_{index}")(inputs, x)
            )
        x = layers.ZeroPadding2D(((padding[0],) * 2, (padding[1],) * 2), name=f"{name}_pad_{index}")(x)
        x = layers.Conv2D(
            channels,
            (time_kernel, frequency_kernel),
            strides=(time_stride, frequency_stride),
            name=f"{name}_conv_{index}",
        )(x)  # (B, T_i, F_i, channels)
        x = activation(x, index)
        reductions.append(TimeReduction(time_kernel, time_stride, 2 * padding[0]))
        frequency = (frequency + 2 * padding[1] - frequency_kernel) // frequency_stride + 1  # >= 1 with this padding
    x = layers.Reshape((-1, frequency * filters[-1]), name=f"{name}_to_sequence")(x)  # (B, T', F' * C)
    return x, reductions


@model_builder
def deep_speech2_model(
    input_dim: int,
    conv_type: str = "2d",
    conv_filters: Sequence[int] = (32, 32),
    conv_kernels: Sequence = ((11, 41), (11, 21)),
    conv_strides: Sequence = ((2, 2), (1, 2)),
    units: int = 512,
    recur_layers: int = 3,
    rnn_type: str = "gru",
    fc_units: Sequence[int] = (1024,),
    relu_ceiling: float = 20.0,
    batch_norm: bool = True,
    dropout_rate: float = 0.1,
    mask_padding: bool = True,
    output_dim: int = ENGLISH.output_dim,
    reset_after: bool = True,
) -> keras.Model:
    """Deep Speech 2: convolutions -> bidirectional RNNs (directions summed) -> FC layers -> softmax.

    Every convolution and FC layer is followed by the clipped ReLU min(max(x, 0), relu_ceiling);
    with ``batch_norm`` each convolution and each recurrent layer is batch-normalized (the
    thesis of seed 002 found training failed without it).

    Args:
        input_dim: feature size F (161 spectrogram bins in DS2).
        conv_type: "2d" (over time x frequency; kernels and strides are (time, frequency) pairs)
            or "1d" (over time; kernels and strides are ints, padding "same").
        conv_filters: channels of each convolution.
        conv_kernels, conv_strides: per convolution (the defaults are the DS2 paper's two
            layers: 32@11x41 stride 2x2, then 32@11x21 stride 1x2).
        units: units of each recurrent layer (per direction; directions are summed).
        recur_layers: bidirectional recurrent layers.
        rnn_type: "gru", "lstm" or "simple_rnn".
        fc_units: widths of the fully connected layers before the output layer.
        relu_ceiling: the clipped ReLU's ceiling (20 in DS2).
        batch_norm: batch norm after convolutions and recurrent layers.
        dropout_rate: dropout after recurrent and FC layers.
        mask_padding, output_dim, reset_after: as in :func:`cnn_birnn_model`.
    """
    if conv_type not in ("1d", "2d") or not len(conv_filters) == len(conv_kernels) == len(conv_strides):
        raise ValueError(
            f"conv_type must be '1d' or '2d' with one kernel and stride per filter count, got {conv_type!r}, "
            f"{list(conv_filters)}, {list(conv_kernels)}, {list(conv_strides)}"
        )
    normalization = "batch" if batch_norm else "none"

    def activation(x: keras.KerasTensor, index: int) -> keras.KerasTensor:
        x = _normalization(normalization, f"conv_{index}_bn")(x)
        return layers.ReLU(max_value=relu_ceiling, name=f"conv_{index}_clipped_relu")(x)  # min(max(x, 0), ceiling)

    inputs = x = features_input(input_dim)  # (B, T, F)
    if conv_type == "2d":
        x, reductions = _conv2d_front_end(
            inputs, input_dim, conv_filters, conv_kernels, conv_strides, activation, "conv2d"
        )
    else:
        reductions = []
        for index, (channels, kernel, stride) in enumerate(zip(conv_filters, conv_kernels, conv_strides), start=1):
            x = activation(padded_conv1d(x, inputs, reductions, channels, kernel, stride, name=f"conv_{index}"), index)
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x) if mask_padding else None
    x = _bidirectional_stack(x, mask, units, recur_layers, rnn_type, "sum", normalization, dropout_rate, reset_after)
    for index, width in enumerate(fc_units, start=1):
        x = layers.Dense(width, name=f"fc_{index}")(x)
        x = layers.ReLU(max_value=relu_ceiling, name=f"fc_{index}_clipped_relu")(x)
        x = layers.Dropout(dropout_rate, name=f"fc_{index}_dropout")(x)
    return finish_model(
        inputs,
        time_dense_softmax(x, output_dim),
        "deep_speech2_model",
        lambda length: reduced_length(length, reductions),
    )


def _residual_cnn_block(
    x: keras.KerasTensor, mask: keras.KerasTensor, dropout_rate: float, name: str
) -> keras.KerasTensor:
    """(LN over frequency -> GELU -> dropout -> 3x3 conv) x 2 + skip; (B, T, F, C) -> same shape."""
    residual = x
    for index in (1, 2):
        x = layers.LayerNormalization(axis=2, epsilon=1e-5, name=f"{name}_norm_{index}")(x)  # over F, per (t, channel)
        x = layers.Dropout(dropout_rate, name=f"{name}_dropout_{index}")(
            layers.Activation("gelu", name=f"{name}_gelu_{index}")(x)
        )
        x = ZeroPadding(name=f"{name}_zero_{index}")(x, mask)
        x = layers.Conv2D(x.shape[-1], 3, padding="same", name=f"{name}_conv_{index}")(x)
    return layers.Add(name=f"{name}_residual")([x, residual])


@model_builder
def residual_cnn_bigru_model(
    input_dim: int = 128,
    conv_filters: int = 32,
    residual_blocks: int = 2,
    units: int = 512,
    recur_layers: int = 3,
    dropout_rate: float = 0.1,
    mask_padding: bool = True,
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Seed 003's ResidualCNN + BiGRU: Conv2D /2 -> residual CNN blocks -> linear -> BiGRUs -> classifier.

    Shapes: (B, T, F) -> Conv2D 3x3 stride 2 (PyTorch padding 1) -> (B, T', F', C) with
    T' = (T - 1) // 2 + 1 and F' = (F - 1) // 2 + 1 -> residual blocks -> (B, T', F' * C) -> Dense(units)
    -> recur_layers x (LN -> GELU -> BiGRU(units) -> dropout) -> Dense(units, GELU) -> dropout -> softmax.

    Args:
        input_dim: mel bands F (128 in the seed).
        conv_filters: channels C of every convolution (32).
        residual_blocks: residual CNN blocks (2 in the seed's printout, 3 in the tutorial).
        units: width of the linear layer, of each GRU direction and of the classifier (512).
        recur_layers: BiGRU layers (3 in the printout, 5 in the tutorial).
        dropout_rate: every dropout (0.1).
        mask_padding, output_dim: as in :func:`cnn_birnn_model`.
    """
    if residual_blocks < 0 or recur_layers < 1:
        raise ValueError(f"need residual_blocks >= 0 and recur_layers >= 1, got {residual_blocks}, {recur_layers}")
    inputs = features_input(input_dim)  # (B, T, F)
    x = layers.Reshape((-1, input_dim, 1), name="to_image")(inputs)  # (B, T, F, 1)
    x = layers.ZeroPadding2D(1, name="conv_pad")(x)
    x = layers.Conv2D(conv_filters, 3, strides=2, name="conv")(x)  # (B, T', F', C)
    reductions = [TimeReduction(3, 2, 2)]
    mask = PaddingMask(reductions, name="padding_mask")(inputs, x)  # (B, T')
    for block in range(1, residual_blocks + 1):
        x = _residual_cnn_block(x, mask, dropout_rate, f"residual_{block}")
    x = layers.Reshape((-1, x.shape[2] * conv_filters), name="to_sequence")(x)  # (B, T', F' * C)
    x = layers.Dense(units, name="fully_connected")(x)
    for index in range(1, recur_layers + 1):
        x = layers.LayerNormalization(epsilon=1e-5, name=f"birnn_{index}_norm")(x)
        x = layers.Activation("gelu", name=f"birnn_{index}_gelu")(x)
        gru = recurrent_layer("gru", units, f"birnn_{index}_gru", reset_after=True)
        x = layers.Bidirectional(gru, name=f"birnn_{index}")(x, mask=mask if mask_padding else None)  # (B, T', 2 units)
        x = layers.Dropout(dropout_rate, name=f"birnn_{index}_dropout")(x)
    x = layers.Dense(units, activation="gelu", name="classifier_hidden")(x)
    x = layers.Dropout(dropout_rate, name="classifier_dropout")(x)
    return finish_model(
        inputs,
        time_dense_softmax(x, output_dim),
        "residual_cnn_bigru_model",
        lambda length: reduced_length(length, reductions),
    )
