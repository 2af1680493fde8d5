"""The run folder: what a run stores, reading it back as the right types, finding and picking runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ctclab.alphabet import ENGLISH, ENGLISH_DIGITS
from ctclab.data.features import FeatureConfig, Normalizer
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.runs import (
    Run,
    best_run,
    best_scored_run,
    find_runs,
    load_histories,
    load_history,
    load_streaming_summary,
    save_streaming_summary,
)


def fake_run(parent, name, val_loss=None, cer=None, trained=True, features=None, mtime=None) -> Run:
    """A run folder written through Run's own writers (no model: the files are what matters here)."""
    run = Run.named(parent, f"{name}.keras")
    run.start(resume=False)
    run.save_setup(
        Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32)),
        features or FeatureConfig(),
        ENGLISH,
        {"builder": "rnn_model", "arguments": {"input_dim": 161}} if trained else None,
    )
    run.save_history({"loss": [9.0, 5.0], "val_loss": val_loss or [8.0, 6.0], "epoch_seconds": [1.0, 1.0]})
    if trained:
        run.model_path.write_bytes(b"weights")
        if mtime is not None:
            os.utime(run.model_path, (mtime, mtime))
    if cer is not None:
        run.save_scores({"cer": cer, "wer": 2 * cer})
    return run


@pytest.mark.parametrize(
    "features",
    [FeatureConfig(), FeatureConfig(kind="mfcc", mfcc_dim=13), EMGFeatureConfig(), EMGFeatureConfig.emg2qwerty()],
)
def test_features_come_back_as_their_own_class(tmp_path, features):
    run = fake_run(tmp_path, "r", features=features)
    back = run.features()
    assert type(back) is type(features) and back == features
    assert json.loads((run.folder / "features.json").read_text())["config"] == type(features).__name__


@pytest.mark.parametrize(
    "kind, expected", [("spectrogram", FeatureConfig), ("mfcc", FeatureConfig), ("gaddy", EMGFeatureConfig)]
)
def test_runs_written_before_the_class_was_stored_are_read_by_kind(tmp_path, kind, expected):
    run = fake_run(tmp_path, "old")
    config = FeatureConfig(kind=kind) if expected is FeatureConfig else EMGFeatureConfig(kind=kind)
    fields = json.loads(json.dumps(config.__dict__))
    (run.folder / "features.json").write_text(json.dumps(fields))  # no "config" key, as older runs wrote it
    assert type(run.features()) is expected and run.features() == config


def test_setup_round_trip(tmp_path):
    normalizer = Normalizer(np.array([1.0, 2.0], np.float32), np.array([0.5, 4.0], np.float32))
    run = Run(tmp_path / "r")
    run.start(resume=False)
    run.save_setup(normalizer, FeatureConfig(), ENGLISH_DIGITS, {"builder": "b", "arguments": {"x": 1}})
    assert run.alphabet() is ENGLISH_DIGITS
    np.testing.assert_array_equal(run.normalizer().mean, [1.0, 2.0])
    np.testing.assert_array_equal(run.normalizer().std, [0.5, 4.0])
    assert run.builder() == {"builder": "b", "arguments": {"x": 1}}
    assert not run.is_trained  # builder.json but no model.keras yet


def test_unknown_feature_class_is_refused(tmp_path):
    run = Run(tmp_path / "r")
    run.start(resume=False)
    with pytest.raises(ValueError, match="unknown feature configuration dict"):
        run.save_setup(Normalizer(np.zeros(1), np.ones(1)), {"kind": "x"}, ENGLISH, None)


def test_start_without_resume_forgets_history_and_backup_only(tmp_path):
    run = fake_run(tmp_path, "r")
    run.backup_dir.mkdir()
    (run.backup_dir / "state").write_text("x")
    run.start(resume=True)
    assert run.history()["loss"] == [9.0, 5.0] and run.backup_dir.is_dir()
    run.start(resume=False)
    assert run.history() == {} and not run.backup_dir.exists() and run.model_path.is_file()


