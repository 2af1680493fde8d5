"""Real-corpus ingest: LibriSpeech or LJSpeech folders -> the course's JSON-lines descriptors.

Each output line is ``{"key": audio path, "duration": seconds, "text": transcript}``, the format
:mod:`corpus` writes and :mod:`data_generator` reads:

- LibriSpeech: every ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` ("ID TEXT" lines,
  upper case) names the ``ID.flac`` files beside it; keys point at the flac files themselves
  (soundfile reads flac) unless a ``wav_directory`` asks for 16 kHz wav copies.
- LJSpeech: ``metadata.csv`` holds ``id|transcription|normalized transcription`` lines (split on
  "|" only: quotes are text, not CSV quoting); the normalized column is used and
  ``wavs/<id>.wav`` (22050 Hz) is resampled to 16 kHz wav in ``wav_directory``.

Audio whose rate differs from ``sample_rate`` is always converted (default folder:
``<output folder>/wav16k``). Keys are relative to the output file's folder when the audio lies
inside it, absolute otherwise; a relative key is resolved against the descriptor's folder.

Transcripts are normalized by :func:`normalize_text`; an item whose text still has a character
outside ``ctclab.alphabet.ENGLISH``, whose audio is missing or unreadable, whose line is malformed, or
that is longer than ``max_duration`` is skipped and reported with its file, line and reason.

Usage: ``python -m ctclab.data.ingest librispeech data/LibriSpeech/dev-clean data/dev_corpus.json``
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

from ctclab.alphabet import ENGLISH
from ctclab.data.audio import AudioError, load_any_audio
from ctclab.data.descriptors import write_descriptors

CORPORA = ("librispeech", "ljspeech")
TYPOGRAPHIC_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}  # curly quotes read as "'"


def normalize_text(text: str) -> str:
    """Lowercase, strip accents, turn punctuation into spaces and collapse runs of spaces.

    Apostrophes inside a word ("don't", "o'clock") and after a plural s ("the boys' hats") are
    kept; those quoting a phrase ("'stop' he said") become spaces. Characters that are neither
    punctuation nor in the alphabet (digits, "æ") are left for the caller to reject.

    Example:
        >>> normalize_text('"Café-au-lait," he said, isn\u2019t it?')
        "cafe au lait he said isn't it"
    """
    decomposed = unicodedata.normalize("NFKD", text)
    characters = []
    for character in decomposed:
        character = TYPOGRAPHIC_APOSTROPHES.get(character, character).lower()
        category = unicodedata.category(character)
        if category == "Mn":  # combining accent split off by NFKD
            continue
        if character not in ENGLISH.characters and category[0] in "PSZC":  # punctuation, symbol, space
            character = " "
        characters.append(character)
    normalized = "".join(characters)
    normalized = re.sub(r"(?<![a-z])'", " ", normalized)  # opening quote
    normalized = re.sub(r"(?<!s)'(?![a-z])", " ", normalized)  # closing quote, unless "boys'"
    return " ".join(normalized.split())


@dataclass
class IngestReport:
    """What one ingest wrote and what it left out, each skip named by file (and line)."""

    corpus: str
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or file:line, reason)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append((where, reason))

    def summary(self, max_listed: int = 20) -> str:
        """A readable report: counts by reason, then the first ``max_listed`` skipped items."""
        lines = [f"{self.corpus}: {self.written} utterances written, {len(self.skipped)} skipped"]
        reasons = Counter(reason.split(":")[0] for _, reason in self.skipped)
        lines += [f"  {count} x {reason}" for reason, count in reasons.most_common()]
        lines += [f"  skipped {where}: {reason}" for where, reason in self.skipped[:max_listed]]
        if len(self.skipped) > max_listed:
            lines.append(f"  ... and {len(self.skipped) - max_listed} more")
        return "\n".join(lines)


def _librispeech_items(data_directory: Path, report: IngestReport) -> Iterator[tuple[Path, str, str]]:
    """Yield (flac path, raw transcript, "file:line") for each transcript line with audio."""
    transcripts = sorted(data_directory.rglob("*.trans.txt"))
    if not transcripts:
        raise ValueError(f"no LibriSpeech *.trans.txt transcripts under {data_directory}")
    transcribed_folders = {transcript.parent for transcript in transcripts}
    for flac in sorted(data_directory.rglob("*.flac")):
        if flac.parent not in transcribed_folders:
            report.skip(str(flac), "no transcript: its folder has no .trans.txt file")
    for transcript in transcripts:
        for line_number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{transcript}:{line_number}"
            utterance_id, _, text = line.strip().partition(" ")
            if not text.strip():
                report.skip(where, f"malformed line: expected 'ID TEXT', got {line.strip()!r}")
                continue
            audio = transcript.parent / f"{utterance_id}.flac"
            if not audio.is_file():
                report.skip(where, f"missing audio: {audio.name} not found")
                continue
            yield audio, text, where


def _ljspeech_items(data_directory: Path, report: IngestReport) -> Iterator[tuple[Path, str, str]]:
    """Yield (wav path, normalized-column transcript, "file:line") for each metadata line."""
    metadata = data_directory / "metadata.csv"
    if not metadata.is_file():
        raise ValueError(f"LJSpeech metadata file {metadata} does not exist")
    for line_number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{metadata}:{line_number}"
        fields = line.split("|")  # never csv.reader: LJSpeech quotes are part of the text
        if len(fields) != 3 or not fields[0].strip() or not fields[2].strip():
            report.skip(where, f"malformed line: expected 'id|transcription|normalized', got {line!r}")
            continue
        audio = data_directory / "wavs" / f"{fields[0].strip()}.wav"
        if not audio.is_file():
            report.skip(where, f"missing audio: {audio.name} not found")
            continue
        yield audio, fields[2], where


def convert_audio(source: Path, target: Path, sample_rate: int) -> None:
    """Write ``source`` as mono 16-bit wav at ``sample_rate`` to ``target``.

    Read, mixed and resampled by :func:`ctclab.data.audio.load_any_audio` (AudioError for an
    unreadable, empty, non-finite or silent file).
    """
    samples = load_any_audio(source, sample_rate)  # (T,) mono at sample_rate
    target.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(target), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")


def _key(audio: Path, descriptor_folder: Path) -> str:
    audio, descriptor_folder = audio.resolve(), descriptor_folder.resolve()
    return audio.relative_to(descriptor_folder).as_posix() if audio.is_relative_to(descriptor_folder) else str(audio)


def ingest(
    data_directory: str | Path,
    output_file: str | Path,
    corpus: str = "librispeech",
    wav_directory: str | Path | None = None,
    sample_rate: int = 16000,
    max_duration: float | None = None,
) -> IngestReport:
    """Write the descriptor for one corpus folder and return what was written and skipped.

    Args:
        data_directory: LibriSpeech subset folder (e.g. ``dev-clean``) or LJSpeech root.
        output_file: JSON-lines descriptor to write (its folder is created).
        corpus: "librispeech" or "ljspeech".
        wav_directory: where converted wavs go; given, every file is converted. Default
            ``<output folder>/wav16k``, used only for audio not already at ``sample_rate``.
        sample_rate: Hz of the audio the keys point to.
        max_duration: seconds; longer utterances are skipped. None keeps all.

    Raises:
        ValueError: for an unknown corpus, a bad rate or duration, or a folder without transcripts.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {CORPORA}")
    if sample_rate <= 0 or (max_duration is not None and max_duration <= 0):
        raise ValueError(f"sample_rate and max_duration must be positive, got {sample_rate}, {max_duration}")
    data_directory, output_file = Path(data_directory), Path(output_file)
    if not data_directory.is_dir():
        raise ValueError(f"{corpus} folder {data_directory} does not exist")
    convert_all = wav_directory is not None
    wav_directory = Path(wav_directory) if wav_directory is not None else output_file.parent / "wav16k"
    report = IngestReport(corpus)
    items = _librispeech_items if corpus == "librispeech" else _ljspeech_items
    records = []
    for audio, raw_text, where in tqdm(items(data_directory, report), desc=f"ingest {corpus}", unit="utt"):
        text = normalize_text(raw_text)
        unknown = ENGLISH.unknown_characters(text)
        if not text or unknown:
            report.skip(where, f"text outside alphabet: {unknown or 'empty'} in {text!r}")
            continue
        try:
            info = soundfile.info(str(audio))
            if convert_all or info.samplerate != sample_rate:
                target = wav_directory / f"{audio.stem}.wav"
                if not target.is_file() or target.stat().st_mtime < audio.stat().st_mtime:
                    convert_audio(audio, target, sample_rate)
                audio, info = target, soundfile.info(str(target))
        except RuntimeError as error:  # soundfile's errors for unreadable or corrupt audio
            report.skip(where, f"unreadable audio: {audio.name} ({error})")
            continue
        except AudioError as error:  # from the conversion: empty, non-finite or silent audio
            report.skip(where, f"bad audio: {error}")
            continue
        if max_duration is not None and info.duration > max_duration:
            report.skip(where, f"too long: {info.duration:.2f} s > max_duration {max_duration} s")
            continue
        records.append({"key": _key(audio, output_file.parent), "duration": round(info.duration, 4), "text": text})
    write_descriptors(records, output_file)
    report.written = len(records)
    return report


def create_desc_json(
    data_directory: str | Path,
    output_file: str | Path,
    corpus: str = "librispeech",
    wav_directory: str | Path | None = None,
    sample_rate: int = 16000,
    max_duration: float | None = None,
) -> int:
    """Course name: :func:`ingest` one corpus folder, print the report, return lines written."""
    report = ingest(data_directory, output_file, corpus, wav_directory, sample_rate, max_duration)
    print(report.summary())
    return report.written


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m ctclab.data.ingest {librispeech,ljspeech} DIR OUT.json [options]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", choices=CORPORA)
    parser.add_argument("data_directory")
    parser.add_argument("output_file")
    parser.add_argument("--wav-directory", help="convert every file to wav here (default: only when needed)")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--max-duration", type=float, help="skip utterances longer than this (seconds)")
    args = parser.parse_args(argv)
    create_desc_json(
        args.data_directory, args.output_file, args.corpus, args.wav_directory, args.sample_rate, args.max_duration
    )


if __name__ == "__main__":
    main()
