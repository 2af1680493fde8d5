"""Notebook 05's EMG-typing experiments: windows, a family of typing models, seed 001's table, personalization.

On the synthetic typing corpus (:mod:`ctclab.emg.typing_corpus`), seed 001's and emg2qwerty's recipe:
:func:`window_descriptor_set` cuts the sessions into training windows of 300, 600 or 1,200 ms and
300 ms windows for validation and test; :func:`train_typing_runs` trains models on them into the
``typing`` family of the profile's results (``train_windowed``: emg2qwerty's log spectrogram, CTC);
:func:`score_typing_run` decodes the held-out user's test windows greedily and with a character LM
(:func:`train_char_lm`) and splits the greedy CER into substitutions, deletions and insertions, laid
out by :func:`typing_table`; :func:`personalize` fine-tunes a generic run on the held-out user's
fine-tuning session, from the generic weights. :func:`plot_keystrokes` and :func:`sonify` show and
play a stretch of a session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctclab.data.descriptors import read_descriptors, write_descriptors
from ctclab.emg import loaders as emg_loaders
from ctclab.emg import typing_corpus
from ctclab.emg.training import (
    DecoderSettings,
    EMGFeatureLoader,
    normalize_transcript,
    qwerty_window_descriptors,
    save_scores,
    score_run,
    train_windowed,
)
from ctclab.runs import Run

if TYPE_CHECKING:
    import keras
    import pandas as pd
    from matplotlib.figure import Figure

    from ctclab.decoding.char_lm import CharNGramLM
    from ctclab.profiles import Profile

FAMILY = "typing"  # results/<profile>/typing/<run>: one loss-curve figure and table rows in the report
TEST_WINDOW_MS = 300.0  # seed 001: validation and test windows a live decoder could wait for
TRAIN_WINDOWS_MS = (300.0, 600.0, 1200.0)  # seed 001's training window lengths
FINETUNE_TRAIN_FRACTION = 0.8  # of the fine-tuning session, by time; the rest validates the fine-tuning
BATCH_SECONDS = 4.8  # EMG per training batch: 16 x 300, 8 x 600 or 4 x 1,200 ms (same work, same updates)


def build_corpus(profile: Profile) -> tuple[Path, dict]:
    """The profile's synthetic typing corpus (built once, then cached): (root folder, its manifest)."""
    root = Path(typing_corpus.typing_corpus_dir(profile.name))
    return root, typing_corpus.build_typing_corpus(root, typing_corpus.typing_config_for(profile.name))


def window_descriptor_set(
    root: str | Path,
    out_dir: str | Path,
    train_windows_ms: Sequence[float] = TRAIN_WINDOWS_MS,
    test_window_ms: float = TEST_WINDOW_MS,
    train_overlap: float = 0.0,
) -> dict[str, Path]:
    """Window descriptor files of a typing corpus (one line per window with something typed), in ``out_dir``:

    ``train_<ms>ms``: the train sessions in windows of each ``train_windows_ms``; ``val`` (the
    training users' later sessions) and ``test`` (the held-out user's test sessions) in
    ``test_window_ms`` windows; ``finetune`` / ``finetune_val``: the held-out user's fine-tuning
    session in ``test_window_ms`` windows starting in its first 80 % / in the rest.

    Args:
        root: a typing corpus folder (``metadata.csv`` with a split column).
        train_overlap: fraction of a training window shared with the next one (0: none; 0.5:
            hop of half a window, twice the windows).

    Returns:
        name -> descriptor path.
    """
    if not 0.0 <= train_overlap < 1.0:
        raise ValueError(f"train_overlap must lie in [0, 1), got {train_overlap}")
    out_dir = Path(out_dir)
    splits = typing_corpus.session_splits(root)
    sessions = {split: emg_loaders.load_emg2qwerty(root, names) for split, names in splits.items()}
    paths = {}
    for window_ms in train_windows_ms:
        name = f"train_{window_ms:g}ms"
        stride_ms = window_ms * (1.0 - train_overlap)
        written = qwerty_window_descriptors(sessions["train"], out_dir / f"{name}.json", window_ms, stride_ms)
        paths[name] = written["path"]
    for split in ("val", "test"):
        paths[split] = qwerty_window_descriptors(sessions[split], out_dir / f"{split}.json", test_window_ms)["path"]
    whole = qwerty_window_descriptors(sessions["finetune"], out_dir / "finetune_all.json", test_window_ms)["path"]
    ends = {session.path.resolve(): len(session.time) for session in sessions["finetune"]}
    parts: dict[str, list[dict]] = {"finetune": [], "finetune_val": []}
    for record in read_descriptors(whole):
        path, _, span = record["key"].rpartition("#")  # "<session>.hdf5#<start>:<end>"
        late = int(span.split(":")[0]) >= FINETUNE_TRAIN_FRACTION * ends[Path(path)]
        parts["finetune_val" if late else "finetune"].append(record)
    return paths | {name: write_descriptors(records, out_dir / f"{name}.json") for name, records in parts.items()}


