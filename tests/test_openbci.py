"""openbci: real BrainFlow boards (synthetic, playback; no mocks), sessions always released, files checked."""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

from ctclab.live import decoding as live_decoding
from ctclab.live import openbci
from ctclab.live.openbci import BoardConfig, BoardLayout, BoardSession


def read_samples(session: BoardSession, count: int, timeout_s: float = 20.0) -> np.ndarray:
    """Drain a session until ``count`` samples arrived (or the timeout passed)."""
    chunks, received, deadline = [], 0, time.monotonic() + timeout_s
    while received < count and time.monotonic() < deadline:
        time.sleep(0.02)
        chunks.append(session.read())
        received += chunks[-1].shape[1]
    return np.concatenate(chunks, axis=1)


# BrainFlow's board descriptions (brainflow_boards.cpp): rate, rows, EXG rows, timestamp, marker
PUBLISHED_LAYOUTS = [
    ("synthetic", 250, 32, list(range(1, 17)), 30, 31),
    ("cyton", 250, 24, list(range(1, 9)), 22, 23),
    ("cyton_daisy", 125, 32, list(range(1, 17)), 30, 31),
    ("cyton_wifi", 1000, 24, list(range(1, 9)), 22, 23),
]


@pytest.mark.parametrize("board, rate, rows, exg, timestamp, marker", PUBLISHED_LAYOUTS)
def test_layout_from_getters_matches_brainflow_board_table(board, rate, rows, exg, timestamp, marker):
    layout = BoardLayout.of(board)
    assert (layout.sampling_rate, layout.num_rows, list(layout.exg_rows)) == (rate, rows, exg)
    assert (layout.timestamp_row, layout.marker_row, layout.package_row) == (timestamp, marker, 0)
    assert isinstance(layout.sampling_rate, int)  # not numpy.int32 (DataFilter checks isinstance int)


def test_playback_board_reports_its_master_boards_layout(tmp_path):
    config = BoardConfig("playback", playback_file=str(tmp_path / "x.csv"), master_board="cyton")
    assert config.board_id == BoardIds.PLAYBACK_FILE_BOARD and config.data_board_id == BoardIds.CYTON_BOARD
    assert BoardSession(config).layout == BoardLayout.of("cyton")


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"board": "ganglion"}, "not one of"),
        ({"board": "cyton"}, "serial_port"),
        ({"board": "cyton_daisy"}, "serial_port"),
        ({"board": "cyton_wifi"}, "ip_port"),
        ({"board": "playback"}, "playback_file"),
        ({"board": "playback", "playback_file": "x.csv", "master_board": "playback"}, "master_board"),
        ({"buffer_samples": 0}, "buffer_samples"),
    ],
)
def test_bad_board_configuration_is_a_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        BoardConfig(**arguments)


def test_synthetic_board_streams_its_documented_signal():
    """Channel i is a 5(i+1) Hz sine on a DC offset; the package counter never skips."""
    with BoardSession() as session:
        assert session.sampling_rate == 250
        data = read_samples(session, 500)
    layout = session.layout
    assert np.all(np.diff(data[layout.package_row]) % 256 == 1)
    exg = data[list(layout.exg_rows)]  # (16, n)
    frequencies = np.fft.rfftfreq(exg.shape[1], 1 / layout.sampling_rate)
    peaks = [frequencies[np.argmax(np.abs(np.fft.rfft(channel - channel.mean())))] for channel in exg]
    np.testing.assert_allclose(peaks, 5.0 * np.arange(1, 17), atol=250 / exg.shape[1])
    assert np.all(np.diff(exg.mean(axis=1)) > 0)  # offsets grow with the channel number


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_session_releases_board_and_a_new_session_starts_at_once(interruption):
    config = BoardConfig()
    with pytest.raises(interruption), BoardSession(config) as session:
        read_samples(session, 10)
        raise interruption("killed mid-stream")
    assert not openbci.is_session_open(config)
    with BoardSession(config) as again:  # would be "Board ... already exists" if it leaked
        assert read_samples(again, 10).shape[1] >= 10


