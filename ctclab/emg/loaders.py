"""Readers for the two public sEMG datasets, in their own on-disk formats, unchanged.

**Gaddy & Klein silent speech** (``emg_data/{voiced_parallel_data, silent_parallel_data,
nonparallel_data}/<session>/``): per utterance ``{i}_emg.npy`` (T, 8) float64 µV at 1000 Hz,
``{i}_audio_clean.flac`` and ``{i}_info.json`` (``book``, ``sentence_index``, ``text``, ``chunks``).
Clips with ``sentence_index`` -1 are silence recordings and are skipped. ``testset_largedev.json``
lists the ``(book, sentence_index)`` pairs of the dev and test splits; everything else is train.
Silent utterances pair with voiced ones by ``(book, sentence_index)``. The synthetic corpus of
:mod:`emg_corpus` uses the same layout.

**emg2qwerty typing** (``metadata.csv`` + ``<session>.hdf5``): group ``emg2qwerty`` holds the
compound dataset ``timeseries`` with fields ``emg_left`` (16,), ``emg_right`` (16,) at 2 kHz and
``time`` (unix seconds), and JSON-string attributes ``keystrokes`` ([{"key", "start", "end"}],
pynput key names) and ``prompts``. Keys map to the ``ctclab.alphabet.ENGLISH`` characters: letters
(lower-cased), space and apostrophe; Backspace deletes the last character when text is
assembled; every other key (Enter, Shift, digits, punctuation) has no symbol in the alphabet and
is dropped, and counted.

Malformed input raises :class:`EMGDataError` (a ``ValueError``) naming the file and the problem;
pass a ``skipped`` list to skip such utterances instead (each is appended as (file, reason)).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet

GADDY_SAMPLE_RATE = 1000.0  # Hz, fixed by the recording setup
GADDY_CHANNELS = 8
GADDY_DIRECTORIES = {
    "voiced": "voiced_parallel_data",
    "silent": "silent_parallel_data",
    "nonparallel": "nonparallel_data",
}
TESTSET_FILE = "testset_largedev.json"
QWERTY_SAMPLE_RATE = 2000.0  # Hz
QWERTY_CHANNELS_PER_BAND = 16  # electrodes per wrist band
QWERTY_METADATA_COLUMNS = ("user", "session", "duration_mins", "num_keystrokes", "num_prompts", "quality_check_tags")


class EMGDataError(ValueError):
    """A dataset file that cannot be used; the message names the file and the problem."""


# ------------------------------------------------------------------------------ Gaddy & Klein


def check_emg_array(path: str | Path, num_channels: int = GADDY_CHANNELS) -> tuple[int, int]:
    """Validate a ``.npy`` EMG file from its header and size, without reading the samples.

    Returns:
        (T, channels).

    Raises:
        EMGDataError: missing or unreadable file, not 2-D float, wrong channel count, or fewer bytes
            than the header promises (a truncated copy).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
            header_end = handle.tell()
    except (OSError, ValueError) as error:
        raise EMGDataError(f"{path}: not a readable .npy EMG file ({error})") from error
    if len(shape) != 2 or shape[1] != num_channels:
        raise EMGDataError(f"{path}: EMG shape {shape}, expected (time, {num_channels})")
    if dtype.kind != "f":
        raise EMGDataError(f"{path}: EMG dtype {dtype}, expected floating point")
    expected_bytes = header_end + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected_bytes:
        raise EMGDataError(f"{path}: truncated: {path.stat().st_size} bytes, header promises {expected_bytes}")
    return int(shape[0]), int(shape[1])


def read_emg_array(path: str | Path, num_channels: int = GADDY_CHANNELS) -> np.ndarray:
    """Read and validate a (T, num_channels) EMG ``.npy`` file as float64."""
    check_emg_array(path, num_channels)
    emg = np.load(path).astype(np.float64)
    if not np.all(np.isfinite(emg)):
        raise EMGDataError(f"{path}: {np.count_nonzero(~np.isfinite(emg))} non-finite EMG samples")
    return emg


