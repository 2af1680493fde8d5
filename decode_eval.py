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

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

import decoding
import utils
from char_map import ENGLISH, Alphabet

try:
    from pyctcdecode.language_model import AbstractLanguageModel
except ImportError:  # pyctcdecode is optional here: only pyctcdecode_decoder needs it
    AbstractLanguageModel = object

DECODERS = ("greedy", "beam", "beam+LM")


# ---------------------------------------------------------------------- trained runs


def best_run(parent: str | Path) -> Path | None:
    """The run under ``parent`` with the lowest best validation loss (None when there is none)."""
    scored = []
    for run in sorted(Path(parent).glob("*/model.keras")):
        run = run.parent
        if (run / "builder.json").is_file() and (run / "history.json").is_file():
            history = json.loads((run / "history.json").read_text())
            losses = history.get("val_loss") or history.get("loss") or [math.inf]
            scored.append((min(losses), run.name, run))
    return min(scored)[2] if scored else None


def find_decoding_run(profile) -> tuple[Path | None, str]:
    """The trained run to decode: notebook 02's final model, else the best of another family.

    Order: ``<deep>/final``, then the best run (lowest validation loss) of "course", then of
    "transformers", then of the profile's results folder itself (runs of an older layout).

    Returns:
        (run folder or None, a sentence saying which run was chosen and why).
    """
    final = Path(profile.results_for("deep")) / "final"
    if (final / "model.keras").is_file():
        return final, f"notebook 02's final speech model ({final})"
    for family in ("course", "transformers"):
        run = best_run(profile.results_for(family))
        if run is not None:
            return run, f"no {final}; using the {family} run with the lowest validation loss ({run})"
    run = best_run(profile.results_dir)
    if run is not None:
        return run, f"no {final} and no course or transformers run; using {run}"
    return None, f"no trained run under {profile.results_dir}"


def run_probabilities(
    run_dir: str | Path, desc_file: str | Path, limit: int | None = None, feature_loader=None,
    feature_class=utils.FeatureConfig, batch_size: int = 32,
) -> tuple[list[np.ndarray], list[str]]:
    """Per-utterance output probabilities of a trained run on a descriptor file.

    Args:
        run_dir: a run folder written by ``train_utils.train_model``.
        desc_file: JSON-lines descriptors (e.g. the validation or test split).
        limit: only the first N utterances.
        feature_loader, feature_class: for non-audio runs (see ``train_utils.train_model``).
        batch_size: utterances per forward pass.

    Returns:
        (probabilities: one (T_i, C) float32 array per kept utterance, trimmed to its
        ``output_length``; reference texts in the same order). Utterances the generator skips
        are reported by it and left out of both lists.
    """
    import train_utils
    from data_generator import AudioGenerator

    model, normalizer, features, alphabet = train_utils.load_trained_model(run_dir, feature_class)
    generator = AudioGenerator(
        desc_file, features=features, alphabet=alphabet, shuffle=False, normalizer=normalizer,
        output_length=model.output_length, limit=limit, feature_loader=feature_loader,
    )
    probabilities = []
    for start in range(0, len(generator.texts), batch_size):
        inputs, _ = generator.get_batch(list(range(start, min(start + batch_size, len(generator.texts)))))
        batch = np.asarray(model.predict_on_batch(inputs["features"]), np.float32)  # (B, T', C), compiled
        lengths = np.asarray(model.output_length(inputs["input_length"]))  # (B,)
        probabilities += [row[: int(length)] for row, length in zip(batch, lengths)]
    return probabilities, list(generator.texts)


# ---------------------------------------------------------------------- decoding a set


