"""OpenBCI boards through BrainFlow: sessions that are always released, recordings, playback files.

Boards (``BoardConfig.board``):

- ``"synthetic"``: BrainFlow's SYNTHETIC_BOARD, no hardware; channel i is a 5(i+1) Hz sine on a
  DC offset plus noise, 250 Hz.
- ``"playback"``: PLAYBACK_FILE_BOARD replaying a file in the row layout of its master board
  (``master_board``), paced by the file's timestamp column, stamped with arrival time.
- ``"cyton"`` / ``"cyton_daisy"``: OpenBCI over the USB dongle (``serial_port``), 250 / 125 Hz.
- ``"cyton_wifi"``: Cyton with the WiFi shield (``ip_port``, optional ``ip_address``), 1000 Hz,
  the board Gaddy & Klein recorded their sEMG with.

Sampling rates, EXG rows, timestamp / marker / package-number rows always come from BoardShim's
getters (:class:`BoardLayout`), never from constants here. A playback board reports its master
board's layout.

:class:`BoardSession` is a context manager: prepare + start on entry, stop + release on any
exit (an exception, a KeyboardInterrupt, a notebook cell interrupted). BrainFlow keys sessions by
(board id, input parameters) and refuses a second ``prepare_session`` with "Board with id ... and
the same config already exists" while one is open; a session left open by earlier code (a
BoardShim never released) is released first, with a warning, so re-running a cell never hits it.
(A pitfall: ``BoardShim.__del__`` releases the session its parameters name, so a throwaway
BoardShim made only to ask ``is_prepared()`` closes a live session; :func:`is_session_open` asks
without that side effect.)

Files: BrainFlow's format is one sample per line, one column per row of the board layout,
tab-separated (``DataFilter.write_file`` transposes the (rows, samples) array). The playback
board silently skips a line with the wrong column count and keeps the previous value for a
field it cannot parse, so :func:`read_board_file` checks every line first and names the bad one.
It also overwrites the marker row with live ``insert_marker`` values (0 when none), so markers
written into a playback file reach offline readers only; a live reader finds utterance starts
by counting samples (:class:`ctclab.live.decoding.PlaybackScript`), exact because no sample is dropped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from brainflow.board_shim import (
    BoardIds,
    BoardShim,
    BrainFlowError,
    BrainFlowInputParams,
)
from brainflow.data_filter import DataFilter
from brainflow.exit_codes import BrainFlowExitCodes
from brainflow.utils import LogLevels

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

BOARDS = {
    "synthetic": BoardIds.SYNTHETIC_BOARD,
    "playback": BoardIds.PLAYBACK_FILE_BOARD,
    "cyton": BoardIds.CYTON_BOARD,
    "cyton_daisy": BoardIds.CYTON_DAISY_BOARD,
    "cyton_wifi": BoardIds.CYTON_WIFI_BOARD,
}
# BrainFlow's board logger prints every session's input parameters at INFO; keep warnings and errors.
BoardShim.set_log_level(LogLevels.LEVEL_WARN)
SERIAL_BOARDS = ("cyton", "cyton_daisy")
PORT_HINT = (
    "use the full device path (/dev/ttyUSB0 on Linux, /dev/cu.usbserial-* on macOS, COM3 on "
    "Windows), make sure your user may open it (Linux: the dialout group) and that no other "
    "program (the OpenBCI GUI) holds it"
)


class BoardError(RuntimeError):
    """A board could not be used; the message names the board and the problem."""


class BoardConnectionError(BoardError):
    """prepare_session / start_stream failed: wrong serial port, unreachable WiFi shield, ..."""


class BoardDisconnectedError(BoardError):
    """The board's session vanished mid-stream (unplugged, released elsewhere)."""


class BoardStalledError(BoardError):
    """No new sample arrived for longer than the stall timeout (an empty buffer that stays empty)."""


class PlaybackFileError(ValueError):
    """A recording or playback file BrainFlow would misread; names the file, line and problem."""


