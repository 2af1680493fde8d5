"""StatefulDecoder: board chunks -> causal features -> stateful model equals the whole recording offline."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from test_feature_stream import emg_recording

from ctclab.alphabet import ENGLISH
from ctclab.data.features import FeatureConfig, Normalizer, featurize
from ctclab.decoding.greedy import greedy_decode
from ctclab.emg import signal as emg_signal
from ctclab.live import decoding as live_decoding
from ctclab.live import openbci
from ctclab.live.feature_stream import AudioFeatureStream
from ctclab.live.stateful import StatefulDecoder
from ctclab.live.streaming import StreamConfig
from ctclab.models.course import simple_rnn_model
from ctclab.models.streaming_models import chunked_transformer_model, lookahead_rnn_model

CAUSAL = emg_signal.EMGFeatureConfig(causal=True)


def small_emg_model(builder=lookahead_rnn_model) -> keras.Model:
    keras.utils.set_random_seed(0)
    if builder is lookahead_rnn_model:
        return builder(CAUSAL.feature_dim, conv_filters=16, kernel_size=3, units=16, recur_layers=1)
    return builder(CAUSAL.feature_dim, conv_filters=16, model_dim=16, num_heads=2, ff_dim=16, num_blocks=1)


def emg_decoder(model, input_rate: int, hop_ms: float = 100.0, recording=None):
    recording = emg_recording(np.random.default_rng(0)) if recording is None else recording
    normalizer = Normalizer.fit([emg_signal.emg_features(recording, CAUSAL)])
    return live_decoding.stateful_emg_decoder(
        model, normalizer, CAUSAL, ENGLISH, input_rate, StreamConfig(hop_ms=hop_ms)
    )


def push_in_chunks(decoder, x: np.ndarray, seed: int = 1) -> None:
    rng, start = np.random.default_rng(seed), 0
    while start < x.shape[0]:
        size = int(rng.integers(1, 160))
        decoder.push(x[start : start + size])
        start += size
    decoder.flush()


@pytest.mark.parametrize("builder", [lookahead_rnn_model, chunked_transformer_model])
def test_live_posteriors_equal_the_whole_recording_at_the_model_rate(builder):
    emg = emg_recording(np.random.default_rng(2), samples=4000)
    decoder = emg_decoder(small_emg_model(builder), 1000)
    push_in_chunks(decoder, emg)
    streamed, offline = np.concatenate(decoder.posteriors), decoder.offline_posteriors(emg)
    assert streamed.shape == offline.shape == (int(decoder.model.output_length(CAUSAL.num_frames(4000))), 29)
    np.testing.assert_allclose(streamed, offline, atol=2e-5)
    assert decoder.transcript == greedy_decode(offline)
    assert decoder.samples_in == decoder.samples_filtered == 4000
    assert decoder.samples_decoded == decoder.samples_resampled == 4000
    assert np.concatenate(decoder.positions).shape[0] == streamed.shape[0]


def test_a_250_hz_board_is_resampled_once_and_still_equals_the_offline_pass():
    emg = emg_recording(np.random.default_rng(3), samples=4000)[::4]  # (1000, 8): a 250 Hz board's samples
    decoder = emg_decoder(small_emg_model(), 250)
    push_in_chunks(decoder, emg)
    streamed, offline = np.concatenate(decoder.posteriors), decoder.offline_posteriors(emg)
    assert decoder.samples_resampled == 4 * 1000 - 40  # the polyphase FIR's delay, as in the windowed decoder
    np.testing.assert_allclose(streamed, offline, atol=2e-5)


def test_the_model_runs_once_per_chunk_of_hop_ms():
    emg = emg_recording(np.random.default_rng(4), samples=3000)
    decoder = emg_decoder(small_emg_model(), 1000, hop_ms=250)
    for start in range(0, 3000, 50):  # 20 ms polls of 50 samples
        decoder.push(emg[start : start + 50])
    decoder.flush()
    assert len(decoder.results) == 3000 // 250 + 1  # 12 chunks, then the flush
    assert [r.centre[1] - r.centre[0] for r in decoder.results[1:-1]] == [pytest.approx(250, abs=24)] * 11


def test_lookahead_is_the_features_plus_the_model():
    decoder = emg_decoder(small_emg_model(), 1000)
    # Gaddy frames wait (16 - 6 + 8) samples at 516.79 Hz; the model 2 outputs x stride 2 x 11.61 ms
    assert decoder.lookahead_ms == pytest.approx(1000 * 18 / 516.79 + 4 * 1000 * 6 / 516.79, rel=1e-6)


def test_speech_decoder_equals_the_whole_clip():
    config = FeatureConfig()
    keras.utils.set_random_seed(1)
    model = lookahead_rnn_model(config.feature_dim, conv_filters=16, kernel_size=5, units=16, recur_layers=2)
    rng = np.random.default_rng(5)
    audio = rng.normal(size=(16000, 1)) * 0.05
    normalizer = Normalizer.fit([featurize(audio[:, 0], config)])
    decoder = StatefulDecoder(model, AudioFeatureStream(config), normalizer, 16000, 16000, 1, ENGLISH)
    push_in_chunks(decoder, audio)
    np.testing.assert_allclose(np.concatenate(decoder.posteriors), decoder.offline_posteriors(audio), atol=2e-5)
    assert decoder.lookahead_ms == pytest.approx(10 + 2 * 2 * 10)


def test_models_and_features_that_cannot_stream_are_refused():
    with pytest.raises(ValueError, match="no streaming form"):
        emg_decoder(simple_rnn_model(CAUSAL.feature_dim), 1000)
    with pytest.raises(ValueError, match="causal=True"):
        live_decoding.stateful_emg_decoder(
            small_emg_model(),
            Normalizer.fit([np.zeros((4, 112))]),
            dataclasses.replace(CAUSAL, causal=False),
            ENGLISH,
            1000,
        )
    with pytest.raises(ValueError, match="shorter than one sample"):
        emg_decoder(small_emg_model(), 1000, hop_ms=0.1)


@pytest.mark.slow
def test_live_playback_through_brainflow(tmp_path):
    """BrainFlow's playback board at 4x, Cyton-WiFi layout: every sample decoded once, split by sentence."""
    rng = np.random.default_rng(6)
    recordings = [(emg_recording(rng, samples=1500), text) for text in ["one", "two", "three"]]
    script = live_decoding.write_playback_file(tmp_path / "live.csv", recordings, 1000, "cyton_wifi", 4.0)
    decoder = emg_decoder(small_emg_model(), script.sampling_rate)
    config = openbci.BoardConfig("playback", playback_file=script.path, master_board=script.master_board)
    with openbci.BoardSession(config) as session:
        report = live_decoding.run_stream(session, decoder, max_samples=script.num_samples)
    assert report.samples_in == report.samples_decoded == report.samples_resampled == 4500
    assert report.board_gaps == 0
    assert all(w.latency_s is not None for w in report.windows if w.centre[1] > w.centre[0] + 100)
    emg = openbci.read_board_file(script.path, "cyton_wifi")[1:9].T  # (samples, 8) as written
    np.testing.assert_allclose(np.concatenate(decoder.posteriors), decoder.offline_posteriors(emg), atol=2e-5)
    pieces = decoder.split_transcript(script.starts)
    assert "".join(pieces).replace(" ", "") == report.transcript.replace(" ", "")
