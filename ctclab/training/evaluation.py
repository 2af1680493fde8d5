"""Scoring trained runs: greedy transcripts, WER / CER on a held-out split, one table row per run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from ctclab.data.generator import AudioGenerator
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.metrics import cer, wer
from ctclab.runs import Run

if TYPE_CHECKING:
    import pandas as pd


def scoring_generator(
    run: Run,
    model: keras.Model,
    desc_file: str | Path,
    limit: int | None = None,
    verbose: bool = False,
    feature_loader: Callable[[str], np.ndarray] | None = None,
) -> AudioGenerator:
    """A fixed-order generator over ``desc_file`` in ``run``'s terms, for scoring ``model``.

    The generator uses the run's features, training normalizer and alphabet, and skips (and counts)
    what the model's ``output_length`` cannot label. ``feature_loader`` is for non-audio runs (see
    ``train_model``); the run knows its feature class.
    """
    return AudioGenerator(
        desc_file,
        features=run.features(),
        alphabet=run.alphabet(),
        shuffle=False,
        normalizer=run.normalizer(),
        output_length=model.output_length,
        limit=limit,
        verbose=verbose,
        feature_loader=feature_loader,
    )


def run_generator(
    run_dir: str | Path,
    desc_file: str | Path,
    limit: int | None = None,
    verbose: bool = False,
    feature_loader: Callable[[str], np.ndarray] | None = None,
) -> tuple[keras.Model, AudioGenerator]:
    """A trained run's model (rebuilt, best weights) and its :func:`scoring_generator` over ``desc_file``."""
    run = Run(Path(run_dir))
    model = run.load_model()[0]
    return model, scoring_generator(run, model, desc_file, limit, verbose, feature_loader)


def utterance_probabilities(model: keras.Model, generator: AudioGenerator, batch_size: int = 32) -> list[np.ndarray]:
    """Per-frame output probabilities of every utterance of ``generator``, in its utterance order.

    Returns:
        one (T_i, C) float32 array per utterance, trimmed to the model's ``output_length``.
    """
    probabilities = []
    for start in range(0, len(generator.texts), batch_size):
        inputs, _ = generator.get_batch(list(range(start, min(start + batch_size, len(generator.texts)))))
        # the compiled predict function: 5-10x faster than an eager call for recurrent models
        batch = np.asarray(model.predict_on_batch(inputs["features"]), np.float32)  # (B, T', C)
        lengths = np.asarray(model.output_length(inputs["input_length"]))  # (B,)
        probabilities += [row[: int(length)] for row, length in zip(batch, lengths)]
    return probabilities


def predict_texts(model: keras.Model, generator: AudioGenerator, batch_size: int = 32) -> list[str]:
    """Greedy transcripts of every utterance of ``generator``, in its utterance order."""
    return [
        greedy_decode(p, alphabet=generator.alphabet) for p in utterance_probabilities(model, generator, batch_size)
    ]


def evaluate_model(
    run_dir: str | Path,
    desc_file: str | Path,
    limit: int | None = None,
    verbose: bool = False,
    feature_loader: Callable[[str], np.ndarray] | None = None,
) -> dict:
    """Greedy WER / CER of a trained run on a descriptor file (e.g. the unseen-voice test split).

    ``feature_loader`` is for non-audio runs (see ``train_model``); the run knows its feature class.

    Returns:
        {"wer", "cer", "utterances", "skipped", "references", "hypotheses", "builder", "parameters"}.
    """
    model, generator = run_generator(run_dir, desc_file, limit, verbose, feature_loader)
    hypotheses = predict_texts(model, generator)
    return {
        "wer": wer(generator.texts, hypotheses),
        "cer": cer(generator.texts, hypotheses),
        "utterances": len(hypotheses),
        "skipped": len(generator.skipped),
        "references": list(generator.texts),
        "hypotheses": hypotheses,
        "builder": model.builder_config["builder"],
        "parameters": model.count_params(),
    }


def compare_models(
    run_dirs: Iterable[str | Path], desc_file: str | Path, limit: int | None = None
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row per trained run: size, training time, best validation loss and held-out WER / CER.

    Also writes each run's scores, size and first decoded examples to ``<run_dir>/scores.json``
    for the report.

    Args:
        run_dirs: run folders (results/<profile>/<name>).
        desc_file: the held-out descriptor file to score (the unseen-voice test split).
        limit: score only the first N utterances.

    Returns:
        (pandas.DataFrame sorted by CER, {run name: evaluate_model result}).
    """
    import pandas as pd

    rows: list[dict] = []
    evaluations: dict[str, dict] = {}
    for run_dir in map(Path, run_dirs):
        run = Run(run_dir)
        history = run.history()
        evaluation = evaluations[run_dir.name] = evaluate_model(run_dir, desc_file, limit=limit)
        scores = {key: evaluation[key] for key in ("wer", "cer", "utterances", "skipped", "parameters")}
        examples = [
            {"truth": truth, "prediction": prediction}
            for truth, prediction in zip(evaluation["references"][:8], evaluation["hypotheses"][:8])
        ]
        run.save_scores(dict(scores, desc_file=str(desc_file), examples=examples))
        rows.append(
            {
                "model": run_dir.name,
                "builder": evaluation["builder"],
                "parameters": evaluation["parameters"],
                "epochs": len(history["loss"]),
                "seconds/epoch": float(np.mean(history["epoch_seconds"])),
                "best val loss": min(history.get("val_loss", [np.nan])),
                "WER": evaluation["wer"],
                "CER": evaluation["cer"],
            }
        )
    return pd.DataFrame(rows).sort_values("CER").reset_index(drop=True), evaluations