@dataclass(frozen=True)
class BoardConfig:
    """Which board to open and how.

    Attributes:
        board: one of :data:`BOARDS` ("synthetic" needs no hardware and no other field).
        serial_port: Cyton / Cyton-Daisy dongle port, e.g. "/dev/ttyUSB0" or "COM3".
        ip_address: Cyton-WiFi shield address ("" lets BrainFlow search for it).
        ip_port: Cyton-WiFi: a free local port the shield streams to (e.g. 6677); required.
        playback_file: the file a "playback" board replays.
        master_board: the board whose row layout and rate the playback file uses.
        buffer_samples: BrainFlow's own ring buffer in samples (450,000: its default, 30 min at
            250 Hz); the oldest samples are overwritten when nobody drains it.
        loop_playback: replay the file again from the start when it ends (BrainFlow "loopback").
    """

    board: str = "synthetic"
    serial_port: str = ""
    ip_address: str = ""
    ip_port: int = 0
    playback_file: str = ""
    master_board: str = "cyton_wifi"
    buffer_samples: int = 450_000
    loop_playback: bool = False

    def __post_init__(self) -> None:
        if self.board not in BOARDS:
            raise ValueError(f"board {self.board!r} is not one of {sorted(BOARDS)}")
        if self.master_board not in BOARDS or self.master_board == "playback":
            raise ValueError(f"master_board {self.master_board!r} must be a recording board of {sorted(BOARDS)}")
        if self.board in SERIAL_BOARDS and not self.serial_port:
            raise ValueError(f"board {self.board!r} needs serial_port ({PORT_HINT})")
        if self.board == "cyton_wifi" and not self.ip_port:
            raise ValueError("board 'cyton_wifi' needs ip_port: a free local port the WiFi shield streams to")
        if self.board == "playback" and not self.playback_file:
            raise ValueError("board 'playback' needs playback_file")
        if self.buffer_samples < 1:
            raise ValueError(f"buffer_samples must be positive, got {self.buffer_samples}")

    @property
    def board_id(self) -> int:
        return int(BOARDS[self.board])

    @property
    def data_board_id(self) -> int:
        """The board id whose layout the data has: the master board for playback."""
        return int(BOARDS[self.master_board if self.board == "playback" else self.board])

    @property
    def label(self) -> str:
        """How messages name this board, e.g. "cyton board (/dev/ttyUSB0)"."""
        detail = {
            "playback": self.playback_file,
            "cyton_wifi": f"{self.ip_address or 'any address'}:{self.ip_port}",
            **dict.fromkeys(SERIAL_BOARDS, self.serial_port),
        }.get(self.board, "")
        return f"{self.board} board" + (f" ({detail})" if detail else "")

    def input_params(self) -> BrainFlowInputParams:
        """BrainFlow's parameters, holding only the fields this board reads (they key its session)."""
        params = BrainFlowInputParams()
        if self.board in SERIAL_BOARDS:
            params.serial_port = self.serial_port
        elif self.board == "cyton_wifi":
            params.ip_address, params.ip_port = self.ip_address, self.ip_port
        elif self.board == "playback":
            params.file, params.master_board = str(self.playback_file), self.data_board_id
        return params


@dataclass(frozen=True)
class BoardLayout:
    """Where things are in a (num_rows, samples) BrainFlow array, from BoardShim's getters.

    Attributes:
        board_id: the board whose description this is.
        sampling_rate: samples per second per channel, in Hz.
        num_rows: rows of every data array (and columns of every file line).
        exg_rows: the ExG (EEG / EMG) channel rows, in channel order.
        timestamp_row: unix time in seconds of each sample.
        marker_row: values inserted with insert_marker (0 elsewhere).
        package_row: the package counter (0-255 on OpenBCI) used to spot samples the board lost.
    """

    board_id: int
    sampling_rate: int
    num_rows: int
    exg_rows: tuple[int, ...]
    timestamp_row: int
    marker_row: int
    package_row: int

    @classmethod
    def of(cls, board: int | str) -> BoardLayout:
        board_id = int(BOARDS[board]) if isinstance(board, str) else int(board)
        return cls(
            board_id=board_id,
            sampling_rate=int(BoardShim.get_sampling_rate(board_id)),
            num_rows=int(BoardShim.get_num_rows(board_id)),
            exg_rows=tuple(int(row) for row in BoardShim.get_exg_channels(board_id)),
            timestamp_row=int(BoardShim.get_timestamp_channel(board_id)),
            marker_row=int(BoardShim.get_marker_channel(board_id)),
            package_row=int(BoardShim.get_package_num_channel(board_id)),
        )


