"""The JSON-lines descriptor format: the one reader and the one writer (Keras-free).

A descriptor file holds one utterance per line::

    {"key": "wav/train/000001.wav", "duration": 2.13, "text": "turn left at noon", ...}

``key`` is the utterance's file (audio, or an EMG array); a relative key is relative to the
descriptor file's folder. ``duration`` is in seconds, ``text`` the lowercase transcript. Any
other fields (voice, session, slice, ...) are kept as they are. The format is the course's
(``create_desc_json``) and is shared by the speech corpus, the ingested real corpora, the sEMG
descriptor sets, the language model's training text and every generator.

This module imports only the standard library, so corpus builders and the LM stay light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

REQUIRED_FIELDS = ("key", "duration", "text")


def read_descriptors(desc_file: str | Path) -> list[dict]:
    """Parse a JSON-lines descriptor file; keys are resolved against the file's folder.

    Args:
        desc_file: path of the descriptor file.

    Returns:
        One dict per non-empty line, in file order, with ``key`` an absolute-or-folder-relative
        path string, ``duration`` a float and ``text`` a str (other fields unchanged).

    Raises:
        ValueError: the file does not exist, or a line is not JSON or lacks key / duration /
            text, naming the file and the line.
    """
    desc_file = Path(desc_file)
    if not desc_file.is_file():
        raise ValueError(f"descriptor file {desc_file} does not exist (build it with `make corpus`)")
    records = []
    for line_number, line in enumerate(desc_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise TypeError(f"a line must be a JSON object, got {record!r}")
            key, duration, text = record["key"], float(record["duration"]), record["text"]
            if not isinstance(text, str):
                raise TypeError(f"text must be a string, got {text!r}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{desc_file}:{line_number}: bad descriptor line ({error!r})") from error
        path = Path(key)
        record.update(key=str(path if path.is_absolute() else desc_file.parent / path), duration=duration, text=text)
        records.append(record)
    return records


def read_texts(desc_file: str | Path) -> list[str]:
    """The transcripts of a descriptor file, in file order (e.g. to train a language model)."""
    return [record["text"] for record in read_descriptors(desc_file)]


def write_descriptors(records: Iterable[dict], path: str | Path) -> Path:
    """Write ``records`` as JSON lines, atomically (a killed run never leaves half a file).

    Args:
        records: dicts holding at least key / duration / text; keys are written as given (pass
            keys relative to ``path``'s folder to keep a corpus relocatable).
        path: the descriptor file to write; its folder is created.

    Returns:
        ``path``.

    Raises:
        ValueError: a record lacks one of key / duration / text (naming the record's position).
    """
    path = Path(path)
    lines = []
    for position, record in enumerate(records):
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise ValueError(f"{path}: record {position} lacks {missing}: {record!r}")
        lines.append(json.dumps(record) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(lines))
    temporary.replace(path)
    return path
