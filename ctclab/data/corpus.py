"""Builds the embedded offline speech corpus: a text grammar spoken by many espeak-ng voices.

A seeded grammar writes lowercase sentences (numbers spelled out) in two slices: ``closed``, a
small fixed vocabulary of dates, clock times, numbers, walking directions and playing cards (like
the closed-vocabulary condition of silent-speech data), and ``open``, templates filled from a few
hundred names, nouns, verbs and adjectives. ``espeak-ng`` speaks each one with an accent crossed
with a voice variant (``en-gb-scotland+f3``) at a rate and pitch drawn per utterance; ``sox``
resamples it to 16 kHz mono 16-bit wav.

Held-out voices: indexing the installed :data:`ACCENTS` and :data:`VARIANTS` in order, voice
``accent+variant`` is a test voice iff ``(accent_index + variant_index) % TEST_VOICE_STRIDE == 0``
(22 of 112 voices with espeak-ng 1.51). Every accent and variant is heard in training, but no test
pair is; train and valid share the other voices. ``manifest.json`` lists both sets.

Layout under ``out_dir`` (default ``data/speech``): ``manifest.json``, ``wav/<split>/<id>.wav``
and JSON-lines descriptors ``<split>_corpus.json`` with one object per line::

    {"key": "wav/train/000123.wav", "duration": 2.31, "text": "half past seven", "slice": "closed",
     "voice": "en-us+f3", "rate": 161, "pitch": 48}

``key`` is relative to the descriptor's folder; ``duration`` (seconds) is read from the written
file. The same config gives the same texts, voices, rates, pitches and wav bytes (espeak-ng and
``sox -R`` are deterministic); a build whose manifest matches the config returns at once.

Usage: ``python -m ctclab.data.corpus --out data/speech --profile quick`` (or ``--size 300 --seed 1``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

from ctclab import paths
from ctclab.data.descriptors import write_descriptors
from ctclab.data.grammar import generate_texts, pick
from ctclab.profiles import PROFILES, get_profile

GRAMMAR_VERSION = 1  # bump whenever the grammar, voices or synthesis change: invalidates caches
PROFILE_SIZES = {name: profile.corpus_size for name, profile in PROFILES.items()}  # smoke 150, quick 2000, full 8000
SPLITS = ("train", "valid", "test")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3")
TEST_VOICE_STRIDE = 5  # about one voice in five is held out for the test split


@dataclass(frozen=True)
class CorpusConfig:
    """What to build; every field except ``workers`` is part of the cache key."""

    num_utterances: int = 2000  # the quick profile: about 1.2 h of audio
    seed: int = 0  # one seed drives texts, split voices, rates and pitches
    sample_rate: int = 16000  # Hz, as LibriSpeech
    valid_fraction: float = 0.1  # share of utterances in valid (train voices)
    test_fraction: float = 0.1  # share of utterances in test (held-out voices)
    closed_fraction: float = 0.5  # share of utterances from the closed-vocabulary slice
    min_words: int = 2  # shortest sentence, about 1 s of speech
    max_words: int = 14  # longest sentence, about 6 s at the slowest rate
    rate_range: tuple[int, int] = (130, 200)  # espeak-ng -s, words per minute, inclusive
    pitch_range: tuple[int, int] = (30, 70)  # espeak-ng -p, 0-99 scale, inclusive
    max_duration: float = 10.0  # seconds; a longer file is a grammar bug and fails the build
    workers: int = 2  # synthesis jobs in flight; the course machine has 2 cores

    def __post_init__(self) -> None:
        if self.num_utterances < len(SPLITS):
            raise ValueError(f"num_utterances must be at least 3 (one per split), got {self.num_utterances}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must lie in (0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.closed_fraction <= 1.0:
            raise ValueError(f"closed_fraction must lie in [0, 1], got {self.closed_fraction}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        for name, (low, high) in (("rate_range", self.rate_range), ("pitch_range", self.pitch_range)):
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if self.workers < 1 or self.sample_rate <= 0:
            raise ValueError(f"workers and sample_rate must be positive, got {self.workers}, {self.sample_rate}")


# ---------------------------------------------------------------- voices and synthesis
def _require_tools() -> None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: run `make setup` or apt-get install {tool}")


def voice_sets() -> tuple[list[str], list[str]]:
    """The installed (accent+variant) voices, split into (train/valid voices, test voices)."""
    _require_tools()

    def listing(kind: str) -> str:
        return subprocess.run(["espeak-ng", f"--voices={kind}"], capture_output=True, text=True, check=True).stdout

    languages = {line.split()[1] for line in listing("en").splitlines()[1:] if line.strip()}
    variants_installed = set(re.findall(r"!v/(\S+)", listing("variant")))
    accents = [accent for accent in ACCENTS if accent in languages]
    variants = [variant for variant in VARIANTS if variant in variants_installed]
    if not accents or not variants:
        raise RuntimeError(f"espeak-ng has none of the accents {ACCENTS} or none of the variants {VARIANTS}")
    train_voices: list[str] = []
    test_voices: list[str] = []
    for accent_index, accent in enumerate(accents):
        for variant_index, variant in enumerate(variants):
            held_out = (accent_index + variant_index) % TEST_VOICE_STRIDE == 0
            (test_voices if held_out else train_voices).append(f"{accent}+{variant}")
    return train_voices, test_voices


class Utterance(NamedTuple):
    """Everything needed to synthesize one file."""

    utterance_id: str
    split: str
    text: str
    slice: str
    voice: str
    rate: int  # words per minute
    pitch: int  # espeak-ng 0-99

    @property
    def key(self) -> str:
        """Path of the wav relative to the corpus folder, as descriptors write it."""
        return f"wav/{self.split}/{self.utterance_id}.wav"


def synthesize(utterance: Utterance, wav_path: Path, sample_rate: int) -> float:
    """Speak ``utterance`` into ``wav_path`` (mono 16-bit at ``sample_rate``); return its seconds."""

    def fail(tool: str, stderr: bytes) -> RuntimeError:
        message = stderr.decode(errors="replace").strip() or "no audio produced"
        return RuntimeError(f"{tool} failed for text {utterance.text!r} with voice {utterance.voice!r}: {message}")

    speak = subprocess.run(
        [
            "espeak-ng",
            "-v",
            utterance.voice,
            "-s",
            str(utterance.rate),
            "-p",
            str(utterance.pitch),
            "--stdout",
            utterance.text,
        ],
        capture_output=True,
    )
    if speak.returncode or not speak.stdout:
        raise fail("espeak-ng", speak.stderr)
    # espeak-ng writes 22050 Hz; -R makes sox's dither repeatable, so equal inputs give equal bytes
    resample = subprocess.run(
        ["sox", "-R", "-t", "wav", "-", "-r", str(sample_rate), "-c", "1", "-b", "16", str(wav_path)],
        input=speak.stdout,
        capture_output=True,
    )
    if resample.returncode:
        raise fail("sox", resample.stderr)
    return soundfile.info(str(wav_path)).duration


def plan_utterances(config: CorpusConfig, train_voices: list[str], test_voices: list[str]) -> list[Utterance]:
    """Texts, splits, voices, rates and pitches for the whole corpus, all drawn from ``config.seed``."""
    text_seed, voice_seed = np.random.SeedSequence(config.seed).spawn(2)  # texts stay put if voices change
    sentences = generate_texts(
        config.num_utterances,
        np.random.default_rng(text_seed),
        config.closed_fraction,
        config.min_words,
        config.max_words,
    )
    rng = np.random.default_rng(voice_seed)
    num_valid = max(1, round(config.num_utterances * config.valid_fraction))
    num_test = max(1, round(config.num_utterances * config.test_fraction))
    splits = ["train"] * (config.num_utterances - num_valid - num_test) + ["valid"] * num_valid + ["test"] * num_test
    utterances = []
    for index, (sentence, split) in enumerate(zip(sentences, splits)):
        voice = pick(rng, test_voices if split == "test" else train_voices)
        rate = int(rng.integers(config.rate_range[0], config.rate_range[1] + 1))
        pitch = int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1))
        utterances.append(Utterance(f"{index:06d}", split, sentence.text, sentence.slice, voice, rate, pitch))
    return utterances


# ---------------------------------------------------------------- build, cache, CLI
def _cache_key(config: CorpusConfig) -> dict:
    key = json.loads(json.dumps(asdict(config)))  # tuples -> lists, as they come back from JSON
    key.pop("workers")  # how fast it was built does not change what was built
    return key


def _cached(out_dir: Path, config: CorpusConfig) -> dict[str, Path] | None:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("grammar_version") != GRAMMAR_VERSION or manifest.get("config") != _cache_key(config):
        return None
    descriptors = {split: out_dir / f"{split}_corpus.json" for split in SPLITS}
    for path in descriptors.values():
        if not path.is_file():
            return None
        for line in path.read_text().splitlines():
            if not (out_dir / json.loads(line)["key"]).is_file():
                return None
    return descriptors


def _synthesize_all(utterances: list[Utterance], out_dir: Path, config: CorpusConfig) -> dict[str, float]:
    """Synthesize every utterance with ``config.workers`` jobs in flight; id -> seconds."""
    durations = {}
    with ThreadPoolExecutor(config.workers) as pool, tqdm(total=len(utterances), desc="espeak-ng", unit="utt") as bar:
        futures = {
            pool.submit(synthesize, utterance, out_dir / utterance.key, config.sample_rate): utterance
            for utterance in utterances
        }
        try:
            for future in as_completed(futures):
                durations[futures[future].utterance_id] = future.result()
                bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # stop at the first failure
            raise
    too_long = [utterance for utterance in utterances if durations[utterance.utterance_id] > config.max_duration]
    if too_long:
        raise RuntimeError(f"{len(too_long)} utterances exceed {config.max_duration} s, e.g. {too_long[0]}")
    return durations


def build_corpus(out_dir: str | Path = "data/speech", config: CorpusConfig = CorpusConfig()) -> dict[str, Path]:
    """Synthesize the corpus into ``out_dir`` unless a matching build is already there.

    Args:
        out_dir: folder owned by the corpus; old ``wav/<split>/*.wav`` files are removed on rebuild.
        config: what to build.

    Returns:
        Split name ("train", "valid", "test") -> path of its JSON-lines descriptor.
    """
    out_dir = paths.resolve(out_dir)  # a relative folder is the repository's (see ctclab.paths)
    cached = _cached(out_dir, config)
    if cached is not None:
        return cached
    train_voices, test_voices = voice_sets()
    utterances = plan_utterances(config, train_voices, test_voices)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # written last: marks a complete build
    for split in SPLITS:
        (out_dir / "wav" / split).mkdir(parents=True, exist_ok=True)
        for stale in (out_dir / "wav" / split).glob("*.wav"):
            stale.unlink()
    durations = _synthesize_all(utterances, out_dir, config)
    descriptors, statistics = {}, {}
    for split in SPLITS:
        records: list[dict[str, Any]] = [
            {
                "key": u.key,
                "duration": round(durations[u.utterance_id], 4),
                "text": u.text,
                "slice": u.slice,
                "voice": u.voice,
                "rate": u.rate,
                "pitch": u.pitch,
            }
            for u in utterances
            if u.split == split
        ]
        descriptors[split] = write_descriptors(records, out_dir / f"{split}_corpus.json")
        statistics[split] = {
            "utterances": len(records),
            "hours": round(sum(r["duration"] for r in records) / 3600, 4),
            "voices_used": len({r["voice"] for r in records}),
        }
    train_texts = {u.text for u in utterances if u.split == "train"}
    manifest = {
        "grammar_version": GRAMMAR_VERSION,
        "config": _cache_key(config),
        "espeak_ng": subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
        "voices": {
            "rule": f"test iff (accent_index + variant_index) % {TEST_VOICE_STRIDE} == 0",
            "train_valid": train_voices,
            "test": test_voices,
        },
        "splits": statistics,
        "test_texts_also_in_train": sum(u.text in train_texts for u in utterances if u.split == "test"),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return descriptors


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build a corpus and print its size, duration spread and build time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output folder (default: the profile's corpus_dir, e.g. data/speech)")
    parser.add_argument("--profile", choices=sorted(PROFILE_SIZES), help="corpus size by name ($PROFILE or quick)")
    parser.add_argument("--size", type=int, help="number of utterances (overrides --profile)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    size = args.size if args.size is not None else profile.corpus_size
    args.out = args.out or profile.corpus_dir
    config = CorpusConfig(num_utterances=size, seed=args.seed, workers=args.workers)
    start = time.perf_counter()
    descriptors = build_corpus(args.out, config)
    elapsed = time.perf_counter() - start
    durations = [
        json.loads(line)["duration"] for path in descriptors.values() for line in path.read_text().splitlines()
    ]
    sizes = {split: len(path.read_text().splitlines()) for split, path in descriptors.items()}
    print(
        f"{args.out}: {sizes}, {sum(durations) / 3600:.2f} h of audio, duration min/median/max "
        f"{min(durations):.2f}/{float(np.median(durations)):.2f}/{max(durations):.2f} s, "
        f"ready in {elapsed:.1f} s"
    )


if __name__ == "__main__":
    main()
