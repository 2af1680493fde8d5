"""Notebook 05's typing experiments end to end on the smoke typing corpus: windows, training, the table,
personalization, scores the report reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctclab.data.descriptors import read_descriptors
from ctclab.emg import loaders as emg_loaders
from ctclab.emg import typing_corpus
from ctclab.emg import typing_experiments as typing
from ctclab.profiles import get_profile
from ctclab.runs import Run

TABLE_COLUMNS = [
    "condition",
    "parameters",
    "windows",
    "CER greedy",
    "CER char LM",
    "CER substitutions",
    "CER deletions",
    "CER insertions",
    "WER substitutions",
    "WER deletions",
    "WER insertions",
]


def small_model():
    from ctclab.models.typing_models import tds_conv_ctc_model

    return tds_conv_ctc_model(1056, mlp_features=(16,), block_channels=(8, 8), padded=True, kernel_size=5)


def levenshtein(reference: str, hypothesis: str) -> int:
    """Textbook edit distance (one row at a time), independent of ctclab.decoding.metrics."""
    row = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


def squeezed(texts: list[str]) -> list[str]:
    """CER's units: whitespace collapsed and stripped (a window's text may start or end with a space)."""
    return [" ".join(text.split()) for text in texts]


def start_sample(record: dict) -> int:
    return int(record["key"].rpartition("#")[2].split(":")[0])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> dict:
    """The smoke corpus, its windows, a generic run (1 epoch), its fine-tuning, both scored with a char LM."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTCLAB_HOME", str(home))
        profile = get_profile("smoke")
        root, manifest = typing.build_corpus(profile)
        descriptors = typing.window_descriptor_set(root, root / "windows")
        typing.train_typing_runs({"generic": small_model()}, descriptors, profile, epochs=1, verbose=0)
        generic = Path(profile.results_for(typing.FAMILY)) / "generic"
        handed_over = []
        real_train = typing.train_windowed

        def recording_train(model, *args, **kwargs):
            handed_over.append([weight.copy() for weight in model.get_weights()])
            return real_train(model, *args, **kwargs)

        patch.setattr(typing, "train_windowed", recording_train)
        typing.personalize(generic, descriptors, "personalized", profile, epochs=1, verbose=0)
        personalized = Path(profile.results_for(typing.FAMILY)) / "personalized"
        char_lm = typing.train_char_lm(root, order=3)
        rows = [
            typing.score_typing_run(name, name, run, descriptors["test"], char_lm)
            for name, run in (("generic", generic), ("personalized", personalized))
        ]
        typing.save_typing_scores(rows)
        return dict(
            profile=profile,
            root=root,
            manifest=manifest,
            descriptors=descriptors,
            generic=generic,
            personalized=personalized,
            handed_over=handed_over,
            rows=rows,
            results_dir=Path(profile.results_dir),  # CTCLAB_HOME is only set inside this fixture
        )


# ---------------------------------------------------------------------------------- windows


def test_test_and_validation_windows_are_300_ms_and_training_windows_as_asked(experiment):
    descriptors = experiment["descriptors"]
    expected = {"val": 0.3, "test": 0.3, "finetune": 0.3, "finetune_val": 0.3}
    expected |= {f"train_{window:g}ms": window / 1000 for window in typing.TRAIN_WINDOWS_MS}
    assert set(descriptors) == set(expected)
    for name, seconds in expected.items():
        records = read_descriptors(descriptors[name])
        assert records, name
        assert {record["duration"] for record in records} == {seconds}, name
        spans = {(lambda s: int(s[1]) - int(s[0]))(record["key"].rpartition("#")[2].split(":")) for record in records}
        assert spans == {round(seconds * 2000)}, name  # samples at 2 kHz, as the duration says
        assert all(record["text"].strip() for record in records), name


def test_each_split_holds_only_its_own_sessions(experiment):
    splits = typing_corpus.session_splits(experiment["root"])
    descriptors = experiment["descriptors"]
    for name, split in [("val", "val"), ("test", "test"), ("finetune", "finetune"), ("finetune_val", "finetune")]:
        assert {record["session"] for record in read_descriptors(descriptors[name])} == set(splits[split]), name
    for window in typing.TRAIN_WINDOWS_MS:
        sessions = {record["session"] for record in read_descriptors(descriptors[f"train_{window:g}ms"])}
        assert sessions == set(splits["train"])


def test_the_finetuning_session_is_split_by_time_into_two_disjoint_parts(experiment):
    descriptors = experiment["descriptors"]
    first, rest = (read_descriptors(descriptors[name]) for name in ("finetune", "finetune_val"))
    assert max(map(start_sample, first)) < min(map(start_sample, rest))
    whole = read_descriptors(experiment["root"] / "windows" / "finetune_all.json")
    assert [record["key"] for record in whole] == [record["key"] for record in first + rest]


