"""Acoustic augmentation against independent measurements, and the generator's on-the-fly use of it.

Expectations come from outside the code under test: powers summed here, Welch spectra and
Schroeder integrals from scipy / numpy, tone frequencies read off an FFT peak, filter responses
from scipy's own ``sosfreqz``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile
from conftest import write_descriptors
from scipy import signal

from ctclab.data import augment, augmented_split
from ctclab.data.augment import AugmentConfig, Augmenter, AugmentParams
from ctclab.data.augmented_split import NOISY_REVERBERANT
from ctclab.data.descriptors import read_descriptors
from ctclab.data.features import FeatureConfig, Normalizer, featurize_file
from ctclab.data.generator import AudioGenerator

RATE = 16000
SPECTROGRAM = FeatureConfig()
ALL_ON = AugmentConfig(
    speed_probability=1.0,
    reverb_probability=1.0,
    noise_probability=1.0,
    telephone_probability=1.0,
    gain_probability=1.0,
)
SWITCH_FIELDS = {  # switch -> the AugmentParams field it sets
    "speed": "speed",
    "reverb": "rt60_s",
    "noise": "snr_db",
    "telephone": "telephone",
    "gain": "gain_db",
}


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def speechlike(seconds: float = 1.5, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """Harmonics of 150 Hz under a 4 Hz syllable envelope, plus a little noise: not silent, not stationary."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 150 * k * time) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * time))
    clip = voiced * envelope + 0.01 * rng.standard_normal(time.size)
    return (amplitude * clip / np.abs(clip).max()).astype(np.float32)


def mean_square(samples: np.ndarray) -> float:
    samples = np.asarray(samples, np.float64)
    return float(np.dot(samples, samples) / samples.size)


