"""Transcribing files: loading and resampling against soxr / scipy, the voice activity detector on
signals with known pauses, the decode equal to the model's own decode of the same features, the
default run and LM, the command line, and clear errors for bad files.

Speech is real espeak-ng output of known sentences. The model is a small registered model with its
initial (untrained) weights saved as a run: every check here is about the pipeline, so the
reference is that model's own greedy (or beam + LM) decode of independently computed features.
Only :func:`test_final_model_hears_every_word_in_order` needs a trained model (``make report``'s).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile
import soxr
from conftest import ROOT

from ctclab.__main__ import main as package_main
from ctclab.alphabet import ENGLISH
from ctclab.data.audio import AudioError, load_any_audio
from ctclab.data.features import FeatureConfig, Normalizer, featurize
from ctclab.data.vad import VADConfig, speech_regions, split_at_pauses
from ctclab.decoding import tuning
from ctclab.decoding.beam import prefix_beam_search
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.lm import NGramLM
from ctclab.emg.signal import EMGFeatureConfig
from ctclab.models.course import cnn_rnn_model
from ctclab.profiles import get_profile
from ctclab.runs import Run
from ctclab.transcribe import ModelNotFoundError, Transcriber, final_run, main, transcribe

RATE = 16000
SENTENCES = [  # every word is in the corpus grammar's vocabulary (and so in notebook 03's LM)
    "turn left at the bakery",
    "page four hundred thirty",
    "the queen of hearts is on the table",
    "meet me at quarter to ten",
    "go north for two miles",
    "the seven of clubs beats the jack",
    "may third twenty twenty three",
    "turn right after the museum",
    "dial eight eight six eight",
    "it is quarter past twelve",
    "forty five dollars",
    "go straight past the library",
    "a pair of kings",
    "where is the red shoe",
]
PAUSES = [0.8, 1.2, 2.5, 0.9, 1.6, 3.0, 1.0, 2.2, 0.8, 1.4, 2.8, 1.1, 1.9]  # seconds between sentences
LONG_SECONDS = 60.0


def speak(text: str, path: Path) -> tuple[np.ndarray, int]:
    """espeak-ng's own wav of ``text`` (22050 Hz int16), read as float64."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    samples, rate = soundfile.read(str(path), dtype="float64")
    return samples, rate


def trimmed(samples: np.ndarray, level: float = 1e-3) -> np.ndarray:
    """``samples`` without the leading and trailing silence espeak-ng writes."""
    loud = np.flatnonzero(np.abs(samples) > level)
    return samples[loud[0] : loud[-1] + 1]


