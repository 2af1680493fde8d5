"""EMG through the unchanged training path: train_model / evaluate_model with the EMG feature
loader, reloading a run (its feature class from the run), the typing windows, and the seed-000 results table."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from test_emg_loaders import write_gaddy_fixture, write_qwerty_fixture  # fixtures shared with the loader tests

from ctclab.data.descriptors import write_descriptors
from ctclab.decoding import lm
from ctclab.decoding.beam import prefix_beam_search
from ctclab.emg import loaders as emg_loaders
from ctclab.emg import training as emg
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.models.registry import build
from ctclab.runs import load_trained_model
from ctclab.training.evaluation import evaluate_model
from ctclab.training.trainer import train_model


def tiny_emg_model(input_dim: int):
    return build(
        "cnn_birnn_model",
        input_dim=input_dim,
        filters=32,
        kernel_size=5,
        conv_stride=2,
        units=32,
        recur_layers=1,
        dropout_rate=0.0,
    )


@pytest.mark.slow
def test_emg_run_trains_reloads_and_evaluates(tmp_path):
    keras.utils.set_random_seed(0)  # the initial weights: the learning check below must not depend on luck
    write_gaddy_fixture(tmp_path / "gaddy")
    paths = emg.gaddy_descriptor_set(tmp_path / "gaddy", tmp_path / "descriptors")
    records = [json.loads(line) for name in ("train", "dev") for line in paths[name].read_text().splitlines()]
    train_json = write_descriptors(records, tmp_path / "three.json")  # 3 utterances: learn them by heart
    repeated_json = write_descriptors(records * 8, tmp_path / "repeated.json")  # 8 steps per epoch
    loader = emg.EMGFeatureLoader()
    model = tiny_emg_model(112)
    history = train_model(
        model,
        "h.pickle",
        "emg_tiny.keras",
        repeated_json,
        train_json,
        epochs=6,
        minibatch_size=3,
        features=EMGFeatureConfig(),
        feature_loader=loader,
        results_dir=tmp_path / "runs",
        verbose=0,
        optimizer=keras.optimizers.Adam(3e-3),
    )
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    run = tmp_path / "runs" / "emg_tiny"
    reloaded, normalizer, config, alphabet = load_trained_model(run)  # the run knows its feature class
    assert type(config) is EMGFeatureConfig and config == EMGFeatureConfig() and alphabet.name == "english"
    assert normalizer.mean.shape == (112,)
    features = normalizer(loader(json.loads(train_json.read_text().splitlines()[0])["key"]))[None]
    saved = keras.saving.load_model(run / "model.keras")  # Keras' own loader, not our rebuild + load_weights
    np.testing.assert_allclose(reloaded(features), saved(features), rtol=1e-6)
    result = evaluate_model(run, train_json, feature_loader=loader)
    assert result["utterances"] == 3 and result["cer"] < 0.5  # random EMG, but memorized
    row = emg.score_run("EMG", "voiced", "open", run, train_json, feature_loader=loader)
    assert row["scores"]["greedy"][1] == pytest.approx(result["cer"])  # the same decoding, another path


@pytest.mark.slow
def test_typing_windows_train_and_evaluate(tmp_path):
    sessions = emg_loaders.load_emg2qwerty(write_qwerty_fixture(tmp_path / "qwerty"))
    windows = emg.qwerty_window_descriptors(sessions, tmp_path / "windows.json", window_ms=300)
    model = build(
        "tds_mhsa_model",
        input_dim=EMGFeatureConfig.emg2qwerty().feature_dim,
        num_features=48,
        block_channels=(8,),
        attention_dim=16,
        num_heads=2,
    )
    history = emg.train_windowed(
        model, windows["path"], windows["path"], "typing", tmp_path / "runs", epochs=1, minibatch_size=4, verbose=0
    )
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"]).all()
    result = emg.evaluate_windowed(tmp_path / "runs" / "typing", windows["path"])
    assert result["utterances"] == windows["windows"] and 0.0 <= result["cer"]
    assert load_trained_model(tmp_path / "runs" / "typing")[2] == EMGFeatureConfig.emg2qwerty()


def one_hot_posteriors(text: str, blank_every: int = 2) -> np.ndarray:
    """Confident (T, 29) posteriors spelling ``text``: each character then a blank."""
    from ctclab.alphabet import ENGLISH

    rows = []
    for index in ENGLISH.text_to_int_sequence(text):
        rows += [index] + [ENGLISH.blank_index] * (blank_every - 1)
    return np.eye(ENGLISH.output_dim)[rows] * 0.9 + 0.1 / ENGLISH.output_dim


def test_decode_scores_and_the_seed_000_table():
    references = ["quarter past seven", "the ace of spades"]
    posteriors = [one_hot_posteriors("quarter past sevem"), one_hot_posteriors("the ace of spades")]
    model = lm.NGramLM.train(references * 3 + ["seven of spades"], order=2)
    scores = emg.decode_scores(posteriors, references, model)
    assert scores["greedy"] == (pytest.approx(1 / 7), pytest.approx(1 / 35))  # one word, one character wrong
    assert scores["hypotheses"]["lm"] == [prefix_beam_search(p, lm=model, beam_width=16) for p in posteriors]
    table = emg.results_table(
        [
            {
                "model": "audio",
                "condition": "voiced",
                "vocabulary": "closed",
                "scores": scores,
                "references": references,
            },
            {
                "model": "EMG",
                "condition": "silent",
                "vocabulary": "open",
                "scores": emg.decode_scores(posteriors, references),
                "references": references,
            },
        ]
    )
    parts = [f"{rate} {kind}" for rate in ("WER", "CER") for kind in ("substitutions", "deletions", "insertions")]
    assert list(table.columns) == ["utterances", "WER greedy", "CER greedy", "WER LM", "CER LM", *parts]
    audio = table.loc[("audio", "voiced", "closed")]  # "sevem" for "seven": one substitution, nothing else
    assert (audio["WER substitutions"], audio["CER substitutions"]) == (pytest.approx(1 / 7), pytest.approx(1 / 35))
    assert audio[["WER deletions", "WER insertions", "CER deletions", "CER insertions"]].tolist() == [0, 0, 0, 0]
    assert table.loc[("audio", "voiced", "closed"), "CER greedy"] == pytest.approx(1 / 35)
    assert np.isnan(table.loc[("EMG", "silent", "open"), "WER LM"])


def test_stream_descriptors_put_each_recording_in_one_stream_of_its_session(tmp_path):
    from ctclab.data.descriptors import read_descriptors, write_descriptors
    from ctclab.emg.training import STREAM_KEY_SEPARATOR, EMGFeatureLoader, stream_descriptors

    rng = np.random.default_rng(0)
    records = []
    for index in range(23):
        path = tmp_path / f"{index}_emg.npy"
        samples = int(rng.integers(800, 3000))
        np.save(path, rng.normal(size=(samples, 8)) * 20)
        session, silent = f"s{index % 3}", bool(index % 2)
        records.append(
            {"key": str(path), "duration": samples / 1000, "text": f"w{index}", "session": session, "silent": silent}
        )
    source = write_descriptors(records, tmp_path / "train.json")
    streams = read_descriptors(stream_descriptors(source, tmp_path / "streams.json", longest=3, max_duration=6.0))
    parts = [stream["key"].split(STREAM_KEY_SEPARATOR) for stream in streams]
    assert sorted(p for part in parts for p in part) == sorted(r["key"] for r in records)  # each exactly once
    assert any(len(part) > 1 for part in parts) and max(len(part) for part in parts) <= 3
    by_key = {r["key"]: r for r in records}
    for stream, part in zip(streams, parts):
        members = [by_key[key] for key in part]
        assert {(m["session"], m["silent"]) for m in members} == {(stream["session"], stream["silent"])}
        assert stream["text"] == " ".join(m["text"] for m in members)
        assert stream["duration"] == pytest.approx(sum(m["duration"] for m in members), abs=1e-3)
        assert len(part) == 1 or stream["duration"] <= 6.0
    joined = next(stream["key"] for stream, part in zip(streams, parts) if len(part) > 1)
    loader = EMGFeatureLoader()
    expected = np.concatenate([np.load(key) for key in joined.split(STREAM_KEY_SEPARATOR)])
    np.testing.assert_array_equal(loader.raw(joined), expected)