def peak_frequency(samples: np.ndarray) -> float:
    """Frequency of the largest FFT bin, refined by a parabola through the log magnitudes around it."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size), 8 * samples.size))
    k = int(np.argmax(spectrum))
    left, middle, right = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (left - right) / (left - 2 * middle + right)
    return (k + offset) * RATE / (8 * samples.size)


def band_gain_db(samples: np.ndarray, processed: np.ndarray) -> float:
    middle = slice(samples.size // 8, -samples.size // 8)  # away from the filter's edges
    return 10 * math.log10(mean_square(processed[middle]) / mean_square(samples[middle]))


# ------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.5, 20.0, 35.0])
@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_add_noise_achieves_the_requested_snr(kind, snr_db):
    rng = np.random.default_rng(1)
    clean = speechlike()
    noise = {
        "white": lambda: augment.white_noise(clean.size, rng),
        "pink": lambda: augment.pink_noise(clean.size, rng),
        "babble": lambda: augment.babble_noise(clean.size, [speechlike(0.7, seed=s) for s in range(3)], rng, 3),
    }[kind]()
    mixture = augment.add_noise(clean, 0.05 * noise, snr_db)
    added = mixture.astype(np.float64) - clean
    achieved = 10 * math.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(added**2))
    assert achieved == pytest.approx(snr_db, abs=0.01)
    assert mixture.dtype == np.float32 and mixture.shape == clean.shape


def test_augmenter_noise_snr_equals_the_drawn_one():
    config = AugmentConfig.disabled(noise=True, noise_probability=1.0)
    clean = speechlike(amplitude=0.05)  # quiet: the peak limiter never acts, so out - in is the noise
    for seed in range(6):
        noisy, params = Augmenter(config, [speechlike(seed=9)]).apply(clean, np.random.default_rng(seed))
        assert params.gain_db == 0.0 and params.noise_type in augment.NOISE_TYPES
        added = noisy.astype(np.float64) - clean
        assert 10 * math.log10(mean_square(clean) / mean_square(added)) == pytest.approx(params.snr_db, abs=0.01)
        assert config.snr_range_db[0] <= params.snr_db <= config.snr_range_db[1]


def test_pink_noise_falls_3_db_per_octave_and_white_is_flat():
    rng = np.random.default_rng(0)
    for make, slope_expected in ((augment.pink_noise, -10 * math.log10(2)), (augment.white_noise, 0.0)):
        noise = make(20 * RATE, rng)
        assert mean_square(noise) == pytest.approx(1.0, rel=0.02)
        frequencies, density = signal.welch(noise, fs=RATE, nperseg=4096)
        band = (frequencies >= 50) & (frequencies <= 7000)
        slope = np.polyfit(np.log2(frequencies[band]), 10 * np.log10(density[band]), 1)[0]  # dB per octave
        assert slope == pytest.approx(slope_expected, abs=0.25)


def test_babble_is_made_of_the_other_utterances_only():
    """The clip is a 1 kHz tone; the only other pool entry a 3 kHz tone: the added noise sits at 3 kHz."""
    clip, other = tone(1000), tone(3000, 0.7)
    config = AugmentConfig.disabled(noise=True, noise_probability=1.0, noise_types=("babble",))
    noisy, params = Augmenter(config, [clip, other]).apply(clip, np.random.default_rng(0), exclude=0)
    assert params.noise_type == "babble"
    assert peak_frequency(noisy - clip) == pytest.approx(3000, abs=2)
    _, alone = Augmenter(config, [clip]).apply(clip, np.random.default_rng(0), exclude=0)
    assert alone.noise_type == "pink"  # no other utterance: babble falls back to pink, and says so


# ---------------------------------------------------------------------------- reverberation


def schroeder_rt60(impulse_response: np.ndarray, start: int) -> float:
    """RT60 from Schroeder backward integration of h[start:], a line fitted from -5 to -25 dB (T20 x 3)."""
    tail = impulse_response[start:].astype(np.float64)
    decay = np.cumsum(tail[::-1] ** 2)[::-1]  # energy left after each sample
    decay_db = 10 * np.log10(decay / decay[0])
    fit = (decay_db <= -5) & (decay_db >= -25)
    slope = np.polyfit(np.arange(tail.size)[fit] / RATE, decay_db[fit], 1)[0]  # dB per second
    return -60.0 / slope


@pytest.mark.parametrize("rt60_s", [0.2, 0.4, 0.8, 1.2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_impulse_response_rt60_by_schroeder_integration_within_6_percent(rt60_s, seed):
    drr_db = 4.0
    response = augment.room_impulse_response(rt60_s, drr_db, np.random.default_rng(seed))
    assert response.shape == (round(rt60_s * RATE),) and response[0] == 1.0
    assert schroeder_rt60(response, start=1) == pytest.approx(rt60_s, rel=0.06)
    direct, reverberant = 1.0, np.sum(response[1:].astype(np.float64) ** 2)
    assert 10 * math.log10(direct / reverberant) == pytest.approx(drr_db, abs=1e-3)


def test_reverberation_keeps_length_and_alignment():
    clip = speechlike()
    response = augment.room_impulse_response(0.5, 30.0, np.random.default_rng(0))  # almost only the direct path
    wet = augment.reverberate(clip, response)
    assert wet.shape == clip.shape
    correlation = signal.correlate(wet, clip, mode="full")
    assert int(np.argmax(correlation)) - (clip.size - 1) == 0  # lag 0: the speech did not move


# ------------------------------------------------------------------------------------ speed


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.1])
def test_speed_changes_duration_by_one_over_factor_and_frequency_by_factor(factor):
    clip = tone(1000.0, seconds=2.0)
    faster = augment.speed_perturb(clip, factor)
    assert faster.size == pytest.approx(clip.size / factor, abs=1)
    assert peak_frequency(faster) == pytest.approx(1000.0 * factor, abs=0.5)


def test_speed_keeps_a_tones_level():
    clip = tone(1000.0, seconds=2.0)
    for factor in (0.9, 1.1):
        level = 10 * math.log10(mean_square(augment.speed_perturb(clip, factor)) / mean_square(clip))
        assert level == pytest.approx(0.0, abs=0.05), factor


def density_above(samples: np.ndarray, frequency: float) -> float:
    """Welch density above ``frequency`` relative to the density between 1 and 6 kHz, in dB."""
    frequencies, density = signal.welch(samples, fs=RATE, nperseg=1024)
    in_band = density[(frequencies >= 1000) & (frequencies <= 6000)].mean()
    return 10 * math.log10(density[frequencies >= frequency].mean() / in_band)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: augment.white_noise(4 * RATE, rng),
        lambda rng: augment.pink_noise(4 * RATE, rng),
        lambda rng: augment.speed_perturb(rng.standard_normal(4 * RATE).astype(np.float32), 1.1),
        lambda rng: augment.speed_perturb(rng.standard_normal(4 * RATE).astype(np.float32), 0.9),
        lambda rng: augment.band_limit(rng.standard_normal(4 * RATE).astype(np.float32)),
    ],
    ids=["white", "pink", "speed 1.1", "speed 0.9", "band_limit"],
)
def test_nothing_generated_or_resampled_above_7_6_khz(make):
    """Like the corpus' sox-resampled audio: at least 60 dB less density above 7.7 kHz than in band."""
    assert density_above(make(np.random.default_rng(0)), 7700.0) < -60.0


