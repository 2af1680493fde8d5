"""The course's ``utils``: reading audio, speech features and plots (course names).

Owners: :mod:`ctclab.data.audio` (reading and checking audio), :mod:`ctclab.data.features`
(spectrogram, MFCC, log-mel and their configuration), :mod:`ctclab.report.plots` (figures).
"""

from ctclab.data.audio import AudioError, read_audio
from ctclab.data.features import FeatureConfig, calc_feat_dim, featurize, featurize_file, logmel, mfcc, spectrogram
from ctclab.report.plots import plot_loss_curves, plot_mfcc_feature, plot_raw_audio, plot_spectrogram_feature

__all__ = [
    "AudioError",
    "FeatureConfig",
    "calc_feat_dim",
    "featurize",
    "featurize_file",
    "logmel",
    "mfcc",
    "plot_loss_curves",
    "plot_mfcc_feature",
    "plot_raw_audio",
    "plot_spectrogram_feature",
    "read_audio",
    "spectrogram",
]
