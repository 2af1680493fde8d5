"""EMG-typing acoustic models for CTC: emg2qwerty's front end and seed 001's encoders.

Input layout. Every builder reads emg2qwerty's log spectrogram as the feature loaders write it
(:func:`ctclab.emg.signal.log_spectrogram`): frames (B, T, input_dim) with input_dim =
2 bands x 16 electrodes x F frequency bins, channel-major, the left wristband's electrodes
first, so feature ``(band * 16 + electrode) * F + bin`` (F = 33 for a 64-point FFT, 1056 in all).

Front end (:func:`typing_front_end`, shared by every builder, as in emg2qwerty's ``modules.py``):
a BatchNorm per electrode channel of each band (32 statistics, each over batch, time and
frequency), then per band a rotation-invariant MLP: the same MLP applied to the band's 16 x F
features under circular electrode rotations by ``offsets`` (-1, 0, 1: the band may sit one
electrode round the wrist either way), averaged over the rotations; the two bands' outputs are
concatenated, D = 2 x mlp_features[-1] features per frame.

Encoders after it (seed 001's table): :func:`tds_conv_ctc_model` (time-depth separable blocks:
emg2qwerty's unpadded ones, kernel 7, or with "same" padding, kernel 9), :func:`typing_lstm_model`
(4 bidirectional LSTM layers), :func:`tds_lstm_model` (LSTM after TDS) and
:func:`tds_mhsa_typing_model` (relative-position MHSA around padded TDS, the encoder of
:func:`ctclab.models.attention.tds_mhsa_model`).

Defaults are sized for quick CPU training (about 0.2-0.5 M parameters); emg2qwerty's size is
``mlp_features=(384,)`` and ``block_channels=(24, 24, 24, 24)`` (D = 768, about 5.3 M with kernel 32).
Padding: real output frames never depend on padded input frames (see ctclab.models.layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from ctclab.alphabet import ENGLISH
from ctclab.models.attention import _check_odd, _subsampled_attention, _tds_block
from ctclab.models.deep import _bidirectional_stack
from ctclab.models.layers import PACKAGE, PaddingMask, Shape, Tensor, TimeReduction, reduced_length
from ctclab.models.registry import features_input, finish_model, model_builder, time_dense_softmax

NUM_BANDS = 2  # wristbands: left, right (emg2qwerty)
ELECTRODES_PER_BAND = 16  # electrodes round each wrist (emg2qwerty)
POOLINGS = ("mean", "max")


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelectBand(layers.Layer):
    """(B, T, bands, E, F) -> (B, T, E, F): the electrodes of wristband ``band`` (0: left, 1: right)."""

    def __init__(self, band: int, **kwargs):
        super().__init__(**kwargs)
        self.band = band

    def call(self, x: Tensor) -> Tensor:
        return x[:, :, self.band]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[1], *input_shape[3:])

    def get_config(self) -> dict:
        return dict(super().get_config(), band=self.band)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RotationInvariantMLP(layers.Layer):
    """One band's MLP, pooled over circular rotations of its electrodes (emg2qwerty).

    For each offset o the band is rolled by o electrodes (electrode e takes electrode
    (e - o) mod E's features, ``np.roll``), flattened to E x F features and passed through the
    same ReLU MLP; the outputs are averaged (or maximized) over the offsets. Offsets covering all
    E rotations make the output exactly invariant to rotating the band; (-1, 0, 1) only
    approximately: rotating the input by k equals pooling over the offsets shifted by k.

    Args:
        mlp_features: widths of the MLP's ReLU layers; the output has mlp_features[-1].
        offsets: electrode rotations to pool over.
        pooling: "mean" or "max".

    Call: band (B, T, E, F) -> (B, T, mlp_features[-1]).
    """

    def __init__(
        self, mlp_features: Sequence[int], offsets: Sequence[int] = (-1, 0, 1), pooling: str = "mean", **kwargs
    ):
        super().__init__(**kwargs)
        if not mlp_features or any(width < 1 for width in mlp_features):
            raise ValueError(f"mlp_features must be positive layer widths, got {list(mlp_features)}")
        if not offsets:
            raise ValueError(f"offsets must name at least one rotation, got {list(offsets)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.mlp_features, self.offsets, self.pooling = list(mlp_features), list(offsets), pooling
        self.dense_layers = [
            layers.Dense(width, activation="relu", name=f"dense_{index}", dtype=self.dtype_policy)
            for index, width in enumerate(self.mlp_features, start=1)
        ]

    def build(self, input_shape: Shape) -> None:
        electrodes, bins = input_shape[2], input_shape[3]
        if electrodes is None or bins is None:
            raise ValueError(f"the band's electrode and frequency sizes must be known, got shape {input_shape}")
        self.band_features = features = electrodes * bins  # E * F
        for dense in self.dense_layers:
            dense.build((None, None, None, features))
            features = dense.units

    def call(self, band: Tensor) -> Tensor:
        rotated = ops.stack([ops.roll(band, offset, axis=2) for offset in self.offsets], axis=2)  # (B, T, R, E, F)
        shape = ops.shape(rotated)
        x = ops.reshape(rotated, (shape[0], shape[1], len(self.offsets), self.band_features))  # (B, T, R, E*F)
        for dense in self.dense_layers:
            x = dense(x)  # (B, T, R, width)
        return ops.mean(x, axis=2) if self.pooling == "mean" else ops.max(x, axis=2)  # (B, T, H)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[1], self.mlp_features[-1])

    def get_config(self) -> dict:
        return dict(super().get_config(), mlp_features=self.mlp_features, offsets=self.offsets, pooling=self.pooling)


def typing_front_end(
    features: keras.KerasTensor,
    mlp_features: Sequence[int] = (64,),
    offsets: Sequence[int] = (-1, 0, 1),
    pooling: str = "mean",
    num_bands: int = NUM_BANDS,
    electrodes_per_band: int = ELECTRODES_PER_BAND,
) -> keras.KerasTensor:
    """emg2qwerty's spectrogram normalization and per-band rotation-invariant MLP.

    Args:
        features: (B, T, bands * E * F) log spectrogram, channel-major (module docstring).
        mlp_features: widths of each band's MLP layers (emg2qwerty: (384,)).
        offsets: electrode rotations each band's MLP pools over.
        pooling: "mean" (emg2qwerty) or "max" over the rotations.
        num_bands, electrodes_per_band: the layout (2 x 16 for emg2qwerty).

    Returns:
        (B, T, num_bands * mlp_features[-1]); frame t depends on input frame t only (in training
        the BatchNorm's batch statistics include padded frames, as in emg2qwerty).
    """
    channels = num_bands * electrodes_per_band
    if features.shape[-1] % channels:
        raise ValueError(f"input_dim must be a multiple of {channels} electrode channels, got {features.shape[-1]}")
    bins = features.shape[-1] // channels  # F
    x = layers.Reshape((-1, channels, bins), name="spectrogram_split")(features)  # (B, T, bands*E, F)
    x = layers.BatchNormalization(axis=2, name="spectrogram_norm")(x)  # one mean / variance per electrode channel
    x = layers.Reshape((-1, num_bands, electrodes_per_band, bins), name="band_split")(x)  # (B, T, bands, E, F)
    bands = [
        RotationInvariantMLP(mlp_features, offsets, pooling, name=f"band_{band + 1}_mlp")(
            SelectBand(band, name=f"band_{band + 1}")(x)
        )  # (B, T, H)
        for band in range(num_bands)
    ]
    return layers.Concatenate(name="band_concat")(bands) if num_bands > 1 else bands[0]  # (B, T, bands*H)


def _fully_connected_block(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """TDS fully connected block: LayerNorm(x + Dense(ReLU(Dense(x)))); (B, T, D) -> (B, T, D)."""
    num_features = x.shape[-1]
    y = layers.Dense(num_features, activation="relu", name=f"{name}_1")(x)
    y = layers.Dense(num_features, name=f"{name}_2")(y)
    return layers.LayerNormalization(name=f"{name}_norm")(layers.Add(name=f"{name}_residual")([x, y]))


def _unpadded_tds_block(x: keras.KerasTensor, channels: int, kernel_size: int, name: str) -> keras.KerasTensor:
    """emg2qwerty's TDS block, "valid" over time: (B, T, D) -> (B, T - kernel_size + 1, D), D = channels * width.

    Output frame j sees input frames j .. j + kernel_size - 1 (real outputs never see padding)
    and takes its residual from the last of them; then the fully connected block.
    """
    num_features = x.shape[-1]
    width = num_features // channels
    y = layers.Reshape((-1, width, channels), name=f"{name}_split")(x)  # (B, T, width, channels)
    y = layers.Conv2D(channels, (kernel_size, 1), activation="relu", name=f"{name}_conv")(y)  # (B, T-k+1, width, c)
    y = layers.Reshape((-1, num_features), name=f"{name}_merge")(y)  # (B, T-k+1, D)
    residual = layers.Cropping1D((kernel_size - 1, 0), name=f"{name}_crop")(x)  # (B, T-k+1, D): frames k-1 ..
    x = layers.LayerNormalization(name=f"{name}_conv_norm")(layers.Add(name=f"{name}_conv_residual")([residual, y]))
    return _fully_connected_block(x, f"{name}_fc")


def tds_encoder(
    x: keras.KerasTensor,
    features: keras.KerasTensor,
    reductions: list[TimeReduction],
    block_channels: Sequence[int],
    kernel_size: int,
    padded: bool,
    name: str = "tds",
) -> keras.KerasTensor:
    """TDS convolution + fully connected blocks, one per entry of ``block_channels``.

    Args:
        x: (B, T, D) front-end output; every entry of ``block_channels`` (convolution channels) divides D.
        features: (B, T0, F) model input, the source of the padding mask.
        reductions: the TimeReductions from ``features`` to ``x``; the blocks' are appended.
        kernel_size, padded: convolution length in frames; "same" blocks (odd kernel) or unpadded ones.

    Returns:
        (B, T', D), T' = reduced_length(T0, reductions) after the append.
    """
    num_features = x.shape[-1]
    if not block_channels or any(c < 1 or num_features % c for c in block_channels):
        raise ValueError(
            f"every block channel count must divide the {num_features} features, got {list(block_channels)}"
        )
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be positive, got {kernel_size}")
    if padded:
        _check_odd("kernel_size", kernel_size)
        mask = PaddingMask(list(reductions), name=f"{name}_mask")(features, x)  # (B, T)
    for block, channels in enumerate(block_channels, start=1):
        if padded:
            x = _tds_block(x, mask, channels, kernel_size, f"{name}_{block}")
            reductions.append(TimeReduction(kernel_size, 1, kernel_size - 1))  # "same": T' = T
        else:
            x = _unpadded_tds_block(x, channels, kernel_size, f"{name}_{block}")
            reductions.append(TimeReduction(kernel_size))  # "valid": T' = T - (kernel_size - 1)
    return x


def _lstm_module(
    x: keras.KerasTensor, mask: keras.KerasTensor, units: int, recur_layers: int, dropout_rate: float
) -> keras.KerasTensor:
    """Seed 001's LSTM module: bidirectional LSTMs, a TDS FC block, a Dense back to D. (B, T, D) -> (B, T, D)."""
    if units < 1:
        raise ValueError(f"units must be positive, got {units}")
    num_features = x.shape[-1]
    y = _bidirectional_stack(x, mask, units, recur_layers, "lstm", "concat", "none", dropout_rate, True, "lstm")
    y = _fully_connected_block(y, "lstm_fc")  # (B, T, 2 units)
    return layers.Dense(num_features, name="lstm_expand")(y)  # (B, T, D)


def _finish(
    inputs: keras.KerasTensor, x: keras.KerasTensor, output_dim: int, name: str, reductions: list[TimeReduction]
) -> keras.Model:
    """The CTC softmax on ``x`` and the model, T' = reduced_length(T, reductions) (unpadded blocks: -(k - 1) each)."""
    return finish_model(inputs, time_dense_softmax(x, output_dim), name, lambda n: reduced_length(n, reductions))


@model_builder
def tds_conv_ctc_model(
    input_dim: int,
    mlp_features: Sequence[int] = (64,),
    block_channels: Sequence[int] = (16, 16, 16, 16),
    kernel_size: int = 7,
    padded: bool = False,
    offsets: Sequence[int] = (-1, 0, 1),
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Front end -> TDS blocks -> CTC softmax: emg2qwerty's baseline, or seed 001's padded TDS.

    Unpadded (emg2qwerty): ``output_length(T) = T - len(block_channels) * (kernel_size - 1)``
    (T - 24 by default), so inputs need at least that + 1 frames (25: 200 ms at 125 Hz).
    Padded (``padded=True, kernel_size=9``, seed 001's biggest single gain): ``output_length(T) = T``.

    Args:
        input_dim: 2 x 16 x F spectrogram features (module docstring).
        mlp_features: each band's MLP widths; D = 2 x mlp_features[-1] (128).
        block_channels: one TDS block per entry; each divides D.
        kernel_size: TDS convolution length in frames (7: seed 001's largest unpadded one that
            worked on 300 ms windows; emg2qwerty's 32 needs 4 s windows); odd when ``padded``.
        padded: "same" blocks that keep every frame instead of unpadded ones.
        offsets: electrode rotations of the rotation-invariant MLP.
        output_dim: characters + blank.
    """
    inputs = features_input(input_dim)  # (B, T, 32 F)
    reductions: list[TimeReduction] = []
    x = typing_front_end(inputs, mlp_features, offsets)  # (B, T, D)
    x = tds_encoder(x, inputs, reductions, block_channels, kernel_size, padded)  # (B, T', D)
    return _finish(inputs, x, output_dim, "tds_conv_ctc_model", reductions)


@model_builder
def typing_lstm_model(
    input_dim: int,
    mlp_features: Sequence[int] = (64,),
    units: int = 48,
    recur_layers: int = 4,
    dropout_rate: float = 0.0,
    offsets: Sequence[int] = (-1, 0, 1),
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Front end -> bidirectional LSTM module -> CTC softmax; ``output_length(T) = T``.

    Args:
        input_dim, mlp_features, offsets, output_dim: as :func:`tds_conv_ctc_model`.
        units: LSTM units per direction (seed 001: 128 with D = 768).
        recur_layers: bidirectional LSTM layers (seed 001: 4).
        dropout_rate: dropout after each LSTM layer.
    """
    inputs = features_input(input_dim)  # (B, T, 32 F)
    x = typing_front_end(inputs, mlp_features, offsets)  # (B, T, D)
    mask = PaddingMask(name="padding_mask")(inputs, x)  # (B, T)
    x = _lstm_module(x, mask, units, recur_layers, dropout_rate)  # (B, T, D)
    return _finish(inputs, x, output_dim, "typing_lstm_model", [])


@model_builder
def tds_lstm_model(
    input_dim: int,
    mlp_features: Sequence[int] = (64,),
    block_channels: Sequence[int] = (16, 16, 16, 16),
    kernel_size: int = 9,
    padded: bool = True,
    units: int = 48,
    recur_layers: int = 4,
    dropout_rate: float = 0.0,
    offsets: Sequence[int] = (-1, 0, 1),
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Front end -> TDS blocks -> LSTM module -> CTC softmax (seed 001's "LSTM after TDS").

    ``output_length(T) = T`` when ``padded`` (seed 001), else ``T - len(block_channels) * (kernel_size - 1)``.

    Args: as :func:`tds_conv_ctc_model` and :func:`typing_lstm_model`.
    """
    inputs = features_input(input_dim)  # (B, T, 32 F)
    reductions: list[TimeReduction] = []
    x = typing_front_end(inputs, mlp_features, offsets)  # (B, T, D)
    x = tds_encoder(x, inputs, reductions, block_channels, kernel_size, padded)  # (B, T', D)
    mask = PaddingMask(list(reductions), name="padding_mask")(inputs, x)  # (B, T')
    x = _lstm_module(x, mask, units, recur_layers, dropout_rate)  # (B, T', D)
    return _finish(inputs, x, output_dim, "tds_lstm_model", reductions)


@model_builder
def tds_mhsa_typing_model(
    input_dim: int,
    mlp_features: Sequence[int] = (64,),
    block_channels: Sequence[int] = (16, 16, 16, 16),
    kernel_size: int = 9,
    attention_dim: int = 64,
    num_heads: int = 4,
    dropout_rate: float = 0.1,
    offsets: Sequence[int] = (-1, 0, 1),
    output_dim: int = ENGLISH.output_dim,
) -> keras.Model:
    """Front end -> MHSA module -> padded TDS blocks -> MHSA module -> CTC softmax; ``output_length(T) = T``.

    Seed 001's best model: subsampled relative-position self-attention (LN, Dense down to
    ``attention_dim``, attention, Dense back up, residual) sandwiching the padded TDS encoder.

    Args:
        input_dim, mlp_features, block_channels, offsets, output_dim: as :func:`tds_conv_ctc_model`.
        kernel_size: odd TDS convolution length in frames.
        attention_dim: width the MHSA modules attend in (seed 001: 128 with D = 768).
        num_heads: attention heads; ``attention_dim`` must divide evenly among them.
        dropout_rate: dropout in the attention modules and before the output layer.
    """
    if num_heads < 1 or attention_dim % num_heads:
        raise ValueError(f"attention_dim {attention_dim} is not divisible by num_heads {num_heads}")
    inputs = features_input(input_dim)  # (B, T, 32 F)
    reductions: list[TimeReduction] = []
    x = typing_front_end(inputs, mlp_features, offsets)  # (B, T, D)
    mask = PaddingMask(name="padding_mask")(inputs, x)  # (B, T)
    x = _subsampled_attention(x, mask, attention_dim, num_heads, dropout_rate, "attention_in")
    x = tds_encoder(x, inputs, reductions, block_channels, kernel_size, padded=True)  # (B, T, D)
    x = _subsampled_attention(x, mask, attention_dim, num_heads, dropout_rate, "attention_out")
    x = layers.Dropout(dropout_rate, name="output_dropout")(x)
    return _finish(inputs, x, output_dim, "tds_mhsa_typing_model", reductions)