def test_band_limit_passes_the_band_untouched():
    clip = tone(5000.0) + tone(300.0)
    np.testing.assert_allclose(augment.band_limit(clip), clip, atol=2e-4)


# --------------------------------------------------------------------------- telephone band


@pytest.mark.parametrize("narrowband", [False, True])
def test_telephone_band_passes_1_khz_and_attenuates_5_khz_by_40_db(narrowband):
    assert band_gain_db(tone(1000), augment.telephone_band(tone(1000), narrowband=narrowband)) > -0.1
    assert band_gain_db(tone(5000), augment.telephone_band(tone(5000), narrowband=narrowband)) < -40.0
    assert band_gain_db(tone(100), augment.telephone_band(tone(100), narrowband=narrowband)) < -20.0


@pytest.mark.parametrize("frequency", [150.0, 500.0, 2000.0, 3800.0, 5000.0])
def test_telephone_band_matches_scipy_response_applied_twice(frequency):
    sections = signal.butter(4, (300, 3400), btype="bandpass", fs=RATE, output="sos")
    _, response = signal.sosfreqz(sections, worN=[frequency], fs=RATE)
    expected_db = 2 * 20 * math.log10(abs(response[0]))  # forwards and backwards
    got = band_gain_db(tone(frequency, 2.0), augment.telephone_band(tone(frequency, 2.0), narrowband=False))
    assert got == pytest.approx(expected_db, abs=0.1)


# ------------------------------------------------------------------------------------- gain


@pytest.mark.parametrize("gain_db, factor", [(0.0, 1.0), (20 * math.log10(2), 2.0), (-20.0, 0.1)])
def test_apply_gain_table(gain_db, factor):
    clip = speechlike(amplitude=0.2)
    np.testing.assert_allclose(augment.apply_gain(clip, gain_db), clip * factor, rtol=1e-6)


def test_augmenter_gain_is_a_pure_scale_and_loud_clips_are_scaled_not_clipped():
    config = AugmentConfig.disabled(gain=True, gain_range_db=(6.0, 12.0))
    quiet, loud = speechlike(amplitude=0.1), speechlike(amplitude=0.9)
    out, params = Augmenter(config).apply(quiet, np.random.default_rng(0))
    assert 6.0 <= params.gain_db <= 12.0
    np.testing.assert_allclose(out, quiet * 10 ** (params.gain_db / 20), rtol=1e-5)
    out, params = Augmenter(config).apply(loud, np.random.default_rng(0))
    assert np.abs(out).max() == pytest.approx(0.99, abs=1e-6)  # scaled to max_peak
    ratio = out.astype(np.float64) / np.where(loud == 0, 1, loud)
    assert np.ptp(ratio[np.abs(loud) > 1e-3]) < 1e-5  # one factor everywhere: nothing clipped
    assert params.gain_db == pytest.approx(20 * math.log10(0.99 / 0.9), abs=1e-4)


