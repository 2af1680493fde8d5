"""sEMG utterances in the course's training path: descriptors, a feature loader, runs and tables.

EMG data reuses the speech pipeline unchanged. A descriptor line names the recording instead of a
wav: ``{"key": ".../12_emg.npy", "duration": seconds, "text": ...}`` (plus ``silent``,
``session``, ``slice``, ``book``, ``sentence_index``, ``split``), and :class:`EMGFeatureLoader`
turns a key into features, so ``train_model(..., features=EMGFeatureConfig(),
feature_loader=EMGFeatureLoader())`` and ``evaluate_model`` run as for audio.

Typing (emg2qwerty) windows use keys ``<session>.hdf5#<first sample>:<end sample>``; the loader
cuts that window out of the session and computes the log spectrogram. Seed 001 trains and
evaluates on 300 ms windows so that a live decoder never sees the future beyond its window;
:func:`qwerty_window_descriptors` writes such windows.

:func:`results_table` lays out scores like table 3.1 of seed 000 (the silent-speech
dissertation's audio baseline): one row per model, condition and vocabulary slice; WER and CER,
greedy and with the language model.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.data.descriptors import write_descriptors
from ctclab.emg import corpus as emg_corpus
from ctclab.emg import loaders as emg_loaders
from ctclab.emg.signal import EMGFeatureConfig, emg_features
from ctclab.runs import Run

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from ctclab.decoding.char_lm import CharNGramLM
    from ctclab.decoding.lm import NGramLM
    from ctclab.profiles import Profile

QWERTY_KEY_SEPARATOR = "#"  # "<session>.hdf5#<start>:<end>"
STREAM_KEY_SEPARATOR = " + "  # "<a>_emg.npy + <b>_emg.npy": the recordings back to back (stream_descriptors)


def emg_corpus_dir(profile: Profile | str | None = None) -> str:
    """Where a profile's synthetic EMG corpus lives (a Profile, a profile name or None for $PROFILE)."""
    return emg_corpus.emg_corpus_dir(profile if profile is None or isinstance(profile, str) else profile.name)


def vocabulary_slice(book: str) -> str:
    """ "closed" for a book (or session path) naming the closed vocabulary, else "open"."""
    return "closed" if "closed" in book else "open"


def normalize_transcript(text: str, alphabet: Alphabet = ENGLISH) -> str:
    """Book text -> label text, as Gaddy & Klein clean theirs: accents stripped, lower case, hyphens as
    spaces, every other character outside ``alphabet`` removed, whitespace collapsed.

    "Mars—the Red Planet's" -> "marsthe red planet's"; "twenty-one" -> "twenty one".
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("-", " ")
    kept = "".join(
        character for character in plain if character.isspace() or not alphabet.unknown_characters(character)
    )
    return " ".join(kept.split())


def utterance_record(utterance: emg_loaders.EMGUtterance) -> dict:
    """The descriptor line of one Gaddy & Klein utterance (key: its _emg.npy; text normalized)."""
    return {
        "key": str(utterance.emg_path.resolve()),
        "duration": round(utterance.duration, 4),
        "text": normalize_transcript(utterance.text),
        "silent": utterance.silent,
        "session": utterance.session,
        "slice": vocabulary_slice(utterance.book),
        "book": utterance.book,
        "sentence_index": utterance.sentence_index,
        "split": utterance.split,
    }


def audio_record(utterance: emg_loaders.EMGUtterance) -> dict:
    """The descriptor line of an utterance's audio (key: its _audio_clean.flac), for audio models."""
    if utterance.audio_path is None:
        raise emg_loaders.EMGDataError(f"{utterance.emg_path}: no _audio_clean.flac beside it for the audio descriptor")
    return dict(utterance_record(utterance), key=str(utterance.audio_path.resolve()))


