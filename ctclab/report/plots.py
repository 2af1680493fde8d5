"""Plots of the course: raw audio, spectrogram / MFCC features and loss curves side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_raw_audio(samples: np.ndarray, sample_rate: int = 16000, title: str = "Audio signal") -> Figure:
    """Waveform against time in seconds. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 3))
    axis.plot(np.arange(samples.shape[0]) / sample_rate, samples, linewidth=0.5)
    axis.set(title=title, xlabel="time (s)", ylabel="amplitude")
    figure.tight_layout()
    return figure


def _plot_feature(feature: np.ndarray, title: str, ylabel: str, step_ms: float) -> Figure:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 4))
    seconds = feature.shape[0] * step_ms / 1000
    image = axis.imshow(
        feature.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, feature.shape[1])
    )
    figure.colorbar(image, ax=axis, pad=0.01)
    axis.set(title=title, xlabel="time (s)", ylabel=ylabel)
    figure.tight_layout()
    return figure


def plot_spectrogram_feature(feature: np.ndarray, step_ms: float = 10.0) -> Figure:
    """Heat map of a (frames, bins) spectrogram; bins run 0 Hz (bottom) to max_freq."""
    return _plot_feature(feature, "Normalized spectrogram", "frequency bin", step_ms)


def plot_feature_pair(
    features: Mapping[str, np.ndarray], ylabel: str = "frequency bin", step_ms: float = 10.0
) -> Figure:
    """Heat maps of a few (frames, bins) features one above the other on one colour scale and time axis.

    ``features`` maps a title to its feature (e.g. {"clean": ..., "augmented": ...}); the colour
    scale spans all of them, so the same colour means the same value in every panel.
    """
    import matplotlib.pyplot as plt

    low = min(float(np.min(feature)) for feature in features.values())
    high = max(float(np.max(feature)) for feature in features.values())
    seconds = max(feature.shape[0] for feature in features.values()) * step_ms / 1000
    figure, axes = plt.subplots(len(features), 1, figsize=(12, 3.2 * len(features)), sharex=True, squeeze=False)
    for axis, (title, feature) in zip(axes[:, 0], features.items(), strict=True):
        extent = (0, feature.shape[0] * step_ms / 1000, 0, feature.shape[1])
        image = axis.imshow(feature.T, origin="lower", aspect="auto", cmap="magma", extent=extent, vmin=low, vmax=high)
        axis.set(title=title, ylabel=ylabel, xlim=(0, seconds))
        figure.colorbar(image, ax=axis, pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    return figure


def plot_mfcc_feature(feature: np.ndarray, step_ms: float = 10.0) -> Figure:
    """Heat map of a (frames, coefficients) MFCC matrix."""
    return _plot_feature(feature, "Normalized MFCC", "coefficient", step_ms)


def plot_loss_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = "CTC loss") -> Figure:
    """Training and validation loss of several models in one seaborn figure.

    Args:
        histories: model name -> Keras history dict with "loss" and optionally "val_loss".

    Returns:
        The matplotlib figure (solid lines: training; dashed: validation).
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rows = [
        {"model": name, "epoch": epoch + 1, "split": split, "loss": value}
        for name, history in histories.items()
        for key, split in (("loss", "training"), ("val_loss", "validation"))
        for epoch, value in enumerate(history.get(key, []))
    ]
    if not rows:
        raise ValueError("no loss values to plot: every history is empty")
    figure, axis = plt.subplots(figsize=(10, 5))
    sns.lineplot(data=pd.DataFrame(rows), x="epoch", y="loss", hue="model", style="split", marker="o", ax=axis)
    axis.set(title=title, ylabel="CTC loss per utterance")
    axis.set_yscale("log")
    axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    figure.tight_layout()
    return figure