# ----------------------------------------------------------------- switches and determinism


def test_everything_off_is_the_identity():
    clip = speechlike(amplitude=1.0)  # at full scale: nothing may touch it
    out, params = Augmenter(AugmentConfig.disabled(), [speechlike(seed=3)]).apply(clip, np.random.default_rng(0))
    np.testing.assert_array_equal(out, clip)
    assert params == AugmentParams()


@pytest.mark.parametrize("switch", list(SWITCH_FIELDS))
def test_each_switch_alone_acts_and_off_never_acts(switch):
    clip, pool = speechlike(amplitude=0.1), [speechlike(seed=5)]
    only = AugmentConfig.disabled(**{switch: True, f"{switch}_probability": 1.0})
    out, params = Augmenter(only, pool).apply(clip, np.random.default_rng(0))
    assert getattr(params, SWITCH_FIELDS[switch]) not in (None, False)
    assert out.shape != clip.shape or not np.array_equal(out, clip)
    everything_but = replace(ALL_ON, **{switch: False})
    for seed in range(10):
        params = Augmenter(everything_but, pool).apply(clip, np.random.default_rng(seed))[1]
        assert getattr(params, SWITCH_FIELDS[switch]) in (None, False, 0.0), f"seed {seed}"


def test_switching_one_step_off_leaves_the_other_draws_unchanged():
    clip, pool = speechlike(amplitude=0.1), [speechlike(seed=5)]
    with_reverb = Augmenter(ALL_ON, pool).apply(clip, np.random.default_rng(4))[1]
    without = Augmenter(replace(ALL_ON, reverb=False), pool).apply(clip, np.random.default_rng(4))[1]
    assert (with_reverb.speed, with_reverb.noise_type, with_reverb.snr_db) == (
        without.speed,
        without.noise_type,
        without.snr_db,
    )


def test_same_seed_same_output_other_seed_other_output():
    clip, pool = speechlike(), [speechlike(seed=s) for s in range(1, 4)]
    first = Augmenter(ALL_ON, pool).apply(clip, np.random.default_rng(11))
    again = Augmenter(ALL_ON, pool).apply(clip, np.random.default_rng(11))
    other = Augmenter(ALL_ON, pool).apply(clip, np.random.default_rng(12))
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1] and first[1] != other[1]


def test_outputs_finite_and_inside_full_scale():
    pool = [speechlike(seed=s, amplitude=1.0) for s in range(4)]
    for seed in range(25):
        clip = speechlike(seconds=0.5 + 0.1 * seed, seed=seed, amplitude=1.0)
        config = replace(ALL_ON, snr_range_db=(-10.0, 0.0), gain_range_db=(10.0, 20.0))  # loud and noisy
        out, _ = Augmenter(config, pool).apply(clip, np.random.default_rng(seed), exclude=seed % 4)
        assert out.dtype == np.float32 and np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0


@pytest.mark.parametrize(
    "bad",
    [dict(noise_types=("brown",)), dict(noise_types=()), dict(speed_probability=1.5), dict(max_peak=0.0)],
)
def test_bad_config_is_a_value_error(bad):
    with pytest.raises(ValueError):
        AugmentConfig(**bad)


def test_non_finite_input_is_a_value_error():
    clip = speechlike()
    clip[10] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Augmenter(AugmentConfig()).apply(clip, np.random.default_rng(0))


# ------------------------------------------------------------------------------- generator


