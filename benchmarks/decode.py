"""Our CTC beam search + LM against pyctcdecode on the same posteriors and the same LM.

One run decodes the same per-utterance probabilities with

* ``ours beam+LM``: ``decoding.prefix_beam_search`` fused with ``lm.NGramLM``;
* ``pyctcdecode beam+LM``: pyctcdecode's ``BeamSearchDecoderCTC.decode`` with the same NGramLM
  behind ``decode_eval.PyctcdecodeNGram`` (identical word scores, so identical objective);
* ``pyctcdecode+KenLM``: pyctcdecode as usually deployed, KenLM (C++) reading the same ARPA file
  (only when the ``kenlm`` module is installed; its partial-word and OOV scoring is pyctcdecode's
  own, so its transcripts may differ);
* both beam searches without an LM, and greedy decoding,

all with the same beam width, character pruning (ln p >= --prune) and beam pruning (scores within
--beam-prune nats of the best). It prints utterances per second, WER / CER, the share of
transcripts identical to ours, and the speed ratio ours / pyctcdecode. Decoders alternate over
``--repeats`` rounds and the fastest round counts (a shared machine slows all of them alike);
the LM's score cache is emptied before every LM round, so no decoder inherits another's lookups.
Nothing is asserted.

The posteriors come from a trained run of the profile (``decode_eval.find_decoding_run``:
notebook 02's final model, else the best course / transformers run) on the unseen-voice test
split, else from ``decode_eval.synthetic_posteriors`` of the test transcripts. The LM is a
3-gram trained on the training transcripts.

Usage, from the repository root::

    python benchmarks/decode.py                      # quick profile, 200 test utterances
    python benchmarks/decode.py --synthetic --utterances 100 --beam-width 64
    python benchmarks/decode.py --run results/quick/deep/final
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ctclab.data.descriptors import read_descriptors
from ctclab.decoding.beam import prefix_beam_search
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.lm import NGramLM
from ctclab.decoding.metrics import cer, wer
from ctclab.decoding.pyctc import pyctcdecode_decoder, pyctcdecode_labels
from ctclab.decoding.tuning import find_decoding_run, run_probabilities, synthetic_posteriors
from ctclab.profiles import get_profile


def posteriors(args) -> tuple[list[np.ndarray], list[str], str]:
    """(probabilities, references, where they came from)."""
    profile = get_profile(args.profile)
    if args.synthetic:
        run, reason = None, "--synthetic given"
    elif args.run:
        run, reason = Path(args.run), f"--run {args.run}"
    else:
        run, reason = find_decoding_run(profile)
    if run is not None:
        probabilities, references = run_probabilities(run, profile.descriptor("test"), limit=args.utterances)
        return probabilities, references, f"trained run: {reason}"
    references = [record["text"] for record in read_descriptors(profile.descriptor("test"))][: args.utterances]
    probabilities = [synthetic_posteriors(text, seed=i, confusion_rate=0.15) for i, text in enumerate(references)]
    return probabilities, references, f"synthetic posteriors of the test transcripts ({reason})"


def decoders(args, lm: NGramLM, arpa_path: Path) -> dict:
    """Name -> function(probabilities) -> text, all with the same search settings."""
    ours = dict(beam_width=args.beam_width, prune_log_prob=args.prune, beam_prune_log_prob=args.beam_prune)
    theirs = dict(beam_width=args.beam_width, token_min_logp=args.prune, beam_prune_logp=-args.beam_prune)
    with_lm = pyctcdecode_decoder(lm=lm, alpha=args.alpha, beta=args.beta)
    without_lm = pyctcdecode_decoder()
    table = {
        "ours beam+LM": lambda p: prefix_beam_search(p, lm=lm, alpha=args.alpha, beta=args.beta, **ours),
        "pyctcdecode beam+LM": lambda p: with_lm.decode(p, **theirs),
        "ours beam": lambda p: prefix_beam_search(p, **ours),
        "pyctcdecode beam": lambda p: without_lm.decode(p, **theirs),
        "greedy": greedy_decode,
    }
    try:
        import kenlm  # noqa: F401
        from pyctcdecode import build_ctcdecoder

        kenlm_decoder = build_ctcdecoder(
            pyctcdecode_labels(), str(arpa_path), sorted(lm.words), alpha=args.alpha, beta=args.beta
        )
        table["pyctcdecode+KenLM"] = lambda p: kenlm_decoder.decode(p, **theirs)
    except ImportError:
        print("kenlm is not installed: no pyctcdecode+KenLM row")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help="smoke | quick | full (default quick)")
    parser.add_argument("--utterances", type=int, default=200, help="test utterances decoded (default 200)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic posteriors even if a run exists")
    parser.add_argument("--run", help="decode this run folder (default: find_decoding_run)")
    parser.add_argument("--beam-width", type=int, default=32, help="beams kept per frame (default 32)")
    parser.add_argument("--prune", type=float, default=-10.0, help="characters need ln p >= this (default -10)")
    parser.add_argument(
        "--beam-prune", type=float, default=10.0, help="beams within this many nats of the best (default 10)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="LM weight (default 0.5)")
    parser.add_argument("--beta", type=float, default=1.0, help="word bonus in nats (default 1.0)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed rounds per decoder; the fastest counts (default 2)"
    )
    args = parser.parse_args(argv)

    probabilities, references, source = posteriors(args)
    lm = NGramLM.from_descriptors(get_profile(args.profile).descriptor("train"), order=3)
    frames = sum(len(p) for p in probabilities)
    print(f"{len(probabilities)} utterances, {frames} frames; {source}")
    print(
        f"LM: 3-gram, {lm.counts()} n-grams; beam {args.beam_width}, prune ln p >= {args.prune}, "
        f"beam prune {args.beam_prune} nats, alpha {args.alpha}, beta {args.beta}"
    )
    with tempfile.TemporaryDirectory() as folder:
        table = decoders(args, lm, lm.save_arpa(Path(folder) / "lm.arpa"))
        seconds = {name: np.inf for name in table}
        texts: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for name, decode in table.items():
                lm.clear_cache()  # every LM round starts with an empty score cache
                started = time.perf_counter()
                texts[name] = [decode(p) for p in probabilities]
                seconds[name] = min(seconds[name], time.perf_counter() - started)
    import pandas as pd

    rows = {}
    for name in table:
        ours = texts["ours beam+LM" if "LM" in name else "ours beam"]
        rows[name] = {
            "utterances/s": len(probabilities) / seconds[name],
            "WER": wer(references, texts[name]),
            "CER": cer(references, texts[name]),
            "same as ours": np.mean([mine == other for mine, other in zip(ours, texts[name])]),
        }
    print(pd.DataFrame.from_dict(rows, orient="index").to_string(float_format=lambda value: f"{value:.3f}"))
    pairs = (
        ("ours beam+LM", "pyctcdecode beam+LM"),
        ("ours beam+LM", "pyctcdecode+KenLM"),
        ("ours beam", "pyctcdecode beam"),
    )
    for ours, theirs in pairs:
        if theirs in rows:
            print(f"speed ratio {ours} / {theirs}: {seconds[theirs] / seconds[ours]:.2f}x")


if __name__ == "__main__":
    main()