@dataclass
class EMGUtterance:
    """One Gaddy & Klein utterance. ``emg`` is read from disk on access (the corpus may not fit in memory).

    Attributes:
        emg_path: the ``{i}_emg.npy`` file; ``audio_path`` the ``{i}_audio_clean.flac`` (None if absent).
        text: transcript as written in info.json; session: the session folder name.
        silent: recorded while mouthing silently; parallel: from a *_parallel_data folder.
        book, sentence_index: the sentence's identity, shared by its voiced and silent recordings.
        split: "train", "dev" or "test" (from the testset file; "train" without one).
        num_samples: T, read from the .npy header.
    """

    emg_path: Path
    audio_path: Path | None
    text: str
    session: str
    silent: bool
    parallel: bool
    book: str
    sentence_index: int
    split: str
    num_samples: int
    sample_rate: float = GADDY_SAMPLE_RATE

    @property
    def emg(self) -> np.ndarray:
        """(T, 8) float64 microvolts at 1000 Hz."""
        return read_emg_array(self.emg_path)

    @property
    def duration(self) -> float:
        """Seconds of EMG."""
        return self.num_samples / self.sample_rate

    @property
    def sentence(self) -> tuple[str, int]:
        return self.book, self.sentence_index


def _emg_data_folder(root: Path) -> Path:
    for candidate in (root, root / "emg_data"):
        if any((candidate / folder).is_dir() for folder in GADDY_DIRECTORIES.values()):
            return candidate
    raise EMGDataError(f"{root}: no {sorted(GADDY_DIRECTORIES.values())} folder here or under emg_data/")


