"""Live speech: the decoders for audio, the known sentences to replay, the offline reference.

The live pipeline of the sEMG decoders carries over to audio unchanged, one mono channel at the
features' rate (16 kHz), with no mains notch or high-pass:

- :func:`stateful_speech_decoder`: a streaming speech run (``ctclab.live.course_models``) on the
  spectrogram computed frame by frame (:class:`~ctclab.live.feature_stream.AudioFeatureStream`);
- :func:`windowed_speech_decoder`: any speech run (a bidirectional one: the baseline) re-run on
  overlapping windows (:class:`~ctclab.live.streaming.WindowedDecoder`);
- :func:`speech_recordings` reads test utterances with their text; :func:`offline_transcripts`
  decodes each whole utterance with the same model (the bound for the live transcripts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctclab.data.audio import read_audio
from ctclab.data.descriptors import read_descriptors
from ctclab.data.features import FeatureConfig, featurize
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.live.decoding import whole_transcripts
from ctclab.live.feature_stream import AudioFeatureStream
from ctclab.live.stateful import StatefulDecoder
from ctclab.live.streaming import StreamConfig, WindowedDecoder

if TYPE_CHECKING:
    import keras

    from ctclab.alphabet import Alphabet
    from ctclab.data.features import Normalizer

NO_FILTER = EMGFeatureConfig(mains_hz=None, highpass_hz=None)  # the windowed decoder's stream filter: off


def _check_features(feature_config: object) -> FeatureConfig:
    if not isinstance(feature_config, FeatureConfig):
        raise ValueError(f"a live speech decoder needs a speech run (audio features), got {feature_config!r}")
    return feature_config


def stateful_speech_decoder(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: FeatureConfig,
    alphabet: Alphabet,
    config: StreamConfig | None = None,
) -> StatefulDecoder:
    """A StatefulDecoder for a streaming speech run: mono audio at ``feature_config.sample_rate``."""
    features = _check_features(feature_config)
    rate = features.sample_rate
    return StatefulDecoder(
        model,
        AudioFeatureStream(features),
        normalizer,
        rate,
        rate,
        1,
        alphabet,
        config or StreamConfig(hop_ms=100.0),
    )


def windowed_speech_decoder(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: FeatureConfig,
    alphabet: Alphabet,
    config: StreamConfig | None = None,
) -> WindowedDecoder:
    """A WindowedDecoder for any speech run: windows of left context + hop + right context."""
    features = _check_features(feature_config)
    rate = features.sample_rate

    def window_features(audio: np.ndarray) -> np.ndarray:  # (samples, 1) -> (frames, F)
        return featurize(audio[:, 0], features)

    return WindowedDecoder(
        model,
        window_features,
        normalizer,
        input_rate=rate,
        model_rate=rate,
        channels=1,
        frame_hop_samples=features.hop_samples,
        alphabet=alphabet,
        config=config or StreamConfig(),
        signal_config=NO_FILTER,
    )


def speech_recordings(descriptor: str | Path, count: int, sample_rate: int = 16000) -> list[tuple[np.ndarray, str]]:
    """The first ``count`` utterances of a speech descriptor file: ((samples, 1) float64, text)."""
    entries = read_descriptors(descriptor)[:count]
    if not entries:
        raise ValueError(f"{descriptor}: no utterances")
    return [(read_audio(entry["key"], sample_rate).astype(np.float64)[:, None], entry["text"]) for entry in entries]


def offline_transcripts(
    model: keras.Model,
    normalizer: Normalizer,
    feature_config: FeatureConfig,
    alphabet: Alphabet,
    recordings: Sequence[tuple[np.ndarray, str]],
) -> list[str]:
    """Greedy transcripts of each whole recording with the training features."""
    config = _check_features(feature_config)
    return whole_transcripts(
        model, normalizer, lambda audio: featurize(np.asarray(audio).reshape(-1), config), alphabet, recordings
    )