def window_counts(descriptors: Mapping[str, Path]) -> pd.DataFrame:
    """windows, seconds and characters of each descriptor file (a notebook's overview table)."""
    import pandas as pd

    rows = []
    for name, path in descriptors.items():
        records = read_descriptors(path)
        rows.append(
            {
                "descriptors": name,
                "windows": len(records),
                "window (ms)": round(1000 * records[0]["duration"]) if records else None,
                "minutes": sum(record["duration"] for record in records) / 60,
                "characters": sum(len(record["text"]) for record in records),
                "sessions": len({record["session"] for record in records}),
            }
        )
    return pd.DataFrame(rows).set_index("descriptors")


# ---------------------------------------------------------------------------------- training


def _train(
    model: keras.Model, files: tuple[Path, Path], name: str, profile: Profile, epochs: int, **options: Any
) -> dict:
    """``train_windowed`` on (training, validation) ``files`` into the typing family with Adam (norm
    clipped at 5) in batches of BATCH_SECONDS; ``options``: learning_rate, window_ms (of the training
    windows), then train_model's verbose and resume."""
    import keras

    optimizer = keras.optimizers.Adam(options.pop("learning_rate"), clipnorm=5.0)
    batch = max(1, round(1000 * BATCH_SECONDS / options.pop("window_ms")))  # windows per batch
    results_dir = profile.results_for(FAMILY)
    return train_windowed(model, *files, name, results_dir, epochs, batch, optimizer=optimizer, **options)


def train_typing_runs(
    models: Mapping[str, keras.Model],
    descriptors: Mapping[str, Path],
    profile: Profile,
    epochs: int | Mapping[str, int],
    train_window_ms: float | Mapping[str, float] = TEST_WINDOW_MS,
    learning_rate: float = 3e-3,
    verbose: int = 2,
) -> dict[str, dict]:
    """Train each model on training windows, validated on 300 ms ``val`` windows, into the typing family.

    Args:
        models: run name -> uncompiled model (a registered typing builder's output).
        descriptors: from :func:`window_descriptor_set`.
        epochs: for every model, or run name -> epochs.
        train_window_ms: the training windows' length for every model, or run name -> length;
            ``descriptors`` must hold ``train_<ms>ms`` for it.
        learning_rate: Adam's.

    Returns:
        run name -> history (as ``train_model`` returns it).
    """
    histories = {}
    for name, model in models.items():
        window_ms = train_window_ms[name] if isinstance(train_window_ms, Mapping) else train_window_ms
        model_epochs = epochs[name] if isinstance(epochs, Mapping) else epochs
        train_json = descriptors.get(f"train_{window_ms:g}ms")
        if train_json is None:
            raise ValueError(f"no training windows of {window_ms:g} ms in descriptors {sorted(descriptors)}")
        print(f"--- {name}: {model.count_params():,} parameters, {model_epochs} epochs on {window_ms:g} ms windows")
        files = (train_json, descriptors["val"])
        options = dict(learning_rate=learning_rate, window_ms=window_ms, verbose=verbose)
        histories[name] = _train(model, files, name, profile, model_epochs, **options)
    return histories


