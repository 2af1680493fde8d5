"""CTC loss against brute force, train_model's files / resume / NaN stop, evaluation, and JAX."""

import json
import pickle

import numpy as np
import pytest
from conftest import run_check_script
from ctc_reference import brute_force_ctc, random_ctc_case

from ctclab.data.generator import AudioGenerator
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.metrics import cer
from ctclab.models.course import cnn_rnn_model, rnn_model
from ctclab.runs import load_histories, load_trained_model
from ctclab.training.evaluation import evaluate_model
from ctclab.training.loss import ctc_batch_loss
from ctclab.training.trainer import train_model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_loss_equals_brute_force(seed):
    labels, logits, label_length, logit_length, blank = random_ctc_case(np.random.default_rng(seed))
    ours = np.asarray(ctc_batch_loss(labels, logits, label_length, logit_length, blank))
    for row in range(len(labels)):
        expected = brute_force_ctc(logits[row, : logit_length[row]], labels[row, : label_length[row]], blank)
        assert ours[row] == pytest.approx(expected, abs=1e-4)


def test_ctc_loss_ignores_padding_frames_and_labels():
    labels, logits, label_length, logit_length, blank = random_ctc_case(np.random.default_rng(5))
    changed_logits, changed_labels = logits.copy(), labels.copy()
    for row in range(len(labels)):
        changed_logits[row, logit_length[row] :] = 50.0  # would dominate if padded frames counted
        changed_labels[row, label_length[row] :] = 2
    np.testing.assert_allclose(
        ctc_batch_loss(labels, logits, label_length, logit_length, blank),
        ctc_batch_loss(changed_labels, changed_logits, label_length, logit_length, blank),
        rtol=1e-6,
    )


def test_ctc_loss_with_course_alphabet_blank():
    """Blank 28 of 29 outputs, as every course model uses it; one frame per character."""
    logits = np.full((1, 2, 29), -10.0, np.float32)
    logits[0, 0, 9], logits[0, 1, 10] = 10.0, 10.0  # "h" then "i", confidently
    loss = float(ctc_batch_loss(np.array([[9, 10]]), logits, np.array([2]), np.array([2]), 28)[0])
    assert loss == pytest.approx(brute_force_ctc(logits[0, :, [9, 10, 28]].T, [0, 1], 2) + 0.0, abs=0.05)
    assert loss < 1e-3


def test_jax_backend_builds_trains_and_matches_brute_force():
    pytest.importorskip("jax")
    result = run_check_script("backend_check.py", "jax")
    assert result["backend"] == "jax"
    assert result["output_shapes_ok"]
    assert result["max_ctc_error"] < 1e-4
    assert result["weights_changed"] and all(np.isfinite(result["train_losses"]))


def small_model():
    return cnn_rnn_model(161, filters=16, kernel_size=5, conv_stride=2, units=16, rnn_type="gru")


def run(tone_corpus, tmp_path, epochs, **kwargs):
    return train_model(
        small_model(),
        "model_s.pickle",
        "model_s.keras",
        train_json=tone_corpus,
        valid_json=tone_corpus,
        minibatch_size=3,
        epochs=epochs,
        verbose=0,
        results_dir=tmp_path / "results",
        **kwargs,
    )


def test_train_model_writes_history_model_and_resumes(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))  # feature cache under tmp
    history = run(tone_corpus, tmp_path, epochs=2)
    run_dir = tmp_path / "results" / "model_s"
    assert len(history["loss"]) == len(history["val_loss"]) == len(history["epoch_seconds"]) == 2
    assert json.loads((run_dir / "history.json").read_text()) == history
    assert pickle.loads((run_dir / "model_s.pickle").read_bytes()) == history
    assert json.loads((run_dir / "builder.json").read_text())["builder"] == "cnn_rnn_model"
    assert (run_dir / "model.keras").is_file() and (run_dir / "normalization.json").is_file()

    resumed = run(tone_corpus, tmp_path, epochs=3)  # a re-run continues at epoch 3
    assert len(resumed["loss"]) == 3 and resumed["loss"][:2] == history["loss"]

    restarted = run(tone_corpus, tmp_path, epochs=1, resume=False)
    assert len(restarted["loss"]) == 1


def test_best_model_and_evaluation_agree_with_independent_decoding(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    run(tone_corpus, tmp_path, epochs=1)
    run_dir = tmp_path / "results" / "model_s"
    result = evaluate_model(run_dir, tone_corpus)
    model, normalizer, features, alphabet = load_trained_model(run_dir)
    generator = AudioGenerator(tone_corpus, features=features, shuffle=False, normalizer=normalizer, verbose=False)
    expected = []
    for index in range(len(generator.texts)):
        feature = generator.normalized_feature(index)[None]  # (1, T, F)
        probabilities = np.asarray(model(feature))[0]
        expected.append(greedy_decode(probabilities, model.output_length(feature.shape[1])))
    assert result["hypotheses"] == expected
    assert result["references"] == generator.texts
    assert result["cer"] == pytest.approx(cer(generator.texts, expected))
    assert result["utterances"] == 6 and result["skipped"] == 0


def test_nan_loss_stops_with_a_clear_message(tone_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    model = small_model()
    kernel = model.get_layer("time_dense").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    history = train_model(
        model,
        "nan.pickle",
        "nan.keras",
        train_json=tone_corpus,
        valid_json=tone_corpus,
        minibatch_size=3,
        epochs=3,
        verbose=0,
        results_dir=tmp_path / "results",
    )
    assert "loss became nan" in history["stopped"] and "lower the learning rate" in history["stopped"]
    assert "training stopped" in capsys.readouterr().out
    assert len(history["loss"]) == 1  # stopped inside the first epoch
    assert not (tmp_path / "results" / "nan" / "model.keras").exists()  # NaN weights are never "best"


def test_train_model_rejects_mismatched_model(tone_corpus, tmp_path):
    with pytest.raises(ValueError, match="input_dim 13 != feature_dim 161"):
        train_model(rnn_model(13), "a.pickle", "a.keras", train_json=tone_corpus, results_dir=tmp_path)
    with pytest.raises(ValueError, match="output_dim 10 != 29"):
        train_model(rnn_model(161, output_dim=10), "a.pickle", "a.keras", train_json=tone_corpus, results_dir=tmp_path)


def test_load_histories(tmp_path):
    for name, losses in [("model_0", [3.0, 2.0]), ("model_1", [5.0])]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps({"loss": losses}))
    assert load_histories(tmp_path) == {"model_0": {"loss": [3.0, 2.0]}, "model_1": {"loss": [5.0]}}
    assert list(load_histories(tmp_path, names=["model_1"])) == ["model_1"]
