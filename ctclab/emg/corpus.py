"""A synthetic parallel sEMG corpus in the Gaddy & Klein on-disk layout, built from the speech corpus.

Real silent-speech EMG (Gaddy & Klein 2020) cannot be downloaded here, so every notebook and test
runs on a stand-in written in exactly the dataset's layout, which :func:`emg_loaders.load_gaddy`
reads exactly as it reads the real data.

**Where the information comes from.** For each utterance of the speech corpus (``data/speech``):

- the *transcript* -> espeak-ng's American-English phoneme transcription (one fixed accent, not
  the voice that spoke the audio) -> per-phoneme target activations of 8 articulator muscle
  groups (lips, lower lip, lip corners, jaw, tongue tip, tongue back, tongue body, larynx);
- the *audio* -> only its duration and a binary loud / quiet envelope at 10 ms resolution, used
  as a speech clock: phonemes are laid out over the loud stretches, in order, with jittered
  relative durations. No spectral property of the audio (pitch, formants, voice quality, the
  spectrogram) reaches the EMG;
- a seeded random generator -> everything else (see :mod:`emg_synthesis`): Gaussian smoothing of
  the targets (20 ms), a 50 +- 10 ms lead of muscle over sound, band-limited noise carriers
  (20-450 Hz) whose amplitude follows the activations, a per-session 8 x 8 electrode mixing
  matrix, 60 Hz mains with 6 harmonics, electrode offsets and drift, a heartbeat on the neck
  electrodes, non-speech muscle bursts and amplifier noise.

**Why it is harder than the audio.** The 8 channels carry 8 mixed articulator envelopes, each
only estimable from a noise carrier (the RMS features of a steady contraction scatter by 25-45 %
from frame to frame), against 161 clean spectral bins. Several sounds share articulation: voiced
and voiceless pairs (p/b, t/d, s/z, f/v, k/g) differ only in the laryngeal group and nasals
equal their oral stops (m/b, n/d), so in silent speech, where the larynx rests, they are identical.
Phoneme targets, durations, lead and gains are jittered per utterance; placement changes per session;
silent sessions are weaker (0.5x) and slower (1.0-1.25x, unevenly warped). The audio model of the notebook is the
upper bound the EMG model is compared against. (One thing is easier than real data: every
recording articulates one fixed accent, a single "speaker", as the Gaddy & Klein data has one,
while the audio corpus has many voices.)

**Layout** under ``out_dir`` (``data/emg`` for the quick profile)::

    manifest.json                       what was built (the cache key) and counts
    testset_largedev.json               {"dev": [[book, sentence_index], ...], "test": [...]}
    emg_data/voiced_parallel_data/<session>/{i}_emg.npy         float64 (T, 8) µV at 1000 Hz
                                            {i}_audio_clean.flac  16 kHz mono, same duration
                                            {i}_info.json         book, sentence_index, text, chunks
    emg_data/silent_parallel_data/<session>_silent/...          the same files, silently mouthed

``book`` is ``books/closed_vocabulary.txt`` or ``books/open_vocabulary.txt`` (the grammar slice)
and ``sentence_index`` the speech corpus utterance number; each session also holds one silence
clip (``sentence_index`` -1, empty text), as the real data does. Sentences of the speech
corpus's valid split form ``dev``, its test split (unseen voices, so unseen timing) ``test``.
Every dev and test sentence is recorded both voiced and silent, so all conditions are scored on
the same sentences; a ``silent_train_fraction`` of the training sentences is recorded silently too.

Usage: ``python -m ctclab.emg.corpus --profile quick`` (cached: a second run returns at once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

from ctclab.data.descriptors import read_descriptors
from ctclab.emg import synthesis
from ctclab.profiles import get_profile

EMG_CORPUS_VERSION = 1  # bump when the synthesis changes: invalidates cached corpora
VOICED_DIR, SILENT_DIR = "voiced_parallel_data", "silent_parallel_data"
TESTSET_FILE = "testset_largedev.json"
BOOKS = {"closed": "books/closed_vocabulary.txt", "open": "books/open_vocabulary.txt"}
SPLIT_OF = {"valid": "dev", "test": "test"}  # speech corpus split -> Gaddy & Klein testset list


@dataclass(frozen=True)
class EMGCorpusConfig:
    """What to build; every field is part of the cache key."""

    seed: int = 0
    num_sessions: int = 4  # voiced recording days, each with a silent twin session
    silent_train_fraction: float = 0.5  # training sentences also recorded silently (dev/test: all)
    max_utterances: int | None = None  # use only the first N speech utterances of each split
    margin_seconds: float = 0.25  # recording before and after the speech (room for the EMG lead)
    silence_clip_seconds: float = 2.0  # the per-session clip with sentence_index -1
    silent_strength: float = 0.5  # silent articulation is weaker than voiced
    silent_voicing: float = 0.05  # what is left of laryngeal activity when mouthing silently
    silent_stretch: tuple[float, float] = (1.0, 1.25)  # silent speech is slower, by this factor
    articulation: synthesis.ArticulationConfig = field(default_factory=synthesis.ArticulationConfig)
    session: synthesis.SessionConfig = field(default_factory=synthesis.SessionConfig)

    def __post_init__(self) -> None:
        if self.num_sessions < 1:
            raise ValueError(f"num_sessions must be at least 1, got {self.num_sessions}")
        if not 0.0 <= self.silent_train_fraction <= 1.0:
            raise ValueError(f"silent_train_fraction must lie in [0, 1], got {self.silent_train_fraction}")
        if self.max_utterances is not None and self.max_utterances < 1:
            raise ValueError(f"max_utterances must be positive or None, got {self.max_utterances}")


def session_names(num_sessions: int) -> list[str]:
    """Voiced session folder names in the dataset's month-day style: "5-1", "5-2", ..."""
    return [f"5-{index + 1}" for index in range(num_sessions)]


