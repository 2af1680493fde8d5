"""The synthetic EMG corpus: phonemes, speech clock, smoothing, signal model, layout, caching.

The corpus is built from a 9-utterance speech corpus synthesized here, so nothing depends on data/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.ndimage import gaussian_filter1d

from ctclab.data import corpus
from ctclab.emg import corpus as emg_corpus
from ctclab.emg import loaders as emg_loaders
from ctclab.emg import synthesis
from ctclab.emg.corpus import EMGCorpusConfig
from ctclab.paths import REPOSITORY_ROOT


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech")
    corpus.build_corpus(out, corpus.CorpusConfig(num_utterances=9, seed=3, max_words=6))
    return out


@pytest.fixture(scope="module")
def built(speech_corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("emg") / "emg"
    return out, emg_corpus.build_emg_corpus(
        out, speech_corpus, EMGCorpusConfig(num_sessions=2, silent_train_fraction=0.5)
    )


# ------------------------------------------------------------------------------ phonemes


@pytest.mark.parametrize(
    "transcription, phonemes",
    [
        ("s'Ev@n", ["s", "E", "v", "@", "n"]),
        ("tS'Ek", ["tS", "E", "k"]),
        ("kl'i:n", ["k", "l", "i", ":", "n"]),
        ("dZ'anju:,e@ri", ["dZ", "a", "n", "j", "u", ":", "e", "@", "r", "i"]),
        ("b'0t#@Lz", ["b", "0", "t", "@", "L", "z"]),
    ],
)
def test_tokenize_espeak_transcriptions(transcription, phonemes):
    assert synthesis.tokenize_phonemes(transcription) == phonemes


def test_unknown_phoneme_symbol_is_an_error():
    with pytest.raises(ValueError, match="unknown espeak-ng phoneme symbol 'Q'"):
        synthesis.tokenize_phonemes("Qa")


def test_espeak_phonemizes_a_vocabulary_in_one_call():
    phonemes = synthesis.phonemize_words(["seven", "check", "seven"])
    assert phonemes == {"seven": ["s", "E", "v", "@", "n"], "check": ["tS", "E", "k"]}


def test_phoneme_table_voicing_is_the_only_difference_of_voiced_pairs():
    for voiceless, voiced in (("p", "b"), ("t", "d"), ("k", "g"), ("f", "v"), ("s", "z")):
        difference = synthesis.PHONEME_TARGETS[voiced] - synthesis.PHONEME_TARGETS[voiceless]
        assert np.flatnonzero(difference).tolist() == [synthesis.VOICING]
    np.testing.assert_array_equal(synthesis.PHONEME_TARGETS["m"], synthesis.PHONEME_TARGETS["b"])


# --------------------------------------------------------------------- timing and smoothing


def bursts(spans_ms: list[tuple[int, int]], total_ms: int, rate: int = 16000, noise: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    audio = 1e-5 * rng.standard_normal(total_ms * rate // 1000)
    for start, end in spans_ms:
        piece = slice(start * rate // 1000, end * rate // 1000)
        time = np.arange(piece.stop - piece.start) / rate
        audio[piece] = 0.3 * (rng.standard_normal(len(time)) if noise else np.sin(2 * np.pi * 300 * time))
    return audio


def test_speech_activity_fills_short_gaps_and_drops_blips():
    active = synthesis.speech_activity(bursts([(100, 300), (380, 600), (900, 910), (1200, 1500)], 1800), 16000)
    assert active.shape == (1800,)
    expected = np.zeros(1800, bool)
    expected[100:600] = True  # the 80 ms gap (a stop closure) is filled
    expected[1200:1500] = True  # the 10 ms blip is dropped; the 600 ms pause stays
    assert np.mean(active == expected) > 0.99


def test_only_the_loudness_envelope_of_the_audio_reaches_the_emg():
    """A tone and noise with the same 10 ms loudness give the same speech clock, hence the same EMG."""
    tone = bursts([(100, 600)], 800)
    noise = bursts([(100, 600)], 800, noise=True)
    tone_frames, noise_frames = tone.reshape(-1, 160), noise.reshape(-1, 160)  # 10 ms frames
    scale = np.sqrt((tone_frames**2).mean(1, keepdims=True) / (noise_frames**2).mean(1, keepdims=True))
    noise = (noise_frames * scale).ravel()  # noise, frame by frame as loud as the tone
    clock_tone, clock_noise = synthesis.speech_activity(tone, 16000), synthesis.speech_activity(noise, 16000)
    np.testing.assert_array_equal(clock_tone, clock_noise)
    session = synthesis.Session(np.random.default_rng(1))
    emg = [
        session.record(
            synthesis.articulator_activations(["s", "E", "v", "@", "n"], clock, np.random.default_rng(2)),
            np.random.default_rng(3),
        )
        for clock in (clock_tone, clock_noise)
    ]
    np.testing.assert_array_equal(emg[0], emg[1])


def test_smooth_steps_equals_brute_force_gaussian_filtering():
    rng = np.random.default_rng(0)
    targets = rng.uniform(size=(3, 8))
    runs = [(100, 180, 0), (180, 260, 1), (400, 450, 2)]
    smoothed = synthesis.smooth_steps(runs, targets, 600, sigma=20.0, shift=50.0)
    curve = np.zeros((700, 8))
    for start, end, index in runs:
        curve[start:end] = targets[index]
    reference = gaussian_filter1d(curve, 20.0, axis=0, mode="constant", truncate=8.0)[50:650]
    np.testing.assert_allclose(smoothed, reference, atol=1e-4)


def test_activation_leads_the_sound_and_voicing_follows_phonemes():
    clock = np.zeros(1000, bool)
    clock[300:700] = True  # sound from 300 to 700 ms
    config = synthesis.ArticulationConfig(lead_ms=50.0, lead_jitter_ms=0.0, target_jitter=0.0, timing_jitter=0.0)
    activation = synthesis.articulator_activations(["p", "A"], clock, np.random.default_rng(0), config)
    lips = activation[:, 0]  # p closes the lips first
    assert np.argmax(lips > lips.max() / 2) == pytest.approx(300 - 50, abs=2)  # half rise at onset - lead
    voicing = activation[:, synthesis.VOICING]
    p_end = 300 + 400 * 0.6 / (0.6 + 0.8) - 50  # p takes 0.6 / 1.4 of the sound, shifted by the lead
    assert voicing[int(p_end) - 60] < 0.1  # still in p: no voicing
    assert voicing[int(p_end) + 60] > 0.6  # in the vowel: voiced (target 0.7)
    assert np.all(activation[:150] < 1e-3) and np.all(activation[-200:] < 1e-3)  # rest outside speech


# --------------------------------------------------------------------------- the signal model


def test_muscle_signal_is_band_limited_noise_and_mains_sits_at_60_hz():
    quiet = synthesis.SessionConfig(
        mains=(0.0, 0.0), offset=0.0, drift=(0.0, 0.0), heartbeat=(0.0, 0.0), sensor_noise=0.0, burst_rate=0.0
    )
    session = synthesis.Session(np.random.default_rng(0), quiet)
    emg = session.record(np.full((20000, 8), 0.5), np.random.default_rng(1))
    power = np.abs(np.fft.rfft(emg, axis=0)) ** 2
    frequencies = np.fft.rfftfreq(len(emg), 1 / 1000)
    in_band = power[(frequencies >= 15) & (frequencies <= 450)].sum()
    assert in_band / power.sum() > 0.99
    hum = synthesis.Session(np.random.default_rng(0), synthesis.SessionConfig(sensor_noise=0.0, burst_rate=0.0))
    resting = hum.record(np.zeros((20000, 8)), np.random.default_rng(1))
    spectrum = np.abs(np.fft.rfft(resting - resting.mean(0), axis=0)).mean(1)
    band = (frequencies > 20) & (frequencies < 500)
    assert frequencies[band][np.argmax(spectrum[band])] == pytest.approx(60.0)


def test_activation_raises_the_amplitude_of_its_electrode():
    quiet = synthesis.SessionConfig(
        mains=(0.0, 0.0), offset=0.0, drift=(0.0, 0.0), heartbeat=(0.0, 0.0), burst_rate=0.0
    )
    session = synthesis.Session(np.random.default_rng(0), quiet)
    activation = np.zeros((4000, 8))
    activation[2000:, 4] = 1.0  # the tongue tip works in the second half
    emg = session.record(activation, np.random.default_rng(1))
    ratio = emg[2000:].std(0) / emg[:2000].std(0)
    assert np.argmax(ratio) == 4 and ratio[4] > 3


# ------------------------------------------------------------------------------- the corpus


def test_build_writes_the_gaddy_layout(built, speech_corpus):
    out, manifest = built
    folders = sorted(p.relative_to(out / "emg_data").as_posix() for p in (out / "emg_data").glob("*/*"))
    assert folders == [
        "silent_parallel_data/5-1_silent",
        "silent_parallel_data/5-2_silent",
        "voiced_parallel_data/5-1",
        "voiced_parallel_data/5-2",
    ]
    for info_path in (out / "emg_data").glob("*/*/*_info.json"):
        info = json.loads(info_path.read_text())
        emg = np.load(str(info_path).replace("_info.json", "_emg.npy"))
        audio, rate = soundfile.read(str(info_path).replace("_info.json", "_audio_clean.flac"))
        assert emg.dtype == np.float64 and emg.shape[1] == 8 and rate == 16000
        assert info["chunks"] == [[len(emg), len(audio), 0]]
        assert abs(len(audio) / 16000 - len(emg) / 1000) < 0.002
        assert set(info) == {"book", "sentence_index", "text", "chunks"}
    silence = [
        json.loads(p.read_text())
        for p in (out / "emg_data").glob("*/*/*_info.json")
        if json.loads(p.read_text())["sentence_index"] == -1
    ]
    assert len(silence) == 4 and all(s["text"] == "" and s["book"] == "" for s in silence)
    assert manifest["counts"]["voiced"] == 9


def test_splits_slices_and_parallel_pairs_follow_the_speech_corpus(built, speech_corpus):
    out, _ = built
    utterances = emg_loaders.load_gaddy(out)
    speech = {
        split: [json.loads(line) for line in (speech_corpus / f"{split}_corpus.json").read_text().splitlines()]
        for split in ("train", "valid", "test")
    }
    for split, name in (("valid", "dev"), ("test", "test"), ("train", "train")):
        expected = {(emg_corpus.BOOKS[r["slice"]], int(Path(r["key"]).stem), r["text"]) for r in speech[split]}
        voiced = {(u.book, u.sentence_index, u.text) for u in utterances if u.split == name and not u.silent}
        assert voiced == expected
    pairs = emg_loaders.pair_silent_with_voiced(utterances)  # raises if a silent sentence had no voiced twin
    held_out = {u.sentence for u in utterances if u.split != "train"}
    assert held_out <= {silent.sentence for silent, _ in pairs}  # every dev / test sentence is also silent


def test_silent_recordings_have_their_own_sessions_and_slower_timing(built):
    out, _ = built
    pairs = emg_loaders.pair_silent_with_voiced(emg_loaders.load_gaddy(out))
    assert all(silent.session != voiced.session for silent, voiced in pairs)
    lengths = np.array([silent.num_samples / voiced.num_samples for silent, voiced in pairs])
    assert np.all(lengths > 0.99) and np.all(lengths < 1.27)  # stretched by 1.0-1.25


def test_build_is_cached_and_deterministic(built, speech_corpus, tmp_path):
    out, manifest = built
    probe = next((out / "emg_data").glob("*/*/0_emg.npy"))
    before = probe.stat().st_mtime_ns
    assert (
        emg_corpus.build_emg_corpus(out, speech_corpus, EMGCorpusConfig(num_sessions=2, silent_train_fraction=0.5))
        == manifest
    )
    assert probe.stat().st_mtime_ns == before  # nothing rewritten
    again = emg_corpus.build_emg_corpus(
        tmp_path / "again", speech_corpus, EMGCorpusConfig(num_sessions=2, silent_train_fraction=0.5)
    )
    assert again["counts"] == manifest["counts"]
    twin = tmp_path / "again" / probe.relative_to(out)
    assert twin.read_bytes() == probe.read_bytes()
    other = emg_corpus.build_emg_corpus(tmp_path / "other", speech_corpus, EMGCorpusConfig(num_sessions=2, seed=1))
    assert (tmp_path / "other" / probe.relative_to(out)).read_bytes() != probe.read_bytes()
    assert other["key"] != manifest["key"]


def test_config_and_paths_are_checked(tmp_path):
    with pytest.raises(ValueError, match="num_sessions"):
        EMGCorpusConfig(num_sessions=0)
    with pytest.raises(ValueError, match="silent_train_fraction"):
        EMGCorpusConfig(silent_train_fraction=1.5)
    with pytest.raises(ValueError, match="no built speech corpus"):
        emg_corpus.build_emg_corpus(tmp_path / "out", tmp_path / "missing")
    assert emg_corpus.emg_corpus_dir("quick") == str(REPOSITORY_ROOT / "data/emg")  # the repository's, from any folder
    assert emg_corpus.emg_corpus_dir("smoke") == str(REPOSITORY_ROOT / "data/emg_smoke")
