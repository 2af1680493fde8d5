"""Tests for corpus.py and engines.py: grammar tables, config checks, every engine really speaking,
and a tiny real build (espeak-ng and festival train, flite speaks the held-out-engine split)."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from ctclab.alphabet import ENGLISH
from ctclab.data import corpus, engines, grammar
from ctclab.data.descriptors import read_descriptors

TINY = corpus.CorpusConfig(num_utterances=24, seed=3)
NUM_ENGINE_TEST = 2  # round(24 * engine_test_fraction 0.1), added to the 24
TRAINING_ENGINES = {"espeak-ng", "festival"}
SENTENCE = "turn left at the second corner and walk north"  # nine words


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
        ({"engine_test_fraction": 0.0}, "engine_test_fraction .* got 0.0"),
        ({"speed_range": (1.2, 0.8)}, r"speed_range .* got \(1.2, 0.8\)"),
        ({"engine_shares": (("espeak-ng", 0.5), ("mbrola", 0.5))}, "distinct engines .*mbrola"),
        ({"engine_shares": (("espeak-ng", 0.5), ("espeak-ng", 0.5))}, "distinct engines"),
        ({"engine_shares": ()}, "distinct engines"),
        ({"engine_shares": (("espeak-ng", 1.0), ("festival", 0.0))}, "must be positive"),
        ({"held_out_engine": "festival"}, "held_out_engine .* got 'festival'"),
        ({"held_out_engine": "espeak-ng"}, "held_out_engine .* got 'espeak-ng'"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        corpus.CorpusConfig(**overrides)


# ---------------------------------------------------------------- engines: each one really speaks
VOICES = [  # (engine, voice, slow rate, fast rate): one row per voice the corpus can use
    ("espeak-ng", "en-us+m3", 130, 200),
    ("espeak-ng", "en-gb-scotland+f2", 130, 200),
    *[("flite", voice.name, 0.8, 1.15) for voice in engines.FLITE_VOICES],
    *[("festival", voice.name, 0.8, 1.15) for voice in engines.FESTIVAL_VOICES],
]
PITCHED = [voice for voice in engines.FLITE_VOICES + engines.FESTIVAL_VOICES if voice.pitch_range is not None]


def speak(tmp_path: Path, engine: str, voice: str, rate: float, pitch: int | None, name: str = "x") -> Path:
    path = tmp_path / f"{name}.wav"
    engines.speak(engine, [engines.Request(SENTENCE, voice, rate, pitch, path)])
    return path


def median_f0(path: Path) -> float:
    """Median f0 (Hz) of the voiced frames, by probabilistic YIN: an estimator the engines do not share."""
    audio, rate = soundfile.read(str(path), dtype="float32")
    f0, voiced, _ = librosa.pyin(audio, fmin=55, fmax=400, sr=rate, frame_length=1024, hop_length=320)
    return float(np.median(f0[voiced]))


@pytest.mark.parametrize("engine, voice, slow, fast", VOICES)
def test_every_engine_speaks_16khz_mono_speech_at_its_rate(engine, voice, slow, fast, tmp_path):
    slow_path = speak(tmp_path, engine, voice, slow, None, "slow")
    fast_path = speak(tmp_path, engine, voice, fast, None, "fast")
    for path in (slow_path, fast_path):
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 9 * 0.2 < info.duration < 9 * 0.6  # nine words at 0.2-0.6 s a word, pauses included
        audio, _ = soundfile.read(str(path))
        frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)  # (frames, 25 ms)
        level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
        assert (level > level.max() - 35).mean() > 0.5  # mostly speech, not silence
        assert 0.01 < np.sqrt((audio**2).mean()) and (np.abs(audio) > 0.999).mean() < 1e-3  # audible, hardly clipped
    ratio = soundfile.info(str(slow_path)).duration / soundfile.info(str(fast_path)).duration
    assert 1.3 < ratio < 1.7  # the rates differ by a factor of 1.44 (flite, festival) or 1.54 (espeak-ng)


@pytest.mark.parametrize("voice", PITCHED, ids=lambda voice: f"{voice.engine}-{voice.name}")
def test_pitch_targets_set_the_mean_f0(voice, tmp_path):
    low, high = voice.pitch_range
    measured = [
        median_f0(speak(tmp_path, voice.engine, voice.name, 1.0, target, str(target))) for target in (low, high)
    ]
    for target, f0 in zip((low, high), measured):
        assert abs(f0 - target) < 0.2 * target, (target, f0)


def test_voices_without_pitch_control_ignore_a_target(tmp_path):
    assert [voice.name for voice in engines.FLITE_VOICES if voice.pitch_range is None] == ["rms"]
    default = speak(tmp_path, "flite", "rms", 1.0, None, "default").read_bytes()
    assert speak(tmp_path, "flite", "rms", 1.0, 180, "high").read_bytes() == default


def test_espeak_pitch_scale_raises_the_f0(tmp_path):
    low, high = (median_f0(speak(tmp_path, "espeak-ng", "en-us+m3", 170, pitch, str(pitch))) for pitch in (20, 80))
    assert high > 1.3 * low


@pytest.mark.parametrize("engine, voice", [("espeak-ng", "en-us+f3"), ("flite", "awb"), ("flite", "slt")])
def test_single_engines_are_byte_deterministic(engine, voice, tmp_path):
    first = speak(tmp_path, engine, voice, 1.07 if engine != "espeak-ng" else 160, None, "first").read_bytes()
    again = speak(tmp_path, engine, voice, 1.07 if engine != "espeak-ng" else 160, None, "again").read_bytes()
    assert first == again


def test_festival_file_does_not_depend_on_its_batch(tmp_path):
    requests = [
        engines.Request(SENTENCE, "cmu_us_slt_arctic_hts", 0.9, None, tmp_path / "slt_slow.wav"),
        engines.Request("seven of hearts", "kal_diphone", 1.1, 130, tmp_path / "kal.wav"),
        engines.Request(SENTENCE, "cmu_us_slt_arctic_hts", 1.1, None, tmp_path / "slt_fast.wav"),
        engines.Request(SENTENCE, "ked_diphone", 0.95, 100, tmp_path / "ked.wav"),
    ]
    engines.speak("festival", requests)
    for request in requests:  # each one again, alone in a fresh festival process
        alone = request._replace(wav_path=tmp_path / f"alone_{request.wav_path.name}")
        engines.speak("festival", [alone])
        assert alone.wav_path.read_bytes() == request.wav_path.read_bytes(), request
    assert (tmp_path / "slt_slow.wav").stat().st_size > (tmp_path / "slt_fast.wav").stat().st_size  # -r per utterance


@pytest.mark.parametrize("engine", ["flite", "festival"])
def test_unknown_voice_is_a_clear_error(engine, tmp_path):
    with pytest.raises(engines.SynthesisError, match=f"{engine} failed for text 'hello there' with voice 'nobody'"):
        engines.speak(engine, [engines.Request("hello there", "nobody", 1.0, None, tmp_path / "x.wav")])


@pytest.mark.parametrize("engine", ["espeak-ng", "flite", "festival"])
def test_missing_engine_is_a_clear_error(engine, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=f"{engine} not found: run `make setup`"):
        engines.require(engine)


def test_every_table_voice_is_installed():
    for engine in engines.TABLE_VOICES:
        assert {voice.name for voice in engines.table_voices(engine)} <= engines.installed_voices(engine)


# ---------------------------------------------------------------- voices and planning
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


@pytest.mark.parametrize(
    "engine_shares, held_out_engine, expected",
    [
        # flite kal16 is festival's kal diphone set, and festival has an slt voice
        ((("espeak-ng", 0.65), ("festival", 0.35)), "flite", ["awb", "rms"]),
        ((("espeak-ng", 1.0),), "flite", ["kal16", "awb", "rms", "slt"]),
        ((("espeak-ng", 0.6), ("flite", 0.4)), "festival", ["ked_diphone"]),
    ],
)
def test_held_out_engine_voices_exclude_speakers_heard_in_training(engine_shares, held_out_engine, expected):
    config = corpus.CorpusConfig(engine_shares=engine_shares, held_out_engine=held_out_engine)
    assert [voice.name for voice in corpus.held_out_engine_voices(config)] == expected


@pytest.mark.parametrize(
    "count, expected",
    [(20, {"espeak-ng": 13, "festival": 7}), (2, {"espeak-ng": 1, "festival": 1}), (1, {"espeak-ng": 1}), (0, {})],
)
def test_apportion_gives_engines_their_shares(count, expected):
    engines_drawn = corpus.apportion((("espeak-ng", 0.65), ("festival", 0.35)), count)
    assert {engine: engines_drawn.count(engine) for engine in set(engines_drawn)} == expected


# ---------------------------------------------------------------- a tiny real build
def test_descriptors_match_the_written_audio(tiny_corpus):
    out_dir, descriptors = tiny_corpus
    assert set(descriptors) == {"train", "valid", "test", "test_engine"}
    assert descriptors["test_engine"].name == "test_engine_corpus.json"
    records = [record for path in descriptors.values() for record in read_split(path)]
    assert len(records) == TINY.num_utterances + NUM_ENGINE_TEST
    assert len({record["key"] for record in records}) == len(records)
    for record in records:
        assert not Path(record["key"]).is_absolute()
        info = soundfile.info(str(out_dir / record["key"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - record["duration"]) < 1e-3
        assert 0.5 < record["duration"] < TINY.max_duration
        assert ENGLISH.unknown_characters(record["text"]) == [] and record["text"] == record["text"].lower()
        assert record["engine"] in engines.ENGINES and record["voice"]
    assert {record["slice"] for record in records} == {"closed", "open"}
    for path in descriptors.values():  # the course reader takes every split
        assert [Path(record["key"]).is_file() for record in read_descriptors(path)] == [True] * len(read_split(path))


def test_splits_are_spoken_by_their_engines(tiny_corpus):
    _, descriptors = tiny_corpus
    split_engines = {split: [record["engine"] for record in read_split(path)] for split, path in descriptors.items()}
    assert split_engines["train"].count("festival") == 7 and split_engines["train"].count("espeak-ng") == 13
    assert set(split_engines["valid"]) <= TRAINING_ENGINES
    assert set(split_engines["test"]) == {"espeak-ng"}
    assert split_engines["test_engine"] == ["flite"] * NUM_ENGINE_TEST
    festival = [record for record in read_split(descriptors["train"]) if record["engine"] == "festival"]
    assert {record["voice"] for record in festival} <= {voice.name for voice in engines.FESTIVAL_VOICES}
    for record in festival:
        assert TINY.speed_range[0] <= record["rate"] <= TINY.speed_range[1]
        assert record["pitch"] is None if record["voice"].endswith("_hts") else 85 <= record["pitch"] <= 135


def test_held_out_voices_never_appear_in_train_or_valid(tiny_corpus):
    out_dir, descriptors = tiny_corpus
    manifest = json.loads((out_dir / "manifest.json").read_text())
    voices = {split: {(r["engine"], r["voice"]) for r in read_split(path)} for split, path in descriptors.items()}
    listed = {
        split: {(engine, voice) for engine, names in manifest["voices"][split].items() for voice in names}
        for split in ("train_valid", "test", "test_engine")
    }
    assert voices["test"] <= listed["test"] and voices["test_engine"] <= listed["test_engine"]
    assert voices["train"] | voices["valid"] <= listed["train_valid"]
    assert not listed["test"] & listed["train_valid"] and not listed["test_engine"] & listed["train_valid"]
    assert manifest["voices"]["test_engine"] == {"flite": ["awb", "rms"]}  # speakers no training voice has
    assert set(manifest["voices"]["train_valid"]) == TRAINING_ENGINES
    assert set(manifest["engines"]) == TRAINING_ENGINES | {"flite"}
    total = sum(manifest["splits"][split]["utterances"] for split in descriptors)
    assert total == TINY.num_utterances + NUM_ENGINE_TEST


def test_same_seed_gives_the_same_corpus(tiny_corpus, tmp_path):
    out_dir, descriptors = tiny_corpus
    again = corpus.build_corpus(tmp_path, corpus.CorpusConfig(num_utterances=24, seed=3, workers=1))
    for split, path in descriptors.items():
        assert read_split(path) == read_split(again[split])
        for record in read_split(path):  # every engine's files, byte for byte
            assert (out_dir / record["key"]).read_bytes() == (tmp_path / record["key"]).read_bytes(), record
    other = corpus.build_corpus(tmp_path, corpus.CorpusConfig(num_utterances=24, seed=4))
    assert [r["text"] for r in read_split(other["train"])] != [r["text"] for r in read_split(descriptors["train"])]


def test_engine_change_rebuilds_and_leaves_the_test_split_alone(tiny_corpus, tmp_path):
    out_dir, descriptors = tiny_corpus
    espeak_only = corpus.CorpusConfig(num_utterances=24, seed=3, engine_shares=(("espeak-ng", 1.0),))
    built = corpus.build_corpus(tmp_path, espeak_only)
    train = read_split(built["train"])
    assert {record["engine"] for record in train} == {"espeak-ng"}
    assert [r["text"] for r in train] == [r["text"] for r in read_split(descriptors["train"])]
    assert read_split(built["test"]) == read_split(descriptors["test"])  # unseen espeak-ng voices, as before
    for record in read_split(descriptors["test"]):
        assert (out_dir / record["key"]).read_bytes() == (tmp_path / record["key"]).read_bytes()
    rebuilt = corpus.build_corpus(tmp_path, TINY)  # the engines changed back: a rebuild, not the cache
    assert read_split(rebuilt["train"]) == read_split(descriptors["train"])
    festival = next(r for r in read_split(rebuilt["train"]) if r["engine"] == "festival")
    assert (tmp_path / festival["key"]).read_bytes() == (out_dir / festival["key"]).read_bytes()


def test_another_held_out_engine(tmp_path):
    config = corpus.CorpusConfig(
        num_utterances=9,
        seed=1,
        max_words=5,
        engine_shares=(("espeak-ng", 0.5), ("flite", 0.5)),
        held_out_engine="festival",
    )
    built = corpus.build_corpus(tmp_path, config)
    assert {(r["engine"], r["voice"]) for r in read_split(built["test_engine"])} == {("festival", "ked_diphone")}
    assert {r["engine"] for r in read_split(built["train"])} == {"espeak-ng", "flite"}


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
    assert "'train': 20, 'valid': 2, 'test': 2, 'test_engine': 2" in capsys.readouterr().out