def gaddy_descriptor_set(root: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Descriptor files for training and the seed-000 style comparison, from a Gaddy layout.

    Written to ``out_dir``:

    - ``train`` / ``dev``: EMG of voiced and silent utterances of those splits (one model learns both);
    - ``test_<condition>_<slice>``: test EMG, condition "voiced" / "silent", slice "closed" / "open";
    - ``audio_train`` / ``audio_dev`` / ``audio_test_<slice>``: the voiced recordings' audio.

    Test files keep only sentences recorded in both conditions, so the audio, voiced EMG and
    silent EMG rows of a table score the very same sentences.

    Returns:
        name -> descriptor path.
    """
    utterances = emg_loaders.load_gaddy(root, conditions=("voiced", "silent"))
    out_dir = Path(out_dir)
    by_split = {split: [u for u in utterances if u.split == split] for split in ("train", "dev", "test")}
    test = by_split["test"]
    both = {u.sentence for u in test if u.silent} & {u.sentence for u in test if not u.silent}
    voiced_train = [u for u in by_split["train"] + by_split["dev"] if not u.silent and u.audio_path is not None]
    paths = {
        "train": write_descriptors(map(utterance_record, by_split["train"]), out_dir / "train.json"),
        "dev": write_descriptors(map(utterance_record, by_split["dev"]), out_dir / "dev.json"),
        "audio_train": write_descriptors(
            map(audio_record, [u for u in voiced_train if u.split == "train"]), out_dir / "audio_train.json"
        ),
        "audio_dev": write_descriptors(
            map(audio_record, [u for u in voiced_train if u.split == "dev"]), out_dir / "audio_dev.json"
        ),
    }
    for slice_name in ("closed", "open"):
        chosen = [u for u in test if u.sentence in both and vocabulary_slice(u.book) == slice_name]
        for condition, silent in (("voiced", False), ("silent", True)):
            paths[f"test_{condition}_{slice_name}"] = write_descriptors(
                map(utterance_record, [u for u in chosen if u.silent == silent]),
                out_dir / f"test_{condition}_{slice_name}.json",
            )
        paths[f"audio_test_{slice_name}"] = write_descriptors(
            map(audio_record, [u for u in chosen if not u.silent]), out_dir / f"audio_test_{slice_name}.json"
        )
    return paths


def stream_descriptors(
    desc_file: str | Path,
    out_file: str | Path,
    longest: int = 3,
    max_duration: float = 9.0,
    seed: int = 0,
) -> Path:
    """A descriptor file of short streams: 1 to ``longest`` recordings of a session back to back.

    A model that carries its state across a live stream meets the start of a sentence in the
    middle of the previous one's state; trained on single recordings, each starting from zero
    state, it never saw that. Each recording of ``desc_file`` appears in exactly one stream, with
    the recordings of one session and condition (voiced / silent) that follow it in a shuffled
    order, as long as the stream stays within ``max_duration`` seconds. Keys are joined by
    ``STREAM_KEY_SEPARATOR`` (:class:`EMGFeatureLoader` concatenates the raw EMG), texts by a
    space, durations summed; the other fields are the first recording's.

    Returns:
        ``out_file``.
    """
    from ctclab.data.descriptors import read_descriptors

    rng = np.random.default_rng(seed)
    groups: dict[tuple[Any, Any], list[dict]] = {}
    for entry in read_descriptors(desc_file):
        groups.setdefault((entry.get("session"), entry.get("silent")), []).append(entry)
    streams = []
    for entries in groups.values():
        order = [entries[i] for i in rng.permutation(len(entries))]
        while order:
            size, stream = int(rng.integers(1, longest + 1)), [order.pop()]
            while (
                order
                and len(stream) < size
                and sum(e["duration"] for e in stream) + order[-1]["duration"] <= max_duration
            ):
                stream.append(order.pop())
            streams.append(
                {
                    **stream[0],
                    "key": STREAM_KEY_SEPARATOR.join(e["key"] for e in stream),
                    "duration": round(sum(e["duration"] for e in stream), 3),
                    "text": " ".join(e["text"] for e in stream),
                }
            )
    return write_descriptors(streams, out_file)


class EMGFeatureLoader:
    """``key -> (frames, feature_dim)`` features for AudioGenerator's ``feature_loader``.

    Keys are ``*_emg.npy`` files (Gaddy & Klein) or ``<session>.hdf5#<start>:<end>`` windows
    (emg2qwerty, samples at 2 kHz). Features are kept in memory, so every file is read and
    featurized once per loader however many generators use it.

    Raises (from ``__call__``):
        emg_loaders.EMGDataError: an unreadable or malformed file (a ValueError: the generator
            skips and counts the utterance as "bad input").
    """

    def __init__(self, config: EMGFeatureConfig = EMGFeatureConfig(), keep_in_memory: bool = True):
        self.config, self.keep_in_memory = config, keep_in_memory
        self._features: dict[str, np.ndarray] = {}
        self._sessions: dict[str, emg_loaders.QwertySession] = {}

    def __call__(self, key: str) -> np.ndarray:
        if key in self._features:
            return self._features[key]
        try:
            features = emg_features(self.raw(key), self.config)
        except emg_loaders.EMGDataError:
            raise
        except ValueError as error:  # shape or length problems found by emg_features
            raise emg_loaders.EMGDataError(f"{key}: {error}") from error
        if self.keep_in_memory:
            self._features[key] = features
        return features

    def raw(self, key: str) -> np.ndarray:
        """The raw EMG a key names: (T, channels) at ``config.sample_rate``."""
        if STREAM_KEY_SEPARATOR in key:  # recordings back to back, as a live stream has them
            return np.concatenate([self.raw(part) for part in key.split(STREAM_KEY_SEPARATOR)])
        if QWERTY_KEY_SEPARATOR in key:
            path, _, span = key.rpartition(QWERTY_KEY_SEPARATOR)
            if path not in self._sessions:
                self._sessions[path] = emg_loaders.load_emg2qwerty_session(path)
            start, end = (int(value) for value in span.split(":"))
            return self._sessions[path].emg[start:end]
        return emg_loaders.read_emg_array(key, self.config.num_channels)


# ---------------------------------------------------------------------------- typing windows


def qwerty_window_descriptors(
    sessions: Sequence[emg_loaders.QwertySession],
    path: str | Path,
    window_ms: float = 300.0,
    stride_ms: float | None = None,
    alphabet: Alphabet = ENGLISH,
) -> dict:
    """Write one descriptor line per window of every session in which a non-space character was typed.

    A window's text is the alphabet characters of the keys pressed inside it, in order (Backspace
    cannot be a label in ``alphabet``, so it is dropped like other keys without a symbol).

    Args:
        sessions: from :func:`emg_loaders.load_emg2qwerty`.
        window_ms: window length (300 ms: seed 001's real-time setting).
        stride_ms: hop between window starts (default: the window length, no overlap).

    Returns:
        {"path", "windows", "empty_windows" (left out: nothing or only spaces typed), "dropped_keys"}.
    """
    stride_ms = stride_ms or window_ms
    if window_ms <= 0 or stride_ms <= 0:
        raise ValueError(f"window_ms and stride_ms must be positive, got {window_ms}, {stride_ms}")
    records: list[dict] = []
    empty = 0
    dropped: dict[str, int] = {}
    for session in sessions:
        rate = (len(session.time) - 1) / (session.time[-1] - session.time[0])  # samples/s (2000 for emg2qwerty)
        window, stride = round(window_ms * rate / 1000), round(stride_ms * rate / 1000)
        for start in range(0, len(session.time) - window + 1, stride):
            text = session.text_between(
                session.time[start], session.time[start + window - 1], alphabet, backspace=False
            )
            if not text.strip():  # nothing typed, or only spaces (no word to score)
                empty += 1
                continue
            records.append(
                {
                    "key": f"{session.path.resolve()}{QWERTY_KEY_SEPARATOR}{start}:{start + window}",
                    "duration": round(window / rate, 4),
                    "text": text,
                    "session": session.session_name,
                }
            )
        for key, count in session.dropped_keys.items():
            dropped[key] = dropped.get(key, 0) + count
    return {
        "path": write_descriptors(records, path),
        "windows": len(records),
        "empty_windows": empty,
        "dropped_keys": dropped,
    }


def train_windowed(
    model: keras.Model,
    train_json: str | Path,
    valid_json: str | Path,
    name: str,
    results_dir: str | Path,
    epochs: int,
    minibatch_size: int = 32,
    **train_kwargs,
) -> dict:
    """Train on typing windows with emg2qwerty's log spectrogram (train_model underneath)."""
    from ctclab.training.trainer import train_model

    return train_model(
        model,
        f"{name}.pickle",
        f"{name}.keras",
        train_json,
        valid_json,
        minibatch_size=minibatch_size,
        epochs=epochs,
        results_dir=results_dir,
        features=EMGFeatureConfig.emg2qwerty(),
        feature_loader=EMGFeatureLoader(EMGFeatureConfig.emg2qwerty()),
        **train_kwargs,
    )


def evaluate_windowed(run_dir: str | Path, desc_file: str | Path, limit: int | None = None) -> dict:
    """Greedy CER / WER of a typing run on 300 ms windows (evaluate_model underneath)."""
    from ctclab.training.evaluation import evaluate_model

    return evaluate_model(
        run_dir, desc_file, limit=limit, feature_loader=EMGFeatureLoader(EMGFeatureConfig.emg2qwerty())
    )


# ------------------------------------------------------------------------ the audio upper bound


def audio_upper_bound(
    profile: Profile, descriptors: dict[str, Path], epochs: int, verbose: int = 2
) -> tuple[Path, str]:
    """The audio model the EMG model is compared against, on the same sentences.

    Notebook 02's final speech model (``<deep>/final``) is trained on the speech corpus's training
    split, which holds exactly the EMG corpus's training sentences, so it is used when it exists;
    otherwise a smaller model of the same design is trained here on the voiced recordings' audio
    (``descriptors["audio_train"]``) into ``<emg>/audio``.

    Returns:
        (run folder, a sentence saying which model it is).
    """
    from ctclab.models.registry import build
    from ctclab.training.trainer import train_model

    final = Path(profile.results_for("deep")) / "final"
    if Run(final).is_trained:
        return final, f"notebook 02's final speech model ({final}), trained on the same training sentences"
    model = build(
        "cnn_birnn_model",
        input_dim=161,
        filters=192,
        kernel_size=11,
        conv_stride=3,
        units=128,
        recur_layers=1,
        dropout_rate=0.1,
    )
    train_model(
        model,
        "audio.pickle",
        "audio.keras",
        descriptors["audio_train"],
        descriptors["audio_dev"],
        epochs=epochs,
        minibatch_size=profile.minibatch_size,
        sort_by_duration=True,
        results_dir=profile.results_for("emg"),
        verbose=verbose,
    )
    run = Path(profile.results_for("emg")) / "audio"
    return run, (
        f"no {final}: a smaller CNN + BiGRU trained here for {epochs} epochs on the audio of the same "
        f"training sentences ({run}); run notebook 2 first for the real upper bound"
    )


# ------------------------------------------------------------------------------- the results table


@dataclass(frozen=True)
class DecoderSettings:
    """Beam search with a word n-gram LM: Q(y) = log P_ctc(y|x) + alpha log P_lm(y) + beta |y|_words."""

    beam_width: int = 16  # a narrow beam: the table decodes every test utterance on a CPU
    alpha: float = 0.5  # LM weight
    beta: float = 1.0  # word insertion bonus


def decode_scores(
    probabilities: Sequence[np.ndarray],
    references: Sequence[str],
    lm: NGramLM | CharNGramLM | None = None,
    settings: DecoderSettings = DecoderSettings(),
    alphabet: Alphabet = ENGLISH,
    sentence_bounds: bool = True,
) -> dict:
    """WER / CER of greedy decoding and, when ``lm`` is given, of prefix beam search with it.

    Args:
        probabilities: one (T_i, C) array per utterance, trimmed to its output length.
        references: the true transcripts.
        lm: a word ``lm.NGramLM`` (decoder "beam+LM"), a ``char_lm.CharNGramLM`` ("beam+charLM")
            or None.
        settings: the beam's width, alpha and beta (per word or per character, as the LM).
        sentence_bounds: the character LM scores <s> and </s>; False for windows cut from inside
            sentences (the word LM always does).

    Returns:
        {"greedy": (wer, cer), "lm": (wer, cer) or None, "utterances": n,
        "hypotheses": {"greedy": [...], "lm": [...] or None}}.
    """
    from ctclab.decoding.char_lm import CharNGramLM
    from ctclab.decoding.metrics import cer, wer
    from ctclab.decoding.tuning import CHAR_LM_DECODER, decode_all

    greedy, _ = decode_all(probabilities, "greedy", alphabet=alphabet)
    scores: dict[str, Any] = {
        "greedy": (wer(references, greedy), cer(references, greedy)),
        "lm": None,
        "utterances": len(references),
        "hypotheses": {"greedy": greedy, "lm": None},
    }
    if lm is not None:
        decoder = CHAR_LM_DECODER if isinstance(lm, CharNGramLM) else "beam+LM"
        beams, _ = decode_all(
            probabilities,
            decoder,
            lm,
            settings.alpha,
            settings.beta,
            settings.beam_width,
            alphabet,
            sentence_bounds=sentence_bounds,
        )
        scores["lm"] = (wer(references, beams), cer(references, beams))
        scores["hypotheses"]["lm"] = beams
    return scores


def score_run(
    model: str,
    condition: str,
    vocabulary: str,
    run_dir: str | Path,
    desc_file: str | Path,
    lm: NGramLM | CharNGramLM | None = None,
    settings: DecoderSettings = DecoderSettings(),
    limit: int | None = None,
    feature_loader: Callable[[str], np.ndarray] | None = None,
    sentence_bounds: bool = True,
) -> dict:
    """One row of :func:`results_table`: a trained run decoded on one descriptor file.

    ``feature_loader`` as in ``evaluate_model`` (EMG runs pass an :class:`EMGFeatureLoader`;
    audio runs none). The run itself says which feature configuration it was trained on.
    ``lm``, ``settings`` and ``sentence_bounds`` as in :func:`decode_scores`.

    Returns:
        {"model", "condition", "vocabulary", "references", "scores"} (see :func:`decode_scores`).
    """
    from ctclab.decoding.tuning import run_probabilities

    probabilities, references = run_probabilities(run_dir, desc_file, limit=limit, feature_loader=feature_loader)
    return {
        "model": model,
        "condition": condition,
        "vocabulary": vocabulary,
        "references": references,
        "scores": decode_scores(probabilities, references, lm, settings, sentence_bounds=sentence_bounds),
        "run_dir": str(run_dir),
        "desc_file": str(desc_file),
    }


def results_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Seed-000 table 3.1 layout: one row per (model, condition, vocabulary).

    Args:
        rows: dicts with "model", "condition", "vocabulary" and a :func:`decode_scores` result
            under "scores".

    Returns:
        pandas DataFrame indexed by (model, condition, vocabulary) with columns utterances,
        WER greedy, CER greedy, WER LM, CER LM (NaN where no LM was used), then the greedy WER's
        and CER's substitutions, deletions and insertions (``metrics.error_breakdown``; each
        triple adds up to its greedy rate). Rows need "references" (as :func:`score_run` gives).
    """
    import pandas as pd

    from ctclab.decoding.metrics import error_breakdown

    table = []
    for row in rows:
        scores = row["scores"]
        lm_wer, lm_cer = scores["lm"] if scores["lm"] is not None else (np.nan, np.nan)
        table.append(
            {
                "model": row["model"],
                "condition": row["condition"],
                "vocabulary": row["vocabulary"],
                "utterances": scores["utterances"],
                "WER greedy": scores["greedy"][0],
                "CER greedy": scores["greedy"][1],
                "WER LM": lm_wer,
                "CER LM": lm_cer,
            }
            | error_breakdown(row["references"], scores["hypotheses"]["greedy"])
        )
    return pd.DataFrame(table).set_index(["model", "condition", "vocabulary"])


def save_scores(rows: Sequence[dict], examples: int = 8) -> list[Path]:
    """Write every :func:`score_run` row into its run's ``scores.json`` (the report reads them).

    A run scored on several test files (voiced / silent, closed / open) gets one entry per file
    under "conditions"; its first row is also the run's headline (top-level wer / cer / wer_lm /
    cer_lm, decoded examples with greedy and LM transcripts).

    Returns:
        the files written, one per run.
    """
    by_run: dict[str, list[dict]] = {}
    for row in rows:
        by_run.setdefault(row["run_dir"], []).append(row)
    paths = []
    for run_dir, run_rows in by_run.items():
        conditions = []
        for row in run_rows:
            scores = row["scores"]
            entry = {
                "condition": row["condition"],
                "vocabulary": row["vocabulary"],
                "desc_file": row["desc_file"],
                "utterances": scores["utterances"],
                "wer": scores["greedy"][0],
                "cer": scores["greedy"][1],
            }
            if scores["lm"] is not None:
                entry.update(wer_lm=scores["lm"][0], cer_lm=scores["lm"][1])
            conditions.append(entry)
        headline, scores = run_rows[0], run_rows[0]["scores"]
        shown = [
            {"truth": truth, "prediction": prediction}
            for truth, prediction in zip(headline["references"], scores["hypotheses"]["greedy"])
        ][:examples]
        for example, fused in zip(shown, scores["hypotheses"]["lm"] or []):  # LM transcripts beside greedy ones
            example["beam+LM"] = fused
        record = dict(conditions[0], examples=shown, conditions=conditions, parameters=Run(Path(run_dir)).parameters())
        paths.append(Run(Path(run_dir)).save_scores(record))
    return paths