def _cache_key(config: EMGCorpusConfig, speech_corpus_dir: Path) -> dict:
    speech_manifest = json.loads((speech_corpus_dir / "manifest.json").read_text())
    return {
        "version": EMG_CORPUS_VERSION,
        "config": json.loads(json.dumps(asdict(config))),
        "speech_corpus": {key: speech_manifest.get(key) for key in ("grammar_version", "config")},
    }


def _cached(out_dir: Path, key: dict) -> dict | None:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("key") != key:
        return None
    expected = manifest["files"]
    found = sum(1 for _ in (out_dir / "emg_data").glob("*/*/*_info.json"))
    return manifest if found == expected else None


@dataclass
class _Plan:
    """One recording to write: where, what, and the seed of its randomness."""

    folder: str  # relative to emg_data/
    index: int
    book: str
    sentence_index: int
    text: str
    audio_path: Path | None  # the speech corpus wav (None: the silence clip)
    silent: bool
    seed: list[int]  # entropy of this recording's random generator


def _plan(records: dict[str, list[dict]], config: EMGCorpusConfig) -> list[_Plan]:
    """Session, index and seed of every recording, drawn from ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    sessions = session_names(config.num_sessions)
    counters = {name: 0 for name in sessions}
    counters.update({f"{name}_silent": 0 for name in sessions})
    plans = []
    for split in ("train", "valid", "test"):
        for record in records[split]:
            session = sessions[int(rng.integers(config.num_sessions))]
            silent_too = split != "train" or rng.random() < config.silent_train_fraction
            sentence_index = int(Path(record["key"]).stem)
            for silent in (False, True) if silent_too else (False,):
                folder = f"{SILENT_DIR}/{session}_silent" if silent else f"{VOICED_DIR}/{session}"
                name = folder.split("/")[1]
                plans.append(
                    _Plan(
                        folder,
                        counters[name],
                        BOOKS[record.get("slice", "open")],
                        sentence_index,
                        record["text"],
                        Path(record["key"]),
                        silent,
                        [config.seed, 1, sentence_index, silent],
                    )
                )
                counters[name] += 1
    for number, (name, count) in enumerate(counters.items()):  # a silence clip per session, as the real data
        silent = name.endswith("_silent")
        folder = f"{SILENT_DIR if silent else VOICED_DIR}/{name}"
        plans.append(_Plan(folder, count, "", -1, "", None, silent, [config.seed, 0, number, silent]))
    return plans


def _record(
    plan: _Plan,
    sessions: dict[str, synthesis.Session],
    phonemes: dict[str, list[str]],
    config: EMGCorpusConfig,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, np.ndarray]:
    """EMG (T, 8) µV at 1 kHz and audio (S,) float32 at ``sample_rate`` for one plan."""
    rng = np.random.default_rng(plan.seed)
    margin = np.zeros(int(config.margin_seconds * sample_rate), np.float32)
    if plan.audio_path is None:  # silence clip: rest activity only
        audio = np.zeros(int(config.silence_clip_seconds * sample_rate), np.float32)
        activation = np.zeros((int(config.silence_clip_seconds * synthesis.SAMPLE_RATE), 8))
    else:
        speech, file_rate = soundfile.read(str(plan.audio_path), dtype="float32")
        if file_rate != sample_rate:
            raise ValueError(f"{plan.audio_path}: sample rate {file_rate} Hz, expected {sample_rate} Hz")
        audio = np.concatenate([margin, speech, margin])
        sequence = [p for word in plan.text.split() for p in phonemes[word]]
        activation = synthesis.articulator_activations(
            sequence, synthesis.speech_activity(audio, sample_rate), rng, config.articulation
        )
    strength = 1.0
    if plan.silent:
        activation[:, synthesis.VOICING] *= config.silent_voicing
        activation = synthesis.time_warp(activation, rng.uniform(*config.silent_stretch), rng)
        strength = config.silent_strength
        audio = (1e-3 * rng.standard_normal(len(activation) * sample_rate // synthesis.SAMPLE_RATE)).astype(np.float32)
    emg = sessions[plan.folder].record(activation, rng, strength)
    return emg, audio


def build_emg_corpus(
    out_dir: str | Path, speech_corpus_dir: str | Path, config: EMGCorpusConfig = EMGCorpusConfig()
) -> dict:
    """Write the synthetic corpus into ``out_dir`` unless a matching build is already there.

    Args:
        out_dir: folder owned by the corpus (its ``emg_data`` is replaced on rebuild).
        speech_corpus_dir: a built speech corpus (``corpus.build_corpus``): its train / valid /
            test descriptors give the sentences, their slice and their audio.
        config: what to build.

    Returns:
        The manifest: {"root", "emg_data", "testset", "key", "files", "sessions", "counts", "hours"}.
    """
    out_dir, speech_corpus_dir = Path(out_dir), Path(speech_corpus_dir)
    if not (speech_corpus_dir / "manifest.json").is_file():
        raise ValueError(f"{speech_corpus_dir} holds no built speech corpus (run `make corpus` first)")
    key = _cache_key(config, speech_corpus_dir)
    cached = _cached(out_dir, key)
    if cached is not None:
        return cached
    records = {
        split: read_descriptors(speech_corpus_dir / f"{split}_corpus.json")[: config.max_utterances]
        for split in ("train", "valid", "test")
    }
    plans = _plan(records, config)
    phonemes = synthesis.phonemize_words(sorted({word for plan in plans for word in plan.text.split()}))
    session_rng = np.random.default_rng([config.seed, 7])
    sessions = {}
    for name in session_names(config.num_sessions):
        sessions[f"{VOICED_DIR}/{name}"] = synthesis.Session(session_rng, config.session)
        sessions[f"{SILENT_DIR}/{name}_silent"] = synthesis.Session(session_rng, config.session, silent=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # written last: marks a complete build
    shutil.rmtree(out_dir / "emg_data", ignore_errors=True)
    seconds = {"voiced": 0.0, "silent": 0.0}
    for plan in tqdm(plans, desc="synthetic EMG", unit="utt"):
        emg, audio = _record(plan, sessions, phonemes, config)
        folder = out_dir / "emg_data" / plan.folder
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{plan.index}_emg.npy", emg)
        soundfile.write(folder / f"{plan.index}_audio_clean.flac", audio, 16000, subtype="PCM_16")
        info = {
            "book": plan.book,
            "sentence_index": plan.sentence_index,
            "text": plan.text,
            "chunks": [[len(emg), len(audio), 0]],
        }
        (folder / f"{plan.index}_info.json").write_text(json.dumps(info))
        seconds["silent" if plan.silent else "voiced"] += len(emg) / synthesis.SAMPLE_RATE
    testset = {
        name: [[BOOKS[r.get("slice", "open")], int(Path(r["key"]).stem)] for r in records[split]]
        for split, name in SPLIT_OF.items()
    }
    (out_dir / TESTSET_FILE).write_text(json.dumps(testset))
    counts = {
        condition: sum(p.silent == (condition == "silent") and p.sentence_index >= 0 for p in plans)
        for condition in ("voiced", "silent")
    }
    manifest = {
        "root": str(out_dir),
        "emg_data": str(out_dir / "emg_data"),
        "testset": str(out_dir / TESTSET_FILE),
        "key": key,
        "files": len(plans),
        "sessions": sorted({p.folder for p in plans}),
        "counts": counts,
        "hours": {k: round(v / 3600, 4) for k, v in seconds.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def corpus_config_for(profile_name: str | None = None) -> EMGCorpusConfig:
    """The corpus each profile builds (smoke: every smoke utterance, a quarter of them silent too)."""
    profile = get_profile(profile_name)
    return EMGCorpusConfig(
        silent_train_fraction=profile.pick(smoke=0.25, quick=0.5, full=1.0),
        num_sessions=profile.pick(smoke=2, quick=4, full=8),
    )


def emg_corpus_dir(profile_name: str | None = None) -> str:
    """Where a profile's synthetic EMG corpus lives: data/emg (quick) or data/emg_<profile>."""
    return get_profile(profile_name).data_folder("emg")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build the profile's synthetic EMG corpus and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="smoke | quick | full ($PROFILE or quick)")
    parser.add_argument("--out", help="output folder (default: data/emg for quick, data/emg_<profile> else)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    out = args.out or emg_corpus_dir(profile.name)
    start = time.perf_counter()
    manifest = build_emg_corpus(out, profile.corpus_dir, corpus_config_for(profile.name))
    print(
        f"{out}: {manifest['counts']} utterances, {manifest['hours']} hours, "
        f"{len(manifest['sessions'])} sessions, ready in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
