"""AudioGenerator and friends against hand-computed tables and independent numpy / featurize_file results.

Frame counts used below (spectrogram, 20 ms window, 10 ms hop at 16 kHz): a clip of ``n`` samples
gives ``1 + (n - 320) // 160`` frames, so 0.1 s -> 9, 0.2 s -> 19, 0.6 s -> 59, 0.8 s -> 79,
1.0 s -> 99, 1.2 s -> 119, 1.3 s -> 129, 1.4 s -> 139, 1.6 s -> 159.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile
from conftest import write_descriptors, write_tone

from ctclab.alphabet import ENGLISH
from ctclab.data import features as features_module
from ctclab.data.features import FeatureConfig, Normalizer, featurize_file
from ctclab.data.generator import AudioGenerator, SkipReport, minimum_ctc_frames, vis_train_features

SPECTROGRAM = FeatureConfig()
TONE_TEXTS = ["hi", "go left", "one two", "ace", "it's on", "stop"]  # conftest.tone_corpus, 0.6 s + 0.2 s * i
TONE_FRAMES = [59, 79, 99, 119, 139, 159]

# Durations deliberately out of order in the descriptor, so "sorted" differs from "as written".
SCRAMBLED = [(1.0, "ace"), (0.4, "bee"), (1.4, "cat"), (0.6, "dog"), (1.2, "eel"), (0.8, "fox"), (0.5, "gnu")]
SCRAMBLED_SORTED = [text for _, text in sorted(SCRAMBLED)]
SCRAMBLED_DURATION = {text: seconds for seconds, text in SCRAMBLED}


# --------------------------------------------------------------------------------- helpers


def make_corpus(folder: Path, rows: list[tuple[float, str]], name: str = "corpus.json") -> Path:
    """Write one tone per (seconds, text) row under folder/wav and a descriptor with relative keys."""
    records = []
    for index, (seconds, text) in enumerate(rows):
        wav = f"wav/{Path(name).stem}-{index}.wav"
        write_tone(folder / wav, seconds, frequency=150 + 90 * index, seed=index)
        records.append({"key": wav, "duration": seconds, "text": text})
    return write_descriptors(folder / name, records)


def build(desc: Path, tmp_path: Path, **kwargs) -> AudioGenerator:
    """An AudioGenerator whose feature cache lives in tmp_path and that prints nothing."""
    kwargs.setdefault("cache_dir", tmp_path / "features")
    kwargs.setdefault("verbose", False)
    return AudioGenerator(desc, **kwargs)


def row_texts(batch) -> list[str]:
    """The transcript of every row of a batch, read back from its labels and label_length."""
    _, y = batch
    return [ENGLISH.int_sequence_to_text(y["labels"][row, : y["label_length"][row]]) for row in range(len(y["labels"]))]


def epoch_texts(gen: AudioGenerator) -> list[list[str]]:
    return [row_texts(gen[index]) for index in range(len(gen))]


def flat(batches: list[list[str]]) -> list[str]:
    return [text for batch in batches for text in batch]


def assert_batches_equal(got, expected) -> None:
    for (got_x, got_y), (expected_x, expected_y) in zip(got, expected, strict=True):
        for got_part, expected_part in ((got_x, expected_x), (got_y, expected_y)):
            assert got_part.keys() == expected_part.keys()
            for name in expected_part:
                np.testing.assert_array_equal(got_part[name], expected_part[name], err_msg=name)


def numpy_stats(paths: list[Path], config: FeatureConfig = SPECTROGRAM) -> tuple[np.ndarray, np.ndarray]:
    frames = np.concatenate([featurize_file(path, config) for path in paths]).astype(np.float64)  # (sum T, F)
    return frames.mean(axis=0), frames.std(axis=0)


def tone_paths(tmp_path: Path) -> list[Path]:
    return [tmp_path / "wav" / f"{index}.wav" for index in range(len(TONE_TEXTS))]


# ------------------------------------------------------------------ small pure helpers


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([1, 1, 2], 4),
        ([1, 2, 3], 3),
        ([5, 5, 5], 5),
        ([7], 1),
        ([], 0),
        ([1, 2, 1, 2], 4),
        ([3, 3, 4, 4], 6),
    ],
)
def test_minimum_ctc_frames(labels, expected):
    assert minimum_ctc_frames(np.asarray(labels, np.int32)) == expected


@pytest.mark.parametrize("text, expected", [("hello", 6), ("aabbcc", 9), ("abcabc", 6), ("a a", 3), ("it's", 4)])
def test_minimum_ctc_frames_of_encoded_text(text, expected):
    assert minimum_ctc_frames(np.asarray(ENGLISH.text_to_int_sequence(text))) == expected


def test_normalizer_fit_table():
    normalizer = Normalizer.fit([np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[5.0, 2.0]])])
    np.testing.assert_allclose(normalizer.mean, [3.0, 2.0])
    np.testing.assert_allclose(normalizer.std, [np.sqrt(8 / 3), 1e-6])  # constant column floored at 1e-6
    assert normalizer.mean.dtype == normalizer.std.dtype == np.float32
    np.testing.assert_allclose(normalizer(np.array([[5.0, 2.0]])), [[2 / np.sqrt(8 / 3), 0.0]], rtol=1e-6)


@pytest.mark.parametrize(
    "mean, std",
    [
        (np.linspace(-40, 3, 161), np.linspace(0.1, 9, 161)),
        ([1e-6, -1e-30, 3.4e38], [1e-6, 1.0, 7.0]),
        (np.random.default_rng(0).normal(size=13) * 1e3, np.random.default_rng(1).random(13) + 1e-3),
    ],
)
def test_normalizer_save_load_round_trip(tmp_path, mean, std):
    original = Normalizer(np.asarray(mean, np.float32), np.asarray(std, np.float32))
    path = tmp_path / "nested" / "run" / "normalizer.json"  # parent folders are created
    original.save(path)
    loaded = Normalizer.load(path)
    np.testing.assert_array_equal(loaded.mean, original.mean)
    np.testing.assert_array_equal(loaded.std, original.std)
    assert loaded.mean.dtype == loaded.std.dtype == np.float32


def test_skip_report_summary_table():
    report = SkipReport()
    assert report.summary("dev.json", 5) == "dev.json: 5 utterances, none skipped"
    for index in range(25):
        report.add(f"f{index}.wav", "bad audio" if index % 5 else "bad text", f"detail {index}")
    lines = report.summary("dev.json", 3).splitlines()
    assert lines[0] == "dev.json: 3 utterances kept, 25 skipped {'bad text': 5, 'bad audio': 20}"
    assert lines[1:21] == [f"  skipped f{index}.wav: detail {index}" for index in range(20)]
    assert lines[21:] == ["  ... and 5 more"]
    assert report.counts == {"bad text": 5, "bad audio": 20} and len(report) == 25


# --------------------------------------------------------------------------- batch contract


@pytest.mark.parametrize("minibatch_size", [0, -3])
def test_minibatch_size_must_be_positive(tone_corpus, tmp_path, minibatch_size):
    with pytest.raises(ValueError, match=f"got {minibatch_size}"):
        build(tone_corpus, tmp_path, minibatch_size=minibatch_size)


@pytest.mark.parametrize(
    "minibatch_size, batches, last_batch", [(1, 6, 1), (4, 2, 2), (5, 2, 1), (6, 1, 6), (20, 1, 6)]
)
def test_number_of_batches(tone_corpus, tmp_path, minibatch_size, batches, last_batch):
    gen = build(tone_corpus, tmp_path, minibatch_size=minibatch_size, shuffle=False)
    assert len(gen) == batches
    assert [len(gen[index][0]["input_length"]) for index in range(batches)] == [minibatch_size] * (batches - 1) + [
        last_batch
    ]


@pytest.mark.parametrize(
    "pad_multiple, time_steps",
    [
        # sorted pairs have true lengths (59, 79), (99, 119), (139, 159): T = max rounded up
        (1, [79, 119, 159]),
        (7, [84, 119, 161]),
        (16, [80, 128, 160]),
        (32, [96, 128, 160]),
        (200, [200, 200, 200]),
    ],
)
def test_batch_shapes_and_dtypes(tone_corpus, tmp_path, pad_multiple, time_steps):
    gen = build(tone_corpus, tmp_path, minibatch_size=2, shuffle=False, pad_multiple=pad_multiple)
    for index, expected_t in enumerate(time_steps):
        x, y = gen[index]
        assert set(x) == {"features", "input_length"} and set(y) == {"labels", "label_length"}
        assert x["features"].shape == (2, expected_t, 161) and x["features"].dtype == np.float32
        assert x["input_length"].shape == (2,) and x["input_length"].dtype == np.int32
        assert y["labels"].shape == (2, 8) and y["labels"].dtype == np.int32  # every tone text is <= 8 chars
        assert y["label_length"].shape == (2,) and y["label_length"].dtype == np.int32
        np.testing.assert_array_equal(x["input_length"], TONE_FRAMES[2 * index : 2 * index + 2])


@pytest.mark.parametrize(
    "text, label_steps",
    [
        ("a", 8),
        ("abcdefgh", 8),
        ("abcdefghi", 16),
        ("the quick brown fox", 24),
        ("x" * 12 + " " + "y" * 11, 24),
    ],
)
def test_label_axis_rounded_up_to_eight(tmp_path, text, label_steps):
    gen = build(make_corpus(tmp_path, [(0.6, text)]), tmp_path)
    _, y = gen[0]
    assert y["labels"].shape == (1, label_steps)
    assert y["label_length"].tolist() == [len(text)]


@pytest.mark.parametrize("minibatch_size, pad_multiple", [(2, 16), (4, 1), (3, 50)])
def test_batch_contents_match_independent_features(tone_corpus, tmp_path, minibatch_size, pad_multiple):
    gen = build(tone_corpus, tmp_path, minibatch_size=minibatch_size, pad_multiple=pad_multiple, sort_by_duration=True)
    paths = {text: path for text, path in zip(TONE_TEXTS, tone_paths(tmp_path))}
    mean, std = numpy_stats(list(paths.values()))
    seen = []
    for index in range(len(gen)):
        x, y = gen[index]
        for row, text in enumerate(row_texts((x, y))):
            feature = featurize_file(paths[text], SPECTROGRAM)  # (T_true, 161)
            length = x["input_length"][row]
            assert length == feature.shape[0]
            assert y["label_length"][row] == len(text)
            np.testing.assert_array_equal(y["labels"][row, : len(text)], ENGLISH.text_to_int_sequence(text))
            np.testing.assert_allclose(x["features"][row, :length], (feature - mean) / std, rtol=1e-4, atol=1e-4)
            assert np.all(x["features"][row, length:] == 0.0)  # padding frames are exactly zero
            seen.append(text)
    assert sorted(seen) == sorted(TONE_TEXTS)


def test_limit_keeps_first_descriptor_lines(tone_corpus, tmp_path):
    gen = build(tone_corpus, tmp_path, limit=3)
    assert gen.texts == TONE_TEXTS[:3]
    assert sorted(flat(epoch_texts(gen))) == sorted(TONE_TEXTS[:3])


# --------------------------------------------------------------------------- normalization


def test_fitted_normalizer_matches_numpy(tone_corpus, tmp_path):
    gen = build(tone_corpus, tmp_path, normalizer=None, minibatch_size=4)
    mean, std = numpy_stats(tone_paths(tmp_path))
    np.testing.assert_allclose(gen.normalizer.mean, mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gen.normalizer.std, std, rtol=1e-5, atol=1e-6)
    # every real frame served, pooled over the epoch, is standardized: mean 0, std 1 per dimension
    frames = np.concatenate(
        [
            x["features"][row, : x["input_length"][row]]
            for x, _ in (gen[index] for index in range(len(gen)))
            for row in range(len(x["input_length"]))
        ]
    ).astype(np.float64)
    assert frames.shape == (sum(TONE_FRAMES), 161)
    np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)


def test_given_normalizer_is_used_instead_of_fitting(tone_corpus, tmp_path):
    train = build(tone_corpus, tmp_path)
    other_folder = tmp_path / "valid"
    valid_desc = make_corpus(other_folder, [(0.7, "up"), (0.9, "down")])
    valid_paths = sorted((other_folder / "wav").glob("*.wav"))
    own_mean, _ = numpy_stats(valid_paths)
    assert not np.allclose(own_mean, train.normalizer.mean, atol=1e-2)  # the two choices are distinguishable

    valid = build(valid_desc, tmp_path, normalizer=train.normalizer, shuffle=False)

    assert valid.normalizer is train.normalizer
    x, y = valid[0]
    for row, (text, path) in enumerate(zip(["up", "down"], valid_paths)):
        assert row_texts((x, y))[row] == text
        feature = featurize_file(path, SPECTROGRAM)
        expected = (feature - train.normalizer.mean) / train.normalizer.std
        np.testing.assert_allclose(x["features"][row, : feature.shape[0]], expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- SortaGrad


def test_sortagrad_first_epoch_sorted_then_shuffled(tmp_path):
    gen = build(make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=2, sort_by_duration=True, shuffle=True)
    first = epoch_texts(gen)
    assert flat(first) == SCRAMBLED_SORTED
    lengths = [gen[index][0]["input_length"] for index in range(len(gen))]
    assert np.all(np.diff(np.concatenate(lengths)) >= 0)  # true frame counts nondecreasing too

    later = []
    for epoch in range(1, 4):
        gen.on_epoch_end()
        assert gen.epoch == epoch
        texts = flat(epoch_texts(gen))
        assert Counter(texts) == Counter(SCRAMBLED_SORTED)  # every utterance exactly once per epoch
        later.append(texts)
    assert any(texts != SCRAMBLED_SORTED for texts in later)


def test_shuffled_epochs_permute_single_utterance_batches(tmp_path):
    gen = build(make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=1, sort_by_duration=True, seed=5)
    orders = [flat(epoch_texts(gen))]
    for _ in range(3):
        gen.on_epoch_end()
        orders.append(flat(epoch_texts(gen)))
    assert orders[0] == SCRAMBLED_SORTED
    assert all(sorted(order) == sorted(SCRAMBLED_SORTED) for order in orders)
    assert len({tuple(order) for order in orders[1:]}) == 3  # 7! orders: three distinct shuffles


def test_shuffle_without_sortagrad_starts_shuffled(tmp_path):
    gen = build(make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=1, sort_by_duration=False, shuffle=True)
    order = flat(epoch_texts(gen))
    assert sorted(order) == sorted(SCRAMBLED_SORTED) and order != SCRAMBLED_SORTED


@pytest.mark.parametrize("sort_by_duration", [True, False])
def test_no_shuffle_keeps_fixed_sorted_order(tmp_path, sort_by_duration):
    gen = build(
        make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=3, sort_by_duration=sort_by_duration, shuffle=False
    )
    expected = [SCRAMBLED_SORTED[0:3], SCRAMBLED_SORTED[3:6], SCRAMBLED_SORTED[6:7]]
    for epoch in range(3):
        assert epoch_texts(gen) == expected, f"epoch {epoch}"
        gen.on_epoch_end()


def test_same_seed_same_orders(tmp_path):
    desc = make_corpus(tmp_path, SCRAMBLED)
    generators = [build(desc, tmp_path, minibatch_size=2, sort_by_duration=True, seed=seed) for seed in (3, 3, 4)]
    orders = [[] for _ in generators]
    for _ in range(4):
        for gen, order in zip(generators, orders):
            order.append(epoch_texts(gen))
            gen.on_epoch_end()
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]  # another seed shuffles differently (after the sorted first epoch)
    assert orders[0][0] == orders[2][0]


# ---------------------------------------------------------------------------- skipped items


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(range(256)) * 8)


def write_silence(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(9600, np.float32), 16000)


def tone(seconds: float, sample_rate: int = 16000):
    return lambda path: write_tone(path, seconds, sample_rate=sample_rate, frequency=330)


GOOD = [("good-0.wav", tone(0.6), "go left", 0.6), ("good-1.wav", tone(0.8), "one two", 0.8)]

# (file name, writer (None: no file), text, descriptor duration, reason, part of the detail); max_duration 1.0 s
BAD_ITEMS = [
    ("garbage.wav", write_garbage, "hi", 0.6, "bad audio", "unreadable audio"),
    ("rate-8k.wav", tone(0.6, sample_rate=8000), "hi", 0.6, "bad audio", "sample rate 8000 Hz"),
    ("silent.wav", write_silence, "hi", 0.6, "bad audio", "silent audio"),
    ("missing.wav", None, "hi", 0.6, "bad audio", "does not exist"),
    ("empty-text.wav", tone(0.6), "", 0.6, "bad text", "empty text"),
    ("cafe.wav", tone(0.6), "café", 0.6, "bad text", "['é']"),
    ("room.wav", tone(0.6), "room 101", 0.6, "bad text", "['0', '1']"),
    ("long.wav", tone(1.2), "hi", 1.2, "too long", "1.20 s > max_duration 1.0 s"),
    ("short.wav", tone(0.1), "hello there", 0.1, "too short for label", "9 frames -> 9 model outputs < 12 needed"),
]


def write_items(folder: Path, items) -> Path:
    records = []
    for name, writer, text, seconds, *_ in items:
        if writer is not None:
            writer(folder / "wav" / name)
        records.append({"key": f"wav/{name}", "duration": seconds, "text": text})
    return write_descriptors(folder / "corpus.json", records)


@pytest.mark.parametrize("item", BAD_ITEMS, ids=[item[0] for item in BAD_ITEMS])
def test_bad_item_skipped_named_and_counted(tmp_path, capsys, item):
    name, _, _, _, reason, detail = item
    desc = write_items(tmp_path, [GOOD[0], item, GOOD[1]])

    gen = build(desc, tmp_path, max_duration=1.0, verbose=True)

    assert gen.texts == ["go left", "one two"]  # good items around the bad one are kept
    assert len(gen.skipped) == 1 and gen.skipped.counts == {reason: 1}
    skipped_file, skipped_reason, skipped_detail = gen.skipped.items[0]
    assert (skipped_file, skipped_reason) == (str(tmp_path / "wav" / name), reason)
    assert detail in skipped_detail
    printed = capsys.readouterr().out
    assert f"{desc}: 2 utterances kept, 1 skipped {{'{reason}': 1}}" in printed
    assert f"skipped {tmp_path / 'wav' / name}: " in printed
    assert sorted(flat(epoch_texts(gen))) == ["go left", "one two"]


def test_all_bad_items_beside_good_ones_counts_add_up(tmp_path):
    desc = write_items(tmp_path, GOOD[:1] + BAD_ITEMS + GOOD[1:])
    gen = build(desc, tmp_path, max_duration=1.0)
    assert gen.texts == ["go left", "one two"]
    assert gen.skipped.counts == dict(Counter(item[4] for item in BAD_ITEMS))
    assert [file for file, _, _ in gen.skipped.items] == [str(tmp_path / "wav" / item[0]) for item in BAD_ITEMS]
    assert len(gen.texts) + len(gen.skipped) == len(BAD_ITEMS) + len(GOOD)


def test_every_item_bad_raises_with_reasons(tmp_path):
    desc = write_items(tmp_path, BAD_ITEMS)
    with pytest.raises(ValueError, match="no usable utterances") as error:
        build(desc, tmp_path, max_duration=1.0)
    message = str(error.value)
    for name, *_, reason, detail in BAD_ITEMS:
        assert reason in message and name in message and detail in message


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_descriptor_without_utterances_raises(tmp_path, content):
    desc = tmp_path / "corpus.json"
    desc.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{desc}: no usable utterances")):
        build(desc, tmp_path)


@pytest.mark.parametrize(
    "seconds, output_length, text, kept",
    [
        # 0.6 s -> 59 frames -> 59 // 8 = 7 model outputs
        (0.6, lambda n: n // 8, "abcdefg", True),  # 7 needed
        (0.6, lambda n: n // 8, "abcdefgh", False),  # 8 needed
        (0.6, lambda n: n // 8, "abcabc", True),  # 6 needed
        (0.6, lambda n: n // 8, "aabbcc", False),  # 6 + 3 repeats = 9 needed
        (0.6, lambda n: n // 8, "aaaa", True),  # 4 + 3 = 7 needed
        (0.6, lambda n: n // 8, "aaaaa", False),  # 5 + 4 = 9 needed
        # 0.2 s -> 19 frames, and by default as many outputs as frames
        (0.2, None, "abcdefghijklmnopqrs", True),  # 19 needed
        (0.2, None, "abcdefghijklmnopqrst", False),  # 20 needed
        (0.2, None, "aabcdefghijklmnopq", True),  # 18 + 1 = 19 needed
        (0.2, None, "aabbcdefghijklmnop", False),  # 18 + 2 = 20 needed
    ],
)
def test_too_short_for_label_boundary(tmp_path, seconds, output_length, text, kept):
    desc = make_corpus(tmp_path, [(0.6, "a"), (seconds, text)])
    gen = build(desc, tmp_path, output_length=output_length)
    assert gen.texts == (["a", text] if kept else ["a"])
    if not kept:
        ((_, reason, detail),) = gen.skipped.items
        assert reason == "too short for label"
        frames = 59 if seconds == 0.6 else 19
        outputs = frames // 8 if output_length else frames
        needed = minimum_ctc_frames(np.asarray(ENGLISH.text_to_int_sequence(text)))
        assert detail.startswith(f"{frames} frames -> {outputs} model outputs < {needed} needed")


# ----------------------------------------------------------------------------- feature cache


def test_cache_second_build_does_no_feature_work(tone_corpus, tmp_path, monkeypatch):
    first = build(tone_corpus, tmp_path, shuffle=False, minibatch_size=4)
    folder = tmp_path / "features" / SPECTROGRAM.cache_name()
    assert list((tmp_path / "features").iterdir()) == [folder]
    cached = sorted(folder.iterdir())
    assert len(cached) == 6 and all(path.suffix == ".npy" and ".tmp" not in path.name for path in cached)
    by_length = sorted((np.load(path) for path in cached), key=len)
    for stored, path in zip(by_length, tone_paths(tmp_path)):  # tone files are in increasing length
        np.testing.assert_array_equal(stored, featurize_file(path, SPECTROGRAM))

    def no_fft(path, config):
        raise AssertionError(f"featurize_file({path}) called although its features are cached")

    monkeypatch.setattr(features_module, "featurize_file", no_fft)
    second = build(tone_corpus, tmp_path, shuffle=False, minibatch_size=4)
    assert_batches_equal([second[i] for i in range(len(second))], [first[i] for i in range(len(first))])


@pytest.mark.parametrize(
    "config, feature_dim",
    [
        (FeatureConfig(kind="mfcc"), 13),
        (FeatureConfig(window_ms=25.0), 201),
        (FeatureConfig(max_freq=4000.0), 81),
    ],
)
def test_cache_folder_depends_on_feature_config(tone_corpus, tmp_path, config, feature_dim):
    build(tone_corpus, tmp_path)
    spectrogram_folder = tmp_path / "features" / SPECTROGRAM.cache_name()
    gen = build(tone_corpus, tmp_path, features=config)
    folder = tmp_path / "features" / config.cache_name()
    assert folder != spectrogram_folder and folder.name.startswith(config.kind + "-")
    assert len(list(spectrogram_folder.glob("*.npy"))) == 6
    stored = [np.load(path) for path in folder.glob("*.npy")]
    assert len(stored) == 6 and all(array.shape[1] == feature_dim for array in stored)
    assert gen[0][0]["features"].shape[2] == feature_dim


@pytest.mark.parametrize("change", ["rewrite", "touch"])
def test_cache_entry_invalidated_when_wav_changes(tone_corpus, tmp_path, monkeypatch, change):
    build(tone_corpus, tmp_path)
    changed = tmp_path / "wav" / "2.wav"
    if change == "rewrite":
        write_tone(changed, 1.3, frequency=1234, seed=9)
    else:
        stat = changed.stat()
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    real_featurize = featurize_file
    calls = []

    def counting(path, config):
        calls.append(Path(path).resolve())
        return real_featurize(path, config)

    monkeypatch.setattr(features_module, "featurize_file", counting)
    gen = build(tone_corpus, tmp_path)
    assert calls == [changed.resolve()]  # only the changed file is featurized again
    feature = gen.feats[gen.texts.index("one two")]
    np.testing.assert_array_equal(feature, real_featurize(changed, SPECTROGRAM))
    assert feature.shape[0] == (129 if change == "rewrite" else 99)


def test_cache_dir_none_writes_nothing(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    before = sorted(tmp_path.rglob("*"))
    gen = AudioGenerator(tone_corpus, cache_dir=None, verbose=False)
    assert sorted(tmp_path.rglob("*")) == before
    assert len(gen.texts) == 6


# ---------------------------------------------------------------------------------- fit_data

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="fit_data's tf.data view")


@tensorflow_only
def test_fit_data_element_spec_has_variable_time_and_label_axes(tone_corpus, tmp_path):
    import tensorflow as tf

    gen = build(tone_corpus, tmp_path, minibatch_size=4)
    dataset = gen.fit_data()
    x_spec, y_spec = dataset.element_spec
    expected = {
        "features": ([None, None, 161], tf.float32),
        "input_length": ([None], tf.int32),
        "labels": ([None, None], tf.int32),
        "label_length": ([None], tf.int32),
    }
    for name, spec in {**x_spec, **y_spec}.items():
        assert (spec.shape.as_list(), spec.dtype) == expected[name], name
    assert int(dataset.cardinality()) == len(gen) == 2


@tensorflow_only
def test_fit_data_yields_generator_batches_then_ends_epoch(tmp_path):
    gen = build(make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=2, sort_by_duration=True)
    dataset = gen.fit_data()
    for epoch in range(3):
        expected = [gen[index] for index in range(len(gen))]
        got = list(dataset.as_numpy_iterator())
        assert len(got) == len(gen) == 4
        assert_batches_equal(got, expected)
        if epoch == 0:
            assert flat([row_texts(batch) for batch in got]) == SCRAMBLED_SORTED
        assert gen.epoch == epoch + 1  # on_epoch_end ran after the full pass


@tensorflow_only
def test_fit_data_advances_epochs_inside_model_fit(tmp_path):
    """Keras stops after cardinality steps without asking for the end; the epoch must still end."""

    class Probe(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs["features"])  # (B, T, 1)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return keras.ops.mean(y_pred**2)

    gen = build(make_corpus(tmp_path, SCRAMBLED), tmp_path, minibatch_size=2, sort_by_duration=True)
    served = []
    original_get_batch = gen.get_batch
    gen.get_batch = lambda indices, epoch=None: (
        served.append((gen.epoch, [gen.texts[i] for i in indices])) or original_get_batch(indices, epoch)
    )
    model = Probe()
    model.compile(optimizer="sgd")
    model.fit(gen.fit_data(), epochs=3, verbose=0)
    assert gen.epoch == 3
    for epoch in range(3):
        texts = flat([batch for served_epoch, batch in served if served_epoch == epoch])
        assert sorted(texts) == sorted(SCRAMBLED_SORTED), f"epoch {epoch}"
        if epoch == 0:
            assert texts == SCRAMBLED_SORTED


# ------------------------------------------------------------------------ vis_train_features


def test_vis_train_features(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))  # its cache is data/features under CTCLAB_HOME
    text, audio, mfcc, spectrogram, path = vis_train_features(4, "train_corpus.json", k_samples=3)

    wav = tmp_path / "wav" / "4.wav"
    assert text == "it's on"
    assert Path(path).resolve() == wav.resolve()
    expected_audio, _ = soundfile.read(wav, dtype="float32")
    np.testing.assert_array_equal(audio, expected_audio)
    # 22400 samples: spectrogram 1 + (22400 - 320) // 160 = 139; MFCC 1 + ceil((22400 - 400) / 160) = 139
    assert mfcc.shape == (139, 13) and spectrogram.shape == (139, 161)
    for kind, feature in (("mfcc", mfcc), ("spectrogram", spectrogram)):
        config = FeatureConfig(kind=kind)
        mean, std = numpy_stats(tone_paths(tmp_path)[:3], config)  # statistics of the first k_samples clips
        np.testing.assert_allclose(feature, (featurize_file(wav, config) - mean) / std, rtol=1e-4, atol=1e-4)
        assert len(list((tmp_path / "data" / "features" / config.cache_name()).glob("*.npy"))) == 4


@pytest.mark.parametrize("index", [-1, 6, 100])
def test_vis_train_features_index_out_of_range(tone_corpus, tmp_path, monkeypatch, index):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=f"index {index} is outside"):
        vis_train_features(index, tone_corpus)
