"""Exported models (ctclab.export) against the project's own model, loaded in a process without the project.

A small ``cnn_birnn_model`` (the final model's architecture, two convolutions so that the padding
is re-zeroed inside, random weights) is saved as a run the way train_model saves one and exported
with ``python -m ctclab export``. tests/export_load.py then loads the SavedModel with
``tf.saved_model.load`` and the ``.keras`` file with ``keras.models.load_model`` in a fresh
interpreter that refuses to import ``ctclab``, and runs every endpoint on a padded batch of clips
of different lengths. The reference is the project's path, one clip at a time:
``Run.load_model()``, ``featurize``, the run's normalizer, the model, trimmed to
``model.output_length``.

Tolerances: features 1e-5 in normalized units (both compute in float64 and round to float32;
measured 0: bit-identical here; another FFT library may move a float32 rounding);
probabilities 1e-5 absolute (measured 2.4e-7, Keras' GRU against the project's compiled GRU; without
the padding masks the difference is 0.23).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import ROOT

from ctclab.__main__ import main as package_main
from ctclab.alphabet import ENGLISH
from ctclab.data.features import FeatureConfig, Normalizer, featurize
from ctclab.export import stock_model
from ctclab.models.attention import transformer_ctc_model
from ctclab.models.deep import cnn_birnn_model, deep_speech2_model
from ctclab.runs import Run

RATE = 16000
CLIP_SAMPLES = (5923, 16000, 9777, 12480)  # different lengths, none a whole number of hops
FEATURE_TOLERANCE = 1e-5
PROBABILITY_TOLERANCE = 1e-5


def clip(samples: int, seed: int) -> np.ndarray:
    """A chirp plus noise: (samples,) float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    time = np.arange(samples) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (200 + 300 * seed) * time * (1 + time))
    return (tone + 0.02 * rng.normal(size=samples)).astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [clip(samples, seed) for seed, samples in enumerate(CLIP_SAMPLES)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, clips) -> Path:
    """A run folder as train_model writes it: a small final-model architecture with random weights."""
    keras.utils.set_random_seed(17)
    run = Run(tmp_path_factory.mktemp("results") / "final")
    run.start(resume=False)
    model = cnn_birnn_model(
        161, filters=24, kernel_size=11, conv_stride=3, conv_layers=2, units=16, recur_layers=2, dropout_rate=0.1
    )
    rng = np.random.default_rng(17)
    for variable in model.weights:  # batch norm statistics and biases away from their initial 0 / 1
        value = np.asarray(variable)
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, value.shape).astype(np.float32))
        else:
            variable.assign((value + rng.normal(0, 0.3, value.shape)).astype(np.float32))
    features = FeatureConfig()
    run.save_setup(Normalizer.fit([featurize(c, features) for c in clips]), features, ENGLISH, model.builder_config)
    model.save(run.model_path)
    run.save_history({"loss": [100.0], "val_loss": [100.0]})
    return run.folder


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, run_dir) -> Path:
    out = tmp_path_factory.mktemp("export") / "final"
    assert package_main(["export", str(run_dir), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reference(run_dir, clips) -> dict:
    """The project's own features, probabilities and output lengths, one clip at a time."""
    model, normalizer, features, _ = Run(run_dir).load_model()
    normalized = [normalizer(featurize(c, features)) for c in clips]
    probabilities = []
    for feature in normalized:
        outputs = np.asarray(model.predict_on_batch(feature[np.newaxis].astype(np.float32)))[0]
        probabilities.append(outputs[: int(model.output_length(feature.shape[0]))])
    frames = np.array([feature.shape[0] for feature in normalized], np.int32)
    return {
        "features": normalized,
        "frames": frames,
        "probabilities": probabilities,
        "output_lengths": np.asarray(model.output_length(frames)),
        "num_frames": [features.num_frames(c.size) for c in clips],
    }


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, run_dir, export_dir, clips, reference) -> dict:
    """Every endpoint's outputs on the padded batch, from tests/export_load.py in a fresh interpreter."""
    folder = tmp_path_factory.mktemp("loaded")
    audio = np.zeros((len(clips), max(CLIP_SAMPLES)), np.float32)
    for row, samples in enumerate(clips):
        audio[row, : samples.size] = samples
    features = np.zeros((len(clips), max(reference["frames"]), 161), np.float32)
    for row, feature in enumerate(reference["features"]):
        features[row, : feature.shape[0]] = feature
    features[0, reference["frames"][0] :] = 7.0  # padding need not be zero: lengths decide
    np.savez(
        folder / "inputs.npz",
        audio=audio,
        samples=np.array(CLIP_SAMPLES, np.int32),
        features=features,
        frames=reference["frames"],
    )
    completed = subprocess.run(
        [sys.executable, ROOT / "tests" / "export_load.py", export_dir, folder / "inputs.npz", folder / "out.npz"]
        + [Run(run_dir).model_path],
        cwd=folder,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return dict(np.load(folder / "out.npz"), summary=json.loads(completed.stdout.strip().splitlines()[-1]))


def max_difference(batch: np.ndarray, lengths: np.ndarray, references: list[np.ndarray]) -> float:
    """Largest |difference| between each row's first ``lengths`` frames and its reference."""
    return max(float(np.abs(row[:length] - ref).max()) for row, length, ref in zip(batch, lengths, references))


def test_the_artifacts_load_without_the_project(loaded):
    assert loaded["summary"]["project_modules"] == []
    assert loaded["summary"]["layer_modules"] == ["keras"]  # only stock layers in the .keras file
    assert "ctc_lab>" in loaded["summary"]["run_model_error"]  # the run's own model.keras does not load there


def test_saved_model_featurizes_audio_like_the_project(loaded, reference):
    frame_lengths = loaded["featurize_frame_lengths"]
    assert frame_lengths.tolist() == reference["num_frames"] == reference["frames"].tolist()
    assert max_difference(loaded["featurize_features"], frame_lengths, reference["features"]) < FEATURE_TOLERANCE
    for row, length in zip(loaded["featurize_features"], frame_lengths):
        assert not row[length:].any()  # padding frames are zeros, as the project pads


def test_saved_model_maps_audio_to_the_projects_probabilities(loaded, reference):
    lengths = loaded["serve_output_lengths"]
    assert lengths.tolist() == reference["output_lengths"].tolist()
    assert max_difference(loaded["serve_probabilities"], lengths, reference["probabilities"]) < PROBABILITY_TOLERANCE
    np.testing.assert_array_equal(loaded["default_probabilities"], loaded["serve_probabilities"])


@pytest.mark.parametrize("prefix", ["keras", "serve_features"])
def test_features_in_models_give_the_projects_probabilities(loaded, reference, prefix):
    lengths = loaded[f"{prefix}_output_lengths"]
    assert lengths.tolist() == reference["output_lengths"].tolist()
    difference = max_difference(loaded[f"{prefix}_probabilities"], lengths, reference["probabilities"])
    assert difference < PROBABILITY_TOLERANCE


def test_export_json_describes_the_artifacts(export_dir, run_dir):
    metadata = json.loads((export_dir / "export.json").read_text())
    alphabet = metadata["alphabet"]
    assert "".join(alphabet["characters"]) == ENGLISH.characters
    assert (alphabet["blank_index"], alphabet["output_dim"]) == (28, 29)
    features = metadata["features"]
    assert (features["sample_rate"], features["feature_dim"]) == (16000, 161)
    assert (features["window_samples"], features["hop_samples"]) == (320, 160)
    normalizer = Run(run_dir).normalizer()
    np.testing.assert_array_equal(np.array(metadata["normalization"]["std"], np.float32), normalizer.std)
    assert metadata["saved_model_endpoints"] == ["serve", "featurize", "serve_features"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: cnn_birnn_model(161, filters=8, conv_layers=2, pool_size=2, units=6, rnn_type="lstm"),
        lambda: cnn_birnn_model(161, filters=8, conv_border_mode="valid", units=6, rnn_type="simple_rnn"),
        lambda: deep_speech2_model(161, conv_filters=(4, 4), units=6, recur_layers=1, fc_units=(8,)),
    ],
    ids=["lstm-pooled", "simple-rnn-valid", "deep-speech2-2d"],
)
def test_stock_models_of_other_architectures_match(build):
    """In process: the stock rebuild of LSTM, SimpleRNN, pooling, "valid" and 2-D convolutions gives the same outputs."""
    keras.utils.set_random_seed(3)
    model = build()
    frames = np.array([53, 31], np.int32)
    features = np.random.default_rng(3).normal(size=(2, 53, 161)).astype(np.float32)
    features[1, 31:] = 0.0
    expected = np.asarray(model.predict_on_batch(features))
    features[1, 31:] = -3.0  # the stock model's lengths input decides, not the padding's values
    outputs = stock_model(model)({"features": features, "lengths": frames})
    lengths = np.asarray(model.output_length(frames))
    np.testing.assert_array_equal(np.asarray(outputs["output_lengths"]), lengths)
    references = [row[:length] for row, length in zip(expected, lengths)]
    assert max_difference(np.asarray(outputs["probabilities"]), lengths, references) < PROBABILITY_TOLERANCE


def test_models_with_project_only_layers_are_refused():
    model = transformer_ctc_model(161, model_dim=16, num_heads=2, num_blocks=1, feed_forward_dim=32)
    with pytest.raises(ValueError, match="no stock Keras equivalent"):
        stock_model(model)


def test_export_of_a_folder_that_is_not_a_trained_run_says_why(tmp_path, capsys):
    assert package_main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no builder.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