def read_testset(path: str | Path) -> dict[tuple[str, int], str]:
    """``testset_largedev.json`` -> {(book, sentence_index): "dev" | "test"}."""
    path = Path(path)
    try:
        lists = json.loads(path.read_text())
        return {(str(book), int(index)): split for split in ("dev", "test") for book, index in lists[split]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise EMGDataError(
            f"{path}: not a testset file with 'dev' and 'test' lists of [book, index] ({error!r})"
        ) from error


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
        for name, kind in (("book", str), ("sentence_index", int), ("text", str)):
            if not isinstance(info[name], kind):
                raise TypeError(f"{name} is {type(info[name]).__name__}, expected {kind.__name__}")
        return info
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise EMGDataError(f"{path}: bad info.json ({error!r})") from error


def _session_files(folder: Path) -> list[int]:
    """Utterance indices of a session folder, from its *_emg.npy and *_info.json files."""
    indices = set()
    for path in folder.iterdir():
        stem, _, suffix = path.name.partition("_")
        if suffix in ("emg.npy", "info.json") and stem.isdigit():
            indices.add(int(stem))
    return sorted(indices)


def load_gaddy(
    root: str | Path,
    conditions: Iterable[str] = ("voiced", "silent"),
    testset: str | Path | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[EMGUtterance]:
    """Every utterance of a Gaddy & Klein style dataset (silence clips excluded).

    Args:
        root: the ``emg_data`` folder or its parent.
        conditions: any of "voiced", "silent" (the parallel folders) and "nonparallel" (voiced).
        testset: the split file; default ``testset_largedev.json`` in ``root`` or its parent
            (without one, every utterance is "train").
        skipped: if given, malformed utterances are appended here as (file, reason) and left out
            instead of raising.

    Returns:
        Utterances ordered by condition, session and index.

    Raises:
        EMGDataError: a missing folder, missing info.json or .npy, bad JSON, wrong channel count
            or a truncated .npy (unless ``skipped`` is given).
    """
    root = Path(root)
    data = _emg_data_folder(root)
    unknown = set(conditions) - set(GADDY_DIRECTORIES)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; choose from {sorted(GADDY_DIRECTORIES)}")
    if testset is None:
        found = [path / TESTSET_FILE for path in (root, data, data.parent) if (path / TESTSET_FILE).is_file()]
        testset = found[0] if found else None
    splits = read_testset(testset) if testset is not None else {}
    utterances = []
    for condition in conditions:
        top = data / GADDY_DIRECTORIES[condition]
        if not top.is_dir():
            raise EMGDataError(f"{top}: folder for {condition!r} utterances does not exist")
        for session in sorted(path for path in top.iterdir() if path.is_dir()):
            for index in _session_files(session):
                try:
                    utterance = _load_utterance(session, index, condition, splits)
                except EMGDataError as error:
                    if skipped is None:
                        raise
                    skipped.append((str(session / f"{index}_emg.npy"), str(error)))
                    continue
                if utterance is not None:
                    utterances.append(utterance)
    return utterances


def _load_utterance(session: Path, index: int, condition: str, splits: dict) -> EMGUtterance | None:
    info_path, emg_path = session / f"{index}_info.json", session / f"{index}_emg.npy"
    if not info_path.is_file():
        raise EMGDataError(f"{info_path}: missing (every {index}_emg.npy needs its info.json)")
    info = _read_info(info_path)
    if info["sentence_index"] < 0:
        return None  # a silence clip
    num_samples, _ = check_emg_array(emg_path)
    audio_path = session / f"{index}_audio_clean.flac"
    return EMGUtterance(
        emg_path=emg_path,
        audio_path=audio_path if audio_path.is_file() else None,
        text=info["text"],
        session=session.name,
        silent=condition == "silent",
        parallel=condition != "nonparallel",
        book=info["book"],
        sentence_index=info["sentence_index"],
        split=splits.get((info["book"], info["sentence_index"]), "train"),
        num_samples=num_samples,
    )


def pair_silent_with_voiced(utterances: list[EMGUtterance]) -> list[tuple[EMGUtterance, EMGUtterance]]:
    """(silent, voiced) pairs of the same sentence; the first voiced recording of a sentence is used.

    Raises:
        EMGDataError: a silent utterance whose (book, sentence_index) has no voiced recording.
    """
    voiced: dict[tuple[str, int], EMGUtterance] = {}
    for utterance in utterances:
        if not utterance.silent:
            voiced.setdefault(utterance.sentence, utterance)
    pairs = []
    for utterance in utterances:
        if utterance.silent:
            if utterance.sentence not in voiced:
                raise EMGDataError(
                    f"{utterance.emg_path}: silent sentence {utterance.sentence} has no voiced recording"
                )
            pairs.append((utterance, voiced[utterance.sentence]))
    return pairs


# ---------------------------------------------------------------------------------- emg2qwerty


@dataclass
class Keystroke:
    """One key press: pynput name ("a", "Key.space", ...) and press / release times (unix seconds)."""

    key: str
    start: float
    end: float


@dataclass
class QwertySession:
    """One emg2qwerty session.

    Attributes:
        path: the HDF5 file.
        emg: (T, 32) float32, the 16 left-band channels then the 16 right-band channels, 2 kHz.
        time: (T,) float64 unix seconds, increasing.
        keystrokes: in time order.
        prompts: [{"text", "start", "end"}] for every prompt with a text payload.
        dropped_keys: key name -> how often it was dropped (no ENGLISH symbol).
    """

    path: Path
    user: str
    session_name: str
    emg: np.ndarray
    time: np.ndarray
    keystrokes: list[Keystroke]
    prompts: list[dict]
    dropped_keys: dict[str, int] = field(default_factory=dict)

    def sample_at(self, seconds: float) -> int:
        """Index of the first sample at or after unix time ``seconds``."""
        return int(np.searchsorted(self.time, seconds, side="left"))

    def text_between(self, start: float, end: float, alphabet: Alphabet = ENGLISH, backspace: bool = True) -> str:
        """Characters typed by key presses starting in [start, end), Backspace applied if ``backspace``."""
        text: list[str] = []
        for stroke in self.keystrokes:
            if start <= stroke.start < end:
                character = key_to_character(stroke.key, alphabet)
                if character is not None:
                    text.append(character)
                elif stroke.key == "Key.backspace" and backspace and text:
                    text.pop()
        return "".join(text)


def key_to_character(key: str, alphabet: Alphabet = ENGLISH) -> str | None:
    """pynput key name -> alphabet character, or None: "A" -> "a", "Key.space" -> " ", "Key.shift" -> None."""
    if key == "Key.space":
        return " " if " " in alphabet.characters else None
    if len(key) == 1 and not alphabet.unknown_characters(key.lower()):
        return key.lower()
    return None


def read_qwerty_metadata(root: str | Path) -> list[dict]:
    """Rows of ``metadata.csv`` as dicts (the six columns the emg2qwerty scripts use are required)."""
    path = Path(root) / "metadata.csv"
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = rows[0].keys() if rows else []
    except OSError as error:
        raise EMGDataError(f"{path}: cannot read ({error})") from error
    missing = [column for column in QWERTY_METADATA_COLUMNS if column not in columns]
    if missing:
        raise EMGDataError(f"{path}: missing columns {missing} (or no rows)")
    return rows


def load_emg2qwerty_session(path: str | Path, alphabet: Alphabet = ENGLISH) -> QwertySession:
    """Read one ``<session>.hdf5``.

    Raises:
        EMGDataError: not HDF5, missing group / dataset / field / attribute, wrong channel count,
            condition other than "on_keyboard", non-increasing time or bad keystroke JSON.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if "emg2qwerty" not in handle or "timeseries" not in handle["emg2qwerty"]:
                raise EMGDataError(f"{path}: no emg2qwerty/timeseries dataset")
            group = handle["emg2qwerty"]
            timeseries = group["timeseries"][()]
            attributes = {name: group.attrs[name] for name in group.attrs}
    except OSError as error:
        raise EMGDataError(f"{path}: not a readable HDF5 file ({error})") from error
    fields = timeseries.dtype.names or ()
    for name in ("emg_left", "emg_right", "time"):
        if name not in fields:
            raise EMGDataError(f"{path}: timeseries has no field {name!r} (fields {fields})")
    for band in ("emg_left", "emg_right"):
        if timeseries[band].shape[1:] != (QWERTY_CHANNELS_PER_BAND,):
            raise EMGDataError(f"{path}: {band} has shape {timeseries[band].shape}, expected (T, 16)")
    for name in ("keystrokes", "condition"):
        if name not in attributes:
            raise EMGDataError(f"{path}: missing attribute {name!r}")
    if attributes["condition"] != "on_keyboard":
        raise EMGDataError(f"{path}: condition {attributes['condition']!r}, expected 'on_keyboard'")
    time = np.asarray(timeseries["time"], np.float64)
    if len(time) < 2 or np.any(np.diff(time) <= 0):
        raise EMGDataError(f"{path}: time must have 2+ strictly increasing samples")
    try:
        keystrokes = [
            Keystroke(str(k["key"]), float(k["start"]), float(k["end"])) for k in json.loads(attributes["keystrokes"])
        ]
        prompts = [
            {"text": p["payload"]["text"], "start": float(p["start"]), "end": float(p["end"])}
            for p in json.loads(attributes.get("prompts", "[]"))
            if p.get("payload")
        ]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise EMGDataError(f"{path}: bad keystrokes / prompts attribute ({error!r})") from error
    keystrokes.sort(key=lambda stroke: stroke.start)
    dropped: dict[str, int] = {}
    for stroke in keystrokes:
        if key_to_character(stroke.key, alphabet) is None and stroke.key != "Key.backspace":
            dropped[stroke.key] = dropped.get(stroke.key, 0) + 1
    emg = np.concatenate([timeseries["emg_left"], timeseries["emg_right"]], axis=1).astype(np.float32)  # (T, 32)
    return QwertySession(
        path,
        str(attributes.get("user", "")),
        str(attributes.get("session_name", path.stem)),
        emg,
        time,
        keystrokes,
        prompts,
        dropped,
    )


def load_emg2qwerty(
    root: str | Path,
    sessions: Iterable[str] | None = None,
    alphabet: Alphabet = ENGLISH,
    skipped: list[tuple[str, str]] | None = None,
) -> list[QwertySession]:
    """The sessions of an emg2qwerty folder (those of metadata.csv, or ``sessions``), in order.

    ``skipped``: if given, unreadable sessions are appended as (file, reason) instead of raising.
    """
    root = Path(root)
    names = list(sessions) if sessions is not None else [row["session"] for row in read_qwerty_metadata(root)]
    loaded = []
    for name in names:
        path = root / f"{name}.hdf5"
        try:
            if not path.is_file():
                raise EMGDataError(f"{path}: listed session file does not exist")
            loaded.append(load_emg2qwerty_session(path, alphabet))
        except EMGDataError as error:
            if skipped is None:
                raise
            skipped.append((str(path), str(error)))
    return loaded


def prompt_pairs(session: QwertySession, alphabet: Alphabet = ENGLISH) -> list[tuple[np.ndarray, str]]:
    """(EMG (T_i, 32), typed text) for each prompt: the keys pressed while it was shown, Backspace applied.

    Prompts whose typed text is empty are left out.
    """
    pairs = []
    for prompt in session.prompts:
        text = session.text_between(prompt["start"], prompt["end"], alphabet)
        if text.strip():
            pairs.append((session.emg[session.sample_at(prompt["start"]) : session.sample_at(prompt["end"])], text))
    return pairs
