"""A small physiological model that turns a transcript plus speech timing into 8-channel surface EMG.

Used by :mod:`emg_corpus` (read its docstring for the whole information flow). Three stages:

1. **Phonemes -> articulator activations.** espeak-ng's phoneme transcription (``espeak-ng -x -q``,
   American English, independent of the voice that spoke the audio) is split into phonemes; each
   phoneme has a target activation for 8 articulator muscle groups (:data:`MUSCLES`, table
   :data:`PHONEME_TARGETS`). Targets are laid out on a *speech clock* that only runs while the
   audio is loud (so phonemes fill the spoken stretches, and pauses relax the articulators),
   jittered per phoneme, smoothed with a Gaussian (articulators move in tens of milliseconds) and
   shifted earlier in time: muscle activity leads the sound it makes by about 50 ms.
2. **Muscles -> sources.** Each muscle fires motor units whose summed potential is modelled as
   Gaussian noise band-limited to about 20-450 Hz (a per-muscle spectral peak), with amplitude
   ``tonic + gain * activation`` in microvolts.
3. **Sources -> electrodes.** A per-session 8 x 8 mixing matrix (electrode placement: each
   electrode sits over one muscle but picks up its neighbours) mixes the sources; then come
   60 Hz mains with harmonics, electrode offset and slow baseline drift, a heartbeat on the
   neck electrodes, occasional non-speech muscle bursts (swallowing, smiling) and sensor noise.

Silent speech: same articulation, but no voicing (the laryngeal group stays near rest), weaker
activations, slower and unevenly warped timing, and a fresh electrode placement per session.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import special
from scipy.ndimage import gaussian_filter1d

SAMPLE_RATE = 1000  # Hz, as the Gaddy & Klein recordings (OpenBCI Cyton over WiFi)
MUSCLES = (
    "lip closure and rounding (orbicularis oris)",
    "lower lip (mentalis / depressor)",
    "lip corners (zygomaticus / risorius)",
    "jaw opening (digastric / masseter)",
    "tongue tip (genioglossus, submental)",
    "tongue back (styloglossus)",
    "tongue body (mylohyoid)",
    "voicing (laryngeal strap muscles)",
)
VOICING = 7  # index of the laryngeal group: the only place voiced and voiceless phonemes differ

# Targets in [0, 1] per muscle group, in MUSCLES order. Voiced consonants are their voiceless
# partner plus voicing; nasals equal their oral stop (the velum is out of reach of surface
# electrodes), so b/m, d/n and g/ng are as alike here as in real EMG.
_CONSONANTS = {
    "p": (1.0, 0.4, 0, 0, 0, 0, 0),
    "f": (0.2, 1.0, 0.2, 0, 0, 0, 0),
    "T": (0, 0, 0.2, 0.2, 0.9, 0, 0.1),
    "s": (0, 0, 0.5, 0, 0.8, 0, 0.3),
    "S": (0.6, 0.2, 0, 0, 0.5, 0, 0.8),
    "tS": (0.5, 0.2, 0, 0, 0.9, 0, 0.7),
    "t": (0, 0, 0.1, 0, 1.0, 0, 0.2),
    "k": (0, 0, 0, 0, 0, 1.0, 0.2),
    "h": (0, 0, 0, 0.3, 0, 0, 0),
}
_VOICED_PARTNERS = {
    "b": "p",
    "m": "p",
    "v": "f",
    "D": "T",
    "z": "s",
    "Z": "S",
    "dZ": "tS",
    "d": "t",
    "n": "t",
    "g": "k",
    "N": "k",
}
_SONORANTS = {
    "l": (0, 0, 0, 0.2, 0.8, 0.2, 0),
    "r": (0.4, 0, 0, 0, 0.4, 0.5, 0.2),
    "w": (0.9, 0, 0, 0, 0, 0.6, 0),
    "j": (0, 0, 0.4, 0, 0, 0, 1.0),
}
_VOWELS = {
    "i": (0, 0, 0.8, 0.1, 0.2, 0, 0.9),
    "I": (0, 0, 0.6, 0.2, 0.2, 0, 0.7),
    "e": (0, 0, 0.5, 0.4, 0.2, 0, 0.5),
    "E": (0, 0, 0.4, 0.5, 0.1, 0, 0.4),
    "a": (0, 0, 0.3, 0.9, 0, 0, 0.2),
    "A": (0, 0, 0, 1.0, 0, 0.3, 0),
    "V": (0, 0, 0, 0.6, 0, 0.2, 0),
    "@": (0, 0, 0, 0.3, 0, 0, 0),
    "3": (0.3, 0, 0, 0.3, 0.3, 0.4, 0.1),
    "0": (0.3, 0, 0, 0.8, 0, 0.4, 0),
    "O": (0.6, 0, 0, 0.6, 0, 0.5, 0),
    "o": (0.8, 0, 0, 0.4, 0, 0.5, 0),
    "U": (0.6, 0, 0, 0.2, 0, 0.7, 0),
    "u": (0.9, 0, 0, 0.1, 0, 0.8, 0),
}
VOICED_LEVEL, VOWEL_VOICING = 0.6, 0.7
PHONEME_TARGETS: dict[str, np.ndarray] = {
    **{p: np.array([*t, 0.0]) for p, t in _CONSONANTS.items()},
    **{p: np.array([*_CONSONANTS[partner], VOICED_LEVEL]) for p, partner in _VOICED_PARTNERS.items()},
    **{p: np.array([*t, VOICED_LEVEL]) for p, t in _SONORANTS.items()},
    **{p: np.array([*t, VOWEL_VOICING]) for p, t in _VOWELS.items()},
}
PHONEME_TARGETS["h"][VOICING] = 0.25  # breathy: the glottis is open but tense
PHONEME_TARGETS["L"] = PHONEME_TARGETS["l"]  # syllabic l ("bottle")
# relative durations on the speech clock; ':' lengthens a vowel by LENGTH_MARK_WEIGHT
PHONEME_WEIGHTS = {
    **{p: 0.6 for p in "pbtdkg"},
    **{p: 0.85 for p in ("f", "v", "T", "D", "s", "z", "S", "Z", "tS", "dZ")},
    **{p: 0.55 for p in ("m", "n", "N", "l", "L", "r", "w", "j", "h")},
    **{p: 0.8 for p in _VOWELS},
}
LENGTH_MARK_WEIGHT = 0.4
_TOKEN = re.compile("tS|dZ|" + "|".join(re.escape(p) for p in sorted(PHONEME_TARGETS, key=len, reverse=True)))
_IGNORED = set("'#,-2;5_!=|") | set("1346789")  # stress marks, variants and pauses

# electrode e sits over muscle e and picks up these neighbours (anatomy of the Gaddy & Klein sites)
_NEIGHBOURS = {
    0: {2: 0.4, 1: 0.3},
    1: {0: 0.4, 3: 0.3},
    2: {0: 0.3, 3: 0.3},
    3: {2: 0.3, 5: 0.2},
    4: {6: 0.5, 3: 0.3},
    5: {6: 0.4, 7: 0.3},
    6: {4: 0.4, 5: 0.4},
    7: {5: 0.3, 6: 0.2},
}
NECK_ELECTRODES = (5, 7)  # the heartbeat reaches these


def phonemize_words(words: list[str], voice: str = "en-us") -> dict[str, list[str]]:
    """espeak-ng phonemes of each word, e.g. "seven" -> ["s", "E", "v", "@", "n"].

    One espeak-ng call for all words (one per line). Unknown symbols in espeak's output, such as
    stress marks, are dropped; a vowel length mark ':' becomes the token ":".

    Raises:
        RuntimeError: espeak-ng missing or its output does not have one line per word.
    """
    words = list(dict.fromkeys(words))
    try:
        result = subprocess.run(
            ["espeak-ng", "-x", "-q", "-v", voice],
            input="\n".join(words) + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"espeak-ng could not phonemize the vocabulary: {error}") from error
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != len(words):
        raise RuntimeError(f"espeak-ng returned {len(lines)} phoneme lines for {len(words)} words")
    return {word: tokenize_phonemes(line) for word, line in zip(words, lines)}


def tokenize_phonemes(transcription: str) -> list[str]:
    """Split an espeak-ng ``-x`` transcription into known phonemes and ":" length marks."""
    tokens, position = [], 0
    while position < len(transcription):
        character = transcription[position]
        match = _TOKEN.match(transcription, position)
        if match:
            tokens.append(match.group())
            position = match.end()
            continue
        if character == ":" and tokens:
            tokens.append(":")
        elif character not in _IGNORED and not character.isspace():
            raise ValueError(f"unknown espeak-ng phoneme symbol {character!r} in {transcription!r}")
        position += 1
    return tokens


def speech_activity(
    samples: np.ndarray, sample_rate: int, threshold_db: float = 35.0, gap_ms: int = 150, min_run_ms: int = 30
) -> np.ndarray:
    """Where the audio is speech, at 1 ms resolution: (ceil(duration in ms),) bool.

    10 ms frames louder than (loudest frame - ``threshold_db``) are speech; silent gaps up to
    ``gap_ms`` inside speech (stop closures) are filled, loud runs under ``min_run_ms`` dropped.
    Only this on/off envelope of the audio reaches the EMG, never its spectrum.
    """
    hop = sample_rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)  # (N, 10 ms)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = level > level.max() - threshold_db
    for start, end, loud in _runs(active):
        interior = start > 0 and end < len(active)
        if not loud and interior and end - start <= gap_ms // 10:
            active[start:end] = True
    for start, end, loud in _runs(active):
        if loud and end - start < min_run_ms // 10:
            active[start:end] = False
    milliseconds = int(np.ceil(len(samples) * 1000 / sample_rate))
    per_ms = np.repeat(active, 10)  # (10 N,) one entry per millisecond
    return np.r_[per_ms, np.zeros(max(0, milliseconds - len(per_ms)), bool)][:milliseconds]


def _runs(values: np.ndarray) -> list[tuple[int, int, object]]:
    """Maximal runs of equal values of a bool or int array: [(start, end, value)], end exclusive."""
    edges = np.flatnonzero(np.diff(values.astype(np.int64))) + 1
    bounds = np.r_[0, edges, len(values)]
    return [(int(start), int(end), values[start]) for start, end in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class ArticulationConfig:
    """How phonemes become smooth muscle activations."""

    lead_ms: float = 50.0  # muscle activity precedes the sound it makes
    lead_jitter_ms: float = 10.0  # per-utterance spread of that lead
    smoothing_ms: float = 20.0  # Gaussian sigma: articulators move over tens of ms
    target_jitter: float = 0.15  # relative spread of each phoneme instance's targets
    timing_jitter: float = 0.25  # relative spread of each phoneme's duration weight


def articulator_activations(
    phonemes: list[str], active: np.ndarray, rng: np.random.Generator, config: ArticulationConfig = ArticulationConfig()
) -> np.ndarray:
    """Smooth activations of the 8 muscle groups: (len(active), 8) in [0, ~1.3], at 1 kHz.

    Args:
        phonemes: tokens from :func:`tokenize_phonemes` for the whole utterance.
        active: (T,) bool speech clock from :func:`speech_activity`, 1 ms per entry.
    """
    units = [p for p in phonemes if p != ":"]
    if not units or not active.any():
        return np.zeros((len(active), len(MUSCLES)))
    relative: list[float] = []  # relative duration of each phoneme; a length mark lengthens the one before it
    for phoneme in phonemes:
        if phoneme == ":":
            relative[-1] += LENGTH_MARK_WEIGHT
        else:
            relative.append(PHONEME_WEIGHTS[phoneme])
    weights = np.asarray(relative)
    weights *= np.exp(config.timing_jitter * rng.standard_normal(len(units)))
    clock = np.cumsum(active)  # ms of speech so far, (T,)
    boundaries = np.cumsum(weights) / weights.sum() * clock[-1]  # end of each phoneme on the clock
    segment = np.minimum(np.searchsorted(boundaries, clock, side="left"), len(units) - 1)  # (T,)
    segment = np.where(active, segment, -1)  # -1: a pause, where the articulators rest
    targets = np.stack([PHONEME_TARGETS[p] for p in units])  # (P, 8)
    targets = targets * np.exp(config.target_jitter * rng.standard_normal(targets.shape))
    lead = config.lead_ms + config.lead_jitter_ms * rng.standard_normal()
    runs = [(start, end, segment[start]) for start, end, _ in _runs(segment) if segment[start] >= 0]
    return smooth_steps(runs, targets, len(active), config.smoothing_ms, lead)


def smooth_steps(
    runs: list[tuple[int, int, int]], targets: np.ndarray, length: int, sigma: float, shift: float
) -> np.ndarray:
    """Exact Gaussian smoothing of a piecewise-constant curve, read ``shift`` samples ahead.

    The curve is ``targets[k]`` on each run ``[start, end)`` of ``runs`` and 0 elsewhere. It is a
    sum of steps, and a smoothed step is a normal CDF, which differs from the bare step only within
    4 sigma of it: so the result is the bare steps (a cumulative sum) plus short CDF corrections.

    Returns:
        (length, targets.shape[1]): value at sample t of the smoothed curve at t + shift.
    """
    steps = np.zeros((length + 1, targets.shape[1]))  # jump added where each full step begins
    corrections = np.zeros((length, targets.shape[1]))
    radius = 4.0 * sigma
    centres = np.arange(length) + 0.5  # sample centres
    for start, end, index in runs:
        for edge, jump in ((start, targets[index]), (end, -targets[index])):
            position = edge - shift  # a step at `edge` read `shift` ahead
            low, high = np.searchsorted(centres, [position - radius, position + radius])
            steps[high] += jump
            window = centres[low:high]
            corrections[low:high] += np.outer(0.5 * (1 + special.erf((window - position) / (sigma * np.sqrt(2)))), jump)
    return np.cumsum(steps, axis=0)[:length] + corrections


def time_warp(activation: np.ndarray, stretch: float, rng: np.random.Generator, wobble: float = 0.15) -> np.ndarray:
    """Stretch (T, K) activations by ``stretch`` with a smooth random local rate (silent speech timing)."""
    new_length = round(len(activation) * stretch)
    coarse = gaussian_filter1d(rng.standard_normal(new_length // 10 + 2), 15, mode="wrap")  # 10 ms steps, ~0.3 s
    slow_noise = np.interp(np.arange(new_length) / 10, np.arange(len(coarse)), coarse)
    rate = np.exp(wobble * slow_noise / max(slow_noise.std(), 1e-12))  # local speaking rate, mean ~1
    positions = np.cumsum(rate)
    positions = (positions - positions[0]) / (positions[-1] - positions[0]) * (len(activation) - 1)
    return np.stack([np.interp(positions, np.arange(len(activation)), column) for column in activation.T], axis=1)


@dataclass(frozen=True)
class SessionConfig:
    """Ranges the per-session recording conditions are drawn from (amplitudes in microvolts)."""

    muscle_gain: tuple[float, float] = (20.0, 40.0)  # µV of source amplitude at activation 1
    tonic: tuple[float, float] = (2.0, 4.0)  # µV of resting muscle tone
    placement_spread: float = 0.3  # log-normal spread of each mixing weight between sessions
    crosstalk_floor: float = 0.05  # weight of every muscle on every electrode
    mains: tuple[float, float] = (10.0, 50.0)  # µV of 60 Hz hum per electrode
    mains_hz: float = 60.0
    offset: float = 300.0  # µV spread of electrode DC offsets
    drift: tuple[float, float] = (20.0, 80.0)  # µV of slow baseline wander
    heartbeat: tuple[float, float] = (20.0, 50.0)  # µV of the QRS spike on neck electrodes
    sensor_noise: float = 1.5  # µV rms of amplifier noise
    burst_rate: float = 0.3  # non-speech muscle bursts per second


class Session:
    """One recording session's fixed conditions: electrode placement, hum, carriers.

    Args:
        rng: the session's generator (all draws happen here, so a session is reproducible).
        config: the ranges.
        silent: silent-speech session (weaker activations, no voicing).
    """

    def __init__(self, rng: np.random.Generator, config: SessionConfig = SessionConfig(), silent: bool = False):
        self.config, self.silent = config, silent
        base = np.full((8, 8), config.crosstalk_floor)  # (electrodes, muscles)
        for electrode, neighbours in _NEIGHBOURS.items():
            base[electrode, electrode] = 1.0
            for muscle, weight in neighbours.items():
                base[electrode, muscle] = weight
        self.mixing = base * np.exp(config.placement_spread * rng.standard_normal(base.shape))
        self.muscle_gain = rng.uniform(*config.muscle_gain, size=8)
        self.tonic = rng.uniform(*config.tonic, size=8)
        self.carrier_peak = rng.uniform(60.0, 180.0, size=8)  # Hz, spectral peak of each muscle's MUAPs
        self.mains = rng.uniform(*config.mains, size=8)
        self.harmonics = 0.5 ** np.arange(7)  # relative hum at 60, 120, ... 420 Hz
        self.offset = config.offset * rng.standard_normal(8)
        self.heart_rate = rng.uniform(1.0, 1.3)  # beats per second
        self.heartbeat = np.zeros(8)
        self.heartbeat[list(NECK_ELECTRODES)] = rng.uniform(*config.heartbeat, size=len(NECK_ELECTRODES))

    def carriers(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Unit-rms band-limited noise, one column per muscle: (T, 8)."""
        padded = scipy.fft.next_fast_len(num_samples, real=True)  # FFT sizes with small factors only
        frequencies = np.fft.rfftfreq(padded, 1.0 / SAMPLE_RATE)[:, None]  # (F, 1)
        low = (frequencies / 20.0) ** 2 / (1 + (frequencies / 20.0) ** 2)  # 2nd-order high-pass at 20 Hz
        high = 1 / (1 + (frequencies / self.carrier_peak) ** 4)  # roll-off above each muscle's peak
        shape = np.where(frequencies <= 450.0, low * high, 0.0)  # (F, 8)
        spectrum = scipy.fft.rfft(rng.standard_normal((padded, 8)), axis=0) * shape
        noise = scipy.fft.irfft(spectrum, n=padded, axis=0)[:num_samples]
        return noise / np.maximum(noise.std(axis=0, keepdims=True), 1e-12)

    def _hum(self, seconds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mains and harmonics with random phases, (T, 8): sin(wt + phi) = sin(wt) cos(phi) + cos(wt) sin(phi)."""
        angles = 2 * np.pi * self.config.mains_hz * np.arange(1, 8) * seconds[:, None]  # (T, 7)
        phases = rng.uniform(0, 2 * np.pi, size=(7, 8))
        amplitudes = self.harmonics[:, None] * self.mains[None, :]  # (7, 8)
        return np.sin(angles) @ (amplitudes * np.cos(phases)) + np.cos(angles) @ (amplitudes * np.sin(phases))

    def _drift(self, seconds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Slow baseline wander, (T, 8): 4 shared 0.05-0.5 Hz sinusoids mixed per electrode."""
        frequencies, phases = rng.uniform(0.05, 0.5, size=4), rng.uniform(0, 2 * np.pi, size=4)
        basis = np.sin(2 * np.pi * frequencies * seconds[:, None] + phases)  # (T, 4)
        weights = rng.standard_normal((4, 8)) / 2  # unit variance per electrode on average
        return basis @ weights * rng.uniform(*self.config.drift, size=8)

    def record(self, activation: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
        """Electrode signals for (T, 8) muscle activations: (T, 8) float64 microvolts at 1 kHz."""
        num_samples = len(activation)
        activation = activation.copy()
        seconds = np.arange(num_samples) / SAMPLE_RATE
        for _ in range(rng.poisson(self.config.burst_rate * num_samples / SAMPLE_RATE)):
            centre, width = rng.uniform(0, num_samples), rng.uniform(50, 150)  # ms
            activation[:, rng.integers(8)] += rng.uniform(0.3, 0.8) * np.exp(
                -0.5 * ((np.arange(num_samples) - centre) / width) ** 2
            )
        amplitude = self.tonic + strength * rng.uniform(0.85, 1.15) * self.muscle_gain * activation  # (T, 8) µV
        sources = self.carriers(num_samples, rng) * amplitude  # (T, muscles)
        electrodes = sources @ self.mixing.T  # (T, electrodes)
        electrodes += self._hum(seconds, rng) + self.offset + self._drift(seconds, rng)
        beat_phase = (seconds * self.heart_rate + rng.uniform()) % 1.0
        electrodes += self.heartbeat * np.exp(-0.5 * ((beat_phase[:, None] - 0.5) / 0.012) ** 2)
        electrodes += self.config.sensor_noise * rng.standard_normal(electrodes.shape)
        return electrodes