def decode_all(
    probabilities: Sequence[np.ndarray], decoder: str, lm=None, alpha: float = 0.5, beta: float = 1.0,
    beam_width: int = 32, alphabet: Alphabet = ENGLISH, unk_offset: float = -10.0,
) -> tuple[list[str], float]:
    """Decode every utterance with one of :data:`DECODERS` (arguments: decoding.prefix_beam_search).

    Returns:
        (transcripts, seconds of decoding wall time).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "beam+LM" and lm is None:
        raise ValueError("the beam+LM decoder needs a language model (lm=None given)")
    started = time.perf_counter()
    if decoder == "greedy":
        texts = [decoding.greedy_decode(p, alphabet=alphabet) for p in probabilities]
    else:
        model = lm if decoder == "beam+LM" else None
        texts = [decoding.prefix_beam_search(p, alphabet, beam_width, model, alpha, beta, unk_offset=unk_offset)
                 for p in probabilities]
    return texts, time.perf_counter() - started


def tune_lm_weights(
    probabilities: Sequence[np.ndarray], references: Sequence[str], lm, alphas: Sequence[float],
    betas: Sequence[float], beam_width: int = 32, alphabet: Alphabet = ENGLISH, unk_offset: float = -10.0,
):
    """Grid search of the LM weight alpha and word bonus beta (use the validation split).

    ``unk_offset`` is held fixed (see decoding.prefix_beam_search_nbest).

    Returns:
        (best alpha, best beta, pandas.DataFrame of alpha, beta, WER, CER sorted best first;
        ties in WER go to the lower CER).
    """
    import pandas as pd

    rows = []
    for alpha in alphas:
        for beta in betas:
            texts, _ = decode_all(probabilities, "beam+LM", lm, alpha, beta, beam_width, alphabet, unk_offset)
            rows.append({"alpha": alpha, "beta": beta, "WER": decoding.wer(references, texts),
                         "CER": decoding.cer(references, texts)})
    table = pd.DataFrame(rows).sort_values(["WER", "CER"], kind="stable").reset_index(drop=True)
    return float(table.alpha[0]), float(table.beta[0]), table


def decoder_table(
    probabilities: Sequence[np.ndarray], references: Sequence[str], lm, alpha: float, beta: float,
    beam_width: int = 32, alphabet: Alphabet = ENGLISH, unk_offset: float = -10.0,
):
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
        rows[decoder] = {"WER": decoding.wer(references, texts), "CER": decoding.cer(references, texts),
                         "utterances/s": len(texts) / max(seconds, 1e-9)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["hypotheses"] = hypotheses
    return table


def save_decoder_scores(run_dir: str | Path, table, references: Sequence[str], alpha: float, beta: float,
                        examples: int = 8) -> Path:
    """Add a :func:`decoder_table`'s beam and beam + LM scores to ``<run_dir>/scores.json``.

    The report's results table reads ``wer_beam`` / ``cer_beam`` / ``wer_lm`` / ``cer_lm``; the
    greedy ``wer`` / ``cer`` (written by ``train_utils.compare_models``) are set from the same
    table so every column of a row comes from the same utterances. The examples gain a
    "beam+LM" transcript.
    """
    path = Path(run_dir) / "scores.json"
    scores = json.loads(path.read_text()) if path.is_file() else {}
    for decoder, suffix in (("greedy", ""), ("beam", "_beam"), ("beam+LM", "_lm")):
        scores[f"wer{suffix}"] = float(table.loc[decoder, "WER"])
        scores[f"cer{suffix}"] = float(table.loc[decoder, "CER"])
    hypotheses = table.attrs["hypotheses"]
    scores.update(lm_alpha=alpha, lm_beta=beta, utterances=len(references), examples=[
        {"truth": truth, "prediction": greedy, "beam+LM": fused}
        for truth, greedy, fused in zip(references, hypotheses["greedy"], hypotheses["beam+LM"])][:examples])
    path.write_text(json.dumps(scores, indent=1))
    return path


def lm_fixes(references: Sequence[str], before: Sequence[str], after: Sequence[str], count: int = 5):
    """Utterances where ``after`` has fewer word errors than ``before`` (most fixed first).

    Returns:
        pandas.DataFrame with columns truth, before, after, words fixed.
    """
    import pandas as pd

    rows = []
    for truth, old, new in zip(references, before, after):
        fixed = decoding.edit_distance(truth.split(), old.split()) - decoding.edit_distance(truth.split(), new.split())
        if fixed > 0:
            rows.append({"truth": truth, "before": old, "after": new, "words fixed": fixed})
    columns = ["truth", "before", "after", "words fixed"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("words fixed", ascending=False, kind="stable").head(count).reset_index(drop=True)


# ---------------------------------------------------------------------- posteriors without a model


def synthetic_posteriors(
    text: str, alphabet: Alphabet = ENGLISH, seed: int = 0, confusion_rate: float = 0.15,
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


# ---------------------------------------------------------------------- pyctcdecode with our LM


class PyctcdecodeNGram(AbstractLanguageModel):
    """pyctcdecode's language-model interface over an :class:`lm.NGramLM`.

    Scores exactly what :func:`decoding.prefix_beam_search_nbest` scores: per finished word
    ``alpha ln p(word | last n-1 words) + beta`` (+ ``decoding.oov_penalty`` outside the
    vocabulary), ``alpha ln p(</s> | ...)`` at the end, natural logs, and the same penalty for a
    partial word that begins no vocabulary word. The LM state is the tuple of the last n-1 words.
    """

    def __init__(self, lm, alpha: float = 0.5, beta: float = 1.0, unk_offset: float = -10.0):
        self.lm, self.alpha, self.beta, self.unk_offset = lm, alpha, beta, unk_offset

    @property
    def order(self) -> int:
        return self.lm.order

    def get_start_state(self) -> tuple[str, ...]:
        return ("<s>",)

    def score_partial_token(self, partial_token: str) -> float:
        return 0.0 if partial_token in self.lm.word_prefixes else decoding.oov_penalty(partial_token, self.unk_offset)

    def score(self, prev_state: tuple[str, ...], word: str, is_last_word: bool = False) -> tuple[float, tuple]:
        log10, bonus, state = 0.0, 0.0, prev_state
        if word:  # pyctcdecode asks for "" when a transcript ends with a space
            log10 = self.lm.log10_prob(word, state)
            bonus = self.beta + (0.0 if word in self.lm.words else decoding.oov_penalty(word, self.unk_offset))
            state = (*state, word)[1 - self.lm.order:] if self.lm.order > 1 else ()
        if is_last_word:
            log10 += self.lm.log10_prob("</s>", state)
        return self.alpha * decoding.LN10 * log10 + bonus, state


def pyctcdecode_labels(alphabet: Alphabet = ENGLISH) -> list[str]:
    """pyctcdecode's label list for our alphabet: the characters, "" for the blank."""
    assert alphabet.blank_index == len(alphabet.characters)  # char_map puts the blank last
    return list(alphabet.characters) + [""]


def pyctcdecode_decoder(alphabet: Alphabet = ENGLISH, lm=None, alpha: float = 0.5, beta: float = 1.0,
                        unk_offset: float = -10.0):
    """A pyctcdecode ``BeamSearchDecoderCTC`` for our alphabet, with our LM when given."""
    if AbstractLanguageModel is object:
        raise ValueError("pyctcdecode is not installed: pip install --no-deps -r requirements-nodeps.txt")
    from pyctcdecode.alphabet import Alphabet as PyctcdecodeAlphabet
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    language_model = PyctcdecodeNGram(lm, alpha, beta, unk_offset) if lm is not None else None
    return BeamSearchDecoderCTC(PyctcdecodeAlphabet.build_alphabet(pyctcdecode_labels(alphabet)), language_model)
