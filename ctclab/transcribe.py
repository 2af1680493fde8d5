"""Transcribe recordings with a trained run: any audio file -> 16 kHz mono -> pieces at pauses -> text.

The pipeline of one file:

1. :func:`ctclab.data.audio.load_any_audio`: any file soundfile reads (wav, flac, ogg; any rate,
   channel count, integer or float samples), mixed to mono and resampled to the run's rate;
   unreadable, empty, NaN / inf and silent files get an :class:`AudioError` naming the file;
2. :func:`ctclab.data.vad.split_at_pauses`: pieces of at most 10 s, cut only at pauses;
3. per piece: the run's features and training normalizer, the model's probabilities (trimmed to
   its ``output_length``), then greedy, beam or beam + LM decoding (:func:`tuning.decode_all`).

By default the run is notebook 02's final speech model (``results/<profile>/deep/final``, what
``make report`` trains) and the language model is notebook 03's word 3-gram with the LM weights
notebook 03 tuned for that run (``lm_alpha`` / ``lm_beta`` in its scores.json).

Usage::

    python -m ctclab transcribe talk.wav [more.flac ...] [--run DIR] [--no-lm] [--times]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctclab.alphabet import Alphabet
from ctclab.data.audio import AudioError, load_any_audio
from ctclab.data.features import FeatureConfig, Normalizer, check_finite, featurize
from ctclab.data.vad import Piece, VADConfig, split_at_pauses
from ctclab.decoding import tuning
from ctclab.decoding.tuning import decode_all
from ctclab.profiles import PROFILES, Profile, get_profile
from ctclab.runs import Run

if TYPE_CHECKING:
    import keras

    from ctclab.decoding.lm import NGramLM

FINAL_RUN = ("deep", "final")  # notebook 02's final speech model: results/<profile>/deep/final
DEFAULT_ALPHA, DEFAULT_BETA = 0.5, 1.0  # prefix_beam_search's defaults, for a run notebook 03 did not tune


class ModelNotFoundError(FileNotFoundError):
    """No trained run to transcribe with; the message says what to run."""


def final_run(profile: Profile) -> Run:
    """Notebook 02's final speech model run of ``profile`` (it may not be trained yet)."""
    family, name = FINAL_RUN
    return Run.named(profile.results_for(family), name)


def find_final_run(profile: Profile) -> Run:
    """The trained final speech model of ``profile``.

    Raises:
        ModelNotFoundError: when it was not trained; the message says what to run and names
            other profiles' final models that exist.
    """
    run = final_run(profile)
    if run.is_trained:
        return run
    others = [str(final_run(other).folder) for other in PROFILES.values() if other.name != profile.name]
    trained = [folder for folder in others if Run(Path(folder)).is_trained]
    hint = f" Trained final models of other profiles: {', '.join(trained)} (pass --run DIR)." if trained else ""
    raise ModelNotFoundError(
        f"no trained final speech model at {run.folder}. Run `make report PROFILE={profile.name}` (notebook "
        f"02_deep_models trains it, 03_transformers_and_decoding the language model), or pass --run DIR "
        f"with a run folder written by train_model.{hint}"
    )


