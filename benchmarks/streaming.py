"""Live decoding, bidirectional-windowed vs streaming-native, on sEMG playback and on replayed speech.

**sEMG.** A few minutes of held-out sentences of the synthetic sEMG corpus are laid out as one
BrainFlow playback file (Cyton-WiFi layout, 1000 Hz; or ``--board cyton``, 250 Hz, resampled to
1000 Hz by the decoders) and streamed through ``PLAYBACK_FILE_BOARD`` twice:

- the **windowed** baseline: notebook 04's bidirectional model re-run on fixed windows of
  left context + hop + right context (``--left-ms``, ``--hop-ms``, ``--right-ms``);
- the **stateful** streaming model (``ctclab.live.course_models``: causal conv, unidirectional
  GRUs, a look-ahead row convolution; causal features) run once over the stream in chunks of
  ``--chunk-ms``, carrying its state.

**Speech.** Held-out test utterances of the speech corpus are replayed back to back in real time
(``ctclab.live.sources.replay``) into the stateful speech model and, when notebook 02's final
(bidirectional) model exists, into the windowed decoder with it.

For each decoder it prints CER live and offline (the same model on each whole sentence) and
their ratio, latency median / p95 (text out minus the acquisition time of the newest frame's
last sample; it holds the look-ahead, shown beside it), processing per window or chunk, and
the real-time factor. Then the cost of one windowed model call compiled with XLA vs a plain
``tf.function`` vs ``model.predict``. Nothing is asserted. Usage, from the repository root
(trains the streaming models if notebook 06 has not)::

    python benchmarks/streaming.py                       # 2 minutes of sEMG, 40 s of speech, real time
    python benchmarks/streaming.py --minutes 1 --speed 4 # faster-than-real-time replay
    python benchmarks/streaming.py --board cyton --skip-speech
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
from ctclab.emg import training as emg
from ctclab.live import course_models, speech
from ctclab.live import decoding as live_decoding
from ctclab.live.comparison import comparison_table, playback_row, replay_row
from ctclab.live.streaming import StreamConfig, compiled_model_call
from ctclab.runs import Run, load_trained_model


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


def streaming_run(profile, name: str, train) -> Path:
    folder = Path(profile.results_for(course_models.FAMILY)) / name
    if not Run(folder).is_trained:
        print(f"no {folder}: training it (what notebook 06 does)")
        train(profile, verbose=0)
    return folder


def emg_rows(args, profile) -> tuple[list[dict], object]:
    sentences = live_decoding.playback_recordings(emg.emg_corpus_dir(profile), 10_000, split="test")
    recordings, seconds = [], 0.0
    for samples, text in itertools.cycle(sentences):  # repeat the held-out sentences if needed
        if seconds >= 60 * args.minutes:
            break
        recordings.append((samples, text))
        seconds += len(samples) / 1000
    folder = Path(tempfile.mkdtemp(prefix="ctc_lab_streaming_"))
    script = live_decoding.write_playback_file(folder / "benchmark.csv", recordings, 1000, args.board, args.speed)
    print(
        f"sEMG: {len(recordings)} test sentences, {script.duration_s:.0f} s of signal at {script.sampling_rate} Hz "
        f"({args.board} layout), replayed at {args.speed}x, {os.cpu_count()} CPU cores"
    )
    rows, windowed = [], None
    baseline = live_decoding.find_emg_run(profile.results_for("emg"))
    if baseline is None:
        print(f"  no notebook-04 run under {profile.results_for('emg')}: the windowed baseline is skipped")
    else:
        model, normalizer, features, alphabet = load_trained_model(baseline)
        config = StreamConfig(hop_ms=args.hop_ms, left_context_ms=args.left_ms, right_context_ms=args.right_ms)
        windowed = live_decoding.emg_decoder(model, normalizer, features, alphabet, script.sampling_rate, config)
        offline = live_decoding.offline_transcripts(model, normalizer, features, alphabet, recordings)
        rows.append(playback_row(f"windowed ({baseline.name})", windowed, script, offline))
    run = streaming_run(profile, course_models.EMG_RUN, course_models.train_streaming_emg)
    model, normalizer, features, alphabet = load_trained_model(run)
    stateful = live_decoding.stateful_emg_decoder(
        model, normalizer, features, alphabet, script.sampling_rate, StreamConfig(hop_ms=args.chunk_ms)
    )
    offline = live_decoding.offline_transcripts(model, normalizer, features, alphabet, recordings)
    rows.append(playback_row(f"stateful ({run.name})", stateful, script, offline))
    return rows, windowed


def speech_rows(args, profile) -> list[dict]:
    recordings, seconds = [], 0.0
    for audio, text in speech.speech_recordings(profile.descriptor("test"), 400):
        if seconds >= args.speech_seconds:
            break
        recordings.append((audio, text))
        seconds += len(audio) / 16000
    print(f"speech: {len(recordings)} test utterances (unseen voices), {seconds:.0f} s, replayed at {args.speed}x")
    rows = []
    final = Path(profile.results_for("deep")) / "final"
    if Run(final).is_trained:
        model, normalizer, features, alphabet = load_trained_model(final)
        config = StreamConfig(hop_ms=args.hop_ms, left_context_ms=args.left_ms, right_context_ms=args.right_ms)
        decoder = speech.windowed_speech_decoder(model, normalizer, features, alphabet, config)
        offline = speech.offline_transcripts(model, normalizer, features, alphabet, recordings)
        rows.append(replay_row("windowed (final)", decoder, recordings, offline, args.speed))
    else:
        print(f"  no notebook-02 final model in {final}: the windowed baseline is skipped")
    run = streaming_run(profile, course_models.SPEECH_RUN, course_models.train_streaming_speech)
    model, normalizer, features, alphabet = load_trained_model(run)
    decoder = speech.stateful_speech_decoder(model, normalizer, features, alphabet, StreamConfig(hop_ms=args.chunk_ms))
    offline = speech.offline_transcripts(model, normalizer, features, alphabet, recordings)
    rows.append(replay_row(f"stateful ({run.name})", decoder, recordings, offline, args.speed))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="whose corpora and runs ($PROFILE or quick)")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of sEMG signal to stream")
    parser.add_argument("--speech-seconds", type=float, default=40.0, help="seconds of speech to replay")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (>1: faster than real time)")
    parser.add_argument(
        "--board",
        default="cyton_wifi",
        choices=["cyton_wifi", "cyton", "synthetic"],
        help="layout of the sEMG playback file (its rate is the board's)",
    )
    parser.add_argument("--hop-ms", type=float, default=300.0, help="windowed: new signal per window")
    parser.add_argument("--left-ms", type=float, default=600.0, help="windowed: left context")
    parser.add_argument("--right-ms", type=float, default=120.0, help="windowed: right context (look-ahead)")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="stateful: signal per model call")
    parser.add_argument("--skip-speech", action="store_true")
    args = parser.parse_args(argv)
    profile = profiles.get_profile(args.profile)
    import pandas as pd

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    rows, windowed = emg_rows(args, profile)
    print(comparison_table(rows).drop(columns=["model"]).to_string(), "\n")
    if not args.skip_speech:
        print(comparison_table(speech_rows(args, profile)).drop(columns=["model"]).to_string(), "\n")
    if windowed is not None:
        costs = model_call_costs(windowed.model, windowed.window_frames, windowed.feature_dim)
        used = costs["XLA tf.function (used)"]
        print(f"windowed sEMG model call per window ({windowed.window_frames} frames x {windowed.feature_dim}):")
        for name, cost in costs.items():
            print(f"  {name:26s} {cost:8.2f} ms   x{cost / used:6.1f}")


if __name__ == "__main__":
    main()