@pytest.fixture
def speech_corpus(tmp_path: Path, monkeypatch) -> Path:
    """Six 0.9-1.9 s harmonic clips with short texts under tmp_path (and CTCLAB_HOME there)."""
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    records = []
    for index, text in enumerate(["hi", "go left", "one two", "ace", "it's on", "stop"]):
        seconds = 0.9 + 0.2 * index
        path = tmp_path / "wav" / f"{index}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, speechlike(seconds, seed=index), RATE)
        records.append({"key": f"wav/{index}.wav", "duration": seconds, "text": text})
    return write_descriptors(tmp_path / "train_corpus.json", records)


def generator(desc: Path, tmp_path: Path, **kwargs) -> AudioGenerator:
    kwargs.setdefault("cache_dir", tmp_path / "features")
    return AudioGenerator(desc, verbose=False, minibatch_size=3, **kwargs)


def rows_by_text(batches) -> dict[str, np.ndarray]:
    """text -> that row's (input_length, F) features, over a list of batches."""
    from ctclab.alphabet import ENGLISH

    rows = {}
    for x, y in batches:
        for row in range(len(y["labels"])):
            text = ENGLISH.int_sequence_to_text(y["labels"][row, : y["label_length"][row]])
            rows[text] = x["features"][row, : x["input_length"][row]]
    return rows


NOISE_ALWAYS = AugmentConfig.disabled(noise=True, noise_probability=1.0)


def test_generator_augments_differently_each_epoch_and_reproducibly(speech_corpus, tmp_path):
    augmented = generator(speech_corpus, tmp_path, augment=NOISE_ALWAYS)
    clean = generator(speech_corpus, tmp_path)
    indices = list(range(len(augmented.texts)))
    epoch_0, epoch_1 = (rows_by_text([augmented.get_batch(indices, epoch)]) for epoch in (0, 1))
    again = rows_by_text([generator(speech_corpus, tmp_path, augment=NOISE_ALWAYS).get_batch(indices, 1)])
    for text in augmented.texts:
        assert not np.allclose(epoch_0[text], epoch_1[text]), text
        np.testing.assert_array_equal(epoch_1[text], again[text])
    clean_0, clean_1 = (rows_by_text([clean.get_batch(indices, epoch)]) for epoch in (0, 1))
    for text, key in zip(clean.texts, clean.keys):
        independent = Normalizer(clean.normalizer.mean, clean.normalizer.std)(featurize_file(key, SPECTROGRAM))
        np.testing.assert_array_equal(clean_0[text], clean_1[text])
        np.testing.assert_allclose(clean_0[text], independent, rtol=1e-6, atol=1e-6)


def test_augmented_generator_normalizes_with_clean_statistics(speech_corpus, tmp_path):
    augmented = generator(speech_corpus, tmp_path, augment=AugmentConfig())
    frames = np.concatenate([featurize_file(key, SPECTROGRAM) for key in augmented.keys]).astype(np.float64)
    np.testing.assert_allclose(augmented.normalizer.mean, frames.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(augmented.normalizer.std, frames.std(axis=0), rtol=1e-5, atol=1e-5)
    durations = [soundfile.info(key).frames for key in augmented.keys]
    assert [w.size for w in augmented.waveforms] == durations
    assert all(w.dtype == np.float32 for w in augmented.waveforms)


def test_pydataset_epochs_differ_with_augment(speech_corpus, tmp_path):
    gen = generator(speech_corpus, tmp_path, augment=NOISE_ALWAYS)
    first = rows_by_text([gen[i] for i in range(len(gen))])
    gen.on_epoch_end()
    second = rows_by_text([gen[i] for i in range(len(gen))])
    assert all(not np.allclose(first[text], second[text]) for text in gen.texts)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="fit_data's tf.data view")
