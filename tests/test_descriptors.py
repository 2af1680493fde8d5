"""The JSON-lines descriptor format: its one reader (relative keys, clear errors) and its one writer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ctclab.data.descriptors import read_descriptors, read_texts, write_descriptors

# ------------------------------------------------------------------------ read_descriptors


def test_read_descriptors_resolves_relative_keys_against_descriptor_folder(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    absolute = tmp_path / "elsewhere" / "x.wav"
    table = [  # key as written -> the file it must name
        ("a.wav", folder / "a.wav"),
        ("wav/b.wav", folder / "wav" / "b.wav"),
        ("../c.wav", tmp_path / "c.wav"),
        (str(absolute), absolute),
    ]
    lines = [{"key": key, "duration": 2, "text": "hi", "speaker": index} for index, (key, _) in enumerate(table)]
    desc = write_descriptors(lines, folder / "corpus.json")
    desc.write_text(desc.read_text() + "\n   \n")  # blank lines are ignored

    records = read_descriptors(desc)

    assert len(records) == len(table)
    for index, (record, (_, expected)) in enumerate(zip(records, table)):
        assert Path(record["key"]).resolve() == expected.resolve()
        assert record["duration"] == 2.0 and isinstance(record["duration"], float)
        assert record["text"] == "hi" and record["speaker"] == index  # other fields are kept
    assert records[3]["key"] == str(absolute)  # an absolute key is kept exactly


@pytest.mark.parametrize(
    "bad_line, detail",
    [
        ("not json", "JSONDecodeError"),
        ('{"key": "a.wav", "duration": 1.0}', "'text'"),
        ('{"duration": 1.0, "text": "hi"}', "'key'"),
        ('{"key": "a.wav", "text": "hi"}', "'duration'"),
        ('{"key": "a.wav", "duration": "long", "text": "hi"}', "could not convert"),
        ('{"key": "a.wav", "duration": null, "text": "hi"}', "TypeError"),
        ("[1, 2]", "TypeError"),
        ("42", "TypeError"),
    ],
)
def test_read_descriptors_bad_line_names_file_and_line(tmp_path, bad_line, detail):
    desc = tmp_path / "corpus.json"
    desc.write_text('{"key": "a.wav", "duration": 1.0, "text": "hi"}\n\n' + bad_line + "\n")  # bad line is line 3
    with pytest.raises(ValueError, match=re.escape(f"{desc}:3: bad descriptor line")) as error:
        read_descriptors(desc)
    assert detail in str(error.value)


@pytest.mark.parametrize("name", ["missing.json", "a_folder"])
def test_read_descriptors_missing_file(tmp_path, name):
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(ValueError, match="does not exist"):
        read_descriptors(tmp_path / name)


def test_write_then_read_round_trip_keeps_extra_fields(tmp_path):
    records = [
        {"key": "wav/0.wav", "duration": 1.25, "text": "turn left", "voice": "en-us+m1"},
        {"key": "wav/1.wav", "duration": 2, "text": "ace of spades", "session": 3},
    ]
    path = write_descriptors(records, tmp_path / "sub" / "corpus.json")
    # the file is plain JSON lines, one object per line, as written by hand below
    assert path.read_text().splitlines() == [json.dumps(record) for record in records]
    back = read_descriptors(path)
    assert [record["key"] for record in back] == [
        str(tmp_path / "sub" / "wav" / "0.wav"),
        str(tmp_path / "sub" / "wav" / "1.wav"),
    ]
    assert [record["duration"] for record in back] == [1.25, 2.0]
    assert back[0]["voice"] == "en-us+m1" and back[1]["session"] == 3
    assert read_texts(path) == ["turn left", "ace of spades"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["corpus.json"]  # no temporary file left behind


@pytest.mark.parametrize("missing", ["key", "duration", "text"])
def test_writer_rejects_a_record_without_a_required_field(tmp_path, missing):
    record = {"key": "a.wav", "duration": 1.0, "text": "hi"}
    del record[missing]
    with pytest.raises(ValueError, match=rf"record 1 lacks \['{missing}'\]"):
        write_descriptors([{"key": "b.wav", "duration": 1.0, "text": "ok"}, record], tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()  # nothing half-written


def test_reader_rejects_a_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text('{"key": "a.wav", "duration": 1, "text": "hi"}\n[1, 2, 3]\n')
    with pytest.raises(ValueError, match=r"list.json:2: bad descriptor line"):
        read_descriptors(path)
