"""A synthetic EMG typing corpus in emg2qwerty's on-disk layout, typed from the project's grammar.

Real emg2qwerty recordings cannot be downloaded here, so the typing notebook and its tests run on a
stand-in written in exactly the dataset's layout, which :func:`emg_loaders.load_emg2qwerty` reads as
it reads the real data.

**Where the information comes from.**

- the *prompts* -> sentences of the speech corpus's text grammar (:func:`grammar.generate_texts`,
  both slices: dates, times, numbers, directions, cards, and the open templates), drawn from the
  corpus seed; nothing of the speech audio is used, so the corpus builds without the speech corpus;
- each *user* -> a typist drawn once (:func:`typing_synthesis.draw_typist`): speed, rhythm, pauses,
  typos, space-bar thumb, burst timing, muscle anatomy, band rotation, gains and typing style;
- each *session* -> a seeded generator: the keystrokes of every prompt (:func:`typing_synthesis.type_prompt`),
  the band's re-donning jitter, contact gains, hum and all noise; the keystrokes then drive the
  2 x 16 electrodes through the muscle model (:func:`typing_synthesis.record_session`, whose
  docstring follows the signal from key press to channel).

Labels are the keys themselves (letters, space, apostrophe, and Backspace after a typo), so a
window's text is known exactly; a model must read the key from the spatial pattern of a burst.
One user is held out: the rest are the *generic* training users, and the held-out user's sessions
split into a short *fine-tuning* part and a *test* part, for emg2qwerty's generic-versus-personalized
comparison.

**Layout** under ``out_dir`` (``data/typing`` for the quick profile)::

    manifest.json          what was built (the cache key), the splits and the counts
    metadata.csv           user, session, duration_mins, num_keystrokes, num_prompts,
                           quality_check_tags, split (train | val | finetune | test)
    <session>.hdf5         group emg2qwerty: dataset timeseries, fields emg_left (16,) <f4 µV,
                           emg_right (16,) <f4 µV, time <f8 unix seconds at 2 kHz; attributes
                           session_name, user, condition "on_keyboard", duration_mins and the JSON
                           strings keystrokes [{"key", "start", "end"}] and prompts
                           [{"name": "text_prompt", "payload": {"text"}, "start", "end"}]

**Sizes.** smoke: 3 users, 6 sessions, about 3 minutes (2 s to build); quick: 6 users, 12 sessions,
23 minutes, about 5,200 keystrokes, 360 MB (measured: 12 s on the 2-core course machine, one core
busy elsewhere); full: 8 users, 32 sessions of 24 prompts.

Usage: ``python -m ctclab.emg.typing_corpus --profile quick`` (cached: a second run returns at once).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

from ctclab.data.corpus import GRAMMAR_VERSION
from ctclab.data.grammar import generate_texts
from ctclab.emg import typing_synthesis as synthesis
from ctclab.emg.loaders import QWERTY_METADATA_COLUMNS, read_qwerty_metadata
from ctclab.profiles import get_profile

TYPING_CORPUS_VERSION = 1  # bump when the synthesis changes: invalidates cached corpora
QWERTY_DTYPE = np.dtype([("emg_left", "<f4", (16,)), ("emg_right", "<f4", (16,)), ("time", "<f8")])
METADATA_COLUMNS = (*QWERTY_METADATA_COLUMNS, "split")
SPLITS = ("train", "val", "finetune", "test")
LEAD_IN, LEAD_OUT = 1.0, 1.0  # seconds of rest before the first prompt and after the last


@dataclass(frozen=True)
class TypingCorpusConfig:
    """What to build; every field is part of the cache key."""

    seed: int = 0
    num_users: int = 5  # the last one is held out (generic vs personalized)
    sessions_per_user: int = 2  # one band-donning each, a day apart
    prompts_per_session: int = 12  # about 10 s each: sessions of about 2 minutes
    finetune_sessions: int = 1  # of the held-out user, for personalization; the rest are its test
    val_sessions: int = 1  # last sessions of the last training users, for validation
    min_words: int = 2  # prompt length in words (the grammar's own limits: 2..14)
    max_words: int = 10  # typed prompts are kept shorter than spoken ones
    closed_fraction: float = 0.5  # share of prompts from the grammar's closed-vocabulary slice
    start_time: float = 1_650_000_000.0  # unix seconds of the first session (April 2022)
    typing: synthesis.TypingConfig = field(default_factory=synthesis.TypingConfig)
    myo: synthesis.MyoConfig = field(default_factory=synthesis.MyoConfig)

    def __post_init__(self) -> None:
        if self.num_users < 2:
            raise ValueError(f"num_users must be at least 2 (one is held out), got {self.num_users}")
        if self.prompts_per_session < 1:
            raise ValueError(f"prompts_per_session must be at least 1, got {self.prompts_per_session}")
        if not 1 <= self.finetune_sessions < self.sessions_per_user:
            raise ValueError(
                f"need 1 <= finetune_sessions < sessions_per_user, got {self.finetune_sessions}, {self.sessions_per_user}"
            )
        if not 0 <= self.val_sessions <= min(self.num_users - 1, (self.num_users - 1) * self.sessions_per_user - 1):
            raise ValueError(
                f"val_sessions must leave a training session and take one per user, got {self.val_sessions}"
            )
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if not 0.0 <= self.closed_fraction <= 1.0:
            raise ValueError(f"closed_fraction must lie in [0, 1], got {self.closed_fraction}")

    @property
    def held_out_user(self) -> str:
        return user_name(self.num_users - 1)


def user_name(index: int) -> str:
    """The metadata's user id: "user0", "user1", ..."""
    return f"user{index}"


