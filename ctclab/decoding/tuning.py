"""Decoding a trained run: its probabilities, language-model weight tuning, decoder comparison.

The flow of notebook 03 (part B) and of ``benchmarks/decode.py``:

1. :func:`find_decoding_run` picks a trained run (notebook 02's final model if it exists);
2. :func:`run_probabilities` turns a descriptor file into per-utterance (T_i, C) probabilities;
3. :func:`tune_lm_weights` grid-searches alpha / beta on the validation split;
4. :func:`decoder_table` scores greedy, beam and beam + LM on the test split.

:func:`pyctcdecode_decoder` wraps our :class:`lm.NGramLM` for pyctcdecode (an
``AbstractLanguageModel`` adapter), so both decoders can be run with exactly the same LM, and
:func:`synthetic_posteriors` makes model-like posteriors from real transcripts when no trained
run exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.decoding.beam import prefix_beam_search
from ctclab.decoding.char_lm import CharNGramLM
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.metrics import cer, edit_distance, wer
from ctclab.runs import Run, best_run

if TYPE_CHECKING:
    import pandas as pd

    from ctclab.decoding.lm import NGramLM
    from ctclab.profiles import Profile

DECODERS = ("greedy", "beam", "beam+LM")
CHAR_LM_DECODER = "beam+charLM"  # beam + a character LM (EMG typing); decode_all only, not in the tables


def find_decoding_run(profile: Profile) -> tuple[Path | None, str]:
    """The trained run to decode: notebook 02's final model, else the best of another family.

    Order: ``<deep>/final``, then the best run (lowest validation loss) of "course", then of
    "transformers", then of the profile's results folder itself (runs of an older layout).

    Returns:
        (run folder or None, a sentence saying which run was chosen and why).
    """
    final = Run(Path(profile.results_for("deep")) / "final")
    if final.is_trained:
        return final.folder, f"notebook 02's final speech model ({final.folder})"
    for family in ("course", "transformers"):
        run = best_run(profile.results_for(family))
        if run is not None:
            return (
                run.folder,
                f"no {final.folder}; using the {family} run with the lowest validation loss ({run.folder})",
            )
    run = best_run(profile.results_dir)
    if run is not None:
        return run.folder, f"no {final.folder} and no course or transformers run; using {run.folder}"
    return None, f"no trained run under {profile.results_dir}"


def lm_path(profile: Profile) -> Path:
    """Where notebook 03 saves the profile's word 3-gram LM (ARPA), trained on the train split's texts."""
    return Path(profile.results_for("transformers")) / "lm" / "train_3gram.arpa"


def run_probabilities(
    run_dir: str | Path,
    desc_file: str | Path,
    limit: int | None = None,
    feature_loader: Callable[[str], np.ndarray] | None = None,
    batch_size: int = 32,
) -> tuple[list[np.ndarray], list[str]]:
    """Per-utterance output probabilities of a trained run on a descriptor file.

    Args:
        run_dir: a run folder written by ``train_model``.
        desc_file: JSON-lines descriptors (e.g. the validation or test split).
        limit: only the first N utterances.
        feature_loader: ``key -> (T, F)`` features for non-audio runs (see ``train_model``).
        batch_size: utterances per forward pass.

    Returns:
        (probabilities: one (T_i, C) float32 array per kept utterance, trimmed to its
        ``output_length``; reference texts in the same order). Utterances the generator skips
        are reported by it and left out of both lists.
    """
    from ctclab.training.evaluation import run_generator, utterance_probabilities

    model, generator = run_generator(run_dir, desc_file, limit, verbose=True, feature_loader=feature_loader)
    probabilities = utterance_probabilities(model, generator, batch_size)
    return probabilities, list(generator.texts)


def decode_all(
    probabilities: Sequence[np.ndarray],
    decoder: str,
    lm: NGramLM | CharNGramLM | None = None,
    alpha: float = 0.5,
    beta: float = 1.0,
    beam_width: int = 32,
    alphabet: Alphabet = ENGLISH,
    unk_offset: float = -10.0,
    sentence_bounds: bool = True,
) -> tuple[list[str], float]:
    """Decode every utterance with one of :data:`DECODERS` or :data:`CHAR_LM_DECODER`.

    The arguments are prefix_beam_search's: "beam+LM" takes a word ``lm.NGramLM`` (beta per word),
    "beam+charLM" a ``char_lm.CharNGramLM`` (beta per character; ``sentence_bounds=False`` for
    windows cut from inside sentences). ``unk_offset`` is the word LM's, ``sentence_bounds`` the
    character LM's.

    Returns:
        (transcripts, seconds of decoding wall time).
    """
    if decoder not in (*DECODERS, CHAR_LM_DECODER):
        raise ValueError(f"decoder must be one of {(*DECODERS, CHAR_LM_DECODER)}, got {decoder!r}")
    if decoder == "beam+LM" and lm is None:
        raise ValueError("the beam+LM decoder needs a language model (lm=None given)")
    if decoder == "beam+LM" and isinstance(lm, CharNGramLM):
        raise ValueError(f"the beam+LM decoder takes a word NGramLM; a CharNGramLM goes with {CHAR_LM_DECODER!r}")
    if decoder == CHAR_LM_DECODER and not isinstance(lm, CharNGramLM):
        raise ValueError(f"the {CHAR_LM_DECODER} decoder needs a CharNGramLM (lm={type(lm).__name__} given)")
    started = time.perf_counter()
    if decoder == "greedy":
        texts = [greedy_decode(p, alphabet=alphabet) for p in probabilities]
    else:
        model = lm if decoder != "beam" else None
        texts = [
            prefix_beam_search(
                p, alphabet, beam_width, model, alpha, beta, unk_offset=unk_offset, sentence_bounds=sentence_bounds
            )
            for p in probabilities
        ]
    return texts, time.perf_counter() - started


def tune_lm_weights(
    probabilities: Sequence[np.ndarray],
    references: Sequence[str],
    lm: NGramLM,
    alphas: Sequence[float],
    betas: Sequence[float],
    beam_width: int = 32,
    alphabet: Alphabet = ENGLISH,
    unk_offset: float = -10.0,
) -> tuple[float, float, pd.DataFrame]:
    """Grid search of the LM weight alpha and word bonus beta (use the validation split).

    ``unk_offset`` is held fixed (see prefix_beam_search_nbest).

    Returns:
        (best alpha, best beta, pandas.DataFrame of alpha, beta, WER, CER sorted best first;
        ties in WER go to the lower CER).
    """
    import pandas as pd

    rows = []
    for alpha in alphas:
        for beta in betas:
            texts, _ = decode_all(probabilities, "beam+LM", lm, alpha, beta, beam_width, alphabet, unk_offset)
            rows.append({"alpha": alpha, "beta": beta, "WER": wer(references, texts), "CER": cer(references, texts)})
    table = pd.DataFrame(rows).sort_values(["WER", "CER"], kind="stable").reset_index(drop=True)
    return float(table.alpha[0]), float(table.beta[0]), table


def decoder_table(
    probabilities: Sequence[np.ndarray],
    references: Sequence[str],
    lm: NGramLM,
    alpha: float,
    beta: float,
    beam_width: int = 32,
    alphabet: Alphabet = ENGLISH,
    unk_offset: float = -10.0,
) -> pd.DataFrame:
    """Greedy vs beam vs beam + LM on the same probabilities.

    Returns:
        pandas.DataFrame indexed by decoder with columns WER, CER, utterances/s; the transcripts
        are in ``table.attrs["hypotheses"]`` (decoder -> list of texts).
    """
    import pandas as pd

    rows, hypotheses = {}, {}
    for decoder in DECODERS:
        texts, seconds = decode_all(probabilities, decoder, lm, alpha, beta, beam_width, alphabet, unk_offset)
        hypotheses[decoder] = texts
        rows[decoder] = {
            "WER": wer(references, texts),
            "CER": cer(references, texts),
            "utterances/s": len(texts) / max(seconds, 1e-9),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["hypotheses"] = hypotheses
    return table


def save_decoder_scores(
    run_dir: str | Path,
    table: pd.DataFrame,
    references: Sequence[str],
    alpha: float,
    beta: float,
    examples: int = 8,
    condition: str | None = None,
    desc_file: str | Path | None = None,
) -> Path:
    """Add a :func:`decoder_table`'s greedy, beam and beam + LM scores to ``<run_dir>/scores.json``.

    The report's results table reads ``wer`` / ``cer`` / ``wer_beam`` / ``cer_beam`` / ``wer_lm`` /
    ``cer_lm``; the greedy ones (first written by ``compare_models``) are set from the same table
    so every column of a row comes from the same utterances. The examples gain a "beam+LM"
    transcript.

    With ``condition`` (e.g. "unseen voices", "held-out engine"), the scores are also kept as that
    condition's entry under "conditions" (one report row per test split, replacing an earlier
    entry of the same name); the first condition saved stays the run's headline.
    """
    run = Run(Path(run_dir))
    scores = run.scores()
    entry: dict = {"utterances": len(references)}
    for decoder, suffix in (("greedy", ""), ("beam", "_beam"), ("beam+LM", "_lm")):
        entry[f"wer{suffix}"] = float(cast(float, table.loc[decoder, "WER"]))
        entry[f"cer{suffix}"] = float(cast(float, table.loc[decoder, "CER"]))
    conditions = [c for c in scores.get("conditions", []) if c.get("condition") != condition]
    if condition is None or not conditions:  # the headline: no condition given, or the first one
        hypotheses = table.attrs["hypotheses"]
        scores.update(
            entry,
            lm_alpha=alpha,
            lm_beta=beta,
            examples=[
                {"truth": truth, "prediction": greedy, "beam+LM": fused}
                for truth, greedy, fused in zip(references, hypotheses["greedy"], hypotheses["beam+LM"])
            ][:examples],
        )
    if condition is not None:
        labelled = dict(entry, condition=condition, **({"desc_file": str(desc_file)} if desc_file else {}))
        scores["conditions"] = [*conditions, labelled]
    return run.save_scores(scores)


def score_splits(
    run_dir: str | Path,
    splits: Mapping[str, str | Path],
    lm: NGramLM,
    alpha: float,
    beta: float,
    limit: int | None = None,
    beam_width: int = 32,
) -> tuple[pd.DataFrame, dict[str, tuple[pd.DataFrame, list[np.ndarray], list[str]]]]:
    """Greedy, beam and beam + LM on several test splits; each saved as a condition of the run's scores.

    Args:
        run_dir: the trained run.
        splits: condition name -> descriptor file, e.g. {"unseen voices": ..., "held-out engine": ...};
            the first is the run's headline in the report.
        lm, alpha, beta, beam_width: as :func:`decoder_table`.
        limit: utterances per split (None: all).

    Returns:
        (one table, rows (condition, decoder) with WER / CER / utterances, and per condition the
        :func:`decoder_table`, its probabilities and its references).
    """
    import pandas as pd

    results, rows = {}, []
    for condition, desc_file in splits.items():
        probabilities, references = run_probabilities(run_dir, desc_file, limit=limit)
        table = decoder_table(probabilities, references, lm, alpha, beta, beam_width=beam_width)
        save_decoder_scores(run_dir, table, references, alpha, beta, condition=condition, desc_file=desc_file)
        results[condition] = (table, probabilities, references)
        for decoder in table.index:
            rows.append(
                {
                    "test split": condition,
                    "decoder": decoder,
                    "WER": table.loc[decoder, "WER"],
                    "CER": table.loc[decoder, "CER"],
                    "utterances": len(references),
                }
            )
    return pd.DataFrame(rows).set_index(["test split", "decoder"]), results


def lm_fixes(references: Sequence[str], before: Sequence[str], after: Sequence[str], count: int = 5) -> pd.DataFrame:
    """Utterances where ``after`` has fewer word errors than ``before`` (most fixed first).

    Returns:
        pandas.DataFrame with columns truth, before, after, words fixed.
    """
    import pandas as pd

    rows = []
    for truth, old, new in zip(references, before, after):
        fixed = edit_distance(truth.split(), old.split()) - edit_distance(truth.split(), new.split())
        if fixed > 0:
            rows.append({"truth": truth, "before": old, "after": new, "words fixed": fixed})
    columns = ["truth", "before", "after", "words fixed"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("words fixed", ascending=False, kind="stable").head(count).reset_index(drop=True)


def synthetic_posteriors(
    text: str,
    alphabet: Alphabet = ENGLISH,
    seed: int = 0,
    confusion_rate: float = 0.15,
    sharpness: float = 10.0,
) -> np.ndarray:
    """Model-like (T, C) probabilities for ``text``: peaky, blank-dominated, with confusions.

    Each character lasts 1-3 frames after 0-2 blank frames (at least one between equal
    characters). With probability ``confusion_rate`` a letter's frames also favour a random other
    letter, by a margin drawn once per character from N(0, 1): about half of the confused letters
    come out wrong, spelling errors that a language model can fix.

    Args:
        text: the transcript.
        alphabet: output characters and blank.
        seed: random seed (the same seed gives the same array).
        confusion_rate: share of letters confused with another letter.
        sharpness: logit margin of the intended output over Gaussian noise (unit scale).
    """
    rng = np.random.default_rng(seed)
    letters = [i for i, ch in enumerate(alphabet.characters) if ch.isalpha()]
    path: list[tuple[int, int | None, float]] = []  # per frame: (output, confusing output or None, its margin)
    previous = None
    for index in alphabet.text_to_int_sequence(text):
        blanks = int(rng.integers(0, 3)) or (1 if index == previous else 0)
        path += [(alphabet.blank_index, None, 0.0)] * blanks
        confused = index in letters and rng.random() < confusion_rate
        confusion = int(rng.choice([i for i in letters if i != index])) if confused else None
        path += [(index, confusion, float(rng.normal()))] * int(rng.integers(1, 4))  # one margin per character
        previous = index
    path += [(alphabet.blank_index, None, 0.0)] * int(rng.integers(1, 4))
    logits = rng.normal(size=(len(path), alphabet.output_dim))  # (T, C)
    for frame, (index, confusion, margin) in enumerate(path):
        logits[frame, index] += sharpness
        if confusion is not None:  # the other letter wins when its margin is positive
            logits[frame, confusion] += sharpness + margin
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)
