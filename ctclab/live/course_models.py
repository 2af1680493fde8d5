"""The streaming models the course trains for live decoding (notebook 06, benchmarks/streaming.py).

Both are Deep Speech 2's deployment design (:func:`ctclab.models.streaming_models.lookahead_rnn_model`):
a causal strided convolution, unidirectional GRUs and a look-ahead row convolution over two
output frames, so each output waits for a fixed, short stretch of future signal instead of the
whole sentence. They train on features a live stream can compute once per sample:

- sEMG: Gaddy-style features with ``EMGFeatureConfig(causal=True)`` (filters forward only, no mean
  removal), stride 3 like notebook 04's model: one output per 34.8 ms, 69.7 ms look-ahead, plus
  the features' 34.8 ms; trained on streams of 1-3 recordings back to back
  (``emg.training.stream_descriptors``), as live playback delivers them;
- speech: the course's 161-bin spectrogram (frame-local, so already streamable), stride 3: one
  output per 30 ms, 60 ms look-ahead, plus the 20 ms window's 10 ms past its hop.

Runs go under ``profile.results_for("streaming")``.
"""

from __future__ import annotations

from pathlib import Path

import keras

from ctclab.data.features import FeatureConfig
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.models.streaming_models import lookahead_rnn_model
from ctclab.profiles import Profile

FAMILY = "streaming"
EMG_RUN = "emg_streaming"
SPEECH_RUN = "speech_streaming"
EMG_FEATURES = EMGFeatureConfig(causal=True)
SPEECH_FEATURES = FeatureConfig(kind="spectrogram")


def streaming_emg_model(units: int = 128) -> keras.Model:
    """The sEMG streaming model: causal conv 192 x 5 stride 3, 2 GRUs of ``units``, 2-frame look-ahead."""
    return lookahead_rnn_model(
        EMG_FEATURES.feature_dim, conv_filters=192, kernel_size=5, conv_stride=3, units=units, recur_layers=2
    )


def streaming_speech_model(units: int = 200) -> keras.Model:
    """The speech streaming model: causal conv 192 x 11 stride 3, 2 GRUs of ``units``, 2-frame look-ahead."""
    return lookahead_rnn_model(
        SPEECH_FEATURES.feature_dim, conv_filters=192, kernel_size=11, conv_stride=3, units=units, recur_layers=2
    )


def train_streaming_emg(profile: Profile, epochs: int | None = None, verbose: int = 2) -> Path:
    """Train :func:`streaming_emg_model` on the profile's synthetic sEMG corpus (voiced and silent).

    Args:
        profile: sizes the model, the data and the epochs (smoke: 1 epoch on its limits).
        epochs: override the profile's (quick 14, like notebook 04's model).

    Returns:
        The run folder, ``<profile.results_for("streaming")>/emg_streaming``.
    """
    from ctclab.emg import corpus as emg_corpus
    from ctclab.emg import training as emg
    from ctclab.training.trainer import train_model

    root = emg.emg_corpus_dir(profile)
    emg_corpus.build_emg_corpus(root, profile.corpus_dir, emg_corpus.corpus_config_for(profile.name))  # cached
    descriptors = emg.gaddy_descriptor_set(root, f"{root}/descriptors")
    streams = emg.stream_descriptors(descriptors["train"], f"{root}/descriptors/train_streams.json")
    model = streaming_emg_model(profile.pick(smoke=32, quick=128, full=192))
    print(f"--- {EMG_RUN}: {model.count_params():,} parameters")
    train_model(
        model,
        f"{EMG_RUN}.pickle",
        f"{EMG_RUN}.keras",
        streams,  # 1-3 recordings back to back: the model learns to carry its state into a new sentence
        descriptors["dev"],
        minibatch_size=profile.minibatch_size,
        epochs=epochs or profile.pick(smoke=1, quick=14, full=40),
        sort_by_duration=True,
        optimizer=keras.optimizers.Adam(2e-3, clipnorm=5.0),
        features=EMG_FEATURES,
        feature_loader=emg.EMGFeatureLoader(EMG_FEATURES),
        results_dir=profile.results_for(FAMILY),
        limit=profile.train_limit,
        valid_limit=profile.valid_limit,
        verbose=verbose,
    )
    return Path(profile.results_for(FAMILY)) / EMG_RUN


def train_streaming_speech(profile: Profile, epochs: int | None = None, verbose: int = 2) -> Path:
    """Train :func:`streaming_speech_model` on the profile's speech corpus.

    Args:
        profile: sizes the model, the data and the epochs.
        epochs: override the profile's (quick 8).

    Returns:
        The run folder, ``<profile.results_for("streaming")>/speech_streaming``.
    """
    from ctclab.data import corpus
    from ctclab.training.experiments import train_family
    from ctclab.training.options import OptimizerConfig

    corpus.build_corpus(profile.corpus_dir, corpus.CorpusConfig(num_utterances=profile.corpus_size))  # cached
    model = streaming_speech_model(profile.pick(smoke=32, quick=200, full=256))
    train_family(
        {SPEECH_RUN: model},
        profile,
        FAMILY,
        epochs=epochs or profile.pick(smoke=1, quick=8, full=30),
        features=SPEECH_FEATURES,
        schedule=OptimizerConfig(peak_learning_rate=2e-3, warmup_epochs=0.5),
        verbose=verbose,
    )
    return Path(profile.results_for(FAMILY)) / SPEECH_RUN