def test_fit_data_passes_differ_with_augment_and_validation_never_augments(speech_corpus, tmp_path):
    train = generator(speech_corpus, tmp_path, augment=NOISE_ALWAYS)
    valid = generator(speech_corpus, tmp_path, shuffle=False, normalizer=train.normalizer)
    train_data, valid_data = train.fit_data(), valid.fit_data()
    train_passes = [rows_by_text(train_data.as_numpy_iterator()) for _ in range(2)]
    valid_passes = [rows_by_text(valid_data.as_numpy_iterator()) for _ in range(2)]
    assert train.epoch == 2
    for text, key in zip(valid.texts, valid.keys):
        assert not np.allclose(train_passes[0][text], train_passes[1][text])
        clean = train.normalizer(featurize_file(key, SPECTROGRAM))
        np.testing.assert_array_equal(valid_passes[0][text], valid_passes[1][text])
        np.testing.assert_allclose(valid_passes[0][text], clean, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(train_passes[1]["hi"], rows_by_text([train.get_batch([0], 1)])["hi"])


@pytest.mark.parametrize("arguments", [dict(shuffle=False), dict(feature_loader=lambda key: np.zeros((50, 4)))])
def test_augment_only_for_shuffled_audio_generators(speech_corpus, tmp_path, arguments):
    with pytest.raises(ValueError, match="never augment|feature_loader"):
        generator(speech_corpus, tmp_path, augment=AugmentConfig(), **arguments)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbed_lengths_are_recomputed(speech_corpus, tmp_path, factor):
    config = AugmentConfig.disabled(speed=True, speed_probability=1.0, speed_range=(factor, factor))
    gen = generator(speech_corpus, tmp_path, augment=config)
    indices = list(range(len(gen.texts)))
    x, y = gen.get_batch(indices, epoch=0)
    for row, index in enumerate(indices):
        samples = math.ceil(gen.waveforms[index].size / factor)
        assert x["input_length"][row] == SPECTROGRAM.num_frames(samples)
        assert not np.any(x["features"][row, x["input_length"][row] :])  # padding stays zero
        assert y["label_length"][row] == len(gen.labels[index])
    assert x["features"].shape[1] % gen.pad_multiple == 0 and x["features"].shape[1] >= x["input_length"].max()
    assert not gen.augment_fallbacks


def test_too_short_after_speed_up_falls_back_to_clean_and_is_counted(speech_corpus, tmp_path):
    """Clip 0 (0.9 s: 89 frames, 'hi') gets exactly the 2 outputs it needs; at speed 1.1 it has 80."""
    config = AugmentConfig.disabled(speed=True, speed_probability=1.0, speed_range=(1.1, 1.1))
    gen = generator(speech_corpus, tmp_path, augment=config, output_length=lambda frames: frames - 87)
    assert gen.texts[0] == "hi" and len(gen.texts) == 6
    for epoch in range(2):
        x, _ = gen.get_batch(list(range(6)), epoch)
        np.testing.assert_array_equal(x["features"][0, : x["input_length"][0]], gen.normalized_feature(0))
        assert x["input_length"][0] == 89 and x["input_length"][1] < 109  # the others were sped up
    assert gen.augment_fallbacks == {"too short for label": 2}


# -------------------------------------------------------------------------- noisy split writer


def test_write_augmented_split_fixed_per_utterance_and_cached(speech_corpus, tmp_path):
    written = augmented_split.write_augmented_split(speech_corpus, tmp_path / "noisy", seed=3)
    assert written == tmp_path / "noisy" / "train_corpus.json"
    clean, noisy = read_descriptors(speech_corpus), read_descriptors(written)
    assert [r["text"] for r in noisy] == [r["text"] for r in clean]
    for index, (before, after) in enumerate(zip(clean, noisy)):
        params = after["augmentation"]
        assert after["source"] == str(Path(before["key"]).resolve())
        assert params["noise_type"] in augment.NOISE_TYPES and params["speed"] is None
        assert 5.0 <= params["snr_db"] <= 20.0 and 0.3 <= params["rt60_s"] <= 0.9
        samples, rate = soundfile.read(after["key"], dtype="float32")
        source = soundfile.read(before["key"], dtype="float32")[0]
        assert rate == RATE and samples.shape == source.shape
        assert after["duration"] == pytest.approx(samples.size / RATE, abs=1e-4)
        expected, _ = Augmenter(NOISY_REVERBERANT, [soundfile.read(r["key"], dtype="float32")[0] for r in clean]).apply(
            source, np.random.default_rng((3, index)), exclude=index
        )
        np.testing.assert_allclose(samples, expected, atol=1.5 / 32768)  # 16-bit files
    stamp = Path(noisy[0]["key"]).stat().st_mtime_ns
    assert augmented_split.write_augmented_split(speech_corpus, tmp_path / "noisy", seed=3) == written
    assert Path(noisy[0]["key"]).stat().st_mtime_ns == stamp  # the same request is not rewritten
    other = read_descriptors(augmented_split.write_augmented_split(speech_corpus, tmp_path / "noisy", seed=4))
    assert [r["augmentation"] for r in other] != [r["augmentation"] for r in noisy]
    scored = AudioGenerator(written, shuffle=False, cache_dir=tmp_path / "features", verbose=False)
    assert len(scored.texts) == len(clean) and not scored.skipped
    fewer = write_descriptors(tmp_path / "fewer" / "train_corpus.json", clean[:2])  # absolute keys
    assert len(read_descriptors(augmented_split.write_augmented_split(fewer, tmp_path / "noisy"))) == 2
    assert sorted(path.name for path in (tmp_path / "noisy" / "wav").iterdir()) == ["000000.wav", "000001.wav"]


def test_augmentation_example_returns_before_and_after(speech_corpus):
    clean, augmented, params = augmented_split.augmentation_example(speech_corpus, 2, seed=1)
    np.testing.assert_array_equal(clean, soundfile.read(read_descriptors(speech_corpus)[2]["key"], dtype="float32")[0])
    assert augmented.shape == clean.shape and not np.array_equal(augmented, clean)
    assert params.rt60_s is not None and params.snr_db is not None
    with pytest.raises(ValueError, match="outside"):
        augmented_split.augmentation_example(speech_corpus, 6)


def test_bad_files_are_skipped_and_waveforms_stay_aligned(speech_corpus, tmp_path):
    records = read_descriptors(speech_corpus)
    broken = speechlike(1.0)
    broken[100:200] = np.nan
    soundfile.write(tmp_path / "wav" / "nan.wav", broken, RATE, subtype="FLOAT")
    records[2:2] = [
        {"key": "wav/nan.wav", "duration": 1.0, "text": "bad"},
        {"key": "wav/missing.wav", "duration": 1.0, "text": "gone"},
    ]
    desc = write_descriptors(tmp_path / "mixed.json", records)  # good keys absolute, the bad ones relative
    gen = generator(desc, tmp_path, augment=AugmentConfig())
    assert len(gen.skipped) == 2 and {file for file, _, _ in gen.skipped.items} == {
        str(tmp_path / "wav" / "nan.wav"),
        str(tmp_path / "wav" / "missing.wav"),
    }
    assert len(gen.waveforms) == len(gen.texts) == 6
    for key, waveform in zip(gen.keys, gen.waveforms):
        np.testing.assert_array_equal(waveform, soundfile.read(key, dtype="float32")[0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="fit_data's tf.data view")
def test_a_model_trains_on_augmented_batches_with_finite_losses(speech_corpus, tmp_path):
    from ctclab.models.course import simple_rnn_model
    from ctclab.training.loss import CTCTrainer

    model = simple_rnn_model(SPECTROGRAM.feature_dim)
    config = replace(ALL_ON, telephone_probability=0.5)  # every step, speed included, in every batch
    train = generator(speech_corpus, tmp_path, augment=config, output_length=model.output_length)
    trainer = CTCTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=5.0))
    history = trainer.fit(train.fit_data(), epochs=2, verbose=0, shuffle=False).history
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["loss"]))
    assert train.epoch == 2