def test_session_left_open_by_earlier_code_is_released_with_a_warning():
    config = BoardConfig()
    leaked = BoardShim(config.board_id, config.input_params())
    leaked.prepare_session()
    leaked.start_stream()
    with pytest.warns(RuntimeWarning, match="left open"), BoardSession(config) as session:
        assert read_samples(session, 10).shape[1] >= 10
    assert not openbci.is_session_open(config)


def test_asking_whether_a_session_is_open_does_not_close_it():
    """A plain BoardShim would: its __del__ releases the session its parameters name."""
    config = BoardConfig()
    with BoardSession(config) as session:
        assert openbci.is_session_open(config)
        gc.collect()
        assert read_samples(session, 10).shape[1] >= 10
    assert not openbci.is_session_open(config)


def test_wrong_serial_port_names_board_port_and_fix():
    config = BoardConfig("cyton", serial_port="/dev/ttyUSB_ctc_lab_missing")
    with pytest.raises(openbci.BoardConnectionError) as error, BoardSession(config):
        pass
    message = str(error.value)
    assert "/dev/ttyUSB_ctc_lab_missing" in message and "UNABLE_TO_OPEN_PORT" in message and "dialout" in message
    assert isinstance(error.value, RuntimeError) and not openbci.is_session_open(config)


def test_board_disappearing_mid_stream_is_a_clear_error_and_exit_stays_clean():
    config = BoardConfig()
    with (
        pytest.raises(openbci.BoardDisconnectedError, match="synthetic board disappeared mid-stream"),
        BoardSession(config) as session,
    ):
        read_samples(session, 10)
        BoardShim(config.board_id, config.input_params()).release_session()  # the board vanishes
        session.read()
    assert not openbci.is_session_open(config)
    with BoardSession(config) as again:
        assert read_samples(again, 5).shape[1] >= 5


def test_reading_outside_the_with_block_says_so():
    session = BoardSession()
    with pytest.raises(openbci.BoardError, match="not open"):
        session.read()


def test_record_then_replay_through_the_playback_board(tmp_path):
    """A synthetic recording written by DataFilter comes back sample for sample from playback."""
    path = tmp_path / "recording.csv"
    with BoardSession() as session:
        recorded = openbci.record(session, 1.0, path)
    layout = BoardLayout.of("synthetic")
    np.testing.assert_allclose(openbci.read_board_file(path, "synthetic"), recorded, atol=1e-6)  # %lf: 6 decimals
    with BoardSession(BoardConfig("playback", playback_file=str(path), master_board="synthetic")) as session:
        replayed = read_samples(session, recorded.shape[1])
    assert replayed.shape == recorded.shape
    rows = [layout.package_row, *layout.exg_rows]
    np.testing.assert_allclose(replayed[rows], recorded[rows], atol=1e-6)


def write_script(tmp_path, master_board="cyton_wifi", speed=1.0):
    """Two recordings with a 10 Hz / 40 Hz sine on every channel, at 1000 Hz."""
    time_s = np.arange(1500) / 1000
    recordings = [
        (np.repeat(np.sin(2 * np.pi * f * time_s)[:, None] * 50, 8, axis=1), text)
        for f, text in ((10, "hello there"), (40, "go left"))
    ]
    return recordings, live_decoding.write_playback_file(tmp_path / "play.csv", recordings, 1000, master_board, speed)


def test_playback_file_layout_at_the_recording_rate(tmp_path):
    recordings, script = write_script(tmp_path, "cyton_wifi", speed=2.0)
    data = openbci.read_board_file(script.path, "cyton_wifi")
    layout = BoardLayout.of("cyton_wifi")
    assert (script.sampling_rate, script.num_samples, script.starts) == (1000, 3000, [0, 1500])
    assert script.texts == ["hello there", "go left"] and live_decoding.PlaybackScript.load(script.path) == script
    np.testing.assert_allclose(data[list(layout.exg_rows)].T, np.concatenate([emg for emg, _ in recordings]), atol=1e-6)
    assert np.flatnonzero(data[layout.marker_row]).tolist() == [0, 1500]
    assert data[layout.marker_row, [0, 1500]].tolist() == [1.0, 2.0]
    np.testing.assert_allclose(np.diff(data[layout.timestamp_row]), 1 / 2000, atol=1e-6)  # speed 2
    assert data[layout.package_row, 255:258].tolist() == [255.0, 0.0, 1.0]


