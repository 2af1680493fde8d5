"""streaming + live_decoding: chunked DSP equals whole-signal DSP, windows tile the stream, live playback."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers
from scipy import signal

from ctclab.alphabet import ENGLISH
from ctclab.data.features import Normalizer
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.metrics import cer
from ctclab.emg import signal as emg_signal
from ctclab.live import decoding as live_decoding
from ctclab.live import openbci
from ctclab.live.streaming import (
    CausalFilter,
    IncrementalGreedyDecoder,
    SampleRing,
    StreamConfig,
    StreamResampler,
    WindowedDecoder,
)
from ctclab.models.course import bidirectional_rnn_model
from ctclab.models.registry import cnn_output_length, finish_model

# H3's log-spectrogram features at 1000 Hz, 32-sample frames every 10 samples, no filtering:
# a frame grid that starts at sample 0, so windows and the whole signal share it.
SPECTROGRAM = emg_signal.EMGFeatureConfig(
    kind="log_spectrogram",
    sample_rate=1000.0,
    num_channels=8,
    mains_hz=None,
    highpass_hz=None,
    feature_rate=None,
    frame_length=32,
    frame_hop=10,
)
features = functools.partial(emg_signal.emg_features, config=SPECTROGRAM)


def conv_model(input_dim: int, stride: int) -> keras.Model:
    """A tiny CTC model with a finite receptive field (+-2 frames, then a valid strided conv)."""
    inputs = keras.Input(shape=(None, input_dim), name="the_input")  # (B, T, F)
    x = layers.Conv1D(16, 5, padding="same", activation="relu", name="conv_same")(inputs)
    x = layers.Conv1D(16, 3, strides=stride, padding="valid", activation="relu", name="conv_valid")(x)  # (B, T', 16)
    logits = layers.Dense(ENGLISH.output_dim, name="time_dense")(x)
    outputs = layers.Activation("softmax", name="softmax", dtype="float32")(logits)
    return finish_model(inputs, outputs, "conv_model", lambda length: cnn_output_length(length, 3, "valid", stride))


def emg_like(num_samples: int, rate: int, seed: int) -> np.ndarray:
    """(num_samples, 8) band-limited noise with a slowly varying envelope, a DC offset and 60 Hz hum."""
    rng = np.random.default_rng(seed)
    carrier = signal.sosfilt(
        signal.butter(4, [20, min(450, 0.45 * rate)], "bandpass", fs=rate, output="sos"),
        rng.normal(size=(num_samples, 8)),
        axis=0,
    )
    envelope = 1 + np.abs(np.cumsum(rng.normal(size=(num_samples, 1)), axis=0)) / np.sqrt(num_samples)
    hum = 5 * np.sin(2 * np.pi * 60 * np.arange(num_samples) / rate)[:, None]
    return 30 * carrier * envelope + hum + 300.0


def chunks_of(array: np.ndarray, sizes) -> list[np.ndarray]:
    pieces, start, sizes = [], 0, list(sizes)
    while start < len(array):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(array[start : start + size])
        start += size
    return pieces


# ------------------------------------------------------------------------------- DSP pieces


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 40), sizes=st.lists(st.integers(0, 60), min_size=1, max_size=8))
def test_sample_ring_holds_the_newest_samples_of_the_stream(capacity, sizes):
    stream = np.arange(300, dtype=np.float64).reshape(150, 2)
    ring = SampleRing(capacity, 2)
    for piece in chunks_of(stream, [size or 1 for size in sizes]):
        ring.append(piece)
        length = min(capacity, ring.total)
        np.testing.assert_array_equal(ring.read(ring.total - length, length), stream[ring.total - length : ring.total])
    with pytest.raises(ValueError, match="not in the ring"):
        ring.read(ring.total - capacity - 1, 1)


@settings(max_examples=15, deadline=None)
@given(
    rates=st.sampled_from([(250, 1000), (1000, 250), (125, 1000), (200, 1000), (250, 500)]),
    sizes=st.lists(st.integers(0, 97), min_size=1, max_size=6),
)
def test_chunked_resampling_equals_one_pass_over_the_stream(rates, sizes):
    x = np.random.default_rng(0).normal(size=(1200, 3))
    resampler = StreamResampler(*rates)
    chunked = np.concatenate([resampler.process(piece) for piece in chunks_of(x, [size or 1 for size in sizes])])
    whole = signal.upfirdn(resampler.taps, x, resampler.up, resampler.down, axis=0)  # scipy, all at once
    np.testing.assert_allclose(chunked, whole[resampler.delay : resampler.delay + len(chunked)], atol=1e-12)
    assert len(chunked) == (resampler.up * len(x) - 1) // resampler.down + 1 - resampler.delay


@pytest.mark.parametrize("input_rate, output_rate", [(250, 1000), (1000, 250), (125, 1000)])
def test_resampled_sine_is_the_sine_sampled_at_the_new_rate(input_rate, output_rate):
    sine = np.sin(2 * np.pi * 20 * np.arange(4 * input_rate) / input_rate)[:, None]  # 4 s of 20 Hz
    resampler = StreamResampler(input_rate, output_rate)
    output = np.concatenate([resampler.process(piece) for piece in chunks_of(sine, [50])])
    expected = np.sin(2 * np.pi * 20 * np.arange(len(output)) / output_rate)[:, None]  # no delay: aligned
    middle = slice(len(output) // 4, 3 * len(output) // 4)
    np.testing.assert_allclose(output[middle], expected[middle], atol=2e-3)


def test_equal_rates_pass_through():
    x = np.random.default_rng(1).normal(size=(100, 2))
    assert StreamResampler(1000, 1000).process(x) is x


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 200), min_size=1, max_size=6))
def test_chunked_filter_equals_sosfilt_over_the_whole_stream(sizes):
    x = emg_like(2000, 1000, seed=2)
    chunked = CausalFilter(1000, 8)
    output = np.concatenate([chunked.process(piece) for piece in chunks_of(x, sizes)])
    reference = CausalFilter(1000, 8)
    initial = signal.sosfilt_zi(reference.sos)[:, :, None] * x[0][None, None, :]
    np.testing.assert_allclose(output, signal.sosfilt(reference.sos, x, axis=0, zi=initial)[0], atol=1e-9)


def test_filter_removes_offset_and_mains_and_keeps_emg_band():
    rate, seconds = 1000, 6
    time_s = np.arange(rate * seconds) / rate
    tones = {frequency: np.sin(2 * np.pi * frequency * time_s) for frequency in (60, 180, 90, 150)}
    x = np.stack([*tones.values(), np.full_like(time_s, 250.0)], axis=1)  # (T, 5): hum, hum, EMG, EMG, offset
    settled = CausalFilter(rate, 5).process(x)[2 * rate :]  # after two seconds
    gain_db = 20 * np.log10(np.sqrt(np.mean(settled[:, :4] ** 2, axis=0)) / np.sqrt(0.5))
    assert gain_db[0] < -30 and gain_db[1] < -30  # 60 Hz and its 3rd harmonic: notched
    np.testing.assert_allclose(gain_db[2:], 0.0, atol=0.5)  # 90 and 150 Hz pass
    assert np.abs(settled[:, 4]).max() < 1e-3 * 250  # the electrode offset is gone
    assert CausalFilter(250, 1).sos.shape[0] == 2 + 2  # at 250 Hz only 60 and 120 Hz lie below Nyquist


# ---------------------------------------------------------------------- merging window outputs


@settings(max_examples=60, deadline=None)
@given(
    path=st.lists(st.sampled_from([ENGLISH.blank_index, 9, 9, 14, 2, 1]), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=5),
)
def test_incremental_greedy_equals_greedy_over_the_concatenation(path, cuts):
    probabilities = np.eye(ENGLISH.output_dim)[path]  # (T, C) one-hot frames
    decoder = IncrementalGreedyDecoder()
    for piece in np.split(probabilities, sorted(set(cuts))):
        decoder.feed(piece)
    assert decoder.text == greedy_decode(probabilities)
    assert len(decoder.character_frames) == len(decoder.text) and decoder.frames == len(path)


@pytest.mark.parametrize(
    "windows, expected",
    [
        (["hh", "h-i"], "hi"),  # a run crossing the border: one h
        (["l-", "l"], "ll"),  # a blank before the border: two l's
        (["l", "-l"], "ll"),  # a blank after the border
        (["l", "l"], "l"),  # no blank anywhere: one l, as CTC says
        (["-", "--", "a"], "a"),
    ],
)
def test_window_borders_follow_the_ctc_collapse(windows, expected):
    def frames(text):  # "-" is the blank
        return np.eye(ENGLISH.output_dim)[
            [ENGLISH.blank_index if c == "-" else ENGLISH.text_to_int_sequence(c)[0] for c in text]
        ]

    decoder = IncrementalGreedyDecoder()
    added = [decoder.feed(frames(window)) for window in windows]
    assert decoder.text == expected == "".join(added)


# -------------------------------------------------------------------------- windowed decoder


def spectrogram_decoder(input_rate: int, stride: int, **config) -> WindowedDecoder:
    normalizer = Normalizer.fit([features(emg_like(3000, 1000, seed=5))])
    model = conv_model(SPECTROGRAM.feature_dim, stride)
    return WindowedDecoder(model, features, normalizer, input_rate, 1000, 8, 10, config=StreamConfig(**config))


@pytest.mark.parametrize("input_rate, stride, sizes", [(1000, 1, [37, 300, 1]), (250, 2, [64]), (1000, 2, [999])])
def test_streamed_windows_equal_one_pass_over_the_whole_signal(input_rate, stride, sizes):
    """With a model whose receptive field fits in the context, kept centres = offline frames."""
    decoder = spectrogram_decoder(input_rate, stride)
    x = emg_like(5 * input_rate + 37, input_rate, seed=3)
    for piece in chunks_of(x, sizes):
        decoder.push(piece)
    decoder.flush()
    streamed = np.concatenate(decoder.posteriors)  # (frames, C)
    offline = decoder.offline_posteriors(x)
    margin = 3  # the final window ends before the signal does: its last frames see less future
    # float32 through XLA (windows) vs eager (whole): equal to ~1e-4; a one-frame misalignment
    # would differ by O(0.1-1)
    np.testing.assert_allclose(streamed[:-margin], offline[: len(streamed) - margin], rtol=1e-3, atol=1e-4)
    assert abs(len(streamed) - len(offline)) <= margin
    positions = np.concatenate(decoder.positions)
    np.testing.assert_array_equal(positions, 10 * stride * np.arange(len(streamed)))  # no frame twice or skipped
    assert decoder.transcript == greedy_decode(streamed)  # the merge is greedy on the concatenation
    assert decoder.samples_in == decoder.samples_filtered == len(x)
    assert decoder.samples_decoded == decoder.signal.total  # every resampled sample is in a centre


def test_windows_hop_by_the_configured_hop():
    decoder = spectrogram_decoder(1000, 2)
    results = decoder.push(emg_like(3000, 1000, seed=4))
    assert [result.centre for result in results][:3] == [(0, 900), (900, 1200), (1200, 1500)]
    assert all(result.latency_s is None for result in results)  # no timestamps given


@pytest.mark.parametrize(
    "config, message",
    [
        ({"right_context_ms": 0}, "right_context_ms 0 is too short"),
        ({"hop_ms": 0.1}, "shorter than one sample"),
    ],
)
def test_bad_window_configuration(config, message):
    with pytest.raises(ValueError, match=message):
        spectrogram_decoder(1000, 2, **config)


def test_pushing_the_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"expected a \(samples, 8\) chunk"):
        spectrogram_decoder(1000, 1).push(np.zeros((10, 16)))


def test_emg_decoder_filters_the_stream_once_with_the_runs_settings():
    config = emg_signal.EMGFeatureConfig()  # Gaddy: 112 features, 11.61 ms frames
    model = bidirectional_rnn_model(config.feature_dim, units=8)
    normalizer = Normalizer(np.zeros(config.feature_dim, np.float32), np.ones(config.feature_dim, np.float32))
    decoder = live_decoding.emg_decoder(model, normalizer, config, ENGLISH, input_rate=250)
    assert decoder.filter.sos.shape[0] == 7 + 2  # notches at 60-420 Hz + order-3 high-pass, at 1000 Hz
    x = emg_like(2500, 250, seed=6)
    decoder.push(x)
    decoder.flush()
    assert decoder.samples_decoded == decoder.signal.total == (4 * 2500 - 1) + 1 - 40
    assert decoder.feature_function.keywords["config"].mains_hz is None  # not notched a second time per window
    assert abs(decoder.unit - config.frame_hop_ms) < 1e-9


def test_split_transcript_assigns_each_character_to_the_utterance_of_its_frame():
    decoder = spectrogram_decoder(1000, 1)
    path = [ENGLISH.text_to_int_sequence(c)[0] if c != "-" else ENGLISH.blank_index for c in "a-b c-d"]
    decoder.greedy.feed(np.eye(ENGLISH.output_dim)[path])
    decoder.positions = [10.0 * np.arange(len(path))]  # frame k at model sample 10 k
    # characters at samples a 0, b 20, " " 30, c 40, d 60; utterances start at 0, 15 and 45
    assert decoder.split_transcript([0, 15, 45]) == ["a", "b c", "d"]
    assert decoder.split_transcript([0, 25, 35]) == ["ab", "", "cd"]  # a space alone is stripped


# ------------------------------------------------------------------- live, through BrainFlow


def playback_script(tmp_path, master_board: str = "cyton", speed: float = 4.0):
    """Three 1.5 s EMG-like recordings at 1000 Hz in a playback file of ``master_board``."""
    recordings = [(emg_like(1500, 1000, seed=seed), text) for seed, text in enumerate(["one", "two", "three"])]
    return live_decoding.write_playback_file(tmp_path / "live.csv", recordings, 1000, master_board, speed)


def playback_config(script) -> openbci.BoardConfig:
    return openbci.BoardConfig("playback", playback_file=script.path, master_board=script.master_board)


@pytest.mark.slow
def test_live_playback_decodes_every_sample_like_the_offline_pass(tmp_path):
    """BrainFlow's playback board at 4x, Cyton layout (250 Hz -> 1000 Hz): nothing lost, same frames."""
    script = playback_script(tmp_path)
    decoder = spectrogram_decoder(250, 2)
    windows = []
    with openbci.BoardSession(playback_config(script)) as session:
        report = live_decoding.run_stream(session, decoder, max_samples=script.num_samples, on_window=windows.append)
    assert report.samples_in == report.samples_filtered == script.num_samples == 3 * 375
    assert report.samples_decoded == report.samples_resampled == 4 * script.num_samples - 40  # minus the FIR delay
    assert report.board_gaps == 0 and windows == report.windows
    assert all(window.latency_s is not None for window in report.windows)
    emg = openbci.read_board_file(script.path, "cyton")[1:9].T  # (samples, 8) as written
    streamed, offline = np.concatenate(decoder.posteriors), decoder.offline_posteriors(emg)
    np.testing.assert_allclose(streamed[:-3], offline[: len(streamed) - 3], rtol=1e-3, atol=1e-4)
    pieces = decoder.split_transcript(script.starts)
    assert "".join(pieces).replace(" ", "") == report.transcript.replace(" ", "")
    table, corpus_cer = live_decoding.score_playback(decoder, script)
    assert list(table["reference"]) == ["one", "two", "three"] and corpus_cer == cer(script.texts, pieces)
    summary = report.summary()
    assert summary["windows"] == len(report.windows) and summary["samples in"] == script.num_samples