def reference_16k(path: Path) -> np.ndarray:
    """The file mixed to mono and resampled to 16 kHz by scipy, written out here (the reference)."""
    samples, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    mono = samples.sum(axis=1) / samples.shape[1]
    divisor = math.gcd(rate, RATE)
    return scipy.signal.resample_poly(mono, RATE // divisor, rate // divisor)


def model_decode(loaded: tuple, samples: np.ndarray) -> np.ndarray:
    """A loaded run's model on ``samples``: features, training normalizer, an eager call, output_length.

    Args:
        loaded: ``Run.load_model()``'s (model, normalizer, features, alphabet).
        samples: (num_samples,) audio at 16 kHz.

    Returns:
        (T', C) probabilities.
    """
    model, normalizer, features, _ = loaded
    feature = featurize(np.asarray(samples, np.float32), features)
    outputs = np.asarray(model(normalizer(feature)[np.newaxis], training=False))[0]  # (T', C)
    return outputs[: int(model.output_length(feature.shape[0]))]


def piece_of(samples: np.ndarray, piece) -> np.ndarray:
    """The samples of a transcript's piece (its start / end seconds back to sample indices)."""
    return samples[round(piece.start * RATE) : round(piece.end * RATE)]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[tuple[np.ndarray, int]]:
    folder = tmp_path_factory.mktemp("espeak")
    return [speak(text, folder / f"{index}.wav") for index, text in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, speech) -> Path:
    """A run folder as train_model writes it, holding a small model with its initial weights."""
    run = Run(tmp_path_factory.mktemp("results") / "tiny")
    run.start(resume=False)
    model = cnn_rnn_model(161, filters=32, kernel_size=11, conv_stride=2, units=32, rnn_type="gru")
    features = FeatureConfig()
    normalizer = Normalizer.fit(
        [featurize(soxr.resample(s, rate, RATE).astype(np.float32), features) for s, rate in speech]
    )
    run.save_setup(normalizer, features, ENGLISH, model.builder_config)
    model.save(run.model_path)
    run.save_history({"loss": [100.0], "val_loss": [100.0]})
    return run.folder


@pytest.fixture(scope="module")
def loaded_run(run_dir) -> tuple:
    """The run's model, normalizer, features and alphabet, loaded once for the reference decodes."""
    return Run(run_dir).load_model()


@pytest.fixture(scope="module")
def greedy_transcriber(run_dir) -> Transcriber:
    return dataclasses.replace(Transcriber.from_run(run_dir, use_lm=False), decoder="greedy")


def write_source(path: Path, samples: np.ndarray, rate: int, channels: int, subtype: str) -> np.ndarray:
    """Write ``samples`` as ``channels`` channels (the second is -0.5 x the first, delayed 3 samples).

    Returns:
        the (num_samples, channels) array written.
    """
    frames = samples[:, np.newaxis]
    if channels == 2:
        frames = np.stack([samples, -0.5 * np.roll(samples, 3)], axis=1)
    soundfile.write(str(path), frames.astype(np.float32), rate, subtype=subtype)
    return frames


FORMATS = [
    (rate, channels, extension, subtype)
    for rate in (8000, 22050, 44100, 48000)
    for channels in (1, 2)
    for extension, subtype in (("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16"))
]


# ---------------------------------------------------------------- loading and resampling


@pytest.mark.parametrize("rate, channels, extension, subtype", FORMATS)
def test_load_any_audio_matches_soxr_and_scipy(tmp_path, speech, rate, channels, extension, subtype):
    source = soxr.resample(speech[0][0], speech[0][1], rate, quality="VHQ")
    path = tmp_path / f"clip.{extension}"
    write_source(path, source, rate, channels, subtype)
    loaded = load_any_audio(path)
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    assert len(loaded) == math.ceil(len(source) * RATE / rate)
    np.testing.assert_allclose(loaded, reference_16k(path), atol=1e-6)  # scipy.signal.resample_poly
    written, _ = soundfile.read(str(path), dtype="float64", always_2d=True)
    by_soxr = soxr.resample(written.mean(axis=1), rate, RATE, quality="VHQ")  # another resampler
    # the two filters differ only in their transition bands: compare below 90 % of the lower Nyquist
    sos = scipy.signal.butter(8, 0.9 * min(rate, RATE) / 2, fs=RATE, output="sos")
    ours, theirs = scipy.signal.sosfiltfilt(sos, loaded), scipy.signal.sosfiltfilt(sos, by_soxr[: len(loaded)])
    snr_db = 10 * np.log10(np.sum(theirs**2) / np.sum((ours - theirs) ** 2))
    assert snr_db > 35, f"{snr_db:.1f} dB against soxr"


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
def test_a_tone_keeps_its_frequency_and_level(tmp_path, rate):
    time = np.arange(2 * rate) / rate
    soundfile.write(str(tmp_path / "tone.wav"), 0.5 * np.sin(2 * np.pi * 1000.0 * time), rate, subtype="PCM_16")
    loaded = load_any_audio(tmp_path / "tone.wav")
    assert len(loaded) == 2 * RATE
    spectrum = np.abs(np.fft.rfft(loaded[2000:-2000] * np.hanning(len(loaded) - 4000)))
    assert abs(np.argmax(spectrum) * RATE / (len(loaded) - 4000) - 1000.0) < 1.0
    assert np.sqrt(np.mean(loaded[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


# ---------------------------------------------------------------- voice activity detection


def bursts(spans: list[tuple[float, float]], seconds: float, seed: int = 0) -> np.ndarray:
    """Tone bursts (0.3 amplitude, 500 Hz) at ``spans`` (seconds) over noise at -80 dBFS."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * RATE)) / RATE
    samples = 1e-4 * rng.normal(size=time.size)
    for start, end in spans:
        inside = (time >= start) & (time < end)
        samples[inside] += 0.3 * np.sin(2 * np.pi * 500 * time[inside])
    return samples


def test_speech_regions_bridge_short_dips_and_drop_clicks():
    samples = bursts([(0.5, 1.0), (1.1, 1.5), (2.5, 3.0), (4.0, 4.02)], 5.0)  # 0.1 s dip, 1 s pause, a click
    regions = [(start / RATE, end / RATE) for start, end in speech_regions(samples, RATE)]
    assert len(regions) == 2
    for (start, end), (expected_start, expected_end) in zip(regions, [(0.5, 1.5), (2.5, 3.0)]):
        assert abs(start - expected_start) <= 0.02 and abs(end - expected_end) <= 0.02


@pytest.mark.parametrize(
    "spans, padding_s, expected",
    [
        ([(0.5, 1.0), (1.1, 1.5), (2.5, 3.0)], 0.15, [(0.35, 1.65), (2.35, 3.15)]),  # speech +- padding
        ([(0.5, 1.0), (1.4, 2.0)], 0.15, [(0.35, 1.15), (1.25, 2.15)]),
        ([(0.5, 1.0), (1.4, 2.0)], 0.25, [(0.25, 1.2), (1.2, 2.25)]),  # padding > half the pause: half
    ],
)
def test_each_stretch_of_speech_between_pauses_is_a_piece(spans, padding_s, expected):
    config = VADConfig(padding_s=padding_s)
    pieces = [piece.seconds(RATE) for piece in split_at_pauses(bursts(spans, 4.0), RATE, config)]
    assert len(pieces) == len(expected)
    for (start, end), (expected_start, expected_end) in zip(pieces, expected):
        assert abs(start - expected_start) <= 0.02 and abs(end - expected_end) <= 0.02


def test_speech_longer_than_a_piece_is_cut_at_its_quietest_point():
    samples = bursts([(1.0, 5.0)], 6.0)
    samples[int(3.0 * RATE) : int(3.05 * RATE)] *= 0.3  # a 50 ms dip, still above the threshold
    pieces = [piece.seconds(RATE) for piece in split_at_pauses(samples, RATE, VADConfig(max_piece_s=3.0))]
    assert len(pieces) == 2 and all(end - start <= 3.0 for start, end in pieces)
    assert abs(pieces[0][1] - 3.025) <= 0.05 and pieces[0][1] == pieces[1][0]  # cut in the dip, no gap


# ---------------------------------------------------------------- decoding one file


@pytest.mark.parametrize("rate, channels, extension, subtype", FORMATS)
def test_transcribe_any_format_decodes_like_the_model(
    tmp_path, speech, loaded_run, greedy_transcriber, rate, channels, extension, subtype
):
    source = soxr.resample(speech[2][0], speech[2][1], rate, quality="VHQ")
    path = tmp_path / f"clip.{extension}"
    write_source(path, source, rate, channels, subtype)
    transcript = greedy_transcriber.transcribe_file(path)
    assert transcript.path == str(path) and len(transcript.pieces) == 1
    expected = greedy_decode(model_decode(loaded_run, piece_of(reference_16k(path), transcript.pieces[0])))
    assert transcript.text == " ".join(expected.split()) and expected.strip()  # the untrained model says something


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory, speech) -> tuple[Path, list[tuple[float, float]]]:
    """60 s at 44.1 kHz stereo flac: the 14 sentences with pauses of 0.8-3 s, over noise at -60 dBFS.

    Returns:
        (the flac file, each sentence's (start, end) in seconds).
    """
    rng = np.random.default_rng(14)
    samples = 1e-3 * rng.normal(size=int(LONG_SECONDS * RATE))
    spans, cursor = [], 0.7
    for index, (sentence, rate) in enumerate(speech):
        clip = trimmed(soxr.resample(sentence, rate, RATE, quality="VHQ"))
        start = int(round(cursor * RATE))
        samples[start : start + len(clip)] += clip
        spans.append((start / RATE, (start + len(clip)) / RATE))
        cursor = spans[-1][1] + (PAUSES[index] if index < len(PAUSES) else 0.0)
    assert cursor < LONG_SECONDS - 1.0
    path = tmp_path_factory.mktemp("long") / "long.flac"
    write_source(path, soxr.resample(samples, RATE, 44100, quality="VHQ"), 44100, 2, "PCM_16")
    return path, spans


def test_a_long_recording_is_cut_only_in_its_pauses(long_recording, loaded_run, greedy_transcriber):
    path, spans = long_recording
    transcript = greedy_transcriber.transcribe_file(path)
    pieces = [(piece.start, piece.end) for piece in transcript.pieces]
    assert len(pieces) == len(SENTENCES) and all(end - start <= 10.0 for start, end in pieces)
    assert all(previous[1] <= following[0] for previous, following in zip(pieces, pieces[1:]))
    for boundary in [time for piece in pieces for time in piece]:  # never inside a sentence
        assert not any(start < boundary < end for start, end in spans), f"cut at {boundary:.2f} s"
    for (start, end), (sentence_start, sentence_end) in zip(pieces, spans):  # piece i holds sentence i
        assert start <= sentence_start and sentence_end <= end
    reference = reference_16k(path)
    expected = [greedy_decode(model_decode(loaded_run, piece_of(reference, piece))) for piece in transcript.pieces]
    assert [piece.text for piece in transcript.pieces] == [" ".join(text.split()) for text in expected]
    assert transcript.text == " ".join(" ".join(expected).split())


# ---------------------------------------------------------------- the default run, its LM, the command line


@pytest.fixture
def home_with_final_model(tmp_path, monkeypatch, run_dir) -> Path:
    """$CTCLAB_HOME holding the run as the quick profile's final model, notebook 03's LM and its weights."""
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    monkeypatch.delenv("PROFILE", raising=False)
    profile = get_profile()
    shutil.copytree(run_dir, final_run(profile).folder)
    final_run(profile).update_scores(lm_alpha=0.8, lm_beta=2.0)
    NGramLM.train(SENTENCES, order=3).save_arpa(tuning.lm_path(profile))
    return tmp_path


def test_default_run_decodes_with_its_lm_and_tuned_weights(home_with_final_model, speech, loaded_run, tmp_path, capsys):
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), speech[4][0], speech[4][1])
    (transcript,) = transcribe(path)  # the notebooks' function: the default run and LM
    run = final_run(get_profile("quick"))
    probabilities = model_decode(loaded_run, piece_of(reference_16k(path), transcript.pieces[0]))  # same weights
    lm = NGramLM.load_arpa(tuning.lm_path(get_profile("quick")))
    assert transcript.text == " ".join(prefix_beam_search(probabilities, ENGLISH, 32, lm, alpha=0.8, beta=2.0).split())
    assert main([str(path), "--times"]) == 0
    printed = capsys.readouterr()
    start, end = transcript.pieces[0].start, transcript.pieces[0].end
    assert printed.out == f"[{start:7.2f} - {end:7.2f}] {transcript.pieces[0].text}\n"
    assert "beam search + LM" in printed.err and "alpha 0.8, beta 2.0" in printed.err and str(run.folder) in printed.err


def test_no_model_says_what_to_run(tmp_path, monkeypatch, capsys, run_dir):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    monkeypatch.delenv("PROFILE", raising=False)
    with pytest.raises(ModelNotFoundError, match="make report PROFILE=quick"):
        Transcriber.from_run()
    shutil.copytree(run_dir, final_run(get_profile("smoke")).folder)  # another profile's model is named
    assert main(["any.wav"]) == 2
    error = capsys.readouterr().err
    assert "no trained final speech model at" in error and "02_deep_models" in error
    assert str(final_run(get_profile("smoke")).folder) in error and "Traceback" not in error


def test_a_missing_named_lm_and_an_emg_run_are_refused(tmp_path, run_dir):
    with pytest.raises(ModelNotFoundError, match=f"{tmp_path / 'none.arpa'}: no such language model file"):
        Transcriber.from_run(run_dir, lm_path=tmp_path / "none.arpa")
    emg_run = tmp_path / "emg_run"
    shutil.copytree(run_dir, emg_run)
    emg = Run(emg_run)
    emg.save_setup(emg.normalizer(), EMGFeatureConfig(), ENGLISH, emg.builder())
    with pytest.raises(ValueError, match="was trained on EMGFeatureConfig, not audio features"):
        Transcriber.from_run(emg_run)


def test_the_package_command_lists_its_commands(capsys):
    assert package_main([]) == 2 and "transcribe" in capsys.readouterr().err
    assert package_main(["nonsense"]) == 2


def bad_files(folder: Path) -> dict[Path, str]:
    """Each bad file and the words its error must contain."""
    noise = 0.1 * np.random.default_rng(0).normal(size=RATE)
    files = {
        folder / "unreadable.wav": "unreadable audio",
        folder / "missing.flac": "unreadable audio",
        folder / "empty.wav": "empty audio (0 samples)",
        folder / "silent.flac": "silent audio",
        folder / "nan.wav": "non-finite samples: 40 NaN and 0 inf",
        folder / "inf.wav": "non-finite samples: 0 NaN and 3 inf",
        folder / "hum.wav": "no speech found",
        folder / "short.wav": "shorter than one analysis window",
    }
    (folder / "unreadable.wav").write_bytes(b"RIFF but not really a wav file")
    soundfile.write(str(folder / "empty.wav"), np.zeros(0, np.float32), RATE)
    soundfile.write(str(folder / "silent.flac"), np.zeros(RATE, np.float32), 48000)
    with_nan, with_inf = noise.astype(np.float32), noise.astype(np.float32)
    with_nan[1000:1040] = np.nan
    with_inf[[5, 50, 500]] = np.inf
    soundfile.write(str(folder / "nan.wav"), with_nan, 22050, subtype="FLOAT")
    soundfile.write(
        str(folder / "inf.wav"), np.stack([with_inf, noise], axis=1).astype(np.float32), RATE, subtype="FLOAT"
    )
    soundfile.write(str(folder / "hum.wav"), np.full(RATE, 0.5, np.float32), RATE)  # constant: no speech
    soundfile.write(str(folder / "short.wav"), noise[:100], RATE)
    return files


def test_bad_files_raise_errors_naming_file_and_problem(tmp_path, greedy_transcriber):
    for path, problem in bad_files(tmp_path).items():
        with pytest.raises(AudioError) as error:
            greedy_transcriber.transcribe_file(path)
        assert str(path) in str(error.value) and problem in str(error.value)


def test_command_line_names_each_bad_file_and_transcribes_the_good_one(tmp_path, speech, run_dir):
    files = bad_files(tmp_path)
    good = tmp_path / "good.wav"
    soundfile.write(str(good), speech[1][0], speech[1][1])
    completed = subprocess.run(
        [sys.executable, "-m", "ctclab", "transcribe", *map(str, files), str(good), "--run", str(run_dir), "--no-lm"],
        cwd=ROOT,
        env=dict(os.environ, CTCLAB_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    for path, problem in files.items():
        assert any(str(path) in line and problem in line for line in lines), f"{path.name}: {problem}"
    assert completed.stdout.startswith(f"{good}: ") and len(completed.stdout.splitlines()) == 1


# ---------------------------------------------------------------- the trained final model (make report's)


def test_final_model_hears_every_word_in_order(long_recording, monkeypatch):
    monkeypatch.delenv("CTCLAB_HOME", raising=False)  # the repository's results/
    trained = [name for name in ("quick", "full") if final_run(get_profile(name)).is_trained]
    if not trained:
        folders = " or ".join(str(final_run(get_profile(name)).folder) for name in ("quick", "full"))
        pytest.skip(f"no trained final speech model at {folders} (`make report` trains the quick one)")
    transcript = Transcriber.from_run(profile=trained[0]).transcribe_file(long_recording[0])
    heard, position, missing = transcript.text.split(), 0, []
    for word in " ".join(SENTENCES).split():  # each word after the one heard before it
        if word in heard[position:]:
            position += heard[position:].index(word) + 1
        else:
            missing.append(word)
    assert missing == [], f"heard {transcript.text!r}"
