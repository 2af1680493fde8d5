"""Tests for ingest.py on small LibriSpeech and LJSpeech look-alike folders built in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ctclab.alphabet import ENGLISH
from ctclab.data import ingest

LJSPEECH_RATE = 22050  # Hz, as the real LJSpeech wavs


def tone(seconds: float, rate: int, frequency: float = 440.0) -> np.ndarray:
    time = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def read_descriptor(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def librispeech(tmp_path) -> Path:
    """Two speakers; one missing flac, one malformed line, one digit, one untranscribed chapter."""
    root = tmp_path / "LibriSpeech" / "dev-clean"
    lines = {
        ("19", "198"): [
            "19-198-0000 HELLO WORLD",
            "19-198-0001 IT'S TEN O'CLOCK",
            "19-198-0002 NO AUDIO HERE",
            "19-198-0003",
        ],
        ("84", "121"): ["84-121-0000 THE QUEEN OF HEARTS", "84-121-0001 CHAPTER 1"],
    }
    for (speaker, chapter), transcript_lines in lines.items():
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(transcript_lines) + "\n")
        for index, line in enumerate(transcript_lines):
            utterance_id = line.split()[0]
            if utterance_id.endswith("0002"):
                continue  # transcript line without audio
            soundfile.write(str(folder / f"{utterance_id}.flac"), tone(0.5 + 0.25 * index, 16000), 16000)
    orphan = root / "84" / "999"
    orphan.mkdir()
    soundfile.write(str(orphan / "84-999-0000.flac"), tone(0.5, 16000), 16000)
    return root


@pytest.fixture
def ljspeech(tmp_path) -> Path:
    """metadata.csv with quotes, an accent, digits, a missing wav and a malformed line."""
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    metadata = [
        'LJ001-0001|Printing, in the only sense "with which|Printing, in the only sense "with which" we are concerned,',
        'LJ001-0002|"Stop," he said|"Stop," he said; it\u2019s the boys\' turn.',
        "LJ001-0003|Caf\u00e9 au lait|Caf\u00e9 au lait \u2014 na\u00efve, isn't it?",
        "LJ001-0004|Chapter 1|Chapter 1 begins",
        "LJ001-0005|No wav|There is no wav for this line",
        "LJ001-0006|only two fields",
    ]
    (root / "metadata.csv").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    for index in range(1, 5):
        soundfile.write(
            str(root / "wavs" / f"LJ001-000{index}.wav"),
            tone(0.4 * index, LJSPEECH_RATE),
            LJSPEECH_RATE,
            subtype="PCM_16",
        )
    return root


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("HELLO WORLD", "hello world"),
        ('"Stop," he said; it\u2019s the boys\' turn.', "stop he said it's the boys' turn"),
        ("Caf\u00e9 au lait \u2014 na\u00efve, isn't it?", "cafe au lait naive isn't it"),
        ("'quoted' words", "quoted words"),
        ("rock-and-roll  twenty-one", "rock and roll twenty one"),
        ("Chapter 1", "chapter 1"),  # digits are kept for the alphabet check to reject
        ("!!!", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert ingest.normalize_text(raw) == expected


def test_librispeech_points_at_flac_and_counts_skips(librispeech, tmp_path):
    output = tmp_path / "out" / "dev_corpus.json"
    report = ingest.ingest(librispeech, output, "librispeech")
    records = read_descriptor(output)
    assert report.written == len(records) == 3
    assert [record["text"] for record in records] == ["hello world", "it's ten o'clock", "the queen of hearts"]
    for record in records:
        assert Path(record["key"]).is_absolute() and record["key"].endswith(".flac")
        assert abs(soundfile.info(record["key"]).duration - record["duration"]) < 1e-3
    reasons = {Path(where.split(":")[0]).name + ":" + reason.split(":")[0] for where, reason in report.skipped}
    assert reasons == {
        "19-198.trans.txt:missing audio",
        "19-198.trans.txt:malformed line",
        "84-121.trans.txt:text outside alphabet",
        "84-999-0000.flac:no transcript",
    }
    assert any(where.endswith("19-198.trans.txt:3") for where, _ in report.skipped)


def test_librispeech_keys_are_relative_inside_the_descriptor_folder(librispeech):
    output = librispeech / "dev_corpus.json"
    ingest.ingest(librispeech, output, "librispeech")
    for record in read_descriptor(output):
        assert not Path(record["key"]).is_absolute() and (output.parent / record["key"]).is_file()


def test_librispeech_wav_directory_converts(librispeech, tmp_path):
    output = tmp_path / "dev_corpus.json"
    ingest.ingest(librispeech, output, "librispeech", wav_directory=tmp_path / "wav")
    for record in read_descriptor(output):
        info = soundfile.info(str(output.parent / record["key"]))
        assert record["key"].startswith("wav/") and info.format == "WAV"
        assert (info.samplerate, info.channels) == (16000, 1)


def test_max_duration_skips_long_utterances(librispeech, tmp_path):
    report = ingest.ingest(librispeech, tmp_path / "short.json", "librispeech", max_duration=0.6)
    assert report.written == 2  # 0.5 s each; "it's ten o'clock" lasts 0.75 s
    assert sum(reason.startswith("too long") for _, reason in report.skipped) == 1


def test_ljspeech_resamples_normalizes_and_counts_skips(ljspeech, tmp_path):
    output = tmp_path / "lj_corpus.json"
    report = ingest.ingest(ljspeech, output, "ljspeech")
    records = read_descriptor(output)
    assert [record["text"] for record in records] == [
        "printing in the only sense with which we are concerned",
        "stop he said it's the boys' turn",
        "cafe au lait naive isn't it",
    ]
    for index, record in enumerate(records, start=1):
        assert record["key"] == f"wav16k/LJ001-000{index}.wav"
        samples, rate = soundfile.read(str(output.parent / record["key"]))
        assert rate == 16000 and samples.ndim == 1
        assert abs(record["duration"] - 0.4 * index) < 1e-3 and abs(len(samples) / rate - record["duration"]) < 1e-3
        assert ENGLISH.unknown_characters(record["text"]) == []
    reasons = sorted(reason.split(":")[0] for _, reason in report.skipped)
    assert reasons == ["malformed line", "missing audio", "text outside alphabet"]
    assert any(where.endswith("metadata.csv:6") for where, _ in report.skipped)


def test_resampling_keeps_the_pitch(tmp_path):
    source, target = tmp_path / "tone.wav", tmp_path / "tone16k.wav"
    soundfile.write(str(source), tone(1.0, LJSPEECH_RATE, frequency=1000.0), LJSPEECH_RATE)
    ingest.convert_audio(source, target, 16000)
    samples, rate = soundfile.read(str(target))
    spectrum = np.abs(np.fft.rfft(samples))
    assert rate == 16000 and abs(np.argmax(spectrum) * rate / len(samples) - 1000.0) <= 1.0


def test_create_desc_json_prints_the_report(ljspeech, tmp_path, capsys):
    assert ingest.create_desc_json(ljspeech, tmp_path / "lj.json", corpus="ljspeech") == 3
    printed = capsys.readouterr().out
    assert "3 utterances written, 3 skipped" in printed and "LJ001-0005.wav not found" in printed


def test_cli(librispeech, tmp_path, capsys):
    ingest.main(["librispeech", str(librispeech), str(tmp_path / "cli.json")])
    assert "librispeech: 3 utterances written, 4 skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "corpus_name, make_folder, message",
    [
        ("timit", True, "unknown corpus 'timit'"),
        ("librispeech", True, "no LibriSpeech .*trans.txt"),
        ("ljspeech", True, "metadata.csv does not exist"),
        ("ljspeech", False, "does not exist"),
    ],
)
def test_bad_inputs_raise(tmp_path, corpus_name, make_folder, message):
    folder = tmp_path / "data"
    if make_folder:
        folder.mkdir()
    with pytest.raises(ValueError, match=message):
        ingest.ingest(folder, tmp_path / "out.json", corpus_name)