@dataclass(frozen=True)
class PieceText:
    """One decoded piece: its place in the recording (seconds) and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """The transcript of one file: its pieces in time order (texts with single spaces, no edges)."""

    path: str
    pieces: list[PieceText] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(piece.text for piece in self.pieces if piece.text)

    def timed_lines(self) -> list[str]:
        """One line per piece: ``[start - end] text`` in seconds."""
        return [f"[{piece.start:7.2f} - {piece.end:7.2f}] {piece.text}" for piece in self.pieces]


@dataclass
class Transcriber:
    """A trained acoustic model with what it needs to decode any recording.

    Attributes:
        model: the acoustic model, (1, T, F) features -> (1, T', C) probabilities, with
            ``output_length``.
        normalizer: the run's training feature normalizer.
        features: the run's audio feature configuration (its sample_rate is the target rate).
        alphabet: the run's label alphabet.
        lm: the word language model for beam + LM decoding; None decodes without one.
        alpha, beta: LM weight and word bonus (prefix_beam_search).
        decoder: "greedy", "beam" or "beam+LM" (see :data:`ctclab.decoding.tuning.DECODERS`).
        vad: how recordings are split into pieces.
        beam_width: prefixes kept by the beam search.
        description: which run and decoder this is, in words.
    """

    model: keras.Model
    normalizer: Normalizer
    features: FeatureConfig
    alphabet: Alphabet
    lm: NGramLM | None = None
    alpha: float = DEFAULT_ALPHA
    beta: float = DEFAULT_BETA
    decoder: str = "greedy"
    vad: VADConfig = VADConfig()
    beam_width: int = 32
    description: str = ""

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path | None = None,
        use_lm: bool = True,
        lm_path: str | Path | None = None,
        profile: str | None = None,
        vad: VADConfig = VADConfig(),
    ) -> Transcriber:
        """Load a run (default: the profile's final speech model) and its language model.

        Args:
            run_dir: a run folder written by ``train_model``; None finds the final model.
            use_lm: beam + LM decoding when the LM exists (else beam search alone); False
                decodes with beam search alone.
            lm_path: an ARPA file; None uses notebook 03's LM of the profile.
            profile: "smoke", "quick" or "full" (default: $PROFILE, else "quick").
            vad: the voice activity detector's settings.

        Raises:
            ModelNotFoundError: no trained run (the message says what to run).
            ValueError: the run was not trained on audio features.
        """
        from ctclab.decoding.lm import NGramLM

        chosen = get_profile(profile)
        if run_dir is None:
            run = find_final_run(chosen)
        else:
            run = Run(Path(run_dir))
            if not run.is_trained:
                raise ModelNotFoundError(f"{run.folder}: not a trained run (no model.keras and builder.json)")
        lm_file = Path(lm_path) if lm_path is not None else tuning.lm_path(chosen)
        if use_lm and lm_path is not None and not lm_file.is_file():
            raise ModelNotFoundError(f"{lm_file}: no such language model file")
        features = run.features()
        if not isinstance(features, FeatureConfig):
            raise ValueError(f"{run.folder} was trained on {type(features).__name__}, not audio features")
        model, normalizer, _, alphabet = run.load_model()
        lm, decoder, used = None, "beam", "beam search without a language model"
        scores = run.scores()
        alpha, beta = scores.get("lm_alpha", DEFAULT_ALPHA), scores.get("lm_beta", DEFAULT_BETA)
        if use_lm and lm_file.is_file():
            lm, decoder = NGramLM.load_arpa(lm_file), "beam+LM"
            used = f"beam search + LM {lm_file} (alpha {alpha}, beta {beta})"
        elif use_lm:
            used += f" (no LM at {lm_file}: notebook 03_transformers_and_decoding writes it)"
        return cls(
            model, normalizer, features, alphabet, lm, alpha, beta, decoder, vad, description=f"{run.folder}, {used}"
        )

    def piece_probabilities(self, samples: np.ndarray, source: str) -> list[tuple[Piece, np.ndarray]]:
        """Each piece of ``samples`` with its (T', C) output probabilities.

        Args:
            samples: (num_samples,) mono audio at ``features.sample_rate``.
            source: the file's name, for error messages.

        Raises:
            AudioError: no speech, or audio shorter than one analysis window.
            ValueError: a piece's features are not finite.
        """
        rate = self.features.sample_rate
        if samples.shape[0] < self.features.window_samples:
            raise AudioError(f"{source}: {samples.shape[0]} samples is shorter than one analysis window")
        pieces = split_at_pauses(samples, rate, self.vad)
        if not pieces:
            raise AudioError(f"{source}: no speech found (the energy never rises above its floor)")
        results = []
        for piece in pieces:
            start, end = piece.seconds(rate)
            where = f"{source} [{start:.2f}-{end:.2f} s]"
            feature = check_finite(
                featurize(samples[piece.start : piece.end], self.features), where, self.features.kind
            )
            inputs = self.normalizer(feature)[np.newaxis].astype(np.float32)  # (1, T, F)
            outputs = np.asarray(self.model.predict_on_batch(inputs), np.float32)[0]  # (T', C)
            results.append((piece, outputs[: max(0, int(self.model.output_length(feature.shape[0])))]))
        return results

    def transcribe_samples(self, samples: np.ndarray, source: str = "<samples>") -> Transcript:
        """Decode mono audio at ``features.sample_rate`` piece by piece."""
        pieces = self.piece_probabilities(samples, source)
        texts, _ = decode_all(
            [probabilities for _, probabilities in pieces],
            self.decoder,
            self.lm,
            self.alpha,
            self.beta,
            self.beam_width,
            self.alphabet,
        )
        rate = self.features.sample_rate
        return Transcript(
            source, [PieceText(*piece.seconds(rate), " ".join(text.split())) for (piece, _), text in zip(pieces, texts)]
        )

    def transcribe_file(self, path: str | Path) -> Transcript:
        """Read, resample, split and decode one file.

        Raises:
            AudioError: unreadable, empty, NaN / inf, silent or speechless audio (names the file).
            ValueError: features that come out non-finite (names the file and the piece).
        """
        return self.transcribe_samples(load_any_audio(path, self.features.sample_rate), str(path))


def transcribe(
    files: str | Path | Sequence[str | Path],
    run_dir: str | Path | None = None,
    use_lm: bool = True,
    profile: str | None = None,
) -> list[Transcript]:
    """Transcribe one or more audio files with the final speech model (for notebooks).

    Args:
        files: a path or a list of paths.
        run_dir: a run folder; None uses notebook 02's final speech model of ``profile``.
        use_lm: beam + LM decoding with notebook 03's language model (False: beam alone).
        profile: "smoke", "quick" or "full" (default: $PROFILE, else "quick").

    Returns:
        One :class:`Transcript` per file (``.text``, ``.pieces`` with start / end seconds).
    """
    files = [files] if isinstance(files, (str, Path)) else list(files)
    transcriber = Transcriber.from_run(run_dir, use_lm, profile=profile)
    return [transcriber.transcribe_file(path) for path in files]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m ctclab transcribe FILE... [--run DIR] [--no-lm] [--times]``.

    Returns:
        0 when every file was transcribed, 1 when a file failed (each named on stderr), 2 when
        there is no model.
    """
    parser = argparse.ArgumentParser(prog="python -m ctclab transcribe", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, ...)")
    parser.add_argument("--run", help="a run folder (default: notebook 02's final speech model)")
    parser.add_argument("--profile", help="whose final model and LM (default: $PROFILE, else quick)")
    parser.add_argument("--lm", help="an ARPA language model (default: notebook 03's)")
    parser.add_argument("--no-lm", action="store_true", help="beam search without the language model")
    parser.add_argument("--times", action="store_true", help="print each piece with its start / end in seconds")
    args = parser.parse_args(argv)
    try:
        transcriber = Transcriber.from_run(args.run, not args.no_lm, args.lm, args.profile)
    except (ModelNotFoundError, ValueError) as error:
        print(f"transcribe: {error}", file=sys.stderr)
        return 2
    print(f"transcribe: using {transcriber.description}", file=sys.stderr)
    failed = 0
    for path in args.files:
        try:
            transcript = transcriber.transcribe_file(path)
        except ValueError as error:  # AudioError and non-finite features; each names the file
            print(f"transcribe: {error}", file=sys.stderr)
            failed += 1
            continue
        header = len(args.files) > 1
        if args.times:
            print("\n".join(([f"{path}:"] if header else []) + transcript.timed_lines()))
        else:
            print(f"{path}: {transcript.text}" if header else transcript.text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