def personalize(
    generic_run: str | Path,
    descriptors: Mapping[str, Path],
    name: str,
    profile: Profile,
    epochs: int,
    learning_rate: float = 1e-3,
    verbose: int = 2,
) -> dict:
    """Fine-tune a generic run on the held-out user's ``finetune`` windows (validated on ``finetune_val``).

    It starts from the generic run's best weights on every call (never resumes a fine-tuning of
    an older generic model); its normalization statistics are the fine-tuning windows' (the new
    user's electrodes and skin). Returns the fine-tuning history.
    """
    model = Run(Path(generic_run)).load_model()[0]
    print(f"--- {name}: {Path(generic_run).name} fine-tuned for {epochs} epochs on the held-out user")
    files = (descriptors["finetune"], descriptors["finetune_val"])
    options = dict(learning_rate=learning_rate, window_ms=TEST_WINDOW_MS, verbose=verbose, resume=False)
    return _train(model, files, name, profile, epochs, **options)


# ----------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class CharLMSettings(DecoderSettings):
    """Prefix beam search with a character n-gram LM: Q(y) = ln P_ctc + alpha ln P_charlm(y) + beta |y|."""

    order: int = 6  # emg2qwerty's; a 300 ms window holds at most ~3 characters, so orders 4-6 decode alike
    beam_width: int = 16  # one to three characters per window: a narrow beam suffices
    alpha: float = 0.3  # LM weight and
    beta: float = 1.0  # bonus per character (nats): the best of a 3 x 4 grid on the quick val windows


def train_char_lm(root: str | Path, order: int = CharLMSettings.order) -> CharNGramLM:
    """A character LM on the prompt texts of the training users' sessions (train and val), never the test's."""
    from ctclab.decoding.char_lm import CharNGramLM

    splits = typing_corpus.session_splits(root)
    sessions = emg_loaders.load_emg2qwerty(root, splits["train"] + splits["val"])
    texts = [normalize_transcript(prompt["text"]) for session in sessions for prompt in session.prompts]
    return CharNGramLM.train(texts, order=order)


def score_typing_run(
    model: str,
    condition: str,
    run_dir: str | Path,
    desc_file: str | Path,
    char_lm: CharNGramLM | None = None,
    settings: CharLMSettings = CharLMSettings(),
    limit: int | None = None,
) -> dict:
    """One row of :func:`typing_table` and ``save_scores``: a run decoded on ``desc_file``'s windows.

    Returns:
        ``score_run``'s row (vocabulary "held-out user"; "lm": the character LM's, without sentence
        bounds since windows start and end mid-sentence) plus "errors" (the greedy ErrorCounts).
    """
    from ctclab.decoding.metrics import error_counts
    from ctclab.emg.signal import EMGFeatureConfig

    loader = EMGFeatureLoader(EMGFeatureConfig.emg2qwerty())
    row = score_run(
        model, condition, "held-out user", run_dir, desc_file, char_lm, settings, limit, loader, sentence_bounds=False
    )
    row["errors"] = error_counts(row["references"], row["scores"]["hypotheses"]["greedy"], "char")
    return row


def save_typing_scores(rows: Sequence[dict]) -> list[Path]:
    """Each row into its run's scores.json (``save_scores``), plus the greedy CER's S / D / I rates."""
    paths = save_scores(rows)
    for row in rows:
        rates = ("substitution_rate", "deletion_rate", "insertion_rate")
        Run(Path(row["run_dir"])).update_scores(**{rate: getattr(row["errors"], rate) for rate in rates})
    return paths