@dataclass
class _Session:
    """One session to write: who, when, which prompts, which split, and its seed."""

    user_index: int
    index: int
    name: str
    split: str
    start: float  # unix seconds of sample 0
    texts: list[str]
    seed: list[int]


def _plan(config: TypingCorpusConfig) -> list[_Session]:
    """Every session with its prompts and split, all from ``config.seed``."""
    text_seed, _ = np.random.SeedSequence(config.seed).spawn(2)
    total = config.num_users * config.sessions_per_user * config.prompts_per_session
    sentences = generate_texts(
        total, np.random.default_rng(text_seed), config.closed_fraction, config.min_words, config.max_words
    )
    val_users = set(range(config.num_users - 1 - config.val_sessions, config.num_users - 1))
    sessions = []
    for user in range(config.num_users):
        for index in range(config.sessions_per_user):
            if user == config.num_users - 1:
                split = "finetune" if index < config.finetune_sessions else "test"
            else:
                split = "val" if user in val_users and index == config.sessions_per_user - 1 else "train"
            start = config.start_time + 86400.0 * (7 * user + index)  # a week per user, a day per session
            day = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d")
            first = (user * config.sessions_per_user + index) * config.prompts_per_session
            texts = [s.text for s in sentences[first : first + config.prompts_per_session]]
            name = f"{day}-{int(start)}-keystrokes-{user_name(user)}"
            sessions.append(_Session(user, index, name, split, start, texts, [config.seed, 1, user, index]))
    return sessions


def _typists(config: TypingCorpusConfig) -> list[synthesis.Typist]:
    _, typist_seed = np.random.SeedSequence(config.seed).spawn(2)
    rngs = [np.random.default_rng(seed) for seed in typist_seed.spawn(config.num_users)]
    return [synthesis.draw_typist(user_name(u), rng, config.typing, config.myo) for u, rng in enumerate(rngs)]


def _write_session(out_dir: Path, session: _Session, typist: synthesis.Typist, config: TypingCorpusConfig) -> dict:
    """Type the session's prompts, synthesize its EMG, write ``<name>.hdf5``; returns its metadata row."""
    import h5py

    rng = np.random.default_rng(session.seed)
    strokes: list[dict] = []
    prompts: list[dict] = []
    shown = LEAD_IN  # seconds from sample 0
    for text in session.texts:
        typed, next_shown = synthesis.type_prompt(text, typist, rng, shown, config.typing)
        prompts.append({"name": "text_prompt", "payload": {"text": text}, "start": shown, "end": next_shown})
        strokes.extend(typed)
        shown = next_shown
    num_samples = int(np.ceil((shown + LEAD_OUT) * synthesis.SAMPLE_RATE))
    emg = synthesis.record_session(strokes, num_samples, typist, rng, config.myo)  # (T, 2, 16) µV
    timeseries = np.zeros(num_samples, QWERTY_DTYPE)
    timeseries["emg_left"], timeseries["emg_right"] = emg[:, synthesis.LEFT], emg[:, synthesis.RIGHT]
    timeseries["time"] = session.start + np.arange(num_samples) / synthesis.SAMPLE_RATE

    def unix(events: list[dict]) -> list[dict]:
        return [
            {**e, "start": round(session.start + e["start"], 6), "end": round(session.start + e["end"], 6)}
            for e in events
        ]

    duration_mins = num_samples / synthesis.SAMPLE_RATE / 60
    with h5py.File(out_dir / f"{session.name}.hdf5", "w") as handle:
        group = handle.create_group("emg2qwerty")
        group.create_dataset("timeseries", data=timeseries)
        group.attrs.update(
            session_name=session.name,
            user=typist.name,
            condition="on_keyboard",
            duration_mins=duration_mins,
            keystrokes=json.dumps(unix(strokes)),
            prompts=json.dumps(unix(prompts)),
        )
    return {
        "user": typist.name,
        "session": session.name,
        "duration_mins": round(duration_mins, 4),
        "num_keystrokes": len(strokes),
        "num_prompts": len(prompts),
        "quality_check_tags": "[]",
        "split": session.split,
    }


