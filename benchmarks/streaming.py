"""Live sEMG decoding through BrainFlow's playback board: per-window cost, latency, completeness.

A few minutes of held-out sentences of the synthetic sEMG corpus are laid out as a BrainFlow
playback file (Cyton-WiFi layout, 1000 Hz; or ``--board cyton``, 250 Hz, resampled to 1000 Hz by
the decoder) and streamed through ``PLAYBACK_FILE_BOARD`` into ``live_decoding.run_stream`` with
the trained sEMG run of notebook 04. It prints:

- per-window **processing** (features + model + greedy merge) median and 95th percentile, against
  the 30 ms budget for a 300 ms hop;
- **latency** (text out minus BrainFlow's acquisition timestamp of the window centre's last
  sample) median and 95th percentile. It contains the look-ahead (right context), which the
  board delivers ``--speed`` times faster than real time when replay is sped up, so latency is
  only the user's latency at ``--speed 1`` (the default);
- the **real-time factor** (processing seconds per second of signal);
- **samples** drained from BrainFlow vs filtered vs covered by decoded windows, and samples the
  board's package counter says were lost;
- the **CER** of the live transcript against the known sentences, next to the same model decoding
  each whole sentence offline;
- the cost of one window's model call compiled with XLA vs a plain ``tf.function`` vs
  ``model.predict``, as ratios.

Nothing is asserted. Usage, from the repository root (needs notebook 04's run, or ``--run``)::

    python benchmarks/streaming.py                       # 3 minutes of signal in real time
    python benchmarks/streaming.py --minutes 1 --speed 4 # faster-than-real-time replay
    python benchmarks/streaming.py --board cyton         # 250 Hz board, resampled
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from ctclab import profiles
from ctclab.decoding.metrics import cer
from ctclab.emg import training as emg
from ctclab.live import decoding as live_decoding
from ctclab.live import openbci
from ctclab.live.streaming import StreamConfig, compiled_model_call
from ctclab.runs import load_trained_model

BUDGET_MS = 30.0  # per-window processing budget for a 300 ms hop


def model_call_costs(model, frames: int, feature_dim: int, calls: int = 30) -> dict[str, float]:
    """Median ms of one window's model call: XLA-compiled, plain tf.function, model.predict."""
    import tensorflow as tf

    window = np.random.default_rng(0).normal(size=(frames, feature_dim)).astype(np.float32)
    plain = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec((1, frames, feature_dim), tf.float32)]
    )
    candidates = {
        "XLA tf.function (used)": compiled_model_call(model, frames, feature_dim),
        "tf.function without XLA": lambda x: plain(x[None]).numpy()[0],
        "model.predict": lambda x: model.predict(x[None], verbose=0)[0],
    }
    costs = {}
    for name, call in candidates.items():
        call(window)  # trace / compile
        times = []
        for _ in range(calls if name != "model.predict" else max(3, calls // 5)):
            started = time.perf_counter()
            call(window)
            times.append(1000 * (time.perf_counter() - started))
        costs[name] = statistics.median(times)
    return costs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="whose corpus and notebook-04 run ($PROFILE or quick)")
    parser.add_argument(
        "--run", default=None, help="an sEMG run folder (default: the best under results/<profile>/emg)"
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes of signal to stream")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (>1: faster than real time)")
    parser.add_argument(
        "--board",
        default="cyton_wifi",
        choices=["cyton_wifi", "cyton", "synthetic"],
        help="layout of the playback file (its rate is the board's)",
    )
    parser.add_argument("--hop-ms", type=float, default=300.0)
    parser.add_argument("--left-ms", type=float, default=600.0)
    parser.add_argument("--right-ms", type=float, default=120.0)
    args = parser.parse_args(argv)
    profile = profiles.get_profile(args.profile)
    run_dir = args.run or live_decoding.find_emg_run(profile.results_for("emg"))
    if run_dir is None:
        raise SystemExit(f"no sEMG run under {profile.results_for('emg')}: run notebook 04 or pass --run")
    model, normalizer, feature_config, alphabet = load_trained_model(run_dir)

    sentences = live_decoding.playback_recordings(emg.emg_corpus_dir(profile), 10_000, split="test")
    sentences += live_decoding.playback_recordings(emg.emg_corpus_dir(profile), 10_000, split="dev")
    recordings, seconds = [], 0.0
    for samples, text in itertools.cycle(sentences):  # repeat the held-out sentences if needed
        if seconds >= 60 * args.minutes:
            break
        recordings.append((samples, text))
        seconds += len(samples) / 1000
    folder = Path(tempfile.mkdtemp(prefix="ctc_lab_streaming_"))
    script = live_decoding.write_playback_file(folder / "benchmark.csv", recordings, 1000, args.board, args.speed)
    config = StreamConfig(hop_ms=args.hop_ms, left_context_ms=args.left_ms, right_context_ms=args.right_ms)
    decoder = live_decoding.emg_decoder(model, normalizer, feature_config, alphabet, script.sampling_rate, config)
    print(
        f"run {run_dir} ({model.builder_config['builder']}, {model.count_params():,} parameters); "
        f"{len(recordings)} sentences, {script.duration_s:.0f} s of signal at {script.sampling_rate} Hz "
        f"({args.board} layout), replayed at {args.speed}x; window {decoder.window} samples "
        f"= {args.left_ms:.0f} + {args.hop_ms:.0f} + {args.right_ms:.0f} ms, {os.cpu_count()} CPU cores"
    )

    playback = openbci.BoardConfig("playback", playback_file=script.path, master_board=args.board)
    with openbci.BoardSession(playback) as session:
        report = live_decoding.run_stream(session, decoder, max_samples=script.num_samples)
    summary = report.summary()
    _, live_cer = live_decoding.score_playback(decoder, script)
    offline = live_decoding.offline_transcripts(model, normalizer, feature_config, alphabet, recordings)
    offline_cer = cer(script.texts, offline)

    print(f"\nwindows {summary['windows']}, wall {summary['wall s']:.1f} s for {summary['signal s']:.1f} s of signal")
    print(
        f"processing per window: median {summary['processing ms median']:.1f} ms, "
        f"p95 {summary['processing ms p95']:.1f} ms; median / budget {BUDGET_MS:.0f} ms = "
        f"{summary['processing ms median'] / BUDGET_MS:.2f} ({'within' if summary['processing ms median'] <= BUDGET_MS else 'OVER'})"
    )
    print(
        f"latency (acquisition to text): median {summary['latency ms median']:.0f} ms, "
        f"p95 {summary['latency ms p95']:.0f} ms"
        + (f"  [at {args.speed}x: the look-ahead arrives faster]" if args.speed != 1 else "")
    )
    print(f"real-time factor {summary['real-time factor']:.3f} (processing s per s of signal)")
    print(
        f"samples: in {report.samples_in}, filtered {report.samples_filtered} "
        f"(ratio {report.samples_filtered / report.samples_in:.4f}), resampled {report.samples_resampled}, "
        f"decoded {report.samples_decoded} (ratio {report.samples_decoded / max(1, report.samples_resampled):.4f}), "
        f"file {script.num_samples}, board gaps {report.board_gaps}"
    )
    print(f"CER live {live_cer:.3f}; offline, the same model on each whole 1000 Hz sentence {offline_cer:.3f}")

    costs = model_call_costs(model, decoder.window_frames, decoder.feature_dim)
    used = costs["XLA tf.function (used)"]
    print(f"\nmodel call per window ({decoder.window_frames} frames x {decoder.feature_dim}):")
    for name, cost in costs.items():
        print(f"  {name:26s} {cost:8.2f} ms   x{cost / used:6.1f}")


if __name__ == "__main__":
    main()
