"""Live sources other than a BrainFlow board: a recording replayed in real time, and the microphone.

Both feed any live decoder (:class:`ctclab.live.streaming.StreamDecoder`: the windowed or the
stateful one) the way a board session does, poll by poll, with the acquisition time of every
sample, and return the same :class:`ctclab.live.decoding.StreamReport`:

- :func:`replay` plays a (T, C) array at its rate (``speed`` times real time): at each poll the
  samples whose time has come are pushed, stamped with the time they were due, so latency is
  measured from when a sample "was spoken" to when its text came out;
- :func:`listen` records the default input device through PortAudio (``sounddevice``) and
  raises :class:`MicrophoneUnavailable`, saying why, where there is none (no sound card, no
  PortAudio, a server without audio).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import numpy as np

from ctclab.live.decoding import StreamReport, finish_stream
from ctclab.live.streaming import StreamDecoder, WindowResult


class MicrophoneUnavailable(RuntimeError):
    """No microphone to listen to (the message says why)."""


def replay(
    decoder: StreamDecoder,
    signal: np.ndarray,
    speed: float = 1.0,
    on_window: Callable[[WindowResult], None] | None = None,
) -> StreamReport:
    """Feed ``signal`` (T, channels) at ``decoder.input_rate`` into ``decoder`` as if it arrived live.

    Args:
        decoder: a fresh live decoder.
        signal: the recording (audio: (T, 1) or (T,)).
        speed: replay speed (1: real time; latencies are only the user's at 1).
        on_window: called with every result as it comes.
    """
    x = np.asarray(signal, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    rate, poll = decoder.input_rate * speed, decoder.config.poll_s
    started, clock = time.monotonic(), time.time()
    report, sent = StreamReport(""), 0
    while sent < x.shape[0]:
        due = min(x.shape[0], int((time.time() - clock) * rate))
        if due <= sent:
            time.sleep(poll)
            continue
        for result in decoder.push(x[sent:due], clock + np.arange(sent, due) / rate):
            if on_window:
                on_window(result)
        sent = due
    return finish_stream(decoder, report, started, on_window)


def listen(
    decoder: StreamDecoder,
    seconds: float,
    on_window: Callable[[WindowResult], None] | None = None,
) -> StreamReport:
    """Decode ``seconds`` of the default microphone at ``decoder.input_rate``, mono.

    Raises:
        MicrophoneUnavailable: PortAudio or the sounddevice module is missing, or there is no
            input device; the message says which.
    """
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: the PortAudio library is not installed
        raise MicrophoneUnavailable(f"no audio input here: {error}") from error
    try:
        device = sounddevice.query_devices(kind="input")
    except (sounddevice.PortAudioError, ValueError) as error:
        raise MicrophoneUnavailable(f"no microphone: PortAudio finds no input device ({error})") from error
    blocks: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()

    def received(data: np.ndarray, frames: int, stamps: object, status: object) -> None:  # PortAudio thread: copy out
        blocks.put((data[:, :1].astype(np.float64).copy(), time.time()))

    rate, started = decoder.input_rate, time.monotonic()
    report = StreamReport("")
    block = max(1, int(rate * decoder.config.poll_s))
    with sounddevice.InputStream(
        samplerate=rate, channels=1, blocksize=block, callback=received, device=device["index"]
    ):
        while time.monotonic() - started < seconds:
            try:
                data, arrived = blocks.get(timeout=decoder.config.stall_timeout_s)
            except queue.Empty:
                raise MicrophoneUnavailable(
                    f"the microphone sent nothing for {decoder.config.stall_timeout_s} s"
                ) from None
            stamps = arrived - (data.shape[0] - 1 - np.arange(data.shape[0])) / rate  # the block's last sample: now
            for result in decoder.push(data, stamps):
                if on_window:
                    on_window(result)
    return finish_stream(decoder, report, started, on_window)