def _cache_key(config: TypingCorpusConfig) -> dict:
    return {
        "version": TYPING_CORPUS_VERSION,
        "grammar_version": GRAMMAR_VERSION,
        "config": json.loads(json.dumps(asdict(config))),
    }


def _cached(out_dir: Path, key: dict) -> dict | None:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("key") != key or not (out_dir / "metadata.csv").is_file():
        return None
    return manifest if all((out_dir / f"{name}.hdf5").is_file() for name in manifest["sessions"]) else None


def build_typing_corpus(out_dir: str | Path, config: TypingCorpusConfig = TypingCorpusConfig()) -> dict:
    """Write the synthetic typing corpus into ``out_dir`` unless a matching build is already there.

    Args:
        out_dir: folder owned by the corpus (its ``*.hdf5`` and ``metadata.csv`` are replaced on rebuild).
        config: what to build.

    Returns:
        The manifest: {"root", "key", "sessions", "held_out_user", "splits" ({split: [session]}),
        "counts" ({"users", "sessions", "minutes", "keystrokes", "prompts"}), "split_counts"
        ({split: {"sessions", "minutes", "keystrokes"}})}.
    """
    out_dir = Path(out_dir)
    key = _cache_key(config)
    cached = _cached(out_dir, key)
    if cached is not None:
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # written last: marks a complete build
    for stale in [*out_dir.glob("*.hdf5"), out_dir / "metadata.csv"]:
        stale.unlink(missing_ok=True)
    typists = _typists(config)
    rows = [
        _write_session(out_dir, session, typists[session.user_index], config)
        for session in tqdm(_plan(config), desc="synthetic typing EMG", unit="session")
    ]
    with open(out_dir / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    split_counts = {
        split: {
            "sessions": sum(row["split"] == split for row in rows),
            "minutes": round(sum(row["duration_mins"] for row in rows if row["split"] == split), 2),
            "keystrokes": sum(row["num_keystrokes"] for row in rows if row["split"] == split),
        }
        for split in SPLITS
    }
    manifest = {
        "root": str(out_dir),
        "key": key,
        "sessions": [row["session"] for row in rows],
        "held_out_user": config.held_out_user,
        "splits": {split: [row["session"] for row in rows if row["split"] == split] for split in SPLITS},
        "counts": {
            "users": config.num_users,
            "sessions": len(rows),
            "minutes": round(sum(row["duration_mins"] for row in rows), 2),
            "keystrokes": sum(row["num_keystrokes"] for row in rows),
            "prompts": sum(row["num_prompts"] for row in rows),
        },
        "split_counts": split_counts,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def session_splits(root: str | Path) -> dict[str, list[str]]:
    """{split: [session names]} from a typing corpus's ``metadata.csv`` (train, val, finetune, test)."""
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    for row in read_qwerty_metadata(root):
        if row.get("split") not in splits:
            raise ValueError(f"{Path(root) / 'metadata.csv'}: session {row['session']} has split {row.get('split')!r}")
        splits[row["split"]].append(row["session"])
    return splits


def typing_config_for(profile_name: str | None = None) -> TypingCorpusConfig:
    """The corpus each profile builds (smoke: 3 users x 2 sessions of 3 prompts, about 3 minutes of EMG;
    quick: 6 users x 2 sessions of 14 prompts, about 23 minutes)."""
    profile = get_profile(profile_name)
    return TypingCorpusConfig(
        num_users=profile.pick(smoke=3, quick=6, full=8),
        sessions_per_user=profile.pick(smoke=2, quick=2, full=4),
        prompts_per_session=profile.pick(smoke=3, quick=14, full=24),
        finetune_sessions=profile.pick(smoke=1, quick=1, full=2),
        val_sessions=profile.pick(smoke=1, quick=1, full=2),
    )


def typing_corpus_dir(profile_name: str | None = None) -> str:
    """Where a profile's synthetic typing corpus lives: data/typing (quick) or data/typing_<profile>."""
    return get_profile(profile_name).data_folder("typing")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: build the profile's synthetic typing corpus and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="smoke | quick | full ($PROFILE or quick)")
    parser.add_argument("--out", help="output folder (default: data/typing for quick, data/typing_<profile> else)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    out = args.out or typing_corpus_dir(profile.name)
    start = time.perf_counter()
    manifest = build_typing_corpus(out, typing_config_for(profile.name))
    counts = manifest["counts"]
    print(
        f"{out}: {counts['users']} users, {counts['sessions']} sessions, {counts['minutes']} minutes, "
        f"{counts['keystrokes']} keystrokes (held out: {manifest['held_out_user']}), "
        f"ready in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
