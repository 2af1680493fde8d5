"""Live against offline, decoder against decoder: the figures notebook 06 and benchmarks/streaming.py print.

:func:`measure` turns one live run (a :class:`~ctclab.live.decoding.StreamReport` with its
decoder and the known sentences) into one row: CER live and offline (the same model on each
whole sentence, the bound a live decoder can at best reach), their ratio, latency median / p95
and the part of it that is look-ahead, processing per window or chunk, the real-time factor.
:func:`playback_row` and :func:`replay_row` run the stream first (a BrainFlow playback file /
a replayed recording); :func:`comparison_table` lays rows out side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ctclab.decoding.metrics import cer
from ctclab.live import openbci
from ctclab.live.decoding import PlaybackScript, StreamReport, run_stream
from ctclab.live.streaming import StreamDecoder

if TYPE_CHECKING:
    import pandas as pd


def measure(
    name: str,
    decoder: StreamDecoder,
    report: StreamReport,
    references: Sequence[str],
    live: Sequence[str],
    offline: Sequence[str],
) -> dict:
    """One row: the decoder's live figures against its own offline transcripts of the same sentences.

    Args:
        name: the row's label.
        decoder: the decoder that ran (its model, look-ahead and chunk).
        report: what the live run returned.
        references: the known sentences; live: the live transcript cut per sentence;
            offline: the same model's transcripts of each whole sentence.
    """
    summary = report.summary()
    live_cer, offline_cer = cer(list(references), list(live)), cer(list(references), list(offline))
    model = getattr(decoder, "model", None)
    return {
        "decoder": name,
        "model": getattr(model, "builder_config", {}).get("builder", getattr(model, "name", "")),
        "parameters": model.count_params() if model is not None else 0,
        "CER live": live_cer,
        "CER offline": offline_cer,
        "live / offline": live_cer / offline_cer if offline_cer else float("nan"),
        "latency ms median": summary["latency ms median"],
        "latency ms p95": summary["latency ms p95"],
        "look-ahead ms": decoder.lookahead_ms,
        "chunk ms": decoder.config.hop_ms,
        "processing ms median": summary["processing ms median"],
        "processing ms p95": summary["processing ms p95"],
        "real-time factor": summary["real-time factor"],
        "calls": summary["windows"],
    }


def playback_row(name: str, decoder: StreamDecoder, script: PlaybackScript, offline: Sequence[str]) -> dict:
    """Stream ``script``'s BrainFlow playback file through ``decoder`` and measure it.

    Args:
        offline: the decoder's model on each whole sentence (``live_decoding.offline_transcripts``).
    """
    playback = openbci.BoardConfig("playback", playback_file=script.path, master_board=script.master_board)
    with openbci.BoardSession(playback) as session:
        report = run_stream(session, decoder, max_samples=script.num_samples)
    return measure(name, decoder, report, script.texts, decoder.split_transcript(script.starts), offline)


def replay_row(
    name: str,
    decoder: StreamDecoder,
    recordings: Sequence[tuple[np.ndarray, str]],
    offline: Sequence[str],
    speed: float = 1.0,
) -> dict:
    """Replay the (signal (T, C), text) recordings back to back through ``decoder`` and measure it."""
    from ctclab.live.sources import replay

    signals = [np.asarray(signal, np.float64).reshape(len(signal), -1) for signal, _ in recordings]
    starts = np.cumsum([0] + [len(signal) for signal in signals[:-1]]).tolist()
    report = replay(decoder, np.concatenate(signals), speed=speed)
    texts = [text for _, text in recordings]
    return measure(name, decoder, report, texts, decoder.split_transcript(starts), offline)


def comparison_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows side by side, CERs in percent, times rounded."""
    import pandas as pd

    table = pd.DataFrame(list(rows)).set_index("decoder")
    for column in ("CER live", "CER offline"):
        table[column] = (100 * table[column]).round(1)
    return table.round(
        {
            "live / offline": 2,
            "latency ms median": 0,
            "latency ms p95": 0,
            "look-ahead ms": 0,
            "processing ms median": 1,
            "processing ms p95": 1,
            "real-time factor": 3,
        }
    )
