"""A trained streaming-native speech model run chunk by chunk: exactness, CER, processing per chunk.

Takes a run of a streaming builder (``lookahead_rnn_model`` or ``chunked_transformer_model``;
:mod:`ctclab.models.streaming_models`) and test utterances. Each utterance's normalized features
go to :class:`ctclab.live.stateful.StatefulStream` in chunks of ``--chunk-ms`` and, alternately,
whole to the model. It prints:

- the largest difference between the streamed and the whole-utterance posteriors;
- greedy CER of the streamed transcripts against the whole-utterance ones (equal when the
  stream is exact: live as accurate as offline);
- processing per chunk (median and 95th percentile) against the chunk's duration, and the
  model's stated look-ahead: a frame's text waits for its look-ahead, rounded up to whole chunks,
  plus the processing.

Features are computed per utterance up front (a streaming featurizer is not part of this
measurement). Nothing is asserted. Usage, from the repository root::

    python benchmarks/stateful_stream.py --run results/quick/streaming/lookahead_rnn \\
        --test data/speech/test_corpus.json --limit 50 --chunk-ms 100
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder of a streaming builder")
    parser.add_argument("--test", type=Path, required=True, help="descriptor file of test utterances")
    parser.add_argument("--limit", type=int, default=50, help="utterances")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="feature chunk handed to the stream")
    options = parser.parse_args()

    import numpy as np

    from ctclab.data.descriptors import read_descriptors
    from ctclab.data.features import featurize_file
    from ctclab.decoding.greedy import greedy_decode
    from ctclab.decoding.metrics import cer
    from ctclab.live.stateful import StatefulStream
    from ctclab.runs import Run

    model, normalizer, features, alphabet = Run(options.run).load_model()
    stream = StatefulStream(model)
    frame_ms = features.step_ms  # the spectrogram's hop: 10 ms
    chunk = max(1, round(options.chunk_ms / frame_ms))
    records = read_descriptors(options.test)[: options.limit]
    references, streamed, whole_texts, seconds, worst = [], [], [], [], 0.0
    for record in records:
        frames = normalizer(featurize_file(record["key"], features)).astype("float32")
        whole = np.asarray(model(frames[None], training=False))[0]
        stream.reset()
        pieces = []
        for start in range(0, len(frames), chunk):
            started = time.perf_counter()
            pieces.append(stream.process(frames[start : start + chunk]))
            seconds.append(time.perf_counter() - started)
        pieces.append(stream.finish())
        posteriors = np.concatenate(pieces)
        worst = max(worst, float(np.max(np.abs(posteriors - whole))))
        references.append(record["text"])
        streamed.append(greedy_decode(posteriors, alphabet=alphabet))
        whole_texts.append(greedy_decode(whole, alphabet=alphabet))
    chunk_ms = chunk * frame_ms
    print(f"{options.run}: {model.count_params():,} parameters, look-ahead {model.lookahead_ms(frame_ms):.0f} ms")
    print(f"{len(records)} utterances in chunks of {chunk} frames ({chunk_ms:.0f} ms)")
    print(f"largest |streamed - whole| posterior difference: {worst:.2e}")
    print(
        f"greedy CER streamed {100 * cer(references, streamed):.1f} %, whole {100 * cer(references, whole_texts):.1f} %"
    )
    median, p95 = (1000 * float(np.percentile(seconds, q)) for q in (50, 95))
    print(f"processing per chunk: median {median:.1f} ms, p95 {p95:.1f} ms ({median / chunk_ms:.3f} of real time)")
    worst_wait = chunk_ms + model.lookahead_ms(frame_ms) + median
    print(
        f"latency of a frame's text: its look-ahead rounded up to whole chunks, + processing (at most {worst_wait:.0f} ms)"
    )


if __name__ == "__main__":
    main()
