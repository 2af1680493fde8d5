"""Live speech: replayed audio through the stateful and windowed decoders, the microphone, the figures."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import soundfile

from ctclab.alphabet import ENGLISH
from ctclab.data.features import FeatureConfig, Normalizer, featurize
from ctclab.decoding.metrics import cer
from ctclab.live import comparison, speech
from ctclab.live.sources import MicrophoneUnavailable, listen, replay
from ctclab.live.streaming import StreamConfig
from ctclab.models.course import bidirectional_rnn_model
from ctclab.models.streaming_models import lookahead_rnn_model

CONFIG = FeatureConfig()


def recordings(count: int = 3, seconds: float = 0.8) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(0)
    samples = int(16000 * seconds)
    return [(rng.normal(size=(samples, 1)) * 0.05, text) for text in ["one", "two", "three"][:count]]


def normalizer() -> Normalizer:
    return Normalizer.fit([featurize(audio[:, 0], CONFIG) for audio, _ in recordings()])


def streaming_model() -> keras.Model:
    keras.utils.set_random_seed(2)
    return lookahead_rnn_model(CONFIG.feature_dim, conv_filters=16, kernel_size=5, conv_stride=3, units=16)


def test_a_replayed_recording_is_decoded_once_and_equals_the_offline_pass():
    audio = np.concatenate([a for a, _ in recordings()])
    decoder = speech.stateful_speech_decoder(streaming_model(), normalizer(), CONFIG, ENGLISH)
    seen = []
    report = replay(decoder, audio, speed=8.0, on_window=seen.append)
    assert report.samples_in == report.samples_decoded == audio.shape[0]
    assert seen == report.windows and len(report.windows) >= 3
    np.testing.assert_allclose(np.concatenate(decoder.posteriors), decoder.offline_posteriors(audio), atol=2e-5)
    stamped = [w for w in report.windows if w.latency_s is not None]
    assert stamped and all(w.latency_s > 0 for w in stamped)  # acquisition precedes text


def test_windowed_speech_decoder_covers_the_stream():
    keras.utils.set_random_seed(3)
    model = bidirectional_rnn_model(CONFIG.feature_dim, units=8)
    decoder = speech.windowed_speech_decoder(model, normalizer(), CONFIG, ENGLISH, StreamConfig(hop_ms=200))
    audio = np.concatenate([a for a, _ in recordings()])
    report = replay(decoder, audio, speed=8.0)
    assert report.samples_in == audio.shape[0] and report.samples_decoded == report.samples_resampled
    positions = np.concatenate(decoder.positions)
    assert np.all(np.diff(positions) > 0)  # each frame position once, in order
    assert decoder.lookahead_ms == 120.0  # the default right context


def test_speech_decoders_refuse_a_run_on_other_features():
    from ctclab.emg.signal import EMGFeatureConfig

    with pytest.raises(ValueError, match="speech run"):
        speech.stateful_speech_decoder(streaming_model(), normalizer(), EMGFeatureConfig(), ENGLISH)


def test_the_microphone_is_used_or_its_absence_explained():
    import sounddevice

    try:
        sounddevice.query_devices(kind="input")
    except sounddevice.PortAudioError:
        decoder = speech.stateful_speech_decoder(streaming_model(), normalizer(), CONFIG, ENGLISH)
        with pytest.raises(MicrophoneUnavailable, match="no microphone: PortAudio finds no input device"):
            listen(decoder, seconds=1.0)
    else:
        pytest.skip("this machine has a microphone: listen() records from it (try the notebook)")


def test_speech_recordings_read_a_descriptor(tmp_path):
    lines = []
    for index, (audio, text) in enumerate(recordings(2)):
        path = tmp_path / f"{index}.wav"
        soundfile.write(path, audio[:, 0], 16000, subtype="FLOAT")
        lines.append(json.dumps({"key": str(path), "duration": len(audio) / 16000, "text": text}))
    (tmp_path / "test.json").write_text("\n".join(lines) + "\n")
    read = speech.speech_recordings(tmp_path / "test.json", 5)
    assert [text for _, text in read] == ["one", "two"]
    np.testing.assert_allclose(read[0][0], recordings(1)[0][0], atol=1e-7)
    with pytest.raises(ValueError, match="no utterances"):
        (tmp_path / "empty.json").write_text("")
        speech.speech_recordings(tmp_path / "empty.json", 5)


def test_a_comparison_row_holds_the_live_and_offline_figures():
    decoder = speech.stateful_speech_decoder(streaming_model(), normalizer(), CONFIG, ENGLISH)
    clips = recordings()
    row = comparison.replay_row("stateful", decoder, clips, offline=["one", "twx", "three"], speed=8.0)
    references = [text for _, text in clips]
    assert row["CER offline"] == pytest.approx(1 / 11)  # one substitution in 11 characters
    assert row["CER live"] == pytest.approx(cer(references, decoder.split_transcript([0, 12800, 25600])))
    assert row["live / offline"] == pytest.approx(row["CER live"] / row["CER offline"])
    assert row["look-ahead ms"] == pytest.approx(10 + 2 * 3 * 10) and row["chunk ms"] == 100.0
    assert row["parameters"] == decoder.model.count_params() and row["calls"] == len(decoder.results)
    table = comparison.comparison_table([row])
    assert table.loc["stateful", "CER offline"] == round(100 / 11, 1)
    assert not math.isnan(table.loc["stateful", "processing ms median"])