def test_playback_file_resampled_to_cyton_rate_keeps_the_sine(tmp_path):
    _, script = write_script(tmp_path, "cyton")
    data = openbci.read_board_file(script.path, "cyton")
    assert (script.sampling_rate, script.num_samples, script.starts) == (250, 750, [0, 375])
    expected = 50 * np.sin(2 * np.pi * 10 * np.arange(375) / 250)  # the same sine sampled at 250 Hz
    np.testing.assert_allclose(data[1, 50:325], expected[50:325], atol=0.5)  # 1 % (edges ring)


def test_playback_board_replays_every_sample_of_the_file(tmp_path):
    _, script = write_script(tmp_path, "cyton_wifi", speed=4.0)
    with BoardSession(BoardConfig("playback", playback_file=script.path)) as session:
        replayed = read_samples(session, script.num_samples)
        time.sleep(0.2)
        assert session.read().shape[1] == 0  # the file is over: an empty buffer, not an error
    written = openbci.read_board_file(script.path, "cyton_wifi")
    assert replayed.shape[1] == script.num_samples
    np.testing.assert_allclose(replayed[1:9], written[1:9], atol=1e-6)
    assert np.all(replayed[BoardLayout.of("cyton_wifi").marker_row] == 0)  # live markers replace the file's


def malformed(lines: list[str], index: int, how: str) -> list[str]:
    fields = lines[index].split("\t")
    if how == "columns":
        fields = fields[:-3]
    elif how == "number":
        fields[2] = "12,5µV"
    elif how == "timestamp":
        fields[22] = "1000.0"
    elif how == "blank":
        fields = [""]
    return lines[:index] + ["\t".join(fields)] + lines[index + 1 :]


@pytest.mark.parametrize(
    "how, message",
    [
        ("columns", r"play.csv:8: 21 columns, but board 5 \(CYTON_WIFI_BOARD\) has 24 rows"),
        ("number", r"play.csv:8: not a number"),
        ("timestamp", r"play.csv:8: timestamp 1000.000000 is earlier than the line before"),
        ("blank", r"play.csv:8: blank line"),
    ],
)
def test_malformed_playback_line_is_named_before_any_session_opens(tmp_path, how, message):
    write_script(tmp_path)
    path = tmp_path / "play.csv"
    path.write_text("\n".join(malformed(path.read_text().splitlines(), 7, how)) + "\n")
    config = BoardConfig("playback", playback_file=str(path))
    with pytest.raises(openbci.PlaybackFileError, match=message), BoardSession(config):
        pass
    assert not openbci.is_session_open(config)


@pytest.mark.parametrize(
    "content, message", [(None, "does not exist"), ("", "empty playback file"), ("\n\n", "empty playback file")]
)
def test_missing_or_empty_playback_file(tmp_path, content, message):
    path = tmp_path / "play.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(openbci.PlaybackFileError, match=message):
        openbci.read_board_file(path, "cyton")


def test_playback_file_needs_one_channel_count_within_the_board(tmp_path):
    with pytest.raises(ValueError, match="EXG rows"):
        live_decoding.write_playback_file(tmp_path / "x.csv", [(np.zeros((100, 16)), "a")], 1000, "cyton")
    with pytest.raises(ValueError, match="no recordings"):
        live_decoding.write_playback_file(tmp_path / "x.csv", [], 1000)


def test_brainflow_input_params_follow_the_config():
    params = BoardConfig("cyton_wifi", ip_address="192.168.4.1", ip_port=6677).input_params()
    assert isinstance(params, BrainFlowInputParams)
    assert (params.ip_address, params.ip_port, params.file) == ("192.168.4.1", 6677, "")
