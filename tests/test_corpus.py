"""Tests for corpus.py: grammar tables, config checks, and a tiny real espeak-ng build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ctclab.alphabet import ENGLISH
from ctclab.data import corpus, grammar

TINY = corpus.CorpusConfig(num_utterances=24, seed=3)


def read_split(descriptor: Path) -> list[dict]:
    return [json.loads(line) for line in descriptor.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out_dir = tmp_path_factory.mktemp("speech")
    return out_dir, corpus.build_corpus(out_dir, TINY)


# ---------------------------------------------------------------- grammar tables
@pytest.mark.parametrize(
    "number, expected",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty one"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (110, "one hundred ten"),
        (999, "nine hundred ninety nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (40512, "forty thousand five hundred twelve"),
        (999999, "nine hundred ninety nine thousand nine hundred ninety nine"),
    ],
)
def test_spell_number(number, expected):
    assert grammar.spell_number(number) == expected


@pytest.mark.parametrize(
    "number, expected",
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty first"),
        (23, "twenty third"),
        (30, "thirtieth"),
        (31, "thirty first"),
        (100, "one hundredth"),
    ],
)
def test_spell_ordinal(number, expected):
    assert grammar.spell_ordinal(number) == expected


@pytest.mark.parametrize(
    "hour, minute, casual, expected",
    [
        (7, 30, True, "half past seven"),
        (7, 15, True, "quarter past seven"),
        (9, 45, True, "quarter to ten"),
        (12, 45, True, "quarter to one"),
        (7, 0, True, "seven o'clock"),
        (7, 5, True, "five past seven"),
        (7, 7, True, "seven minutes past seven"),
        (7, 40, True, "twenty to eight"),
        (7, 53, True, "seven minutes to eight"),
        (9, 45, False, "nine forty five"),
        (7, 5, False, "seven oh five"),
        (11, 0, False, "eleven o'clock"),
        (12, 10, False, "twelve ten"),
    ],
)
def test_spell_time(hour, minute, casual, expected):
    assert grammar.spell_time(hour, minute, casual) == expected


@pytest.mark.parametrize(
    "year, expected",
    [
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1984, "nineteen eighty four"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (2024, "twenty twenty four"),
    ],
)
def test_spell_year(year, expected):
    assert grammar.spell_year(year) == expected


@pytest.mark.parametrize(
    "noun, expected",
    [
        ("box", "boxes"),
        ("glass", "glasses"),
        ("sandwich", "sandwiches"),
        ("cherry", "cherries"),
        ("key", "keys"),
        ("six", "sixes"),
        ("queen", "queens"),
    ],
)
def test_plural(noun, expected):
    assert grammar.plural(noun) == expected


@pytest.mark.parametrize(
    "function, argument",
    [
        (grammar.spell_number, -1),
        (grammar.spell_number, 1_000_000),
        (grammar.spell_ordinal, 0),
        (grammar.spell_year, 1899),
    ],
)
def test_spelling_rejects_out_of_range(function, argument):
    with pytest.raises(ValueError, match=str(argument)):
        function(argument)


def test_generated_texts_are_valid_lowercase_and_sized():
    sentences = grammar.generate_texts(600, np.random.default_rng(0))
    for sentence in sentences:
        assert ENGLISH.unknown_characters(sentence.text) == [], sentence
        assert sentence.text == sentence.text.lower() == " ".join(sentence.text.split())
        assert 2 <= len(sentence.text.split()) <= 14
    slices = [sentence.slice for sentence in sentences]
    assert 0.4 < slices.count("closed") / len(slices) < 0.6
    assert set(slices) == {"closed", "open"}
    assert grammar.generate_texts(50, np.random.default_rng(1)) == grammar.generate_texts(50, np.random.default_rng(1))


def test_every_closed_family_speaks_its_topic():
    rng = np.random.default_rng(0)
    samples = {name: " ".join(family(rng) for _ in range(40)) for name, family in grammar.CLOSED_FAMILIES.items()}
    assert any(month in samples["date"] for month in grammar.MONTHS)
    assert any(word in samples["time"] for word in ("past", "o'clock", "quarter"))
    assert any(suit in samples["cards"] for suit in grammar.SUITS)
    assert any(word in samples["direction"] for word in ("left", "right", "north"))
    assert not any(character.isdigit() for character in samples["number"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_utterances": 2}, "num_utterances .* got 2"),
        ({"valid_fraction": 0.6}, "valid_fraction .* got 0.6"),
        ({"test_fraction": 0.0}, "test_fraction .* got 0.0"),
        ({"closed_fraction": 1.5}, "got 1.5"),
        ({"min_words": 5, "max_words": 3}, "got 5, 3"),
        ({"rate_range": (200, 100)}, r"rate_range .* got \(200, 100\)"),
        ({"pitch_range": (70, 30)}, "pitch_range"),
        ({"workers": 0}, "got 0"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        corpus.CorpusConfig(**overrides)


# ---------------------------------------------------------------- voices and synthesis
def test_voice_sets_hold_out_a_disjoint_set_covering_every_accent():
    train_voices, test_voices = corpus.voice_sets()
    assert test_voices and not set(train_voices) & set(test_voices)
    test_accents = {voice.split("+")[0] for voice in test_voices}
    assert test_accents <= {voice.split("+")[0] for voice in train_voices}


def test_missing_tool_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="espeak-ng not found: run `make setup`"):
        corpus.voice_sets()


def test_failed_synthesis_names_text_and_voice(tmp_path):
    utterance = corpus.Utterance("000000", "train", "hello there", "open", "zz-nowhere+m1", 150, 50)
    with pytest.raises(RuntimeError, match="hello there.*zz-nowhere"):
        corpus.synthesize(utterance, tmp_path / "x.wav", 16000)


# ---------------------------------------------------------------- a tiny real build
def test_descriptors_match_the_written_audio(tiny_corpus):
    out_dir, descriptors = tiny_corpus
    assert set(descriptors) == {"train", "valid", "test"}
    records = [record for path in descriptors.values() for record in read_split(path)]
    assert len(records) == TINY.num_utterances
    assert len({record["key"] for record in records}) == len(records)
    for record in records:
        assert not Path(record["key"]).is_absolute()
        info = soundfile.info(str(out_dir / record["key"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - record["duration"]) < 1e-3
        assert 0.5 < record["duration"] < TINY.max_duration
        assert ENGLISH.unknown_characters(record["text"]) == [] and record["text"] == record["text"].lower()
    assert {record["slice"] for record in records} == {"closed", "open"}


def test_test_voices_never_appear_in_train_or_valid(tiny_corpus):
    out_dir, descriptors = tiny_corpus
    manifest = json.loads((out_dir / "manifest.json").read_text())
    voices = {split: {record["voice"] for record in read_split(path)} for split, path in descriptors.items()}
    assert voices["test"] <= set(manifest["voices"]["test"])
    assert voices["train"] | voices["valid"] <= set(manifest["voices"]["train_valid"])
    assert not set(manifest["voices"]["test"]) & set(manifest["voices"]["train_valid"])
    assert sum(manifest["splits"][split]["utterances"] for split in descriptors) == TINY.num_utterances


def test_same_seed_gives_the_same_corpus(tiny_corpus, tmp_path):
    out_dir, descriptors = tiny_corpus
    again = corpus.build_corpus(tmp_path, corpus.CorpusConfig(num_utterances=24, seed=3, workers=1))
    for split, path in descriptors.items():
        assert read_split(path) == read_split(again[split])
        first = read_split(path)[0]["key"]
        assert (out_dir / first).read_bytes() == (tmp_path / first).read_bytes()
    other = corpus.build_corpus(tmp_path, corpus.CorpusConfig(num_utterances=24, seed=4))
    assert [r["text"] for r in read_split(other["train"])] != [r["text"] for r in read_split(descriptors["train"])]


def test_second_build_is_a_cache_hit(tiny_corpus):
    out_dir, descriptors = tiny_corpus
    files = sorted(out_dir.rglob("*"))
    before = {path: path.stat().st_mtime_ns for path in files}
    again = corpus.build_corpus(out_dir, corpus.CorpusConfig(num_utterances=24, seed=3, workers=1))
    assert again == descriptors
    assert {path: path.stat().st_mtime_ns for path in sorted(out_dir.rglob("*"))} == before


def test_cli_prints_split_sizes(tiny_corpus, capsys):
    out_dir, _ = tiny_corpus
    corpus.main(["--out", str(out_dir), "--size", "24", "--seed", "3"])
    assert "'train': 20" in capsys.readouterr().out
