"""Acoustic augmentation of 16 kHz float32 waveforms: noise, reverberation, speed, gain, telephone band.

Every transformation is a pure function of its inputs (the random parts take a numpy
``Generator``); :class:`Augmenter` draws which ones to apply and with what parameters from one
:class:`AugmentConfig`, in this order (the order a recording chain applies them):

1. **speed** ``s`` in [0.9, 1.1]: the clip is resampled as if it had been recorded at
   ``s * sample_rate`` (Kaldi's / sox's ``speed``): duration times 1/s, every frequency (pitch and
   formants) times s. The number of feature frames changes with it.
2. **reverberation**: convolution with a synthetic room impulse response (see
   :func:`room_impulse_response`), random RT60 and direct-to-reverberant ratio; the direct path
   is at lag 0, so the speech does not move in time and the clip keeps its length.
3. **additive noise** at a random SNR (power over the whole clip): white, pink (1/f power,
   -3 dB per octave) or babble (a sum of a few other utterances).
4. **telephone band**: 300-3400 Hz Butterworth band-pass, optionally through an 8 kHz round trip.
5. **gain** in dB.

Generated noise and resampled speech stop at 7.6 kHz (95 % of Nyquist), as sox's resampler
leaves the corpus' audio: the top spectrogram bins of clean training audio sit at the log floor,
with a small training std, so content there would be 10-20 standard deviations off after
normalization (measured before this rule: p99 |z| of 20 in the 8 kHz bin; after: 2.8).

Clipping is never applied. After the last step, a clip whose peak exceeds 1.0 is scaled as a
whole so its peak is ``max_peak`` (0.99): this is one more gain change, so SNR, DRR and the
spectral shape are unchanged, and the output is always finite and inside [-1, 1].

:mod:`ctclab.data.augmented_split` writes a fixed noisy + reverberant copy of a split to score a
model on, and returns one clip before / after for the notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import scipy.fft
from scipy import signal

NOISE_TYPES = ("white", "pink", "babble")
SPEED_STEPS = 100  # speed factors are drawn in steps of 1/100 and resampled by 100 / round(100 s)
AUDIO_BANDWIDTH = 0.95  # share of Nyquist kept by generated noise and by resampling, as sox's rate (7.6 kHz)
DECAY_60_DB = 3.0 * math.log(10.0)  # energy exp(-2 a t) is 60 dB down at t = T when a = 3 ln(10) / T


# ----------------------------------------------------------------------------- noise


def power(samples: np.ndarray) -> float:
    """Mean square of ``samples`` (float64), the power SNRs are defined with."""
    return float(np.mean(np.square(samples, dtype=np.float64)))


def _shaped_noise(num_samples: int, rng: np.random.Generator, slope_exponent: float) -> np.ndarray:
    """(num_samples,) unit-power Gaussian noise with density ~ f ** -slope_exponent, band-limited like audio.

    White Gaussian noise is shaped in the frequency domain (rfft bins times f ** (-exponent / 2);
    the DC bin zeroed) and cut off above ``AUDIO_BANDWIDTH`` of Nyquist (7.6 kHz), as the
    anti-aliasing filter of every resampler or converter cuts a 16 kHz recording (the corpus'
    own audio fades out there: sox's 95 %). Noise up to 8 kHz exists in no recording; in the top
    spectrogram bins (near the log floor, small training std) it would read as 10-20 standard
    deviations. The noise is made at the next FFT-friendly length and cut to ``num_samples`` (a
    clip's own length can be a large prime: 8x slower).
    """
    length = scipy.fft.next_fast_len(num_samples, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(length))
    frequencies = scipy.fft.rfftfreq(length)  # cycles per sample: Nyquist is 0.5
    shape = np.zeros_like(frequencies)
    in_band = (frequencies > 0) & (frequencies <= AUDIO_BANDWIDTH * 0.5)
    shape[in_band] = frequencies[in_band] ** (-slope_exponent / 2)
    noise = scipy.fft.irfft(spectrum * shape, length)[:num_samples]
    return (noise / math.sqrt(power(noise))).astype(np.float32)


def white_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_samples,) Gaussian white noise of unit power, float32 (flat up to 7.6 kHz at 16 kHz, see :func:`_shaped_noise`)."""
    return _shaped_noise(num_samples, rng, 0.0)


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_samples,) pink noise of unit power, float32: density ~ 1/f, 10 log10(2) = 3.01 dB less per octave.

    Band-limited like :func:`white_noise` (see :func:`_shaped_noise`).
    """
    return _shaped_noise(num_samples, rng, 1.0)


def babble_noise(
    num_samples: int, pool: Sequence[np.ndarray], rng: np.random.Generator, speakers: int = 4
) -> np.ndarray:
    """(num_samples,) babble of unit power: ``speakers`` clips from ``pool`` summed, float32.

    Each clip is drawn at random (with replacement when the pool is small), looped to
    ``num_samples`` from a random starting point and scaled to unit power before summing, so no
    single talker dominates.
    """
    if not pool:
        raise ValueError("babble noise needs at least one waveform in its pool")
    babble = np.zeros(num_samples, np.float64)
    for choice in rng.integers(len(pool), size=speakers):
        talker = np.asarray(pool[choice], np.float64)
        looped = np.resize(np.roll(talker, -int(rng.integers(talker.shape[0]))), num_samples)
        babble += looped / math.sqrt(max(power(looped), 1e-20))
    return (babble / math.sqrt(max(power(babble), 1e-20))).astype(np.float32)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` scaled so that 10 log10(P_signal / P_noise) = ``snr_db``.

    Args:
        samples: (N,) clean signal.
        noise: (N,) noise of any power (not silent).
        snr_db: signal-to-noise ratio in dB, both powers over the whole clip.

    Returns:
        (N,) float32 mixture.
    """
    if samples.shape != noise.shape:
        raise ValueError(f"signal {samples.shape} and noise {noise.shape} differ in shape")
    signal_power, noise_power = power(samples), power(noise)
    if signal_power == 0.0 or noise_power == 0.0:
        raise ValueError(f"cannot set an SNR with a silent signal or noise (powers {signal_power}, {noise_power})")
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (samples + scale * noise).astype(np.float32)


# ----------------------------------------------------------------------- reverberation


def room_impulse_response(
    rt60_s: float, drr_db: float, rng: np.random.Generator, sample_rate: int = 16000, predelay_ms: float = 2.0
) -> np.ndarray:
    """A synthetic room impulse response: a direct impulse plus exponentially decaying noise.

    Construction (Polack's statistical model of a diffuse late field): Gaussian noise times the
    envelope exp(-a t), a = 3 ln(10) / RT60, so the tail's energy exp(-2 a t) falls 60 dB in
    RT60 seconds (what Schroeder backward integration measures). The tail starts ``predelay_ms``
    after the direct path (the first reflections arrive after the direct sound) and lasts RT60
    seconds (its energy is then 60 dB down). The direct path is a unit impulse at lag 0 (no
    delay, so the speech stays aligned with its frames), and the tail is scaled so that
    10 log10(direct energy / tail energy) = ``drr_db``. Not modelled: frequency-dependent decay,
    discrete early reflections.

    Args:
        rt60_s: reverberation time in seconds.
        drr_db: direct-to-reverberant energy ratio in dB.
        rng: draws the tail's noise.
        sample_rate: in Hz.
        predelay_ms: gap between the direct path and the tail, in milliseconds.

    Returns:
        (round(rt60_s * sample_rate),) float32 impulse response, h[0] = 1.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    length = max(int(round(rt60_s * sample_rate)), 2)
    time = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-DECAY_60_DB / rt60_s * time)
    tail[: max(1, int(round(predelay_ms * sample_rate / 1000)))] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0  # the direct path
    return tail.astype(np.float32)


def reverberate(samples: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """(N,) ``samples`` convolved with ``impulse_response``, cut to N samples (the tail past the end dropped)."""
    return signal.fftconvolve(samples, impulse_response)[: samples.shape[0]].astype(np.float32)


# ------------------------------------------------------------------- speed, band, gain


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``samples`` ``factor`` times as fast: resampled by 1 / factor (duration / factor, pitch * factor).

    The factor is rounded to a multiple of 1/100 and the clip is resampled by the rational
    100 / round(100 factor) with scipy's polyphase filter, as sox's ``speed`` (what Kaldi's speed
    perturbation runs) does. The result is then cut off above ``AUDIO_BANDWIDTH`` of Nyquist,
    as sox's steep resampling filter cuts it (scipy's is gentle): else a sped-up clip's
    6.9-7.6 kHz would move into the top 0.4 kHz, which 16 kHz recordings leave empty, and a
    slowed-down clip would keep the filter's images there (see :func:`band_limit`).

    Returns:
        (ceil(N * 100 / round(100 factor)),) float32.
    """
    steps = int(round(factor * SPEED_STEPS))
    if steps <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    divisor = math.gcd(SPEED_STEPS, steps)
    output = signal.resample_poly(samples, SPEED_STEPS // divisor, steps // divisor)
    return band_limit(output)


def band_limit(samples: np.ndarray, bandwidth: float = AUDIO_BANDWIDTH) -> np.ndarray:
    """(N,) ``samples`` without content above ``bandwidth`` x Nyquist, float32.

    Zero-phase, in the frequency domain over the whole clip: rfft bins are kept below
    ``bandwidth - 0.03`` of Nyquist, fade out with a raised cosine over the next 3 % (0.24 kHz at
    16 kHz; the short fade keeps the filter's ringing to a few milliseconds) and are zeroed above.
    """
    length = scipy.fft.next_fast_len(samples.shape[0], real=True)
    spectrum = scipy.fft.rfft(np.asarray(samples, np.float64), length)
    relative = scipy.fft.rfftfreq(length) * 2.0  # 1.0 is Nyquist
    fade_start = bandwidth - 0.03
    mask = np.clip((bandwidth - relative) / 0.03, 0.0, 1.0)
    mask = np.where(relative <= fade_start, 1.0, 0.5 * (1 - np.cos(np.pi * mask)))
    return scipy.fft.irfft(spectrum * mask, length)[: samples.shape[0]].astype(np.float32)


def telephone_band(
    samples: np.ndarray,
    sample_rate: int = 16000,
    band_hz: tuple[float, float] = (300.0, 3400.0),
    order: int = 4,
    narrowband: bool = True,
) -> np.ndarray:
    """Telephone bandwidth: an optional 8 kHz round trip, then a zero-phase Butterworth band-pass.

    The band-pass runs forwards and backwards (``sosfiltfilt``): no delay, and twice the
    attenuation of one pass (an order-``order`` band-pass design, applied twice).

    Args:
        samples: (N,) audio at ``sample_rate``.
        band_hz: pass band edges in Hz.
        order: Butterworth order of the design.
        narrowband: first resample to 8 kHz and back (anti-aliased), as a narrowband codec path.

    Returns:
        (N,) float32.
    """
    output = np.asarray(samples, np.float64)
    if narrowband and sample_rate != 8000:
        output = signal.resample_poly(signal.resample_poly(output, 8000, sample_rate), sample_rate, 8000)
        output = np.pad(output, (0, max(0, samples.shape[0] - output.shape[0])))[: samples.shape[0]]
    sections = signal.butter(order, band_hz, btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sections, output).astype(np.float32)


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """``samples`` times 10 ** (gain_db / 20), float32."""
    return (samples * 10.0 ** (gain_db / 20.0)).astype(np.float32)


# ----------------------------------------------------------------------------- augmenter


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to draw and from what ranges; ranges are (low, high), drawn uniformly.

    Each transformation has a switch and a probability per clip. The ranges come from common
    recipes (Kaldi's 0.9-1.1 speed perturbation, MUSAN-style 5-25 dB noise, Ko et al. 2017's
    simulated rooms). The probabilities were measured: notebook 02's final model, 28 quick epochs,
    greedy test CER on unseen voices / the held-out engine / the noisy + reverberant split was
    9.9 / 44.9 / 22.7 % with these defaults, 11.4 / 41.1 / 22.5 % with about twice as much
    augmentation (speed 0.5, reverb 0.4, noise 0.5, telephone 0.1) and, without augmentation
    (14 epochs), 10.5 / 56.0 / 72.9 %. Most clips stay clean of noise and rooms.

    Attributes:
        speed: speed perturbation on / off.
        speed_probability: share of clips sped up or slowed down.
        speed_range: speed factors (0.9-1.1, Kaldi's; steps of 0.01).
        reverb: reverberation on / off.
        reverb_probability: share of clips reverberated.
        rt60_range_s: reverberation time in seconds (0.2 s a furnished office, 0.8 s a hall).
        drr_range_db: direct-to-reverberant ratio in dB (0 dB: as much echo as direct sound).
        noise: additive noise on / off.
        noise_probability: share of clips given noise.
        noise_types: drawn with equal chance; "babble" needs other waveforms (else pink is used).
        snr_range_db: signal-to-noise ratio in dB (5 dB is hard but intelligible).
        babble_speakers: (fewest, most) talkers summed into babble.
        telephone: telephone band on / off.
        telephone_probability: share of clips band-limited.
        telephone_band_hz: pass band (300-3400 Hz, the classic telephone channel).
        narrowband: the telephone path resamples through 8 kHz first.
        gain: gain on / off.
        gain_probability: share of clips given a gain.
        gain_range_db: gain in dB (recording levels differ; louder clips are scaled back, see max_peak).
        max_peak: a clip whose peak would exceed 1.0 is scaled to this peak instead of clipped.
    """

    speed: bool = True
    speed_probability: float = 0.3
    speed_range: tuple[float, float] = (0.9, 1.1)
    reverb: bool = True
    reverb_probability: float = 0.25
    rt60_range_s: tuple[float, float] = (0.2, 0.8)
    drr_range_db: tuple[float, float] = (0.0, 12.0)
    noise: bool = True
    noise_probability: float = 0.3
    noise_types: tuple[str, ...] = NOISE_TYPES
    snr_range_db: tuple[float, float] = (5.0, 25.0)
    babble_speakers: tuple[int, int] = (3, 6)
    telephone: bool = True
    telephone_probability: float = 0.05
    telephone_band_hz: tuple[float, float] = (300.0, 3400.0)
    narrowband: bool = True
    gain: bool = True
    gain_probability: float = 1.0
    gain_range_db: tuple[float, float] = (-12.0, 6.0)
    max_peak: float = 0.99

    def __post_init__(self) -> None:
        unknown = set(self.noise_types) - set(NOISE_TYPES)
        if unknown or not self.noise_types:
            raise ValueError(f"noise_types must be a non-empty subset of {NOISE_TYPES}, got {self.noise_types}")
        for name in ("speed", "reverb", "noise", "telephone", "gain"):
            probability = getattr(self, f"{name}_probability")
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name}_probability must be in [0, 1], got {probability}")
        if self.speed_range[0] <= 0 or self.rt60_range_s[0] <= 0 or self.babble_speakers[0] < 1:
            raise ValueError(
                f"need positive speeds, RT60s and talkers: {self.speed_range}, {self.rt60_range_s}, {self.babble_speakers}"
            )
        if not 0.0 < self.max_peak <= 1.0:
            raise ValueError(f"max_peak must be in (0, 1], got {self.max_peak}")

    @classmethod
    def disabled(cls, **enabled: Any) -> AugmentConfig:
        """Every switch off, then ``enabled`` (e.g. ``AugmentConfig.disabled(noise=True)``)."""
        return replace(cls(speed=False, reverb=False, noise=False, telephone=False, gain=False), **enabled)


@dataclass(frozen=True)
class AugmentParams:
    """What one draw applied; None for a step that was off or not drawn."""

    speed: float | None = None
    rt60_s: float | None = None
    drr_db: float | None = None
    noise_type: str | None = None
    snr_db: float | None = None
    telephone: bool = False
    gain_db: float = 0.0  # the gain applied, the peak limiter's included

    def as_record(self) -> dict:
        """JSON-ready dict, floats rounded to 3 decimals."""
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Augmenter:
    """Draws and applies the augmentations of an :class:`AugmentConfig` to one clip at a time.

    Args:
        config: switches, probabilities and ranges.
        babble_pool: waveforms babble is made from (e.g. the training clips); may be empty.
        sample_rate: of every waveform, in Hz.
    """

    def __init__(self, config: AugmentConfig, babble_pool: Sequence[np.ndarray] = (), sample_rate: int = 16000):
        self.config, self.babble_pool, self.sample_rate = config, babble_pool, sample_rate

    def __call__(self, samples: np.ndarray, rng: np.random.Generator, exclude: int | None = None) -> np.ndarray:
        return self.apply(samples, rng, exclude)[0]

    def apply(
        self, samples: np.ndarray, rng: np.random.Generator, exclude: int | None = None
    ) -> tuple[np.ndarray, AugmentParams]:
        """Augment one clip.

        Each step draws from its own child of ``rng`` (``rng.spawn``), so switching one step off
        leaves the others' draws unchanged; the same ``rng`` state gives the same output.

        Args:
            samples: (N,) float32 in [-1, 1], finite.
            rng: the source of every random choice.
            exclude: index of ``samples`` in the babble pool, never used in its own babble.

        Returns:
            ((N',) float32 in [-1, 1], the parameters drawn); N' = N unless the speed changed.
        """
        if not np.all(np.isfinite(samples)):
            raise ValueError("cannot augment a clip with non-finite samples")
        config = self.config
        speed_rng, reverb_rng, noise_rng, telephone_rng, gain_rng = rng.spawn(5)
        output, params = np.asarray(samples, np.float32), AugmentParams()
        if config.speed and speed_rng.random() < config.speed_probability:
            factor = round(float(speed_rng.uniform(*config.speed_range)) * SPEED_STEPS) / SPEED_STEPS
            if factor != 1.0:
                output, params = speed_perturb(output, factor), replace(params, speed=factor)
        if config.reverb and reverb_rng.random() < config.reverb_probability:
            rt60, drr = float(reverb_rng.uniform(*config.rt60_range_s)), float(reverb_rng.uniform(*config.drr_range_db))
            impulse_response = room_impulse_response(rt60, drr, reverb_rng, self.sample_rate)
            output, params = reverberate(output, impulse_response), replace(params, rt60_s=rt60, drr_db=drr)
        if config.noise and noise_rng.random() < config.noise_probability and power(output) > 0:
            kind = config.noise_types[int(noise_rng.integers(len(config.noise_types)))]
            snr = float(noise_rng.uniform(*config.snr_range_db))
            noise, kind = self._noise(kind, output.shape[0], noise_rng, exclude)
            output, params = add_noise(output, noise, snr), replace(params, noise_type=kind, snr_db=snr)
        if config.telephone and telephone_rng.random() < config.telephone_probability:
            output = telephone_band(output, self.sample_rate, config.telephone_band_hz, narrowband=config.narrowband)
            params = replace(params, telephone=True)
        gain_db = 0.0
        if config.gain and gain_rng.random() < config.gain_probability:
            gain_db = float(gain_rng.uniform(*config.gain_range_db))
            output = apply_gain(output, gain_db)
        peak = float(np.max(np.abs(output), initial=0.0))
        if peak > 1.0:  # scale, never clip: a gain change keeps SNR, DRR and spectral shape
            output = (output * (config.max_peak / peak)).astype(np.float32)
            gain_db += 20.0 * math.log10(config.max_peak / peak)
        assert np.all(np.isfinite(output)) and np.max(np.abs(output), initial=0.0) <= 1.0
        return output, replace(params, gain_db=gain_db)

    def _noise(
        self, kind: str, num_samples: int, rng: np.random.Generator, exclude: int | None
    ) -> tuple[np.ndarray, str]:
        """(noise of ``kind``, the kind used): babble without other waveforms falls back to pink."""
        if kind == "babble":
            others = _Without(self.babble_pool, exclude)  # a view: a lazy pool is read only where drawn
            if others:
                low, high = self.config.babble_speakers
                return babble_noise(num_samples, others, rng, int(rng.integers(low, high + 1))), kind
            kind = "pink"
        return (white_noise if kind == "white" else pink_noise)(num_samples, rng), kind


class _Without(Sequence):
    """``pool`` without the item at ``exclude`` (None: all of it), indexed like the list of the rest."""

    def __init__(self, pool: Sequence[np.ndarray], exclude: int | None):
        self.pool = pool
        self.exclude = exclude if exclude is not None and 0 <= exclude < len(pool) else None

    def __len__(self) -> int:
        return len(self.pool) - (self.exclude is not None)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.pool[index + (self.exclude is not None and index >= self.exclude)]


# ------------------------------------------------------------------- splits and examples