def test_start_never_resumes_another_models_run(tmp_path, capsys):
    """A changed model under an old run's name starts over: the old backup would not load into it."""
    from ctclab.models.course import rnn_model

    built = rnn_model(input_dim=13, units=8).builder_config  # arguments hold a tuple-free dict, as saved
    run = fake_run(tmp_path, "r")
    (run.folder / "builder.json").write_text(json.dumps(dict(built, arguments=dict(built["arguments"], units=16))))
    run.backup_dir.mkdir()
    run.start(resume=True, builder_config=built)
    assert run.history() == {} and not run.backup_dir.exists()
    assert "not this model" in (told := capsys.readouterr().out) and "training starts over" in told
    (run.folder / "builder.json").write_text(json.dumps(built))  # the same model: resumed as before
    run.save_history({"loss": [1.0]})
    run.backup_dir.mkdir()
    run.start(resume=True, builder_config=built)
    assert run.history()["loss"] == [1.0] and run.backup_dir.is_dir()
    # the same builder and arguments, but the builder now makes another network: told by the size
    (run.folder / "builder.json").write_text(json.dumps(dict(built, parameters=1000)))
    run.start(resume=True, builder_config=built, parameters=999)
    assert run.history() == {} and not run.backup_dir.exists()


def test_history_pickle_is_the_course_format(tmp_path):
    import pickle

    run = Run(tmp_path / "r")
    run.start(resume=False)
    run.save_history({"loss": [3.0]}, "model_0.pickle")
    with open(run.folder / "model_0.pickle", "rb") as handle:
        assert pickle.load(handle) == {"loss": [3.0]}
    assert load_history(run.folder) == load_history(run.history_path) == {"loss": [3.0]}


def test_update_scores_keeps_other_fields(tmp_path):
    run = fake_run(tmp_path, "r", cer=0.25)
    run.update_scores(cer_lm=0.1)
    assert run.scores() == {"cer": 0.25, "wer": 0.5, "cer_lm": 0.1}


def test_find_runs_and_histories(tmp_path):
    for name in ("b", "a", "c"):
        fake_run(tmp_path / "course", name, trained=name != "c")
    (tmp_path / "course" / "not_a_run").mkdir()
    assert [run.name for run in find_runs(tmp_path / "course")] == ["a", "b", "c"]
    assert [run.name for run in find_runs(tmp_path / "course", trained=True)] == ["a", "b"]
    assert [(run.family, run.name) for run in find_runs(tmp_path, depth=2)] == [
        ("course", "a"),
        ("course", "b"),
        ("course", "c"),
    ]
    assert set(load_histories(tmp_path / "course")) == {"a", "b", "c"}
    assert set(load_histories(tmp_path / "course", names=["a", "zz"])) == {"a"}


def test_best_run_is_the_lowest_validation_loss_of_trained_runs(tmp_path):
    fake_run(tmp_path, "high", val_loss=[9.0, 7.0])
    fake_run(tmp_path, "low", val_loss=[9.0, 3.0, 4.0])
    fake_run(tmp_path, "untrained", val_loss=[1.0], trained=False)  # lowest loss, but no model saved
    assert best_run(tmp_path).name == "low"
    assert best_run(tmp_path, where=lambda run: run.name != "low").name == "high"
    assert best_run(tmp_path / "nothing") is None


def test_best_scored_run_prefers_lowest_cer_then_most_recent(tmp_path):
    fake_run(tmp_path, "old_unscored", mtime=1_000_000)
    fake_run(tmp_path, "new_unscored", mtime=2_000_000)
    assert best_scored_run(tmp_path).name == "new_unscored"
    fake_run(tmp_path, "scored", cer=0.4)
    fake_run(tmp_path, "better", cer=0.2)
    assert best_scored_run(tmp_path).name == "better"
    emg = fake_run(tmp_path, "emg", cer=0.3, features=EMGFeatureConfig())
    gaddy = best_scored_run(tmp_path, where=lambda run: getattr(run.features(), "kind", None) == "gaddy")
    assert gaddy == emg


def test_streaming_summary_round_trip(tmp_path):
    assert load_streaming_summary(tmp_path) == {}
    save_streaming_summary(tmp_path, {"latency median ms": 136.0, "windows": 12})
    assert load_streaming_summary(tmp_path) == {"latency median ms": 136.0, "windows": 12}