def layout_table(boards: Sequence[str] = ("synthetic", "cyton", "cyton_daisy", "cyton_wifi")) -> pd.DataFrame:
    """One row per board: rate and rows from BoardShim's getters, as a pandas DataFrame."""
    import pandas as pd

    rows = []
    for board in boards:
        layout = BoardLayout.of(board)
        rows.append(
            {
                "board": board,
                "id": layout.board_id,
                "rate (Hz)": layout.sampling_rate,
                "rows": layout.num_rows,
                "EXG rows": f"{layout.exg_rows[0]}-{layout.exg_rows[-1]}",
                "timestamp row": layout.timestamp_row,
                "marker row": layout.marker_row,
            }
        )
    return pd.DataFrame(rows).set_index("board")


class BoardSession:
    """A started BrainFlow stream that is stopped and released however the ``with`` block ends.

    Example:
        >>> with BoardSession(BoardConfig("synthetic")) as session:
        ...     time.sleep(1.0)
        ...     data = session.read()  # (session.layout.num_rows, ~250) float64

    Attributes:
        config: the board configuration.
        layout: rows and sampling rate of the data (the master board's for playback).
        samples_read: samples drained by :meth:`read` so far.
    """

    def __init__(self, config: BoardConfig = BoardConfig()):
        self.config = config
        self.layout = BoardLayout.of(config.data_board_id)
        self.samples_read = 0
        self.board: BoardShim | None = None

    def __enter__(self) -> BoardSession:  # noqa: PYI034  (typing.Self needs 3.11)
        if self.config.board == "playback":
            check_playback_file(self.config.playback_file, self.config.master_board)
        self.board = BoardShim(self.config.board_id, self.config.input_params())
        release_stale_session(self.config)
        try:
            self.board.prepare_session()
            if self.config.board == "playback" and self.config.loop_playback:
                self.board.config_board("loopback_true")
            self.board.start_stream(self.config.buffer_samples)
        except BrainFlowError as error:
            self._release()
            hint = f"; {PORT_HINT}" if self.config.board in SERIAL_BOARDS else ""
            raise BoardConnectionError(f"could not start the {self.config.label}: {error}{hint}") from error
        except BaseException:  # interrupted while opening (a hanging port): __exit__ will not run
            self._release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: TracebackType | None
    ) -> Literal[False]:
        self._release()
        return False  # never swallow the exception (KeyboardInterrupt included)

    def _release(self) -> None:
        """Stop and release, tolerating a stream never started or a session already gone."""
        if self.board is None:
            return
        for step in (self.board.stop_stream, self.board.release_session):
            try:
                step()
            except BrainFlowError:
                pass  # not streaming / not prepared any more: nothing left to free
        self.board = None

    @property
    def sampling_rate(self) -> int:
        """The rate this session reports (BoardShim.get_board_sampling_rate, as a Python int)."""
        return int(self._board().get_board_sampling_rate())

    def _board(self) -> BoardShim:
        if self.board is None:
            raise BoardError(f"the {self.config.label} session is not open (use it inside `with`)")
        return self.board

    def read(self) -> np.ndarray:
        """Drain every sample BrainFlow has buffered: (layout.num_rows, n) float64, n may be 0.

        Raises:
            BoardDisconnectedError: the session is gone (board unplugged or released elsewhere).
        """
        try:
            data = self._board().get_board_data()
        except BrainFlowError as error:
            raise BoardDisconnectedError(
                f"the {self.config.label} disappeared mid-stream after {self.samples_read} samples: {error}"
            ) from error
        self.samples_read += data.shape[1]
        return data

    def peek(self, num_samples: int) -> np.ndarray:
        """The newest ``num_samples`` (or fewer) without removing them: (num_rows, n) float64."""
        try:
            return self._board().get_current_board_data(int(num_samples))
        except BrainFlowError as error:
            raise BoardDisconnectedError(f"the {self.config.label} disappeared: {error}") from error

    def insert_marker(self, value: float) -> None:
        """Put ``value`` (non-zero) in the marker row of the next sample."""
        self._board().insert_marker(float(value))