def test_a_stream_that_stops_sending_raises_a_stall_error_and_releases(tmp_path):
    script = playback_script(tmp_path, "cyton_wifi", speed=8.0)
    decoder = spectrogram_decoder(1000, 1, stall_timeout_s=0.5)
    config = playback_config(script)
    with (
        pytest.raises(openbci.BoardStalledError, match=r"no samples from the playback board .* after 4500 samples"),
        openbci.BoardSession(config) as session,
    ):
        live_decoding.run_stream(session, decoder, max_samples=script.num_samples + 1000)
    assert decoder.samples_in == decoder.samples_filtered == script.num_samples
    assert not openbci.is_session_open(config)


def test_killing_the_stream_midway_leaves_no_session_open(tmp_path):
    script = playback_script(tmp_path, "cyton_wifi", speed=4.0)
    config = playback_config(script)

    def interrupt(result):
        if result.index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), openbci.BoardSession(config) as session:
        live_decoding.run_stream(
            session, spectrogram_decoder(1000, 1), max_samples=script.num_samples, on_window=interrupt
        )
    assert not openbci.is_session_open(config)
    with openbci.BoardSession(config) as session:  # the same board again, at once
        report = live_decoding.run_stream(session, spectrogram_decoder(1000, 1), max_samples=script.num_samples)
    assert report.samples_in == script.num_samples


def test_decoder_and_board_rates_must_agree(tmp_path):
    script = playback_script(tmp_path, "cyton")
    with openbci.BoardSession(playback_config(script)) as session:
        with pytest.raises(ValueError, match="streams at 250 Hz, the decoder expects 1000 Hz"):
            live_decoding.run_stream(session, spectrogram_decoder(1000, 1), max_samples=10)
        with pytest.raises(ValueError, match="max_samples or max_seconds"):
            live_decoding.run_stream(session, spectrogram_decoder(250, 1))
