"""Builds the embedded offline speech corpus: a text grammar spoken by three synthesizers.

A seeded grammar writes lowercase sentences (numbers spelled out) in two slices: ``closed``, a
small fixed vocabulary of dates, clock times, numbers, walking directions and playing cards (like
the closed-vocabulary condition of silent-speech data), and ``open``, templates filled from a few
hundred names, nouns, verbs and adjectives. The engines of :mod:`ctclab.data.engines` speak them:
``espeak-ng`` with an accent crossed with a voice variant (``en-gb-scotland+f3``), ``festival``
(two diphone voices and an HTS voice) and ``flite`` (CMU voices), each at a rate (and, where the
voice takes one, a pitch) drawn per utterance; ``sox`` resamples to 16 kHz mono 16-bit wav.

Four splits:

- ``train`` / ``valid``: :attr:`CorpusConfig.engine_shares` of them per engine (espeak-ng 65 %,
  festival 35 % by default), espeak-ng with the train voices below, festival with all its voices;
- ``test``: unseen espeak-ng voices. Indexing the installed ``engines.ACCENTS`` and ``engines.VARIANTS``
  in order, ``accent+variant`` is a test voice iff ``(accent_index + variant_index) % TEST_VOICE_STRIDE
  == 0`` (22 of 112 voices with espeak-ng 1.51); every accent and variant is heard in training, no
  test pair is. Its texts, voices and files are those of the espeak-ng-only builds before it;
- ``test_engine``: spoken only by :attr:`CorpusConfig.held_out_engine` (flite), an engine never
  used for training, with its voices whose speaker no training voice has (awb and rms: flite's
  kal16 is festival's kal diphone set, and festival speaks slt); as many utterances as ``test``,
  added to ``num_utterances``.

Layout under ``out_dir`` (default ``data/speech``): ``manifest.json``, ``wav/<split>/<id>.wav``
and JSON-lines descriptors ``<split>_corpus.json`` with one object per line::

    {"key": "wav/train/000123.wav", "duration": 2.31, "text": "half past seven", "slice": "closed",
     "engine": "espeak-ng", "voice": "en-us+f3", "rate": 161, "pitch": 48}
    {"key": "wav/test_engine/002004.wav", ..., "engine": "flite", "voice": "awb", "rate": 0.93, "pitch": 121}

``key`` is relative to the descriptor's folder; ``duration`` (seconds) is read from the written
file; ``rate`` and ``pitch`` are in the engine's units (espeak-ng: words per minute and 0-99;
flite and festival: a speed factor and a mean f0 in Hz, null for a voice without f0 control). The
same config gives the same texts, voices, rates, pitches and wav bytes (every engine and ``sox -R``
are deterministic, see :mod:`ctclab.data.engines`); a build whose manifest matches the config
returns at once.

Usage: ``python -m ctclab.data.corpus --out data/speech --profile quick`` (or ``--size 300 --seed 1``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile

from ctclab import paths
from ctclab.data import engines
from ctclab.data.descriptors import write_descriptors
from ctclab.data.grammar import generate_texts, pick
from ctclab.profiles import PROFILES, get_profile

GRAMMAR_VERSION = 2  # bump whenever the grammar, voices or synthesis change: invalidates caches
PROFILE_SIZES = {name: profile.corpus_size for name, profile in PROFILES.items()}  # smoke 150, quick 2000, full 8000
SPLITS = ("train", "valid", "test", "test_engine")
TEST_VOICE_STRIDE = 5  # about one voice in five is held out for the test split


@dataclass(frozen=True)
class CorpusConfig:
    """What to build; every field except ``workers`` is part of the cache key."""

    num_utterances: int = 2000  # train + valid + test for the quick profile: about 1.3 h of audio
    seed: int = 0  # one seed drives texts, split voices, rates and pitches
    sample_rate: int = 16000  # Hz, as LibriSpeech
    valid_fraction: float = 0.1  # share of utterances in valid (train voices)
    test_fraction: float = 0.1  # share of utterances in test (held-out espeak-ng voices)
    engine_test_fraction: float = 0.1  # test_engine utterances per utterance, added: as many as test
    engine_shares: tuple[tuple[str, float], ...] = (("espeak-ng", 0.65), ("festival", 0.35))  # train, valid
    held_out_engine: str = "flite"  # speaks test_engine only
    closed_fraction: float = 0.5  # share of utterances from the closed-vocabulary slice
    min_words: int = 2  # shortest sentence, about 1 s of speech
    max_words: int = 14  # longest sentence, about 6 s at the slowest rate
    rate_range: tuple[int, int] = (130, 200)  # espeak-ng -s, words per minute, inclusive
    pitch_range: tuple[int, int] = (30, 70)  # espeak-ng -p, 0-99 scale, inclusive
    speed_range: tuple[float, float] = (0.8, 1.15)  # flite / festival speed factor (1: the voice's pace)
    max_duration: float = 10.0  # seconds; a longer file is a grammar bug and fails the build
    workers: int = 2  # synthesis jobs in flight; the course machine has 2 cores

    def __post_init__(self) -> None:
        if self.num_utterances < 3:
            raise ValueError(f"num_utterances must be at least 3 (one per split), got {self.num_utterances}")
        for name in ("valid_fraction", "test_fraction", "engine_test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must lie in (0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.closed_fraction <= 1.0:
            raise ValueError(f"closed_fraction must lie in [0, 1], got {self.closed_fraction}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        ranges = {"rate_range": self.rate_range, "pitch_range": self.pitch_range, "speed_range": self.speed_range}
        for name, (low, high) in ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if self.workers < 1 or self.sample_rate <= 0:
            raise ValueError(f"workers and sample_rate must be positive, got {self.workers}, {self.sample_rate}")
        shares = dict(self.engine_shares)
        if not shares or len(shares) < len(self.engine_shares) or not set(shares) <= set(engines.ENGINES):
            raise ValueError(f"engine_shares must name distinct engines of {engines.ENGINES}, got {self.engine_shares}")
        if min(shares.values()) <= 0:
            raise ValueError(f"engine_shares must be positive, got {self.engine_shares}")
        if self.held_out_engine not in engines.TABLE_VOICES or self.held_out_engine in shares:
            raise ValueError(
                f"held_out_engine must be flite or festival, not in engine_shares, got {self.held_out_engine!r}"
            )


# ---------------------------------------------------------------- voices
def voice_sets() -> tuple[list[str], list[str]]:
    """The installed espeak-ng (accent+variant) voices, split into (train/valid voices, test voices)."""
    accents, variants = engines.espeak_voice_grid()
    train_voices: list[str] = []
    test_voices: list[str] = []
    for accent_index, accent in enumerate(accents):
        for variant_index, variant in enumerate(variants):
            held_out = (accent_index + variant_index) % TEST_VOICE_STRIDE == 0
            (test_voices if held_out else train_voices).append(f"{accent}+{variant}")
    return train_voices, test_voices


def held_out_engine_voices(config: CorpusConfig) -> list[engines.Voice]:
    """Voices of ``config.held_out_engine`` whose speaker no training engine has a voice of."""
    heard = {voice.speaker for engine, _ in config.engine_shares for voice in engines.TABLE_VOICES.get(engine, ())}
    voices = [voice for voice in engines.table_voices(config.held_out_engine) if voice.speaker not in heard]
    if not voices:
        raise ValueError(f"every {config.held_out_engine} voice has a speaker heard in training ({sorted(heard)})")
    return voices


class VoicePlan(NamedTuple):
    """Which voices speak which splits."""

    espeak_train: list[str]  # espeak-ng voices of train and valid
    espeak_test: list[str]  # unseen espeak-ng voices of test
    table_train: dict[str, list[engines.Voice]]  # flite / festival voices of train and valid, by engine
    held_out: list[engines.Voice]  # voices of test_engine


def plan_voices(config: CorpusConfig) -> VoicePlan:
    """The installed voices for ``config``; a clear RuntimeError when an engine or voice is missing."""
    espeak_train, espeak_test = voice_sets()  # the test split is espeak-ng's even if it does not train
    table_train = {engine: engines.table_voices(engine) for engine, _ in config.engine_shares if engine != "espeak-ng"}
    return VoicePlan(espeak_train, espeak_test, table_train, held_out_engine_voices(config))


# ---------------------------------------------------------------- planning and synthesis
class Utterance(NamedTuple):
    """Everything needed to synthesize one file."""

    utterance_id: str
    split: str
    text: str
    slice: str
    voice: str
    rate: float  # espeak-ng: words per minute (an int); flite / festival: speed factor
    pitch: int | None  # espeak-ng: 0-99; flite / festival: mean f0 in Hz, None for a voice without
    engine: str = "espeak-ng"

    @property
    def key(self) -> str:
        """Path of the wav relative to the corpus folder, as descriptors write it."""
        return f"wav/{self.split}/{self.utterance_id}.wav"


def _request(utterance: Utterance, wav_path: Path) -> engines.Request:
    return engines.Request(utterance.text, utterance.voice, utterance.rate, utterance.pitch, wav_path)


def synthesize(utterance: Utterance, wav_path: Path, sample_rate: int) -> float:
    """Speak ``utterance`` into ``wav_path`` (mono 16-bit at ``sample_rate``); return its seconds."""
    engines.speak(utterance.engine, [_request(utterance, wav_path)], sample_rate)
    return soundfile.info(str(wav_path)).duration


def apportion(shares: Sequence[tuple[str, float]], count: int) -> list[str]:
    """``count`` engine names in proportion to ``shares`` (largest remainder), in share order."""
    total = sum(share for _, share in shares)
    exact = [share / total * count for _, share in shares]
    counts = [int(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda index: counts[index] - exact[index])
    for index in by_remainder[: count - sum(counts)]:
        counts[index] += 1
    return [engine for (engine, _), number in zip(shares, counts) for _ in range(number)]


def _revoice(utterance: Utterance, voice: engines.Voice, rng: np.random.Generator, config: CorpusConfig) -> Utterance:
    """``utterance`` spoken by a flite / festival ``voice`` at a drawn speed (and pitch, if it takes one)."""
    speed = round(float(rng.uniform(*config.speed_range)), 2)
    pitch = None if voice.pitch_range is None else int(rng.integers(voice.pitch_range[0], voice.pitch_range[1] + 1))
    return utterance._replace(engine=voice.engine, voice=voice.name, rate=speed, pitch=pitch)


def plan_utterances(config: CorpusConfig, voices: VoicePlan) -> list[Utterance]:
    """Texts, splits, engines, voices, rates and pitches for the whole corpus, all from ``config.seed``.

    The espeak-ng draws come first and do not depend on the engines, so ``test`` is the same as in
    espeak-ng-only builds; then a share of train and valid is re-voiced by the other engines.
    """
    text_seed, voice_seed, engine_seed, held_out_seed = np.random.SeedSequence(config.seed).spawn(4)
    num_engine_test = max(1, round(config.num_utterances * config.engine_test_fraction))
    sentences = generate_texts(  # drawn in turn: the first num_utterances do not depend on test_engine
        config.num_utterances + num_engine_test,
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
        voice = pick(rng, voices.espeak_test if split == "test" else voices.espeak_train)
        rate = int(rng.integers(config.rate_range[0], config.rate_range[1] + 1))
        pitch = int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1))
        utterances.append(Utterance(f"{index:06d}", split, sentence.text, sentence.slice, voice, rate, pitch))
    engine_rng = np.random.default_rng(engine_seed)
    for split in ("train", "valid"):
        indices = [index for index, utterance in enumerate(utterances) if utterance.split == split]
        assigned = apportion(config.engine_shares, len(indices))
        for index, position in zip(indices, engine_rng.permutation(len(indices))):
            if assigned[position] != "espeak-ng":
                table_voice = pick(engine_rng, voices.table_train[assigned[position]])
                utterances[index] = _revoice(utterances[index], table_voice, engine_rng, config)
    held_out_rng = np.random.default_rng(held_out_seed)
    for index, sentence in enumerate(sentences[config.num_utterances :], start=config.num_utterances):
        base = Utterance(f"{index:06d}", "test_engine", sentence.text, sentence.slice, "", 0, None)
        utterances.append(_revoice(base, pick(held_out_rng, voices.held_out), held_out_rng, config))
    return utterances


def _synthesize_all(utterances: list[Utterance], out_dir: Path, config: CorpusConfig) -> dict[str, float]:
    """Synthesize every utterance with ``config.workers`` jobs in flight; id -> seconds."""
    requests = [(u.engine, _request(u, out_dir / u.key)) for u in utterances]
    engines.speak_all(requests, config.sample_rate, config.workers)
    durations = {u.utterance_id: soundfile.info(str(out_dir / u.key)).duration for u in utterances}
    too_long = [utterance for utterance in utterances if durations[utterance.utterance_id] > config.max_duration]
    if too_long:
        raise RuntimeError(f"{len(too_long)} utterances exceed {config.max_duration} s, e.g. {too_long[0]}")
    return durations


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


def _manifest(config: CorpusConfig, voices: VoicePlan, utterances: list[Utterance], statistics: dict) -> dict:
    used = sorted({utterance.engine for utterance in utterances})
    train_texts = {u.text for u in utterances if u.split == "train"}
    return {
        "grammar_version": GRAMMAR_VERSION,
        "config": _cache_key(config),
        "engines": {engine: engines.version(engine) for engine in used},
        "voices": {
            "rule": f"espeak-ng test iff (accent_index + variant_index) % {TEST_VOICE_STRIDE} == 0",
            "held_out_engine_rule": f"{config.held_out_engine} voices whose speaker no training voice has",
            "train_valid": {
                "espeak-ng": voices.espeak_train,
                **{engine: [voice.name for voice in table] for engine, table in voices.table_train.items()},
            },
            "test": {"espeak-ng": voices.espeak_test},
            "test_engine": {config.held_out_engine: [voice.name for voice in voices.held_out]},
        },
        "splits": statistics,
        "test_texts_also_in_train": sum(u.text in train_texts for u in utterances if u.split == "test"),
        "test_engine_texts_also_in_train": sum(u.text in train_texts for u in utterances if u.split == "test_engine"),
    }


def build_corpus(out_dir: str | Path = "data/speech", config: CorpusConfig = CorpusConfig()) -> dict[str, Path]:
    """Synthesize the corpus into ``out_dir`` unless a matching build is already there.

    Args:
        out_dir: folder owned by the corpus; old ``wav/<split>/*.wav`` files are removed on rebuild.
        config: what to build.

    Returns:
        Split name ("train", "valid", "test", "test_engine") -> path of its JSON-lines descriptor.
    """
    out_dir = paths.resolve(out_dir)  # a relative folder is the repository's (see ctclab.paths)
    cached = _cached(out_dir, config)
    if cached is not None:
        return cached
    voices = plan_voices(config)
    utterances = plan_utterances(config, voices)
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
                "engine": u.engine,
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
            "engines": dict(sorted(Counter(r["engine"] for r in records).items())),
            "voices_used": len({(r["engine"], r["voice"]) for r in records}),
        }
    manifest = _manifest(config, voices, utterances, statistics)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return descriptors


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build a corpus and print its size, duration spread and build time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output folder (default: the profile's corpus_dir, e.g. data/speech)")
    parser.add_argument("--profile", choices=sorted(PROFILE_SIZES), help="corpus size by name ($PROFILE or quick)")
    parser.add_argument("--size", type=int, help="train + valid + test utterances (overrides --profile)")
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