class _SessionProbe(BoardShim):
    """A BoardShim that only asks: BoardShim.__del__ releases the session its parameters name, so a
    throwaway BoardShim used for is_prepared() would close a live session when collected."""

    def __del__(self) -> None:
        pass


def is_session_open(config: BoardConfig) -> bool:
    """Whether BrainFlow holds a prepared session for this board and these parameters (no side effect)."""
    return _SessionProbe(config.board_id, config.input_params()).is_prepared()


def release_stale_session(config: BoardConfig) -> bool:
    """Release a session for the same board and parameters that earlier code left prepared.

    Returns:
        True when one was released (a warning says so), False when there was none.
    """
    if not is_session_open(config):
        return False
    stale = BoardShim(config.board_id, config.input_params())
    warnings.warn(f"released a {config.label} session left open by earlier code", RuntimeWarning, stacklevel=3)
    try:
        stale.stop_stream()
    except BrainFlowError as error:
        if error.exit_code != BrainFlowExitCodes.STREAM_THREAD_IS_NOT_RUNNING:
            raise
    stale.release_session()
    return True


def collect(session: BoardSession, seconds: float, poll_s: float = 0.05) -> np.ndarray:
    """Everything the board sends during ``seconds``: (num_rows, n) float64."""
    chunks, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        chunks.append(session.read())
    return np.concatenate(chunks, axis=1)


def record(session: BoardSession, seconds: float, path: str | Path) -> np.ndarray:
    """Record ``seconds`` of a session into BrainFlow's file format (``DataFilter.write_file``).

    Returns:
        The recorded (num_rows, n) array; replay the file with ``BoardConfig("playback",
        playback_file=path, master_board=<the recording board>)``.
    """
    data = collect(session, seconds)
    DataFilter.write_file(np.ascontiguousarray(data), str(path), "w")
    return data


# ------------------------------------------------------------------------- files and playback


def read_board_file(path: str | Path, board: str | int) -> np.ndarray:
    """Read a BrainFlow file (tab- or comma-separated) after checking every line.

    Args:
        path: a file written by ``DataFilter.write_file`` or ``ctclab.live.decoding.write_playback_file``.
        board: the board whose layout the file has (the playback master board).

    Returns:
        (num_rows, samples) float64, the orientation BrainFlow's getters use.

    Raises:
        PlaybackFileError: missing or empty file, a line whose column count is not the board's
            row count, a value that is not a number, or a timestamp going backwards; the message
            names the file, the line and the problem.
    """
    layout = BoardLayout.of(board)
    path = Path(path)
    if not path.is_file():
        raise PlaybackFileError(f"{path}: playback file does not exist")
    lines = path.read_text().splitlines()
    if not any(line.strip() for line in lines):
        raise PlaybackFileError(f"{path}: empty playback file (no samples)")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise PlaybackFileError(f"{path}:{number}: blank line (one sample per line, no gaps)")
        fields = line.strip().split("\t" if "\t" in line else ",")
        if len(fields) != layout.num_rows:
            raise PlaybackFileError(
                f"{path}:{number}: {len(fields)} columns, but board {layout.board_id} "
                f"({BoardIds(layout.board_id).name}) has {layout.num_rows} rows; "
                "BrainFlow's playback would skip this line"
            )
        try:
            rows.append([float(value) for value in fields])
        except ValueError as error:
            raise PlaybackFileError(f"{path}:{number}: not a number ({error})") from error
    data = np.asarray(rows, np.float64).T  # (samples, rows) -> (rows, samples)
    backwards = np.flatnonzero(np.diff(data[layout.timestamp_row]) < 0)
    if backwards.size:
        later = backwards[0] + 1  # 0-based sample index; its line number is one more
        raise PlaybackFileError(
            f"{path}:{later + 1}: timestamp {data[layout.timestamp_row, later]:.6f} is earlier "
            "than the line before (the playback board paces by timestamps)"
        )
    return data


def check_playback_file(path: str | Path, board: str | int) -> int:
    """Validate a playback file (see :func:`read_board_file`); returns its number of samples."""
    return read_board_file(path, board).shape[1]