def typing_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Seed 001's table in miniature: one row per scored run.

    Returns:
        pandas DataFrame indexed by model with columns condition, parameters, windows, CER greedy,
        CER char LM (NaN without an LM), the greedy CER's parts CER substitutions / deletions /
        insertions (they add up to CER greedy) and the greedy WER's parts (windows hold parts of
        words, so the CER is the headline).
    """
    import pandas as pd

    from ctclab.decoding.metrics import error_breakdown

    table = []
    for row in rows:
        scores = row["scores"]
        parts = error_breakdown(row["references"], scores["hypotheses"]["greedy"])
        table.append(
            {
                "model": row["model"],
                "condition": row["condition"],
                "parameters": Run(Path(row["run_dir"])).parameters(),
                "windows": scores["utterances"],
                "CER greedy": scores["greedy"][1],
                "CER char LM": scores["lm"][1] if scores["lm"] is not None else np.nan,
            }
            | {name: parts[name] for name in ("CER substitutions", "CER deletions", "CER insertions")}
            | {name: rate for name, rate in parts.items() if name.startswith("WER")}
        )
    return pd.DataFrame(table).set_index("model")


# ------------------------------------------------------------------------------ seen and heard


def plot_keystrokes(
    session: emg_loaders.QwertySession,
    start_s: float,
    seconds: float = 3.0,
    electrodes: Sequence[int] = (0, 4, 8, 12),
) -> Figure:
    """A stretch of a session: some electrodes of each band, offset vertically, with the key presses marked.

    Args:
        start_s: seconds from the session's first sample.
        electrodes: electrode indices (0-15) drawn from each band.

    Returns:
        The figure: left band above, right band below, red lines at key presses.
    """
    import matplotlib.pyplot as plt

    rate = (len(session.time) - 1) / (session.time[-1] - session.time[0])  # samples/s (2000)
    first, count = round(start_s * rate), round(seconds * rate)
    if not 0 <= first < len(session.time) - count:
        raise ValueError(f"{session.path}: {start_s} s + {seconds} s lies outside the session")
    time = np.arange(count) / rate + start_s  # (T,) seconds
    figure, axes = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    for band, axis in enumerate(axes):
        signals = session.emg[first : first + count, [16 * band + e for e in electrodes]]  # (T, E) µV
        spacing = 4 * float(signals.std()) or 1.0
        for row, electrode in enumerate(electrodes):
            axis.plot(time, signals[:, row] - row * spacing, linewidth=0.4, label=f"electrode {electrode}")
        axis.set(ylabel="µV (offset)", title=f"{('left', 'right')[band]} band", yticks=[])
        for stroke in session.keystrokes:
            at = stroke.start - session.time[0]
            if start_s <= at < start_s + seconds:
                axis.axvline(at, color="red", linewidth=0.6)
                if band == 0:
                    label = emg_loaders.key_to_character(stroke.key) or stroke.key.removeprefix("Key.")
                    axis.annotate(repr(label), (at, 1.0), xycoords=("data", "axes fraction"), fontsize=8)
    axes[0].legend(loc="lower right", fontsize=7, ncol=len(electrodes))
    axes[-1].set_xlabel("time in the session (s)")
    figure.tight_layout()
    return figure


def sonify(
    session: emg_loaders.QwertySession, channel: int, start_s: float, seconds: float = 3.0, rate: int = 8000
) -> tuple[np.ndarray, int]:
    """One channel as sound: resampled from 2 kHz to ``rate`` (browsers refuse 2 kHz audio), peak 0.9.

    Returns:
        (samples (N,) float32 in [-0.9, 0.9], sample rate in Hz) for ``IPython.display.Audio``.
    """
    from scipy.signal import resample_poly

    source = round((len(session.time) - 1) / (session.time[-1] - session.time[0]))
    piece = session.emg[round(start_s * source) : round((start_s + seconds) * source), channel].astype(np.float64)
    sound = resample_poly(piece - piece.mean(), rate, source)
    return (0.9 * sound / (np.abs(sound).max() or 1.0)).astype(np.float32), rate