def test_overlapping_training_windows_hop_half_a_window(experiment, tmp_path):
    paths = typing.window_descriptor_set(experiment["root"], tmp_path, train_windows_ms=(600.0,), train_overlap=0.5)
    starts = sorted({start_sample(record) for record in read_descriptors(paths["train_600ms"])})
    assert set(np.diff(starts)) <= {600 * k for k in range(1, 200)}  # hops of 300 ms (600 samples), some empty
    assert 600 in set(np.diff(starts))
    with pytest.raises(ValueError, match="train_overlap"):
        typing.window_descriptor_set(experiment["root"], tmp_path, train_overlap=1.0)


@pytest.mark.parametrize(("window_ms", "batch"), [(300.0, 16), (600.0, 8), (1200.0, 4)])
def test_a_batch_holds_the_same_seconds_of_emg_whatever_the_window(experiment, monkeypatch, window_ms, batch):
    calls = []
    monkeypatch.setattr(typing, "train_windowed", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    typing.train_typing_runs({"x": small_model()}, experiment["descriptors"], experiment["profile"], 2, window_ms)
    ((args, kwargs),) = calls
    assert args[1:3] == (experiment["descriptors"][f"train_{window_ms:g}ms"], experiment["descriptors"]["val"])
    assert args[5:7] == (2, batch) and batch * window_ms / 1000 == typing.BATCH_SECONDS


def test_an_unknown_training_window_is_named(experiment):
    with pytest.raises(ValueError, match="no training windows of 450 ms"):
        typing.train_typing_runs({"x": small_model()}, experiment["descriptors"], experiment["profile"], 1, 450.0)


# ---------------------------------------------------------------------------------- the table


def test_table_columns_and_the_error_parts_add_up_to_the_cer(experiment):
    table = typing.typing_table(experiment["rows"])
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table.index) == ["generic", "personalized"]
    for row, (_, line) in zip(experiment["rows"], table.iterrows()):
        references, greedy = squeezed(row["references"]), squeezed(row["scores"]["hypotheses"]["greedy"])
        independent = sum(map(levenshtein, references, greedy)) / sum(map(len, references))
        assert line["CER greedy"] == pytest.approx(independent)
        parts = line["CER substitutions"] + line["CER deletions"] + line["CER insertions"]
        assert parts == pytest.approx(line["CER greedy"])
        beams = squeezed(row["scores"]["hypotheses"]["lm"])
        assert line["CER char LM"] == pytest.approx(
            sum(map(levenshtein, references, beams)) / sum(map(len, references))
        )
        assert line["parameters"] == small_model().count_params()


# ---------------------------------------------------------------------------------- personalization


def test_the_personalized_run_starts_from_the_generic_weights_and_moves_away(experiment):
    generic_weights = Run(experiment["generic"]).load_model()[0].get_weights()
    (started_from,) = experiment["handed_over"]
    assert len(started_from) == len(generic_weights)
    for before, generic in zip(started_from, generic_weights):
        np.testing.assert_array_equal(before, generic)
    tuned = Run(experiment["personalized"]).load_model()[0].get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(tuned, generic_weights))
    assert Run(experiment["personalized"]).builder() == Run(experiment["generic"]).builder()


def test_both_runs_are_scored_on_exactly_the_held_out_users_test_sessions(experiment):
    root, descriptors = experiment["root"], experiment["descriptors"]
    test_sessions = typing_corpus.session_splits(root)["test"]
    users = {session.user for session in emg_loaders.load_emg2qwerty(root, test_sessions)}
    assert users == {experiment["manifest"]["held_out_user"]}
    windows = read_descriptors(descriptors["test"])
    for row in experiment["rows"]:
        assert row["desc_file"] == str(descriptors["test"])
        assert row["scores"]["utterances"] == len(windows)
        assert row["references"] == [record["text"] for record in windows]


def test_scores_reach_the_report_under_the_typing_family(experiment):
    from ctclab.report.page import FAMILY_TITLES, results_frame

    for run in (experiment["generic"], experiment["personalized"]):
        scores = Run(run).scores()
        assert {"cer", "cer_lm", "substitution_rate", "deletion_rate", "insertion_rate"} <= set(scores)
        parts = scores["substitution_rate"] + scores["deletion_rate"] + scores["insertion_rate"]
        assert parts == pytest.approx(scores["cer"])
    assert "typing" in FAMILY_TITLES
    frame = results_frame(experiment["results_dir"])
    assert set(frame[frame.family == "typing"].model.str.split(" ").str[0]) == {"generic", "personalized"}


# ---------------------------------------------------------------------------------- seen and heard


def test_the_keystroke_plot_and_the_sonification(experiment):
    import matplotlib

    matplotlib.use("Agg")
    session = emg_loaders.load_emg2qwerty(experiment["root"])[0]
    figure = typing.plot_keystrokes(session, 1.0, 2.0)
    pressed = [s for s in session.keystrokes if 1.0 <= s.start - session.time[0] < 3.0]
    assert pressed and all(len(axis.lines) == 4 + len(pressed) for axis in figure.axes)  # 4 traces + key lines
    sound, rate = typing.sonify(session, 3, 1.0, 2.0)
    assert rate == 8000 and sound.shape == (16000,) and np.abs(sound).max() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="outside the session"):
        typing.plot_keystrokes(session, 1e6)
