"""emg_loaders and emg's feature loader on tiny look-alikes of the real datasets, written here.

The Gaddy & Klein and emg2qwerty fixtures follow the on-disk formats of the public datasets
(see reference facts): a malformed file must raise an error naming it, or be a counted skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ctclab.data.descriptors import write_descriptors
from ctclab.data.generator import AudioGenerator
from ctclab.emg import loaders as emg_loaders
from ctclab.emg import training as emg
from ctclab.emg.loaders import EMGDataError
from ctclab.emg.signal import EMGFeatureConfig

BOOK = "books/War_of_the_Worlds.txt"


def write_gaddy_utterance(
    folder: Path, index: int, text: str, sentence_index: int, seconds: float = 1.0, seed: int = 0, book: str = BOOK
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    emg_samples = int(seconds * 1000)
    np.save(folder / f"{index}_emg.npy", rng.standard_normal((emg_samples, 8)) * 20 + 100)  # float64 µV
    soundfile.write(folder / f"{index}_audio_clean.flac", 0.1 * rng.standard_normal(int(seconds * 16000)), 16000)
    info = {
        "book": book if sentence_index >= 0 else "",
        "sentence_index": sentence_index,
        "text": text,
        "chunks": [[emg_samples, int(seconds * 16000), 0]],
    }
    (folder / f"{index}_info.json").write_text(json.dumps(info))


def write_gaddy_fixture(root: Path) -> Path:
    """Two voiced sessions, one silent session, silence clips and a testset file; returns root."""
    data = root / "emg_data"
    voiced_a, voiced_b = data / "voiced_parallel_data" / "5-4", data / "voiced_parallel_data" / "5-5"
    silent = data / "silent_parallel_data" / "5-4_silent"
    for index, (text, sentence) in enumerate([("the first one", 0), ("then a second", 1), ("", -1)]):
        write_gaddy_utterance(voiced_a, index, text, sentence, seed=index)
    write_gaddy_utterance(voiced_b, 0, "and a third", 2, seed=5)
    write_gaddy_utterance(silent, 0, "then a second", 1, seconds=1.2, seed=7)
    write_gaddy_utterance(silent, 1, "and a third", 2, seed=8)
    write_gaddy_utterance(silent, 2, "", -1, seed=9)
    (root / "testset_largedev.json").write_text(json.dumps({"dev": [[BOOK, 1]], "test": [[BOOK, 2]]}))
    return root


QWERTY_DTYPE = np.dtype([("emg_left", "<f4", (16,)), ("emg_right", "<f4", (16,)), ("time", "<f8")])
T0 = 1_650_000_000.0  # unix seconds


def write_qwerty_session(
    path: Path, keys: list[tuple[str, float]], seconds: float = 4.0, condition: str = "on_keyboard", seed: int = 0
) -> Path:
    """One emg2qwerty look-alike session; ``keys`` are (pynput name, seconds after start)."""
    import h5py

    samples = int(seconds * 2000)
    rng = np.random.default_rng(seed)
    timeseries = np.zeros(samples, QWERTY_DTYPE)
    timeseries["emg_left"] = rng.standard_normal((samples, 16))
    timeseries["emg_right"] = rng.standard_normal((samples, 16)) + 5
    timeseries["time"] = T0 + np.arange(samples) / 2000
    keystrokes = [{"key": key, "start": T0 + at, "end": T0 + at + 0.08} for key, at in keys]
    prompts = [
        {"name": "text_prompt", "payload": {"text": "hi there"}, "start": T0 + 0.1, "end": T0 + 2.0},
        {"name": "text_prompt", "payload": None, "start": T0 + 2.0, "end": T0 + 2.5},
        {"name": "text_prompt", "payload": {"text": "ok"}, "start": T0 + 2.5, "end": T0 + seconds},
    ]
    with h5py.File(path, "w") as handle:
        group = handle.create_group("emg2qwerty")
        group.create_dataset("timeseries", data=timeseries)
        group.attrs.update(
            session_name=path.stem,
            user="user0",
            condition=condition,
            duration_mins=seconds / 60,
            keystrokes=json.dumps(keystrokes),
            prompts=json.dumps(prompts),
        )
    return path


QWERTY_KEYS = [
    ("h", 0.2),
    ("i", 0.4),
    ("Key.space", 0.7),
    ("Key.shift", 0.9),
    ("T", 1.0),
    ("x", 1.2),
    ("Key.backspace", 1.5),
    ("o", 1.7),
    ("!", 2.6),
    ("o", 2.8),
    ("k", 3.1),
]


def write_qwerty_fixture(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_qwerty_session(root / "sess_a.hdf5", QWERTY_KEYS)
    (root / "metadata.csv").write_text(
        "user,session,duration_mins,num_keystrokes,num_prompts,quality_check_tags\n"
        f"user0,sess_a,0.07,{len(QWERTY_KEYS)},3,[]\n"
    )
    return root


# ------------------------------------------------------------------------------ Gaddy & Klein


def test_load_gaddy_reads_every_utterance_and_skips_silence_clips(tmp_path):
    utterances = emg_loaders.load_gaddy(write_gaddy_fixture(tmp_path))
    assert [(u.session, u.text, u.silent, u.split) for u in utterances] == [
        ("5-4", "the first one", False, "train"),
        ("5-4", "then a second", False, "dev"),
        ("5-5", "and a third", False, "test"),
        ("5-4_silent", "then a second", True, "dev"),
        ("5-4_silent", "and a third", True, "test"),
    ]
    first = utterances[0]
    assert first.emg.shape == (1000, 8) and first.emg.dtype == np.float64
    assert first.num_samples == 1000 and first.duration == 1.0
    assert first.audio_path.name == "0_audio_clean.flac" and first.sentence == (BOOK, 0)
    assert utterances[3].num_samples == 1200


def test_emg_data_folder_itself_works_as_root(tmp_path):
    write_gaddy_fixture(tmp_path)
    utterances = emg_loaders.load_gaddy(tmp_path / "emg_data", conditions=("silent",))
    assert [u.split for u in utterances] == ["dev", "test"]  # the testset in the parent is found


def test_silent_pairs_with_voiced_by_book_and_sentence(tmp_path):
    utterances = emg_loaders.load_gaddy(write_gaddy_fixture(tmp_path))
    pairs = emg_loaders.pair_silent_with_voiced(utterances)
    assert [(silent.session, voiced.session, silent.text) for silent, voiced in pairs] == [
        ("5-4_silent", "5-4", "then a second"),
        ("5-4_silent", "5-5", "and a third"),
    ]
    orphan = tmp_path / "emg_data" / "silent_parallel_data" / "5-4_silent"
    write_gaddy_utterance(orphan, 3, "no voiced twin", 99)
    with pytest.raises(EMGDataError, match="3_emg.npy.*no voiced recording"):
        emg_loaders.pair_silent_with_voiced(emg_loaders.load_gaddy(tmp_path))


def _corrupt_missing_info(folder: Path):
    (folder / "1_info.json").unlink()


def _corrupt_channels(folder: Path):
    np.save(folder / "1_emg.npy", np.zeros((1000, 7)))


def _corrupt_truncate(folder: Path):
    path = folder / "1_emg.npy"
    path.write_bytes(path.read_bytes()[:-100])


def _corrupt_json(folder: Path):
    (folder / "1_info.json").write_text("{not json")


def _corrupt_dtype(folder: Path):
    np.save(folder / "1_emg.npy", np.zeros((1000, 8), np.int16))


def _corrupt_missing_npy(folder: Path):
    (folder / "1_emg.npy").unlink()


@pytest.mark.parametrize(
    "corrupt, file_name, problem",
    [
        (_corrupt_missing_info, "1_info.json", "missing"),
        (_corrupt_channels, "1_emg.npy", r"shape \(1000, 7\), expected \(time, 8\)"),
        (_corrupt_truncate, "1_emg.npy", "truncated"),
        (_corrupt_json, "1_info.json", "bad info.json"),
        (_corrupt_dtype, "1_emg.npy", "dtype int16"),
        (_corrupt_missing_npy, "1_emg.npy", "not a readable"),
    ],
)
def test_malformed_utterance_raises_naming_the_file_or_is_counted(tmp_path, corrupt, file_name, problem):
    write_gaddy_fixture(tmp_path)
    folder = tmp_path / "emg_data" / "voiced_parallel_data" / "5-4"
    corrupt(folder)
    with pytest.raises(EMGDataError, match=f"5-4/{file_name}.*{problem}"):
        emg_loaders.load_gaddy(tmp_path)
    skipped = []
    utterances = emg_loaders.load_gaddy(tmp_path, skipped=skipped)
    assert len(utterances) == 4 and len(skipped) == 1 and "5-4/1_emg.npy" in skipped[0][0]


def test_bad_testset_and_missing_folder_are_named(tmp_path):
    write_gaddy_fixture(tmp_path)
    (tmp_path / "testset_largedev.json").write_text(json.dumps({"dev": []}))
    with pytest.raises(EMGDataError, match="testset_largedev.json"):
        emg_loaders.load_gaddy(tmp_path)
    with pytest.raises(EMGDataError, match="nonparallel_data"):
        emg_loaders.load_gaddy(tmp_path, conditions=("nonparallel",), testset=_good_testset(tmp_path))
    with pytest.raises(EMGDataError, match="no .* folder"):
        emg_loaders.load_gaddy(tmp_path / "nowhere")


def _good_testset(root: Path) -> Path:
    path = root / "good_testset.json"
    path.write_text(json.dumps({"dev": [], "test": []}))
    return path


# ------------------------------------------------------------------------------- emg2qwerty


def test_load_emg2qwerty_session_fields_and_key_mapping(tmp_path):
    (session,) = emg_loaders.load_emg2qwerty(write_qwerty_fixture(tmp_path))
    assert session.emg.shape == (8000, 32) and session.emg.dtype == np.float32
    assert np.allclose(session.emg[:, 16:].mean(), 5, atol=0.1)  # right band second
    assert session.user == "user0" and session.session_name == "sess_a"
    # keys in time order: h i space shift T x backspace o ! o k
    assert session.text_between(T0, T0 + 4) == "hi took"  # shift and "!" dropped, backspace deletes x
    assert session.text_between(T0, T0 + 4, backspace=False) == "hi txook"
    assert session.text_between(T0 + 0.3, T0 + 1.0) == "i "  # start inclusive, end exclusive
    assert session.dropped_keys == {"Key.shift": 1, "!": 1}
    assert session.sample_at(T0 + 1.0) == 2000


@pytest.mark.parametrize(
    "key, character",
    [
        ("a", "a"),
        ("Q", "q"),
        ("'", "'"),
        ("Key.space", " "),
        ("Key.enter", None),
        ("Key.backspace", None),
        ("7", None),
        (",", None),
    ],
)
def test_key_to_character(key, character):
    assert emg_loaders.key_to_character(key) == character


def test_prompt_pairs_cut_the_emg_of_each_prompt(tmp_path):
    (session,) = emg_loaders.load_emg2qwerty(write_qwerty_fixture(tmp_path))
    pairs = emg_loaders.prompt_pairs(session)
    assert [text for _, text in pairs] == [
        "hi to",
        "ok",
    ]  # h i space T x (deleted) o | ! o k  # the payload-less prompt is left out
    assert pairs[0][0].shape == (int(1.9 * 2000), 32) and pairs[1][0].shape == (int(1.5 * 2000), 32)


def test_bad_hdf5_files_are_named(tmp_path):
    import h5py

    root = write_qwerty_fixture(tmp_path)
    (root / "sess_a.hdf5").write_text("not hdf5")
    with pytest.raises(EMGDataError, match="sess_a.hdf5: not a readable HDF5"):
        emg_loaders.load_emg2qwerty(root)
    write_qwerty_session(root / "sess_a.hdf5", QWERTY_KEYS, condition="off_keyboard")
    with pytest.raises(EMGDataError, match="sess_a.hdf5: condition 'off_keyboard'"):
        emg_loaders.load_emg2qwerty(root)
    with h5py.File(root / "sess_b.hdf5", "w") as handle:
        handle.create_group("emg2qwerty").create_dataset("timeseries", data=np.zeros(10, [("emg_left", "<f4", (16,))]))
    with pytest.raises(EMGDataError, match="sess_b.hdf5: timeseries has no field 'emg_right'"):
        emg_loaders.load_emg2qwerty_session(root / "sess_b.hdf5")
    skipped = []
    assert emg_loaders.load_emg2qwerty(root, sessions=["sess_a", "missing"], skipped=skipped) == []
    assert [Path(path).name for path, _ in skipped] == ["sess_a.hdf5", "missing.hdf5"]


def test_metadata_needs_the_dataset_columns(tmp_path):
    root = write_qwerty_fixture(tmp_path)
    assert emg_loaders.read_qwerty_metadata(root)[0]["session"] == "sess_a"
    (root / "metadata.csv").write_text("user,session\nuser0,sess_a\n")
    with pytest.raises(EMGDataError, match="metadata.csv: missing columns"):
        emg_loaders.read_qwerty_metadata(root)


# ------------------------------------------------------------------ emg: descriptors and features


def test_feature_loader_reads_both_datasets(tmp_path):
    write_gaddy_fixture(tmp_path / "gaddy")
    utterance = emg_loaders.load_gaddy(tmp_path / "gaddy")[0]
    loader = emg.EMGFeatureLoader()
    features = loader(str(utterance.emg_path))
    assert features.shape == (EMGFeatureConfig().num_frames(1000), 112)
    assert loader(str(utterance.emg_path)) is features  # featurized once
    qwerty = emg.EMGFeatureLoader(EMGFeatureConfig.emg2qwerty())
    window = qwerty(f"{write_qwerty_fixture(tmp_path / 'qwerty') / 'sess_a.hdf5'}#2000:2600")
    assert window.shape == (1 + (600 - 64) // 16, 1056)


def test_generator_counts_a_malformed_recording_as_bad_input(tmp_path):
    write_gaddy_fixture(tmp_path)
    _corrupt_channels(tmp_path / "emg_data" / "voiced_parallel_data" / "5-4")
    records = [
        {"key": str(path), "duration": 1.0, "text": "a text"}
        for path in sorted((tmp_path / "emg_data").glob("*/*/[01]_emg.npy"))
    ]
    descriptor = write_descriptors(records, tmp_path / "train.json")
    generator = AudioGenerator(
        descriptor, features=EMGFeatureConfig(), feature_loader=emg.EMGFeatureLoader(), minibatch_size=2, verbose=False
    )
    assert len(generator.texts) == len(records) - 1
    assert generator.skipped.counts == {"bad input": 1}
    assert "(1000, 7)" in generator.skipped.items[0][2]


def test_gaddy_descriptor_set_scores_the_same_sentences_in_every_condition(tmp_path):
    paths = emg.gaddy_descriptor_set(write_gaddy_fixture(tmp_path), tmp_path / "descriptors")

    def lines(name):
        return [json.loads(line) for line in paths[name].read_text().splitlines()]

    assert [r["text"] for r in lines("train")] == ["the first one"]
    assert sorted((r["text"], r["silent"]) for r in lines("dev")) == [("then a second", False), ("then a second", True)]
    for name in ("test_voiced_open", "test_silent_open", "audio_test_open"):
        assert [r["sentence_index"] for r in lines(name)] == [2]
    assert lines("audio_test_open")[0]["key"].endswith("0_audio_clean.flac")
    assert lines("test_voiced_closed") == []  # the fixture's book is not the closed vocabulary
    assert all(Path(r["key"]).is_absolute() for r in lines("train"))


@pytest.mark.parametrize(
    "text, label",
    [
        ("the first one", "the first one"),
        ("Mars—the Red Planet's", "marsthe red planet's"),  # an em dash is not a hyphen: dropped
        ("twenty-one, said  Ogilvy.", "twenty one said ogilvy"),
        ("Café  Nöel", "cafe noel"),
    ],
)
def test_book_text_is_normalized_to_the_alphabet(text, label):
    assert emg.normalize_transcript(text) == label


def test_qwerty_windows_hold_the_keys_pressed_inside(tmp_path):
    sessions = emg_loaders.load_emg2qwerty(write_qwerty_fixture(tmp_path))
    result = emg.qwerty_window_descriptors(sessions, tmp_path / "windows.json", window_ms=500)
    records = [json.loads(line) for line in result["path"].read_text().splitlines()]
    # 8 windows of 0.5 s; keys at 0.2 0.4 | 0.7 | (0.9 shift) 1.0 1.2 | 1.5 (bksp) 1.7 | 2.6 2.8 | 3.1
    assert [r["text"] for r in records] == ["hi", "tx", "o", "o", "k"]  # a lone space cannot be scored
    assert result["windows"] == 5 and result["empty_windows"] == 3
    assert records[1]["key"].endswith("#2000:3000") and records[0]["duration"] == 0.5
