"""Keystroke timing and a forearm model that turns keystrokes into 2 x 16-channel surface EMG at 2 kHz.

Used by :mod:`ctclab.emg.typing_corpus` (read its docstring for the corpus around it). Four stages:

1. **Text -> keystrokes** (:func:`type_prompt`). Each character is a pynput key name (letters,
   ``'``, ``Key.space``). The interval from one key press to the next is log-normal around the
   typist's own median (0.16-0.30 s, about 40-75 words per minute), slower when one finger
   presses two different keys in a row, faster when the hands alternate and on common English
   bigrams; before some words the typist pauses (median 0.6 s). A few characters are mistyped as
   a neighbouring key on the same row, noticed, deleted with ``Key.backspace`` and retyped. Keys
   are held 70-120 ms.
2. **Keystrokes -> muscle activations** (:func:`key_activations`). A touch-typing assignment gives
   each key a hand, a finger, a row and a reach (inner index column, outer pinky column). Each
   forearm drives 9 muscle groups (:data:`MUSCLES`): the finger's flexor presses the key, the
   finger extensor adds a top-row reach, a bottom-row press curls the finger with the deep
   flexor, the radial / ulnar wrist extensors add sideways reaches, and the thumb
   flexor presses space (left or right thumb, a per-typist habit). The idle hand's extensors
   co-activate weakly. Per typist, every (key, muscle) weight is scaled log-normally (typing style).
   Each press adds ``amplitude * weights * exp(-(t - press + lead)^2 / (2 width^2))``: a burst of
   about 60-140 ms (+-2 widths) that starts before the key goes down (lead 10-30 ms).
3. **Muscles -> sources** (:func:`render_band`). Each muscle's summed motor-unit activity is white
   noise (many asynchronous firings) convolved with its motor-unit action potential, a first-order
   Hermite-Rodriguez wavelet whose width sets the spectral peak (60-180 Hz); its amplitude is
   ``tonic + gain * activation`` in microvolts.
4. **Sources -> electrodes** (:func:`band_mixing`). The 16 electrodes of each wrist band sit every
   22.5 degrees around the forearm; electrode ``e`` picks up muscle ``m`` with the von Mises weight
   ``exp(kappa * (cos(phi_e - theta_m - rho) - 1))``. ``theta_m`` is the muscle's angle (the 9 groups
   spread evenly round the forearm, a simplification of its anatomy, plus per-typist jitter), ``rho`` the typist's band rotation (a circular, possibly
   fractional, shift of the electrodes: +1 moves every pattern one electrode up) plus a small
   re-donning jitter per session. Then per-electrode contact gain, 60 Hz mains with harmonics and
   amplifier noise. The real rig high-passes its signal, so no DC offset or drift is added.

A model must therefore read *which electrodes* burst (spatial pattern) and *when* (timing); the
rotation, anatomy and style of a new typist move those patterns, so a model trained on other
typists does worse on a new one than a model fine-tuned on a few minutes of that typist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

SAMPLE_RATE = 2000  # Hz, as emg2qwerty
ELECTRODES = 16  # per wrist band
LEFT, RIGHT = 0, 1  # band / hand index: emg_left, emg_right
MUSCLES = (  # M = 9 muscle groups per forearm
    "index finger flexor",
    "middle finger flexor",
    "ring finger flexor",
    "little finger flexor",
    "deep finger flexor (flexor digitorum profundus)",
    "thumb flexor (flexor pollicis longus)",
    "finger extensor (extensor digitorum)",
    "ulnar wrist extensor (extensor carpi ulnaris)",
    "radial wrist extensor (extensor carpi radialis)",
)
FLEXOR = {"index": 0, "middle": 1, "ring": 2, "pinky": 3, "thumb": 5}
DEEP_FLEXOR, EXTENSOR, ULNAR, RADIAL = 4, 6, 7, 8
MUSCLE_ANGLES = (0.0, 1.8, 3.6, 5.3, 8.9, 7.1, 10.7, 12.4, 14.2)  # electrodes from electrode 0 around the band
ROWS = {1: "qwertyuiop", 0: "asdfghjkl;'", -1: "zxcvbnm,./"}  # top, home, bottom row, left to right
COLUMN_FINGERS = ("pinky", "ring", "middle", "index", "index", "index", "index", "middle", "ring", "pinky", "pinky")
SPACE, BACKSPACE = "Key.space", "Key.backspace"
KEYS = (*"abcdefghijklmnopqrstuvwxyz", "'", SPACE, BACKSPACE)  # every key the typists press
COMMON_BIGRAMS = frozenset("th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng".split())


@dataclass(frozen=True)
class KeyPlace:
    """Where a key sits for a touch typist: hand (LEFT / RIGHT), finger, row (1 top, 0 home, -1 bottom,
    -2 the space bar) and reach (0 home column, 1 the inner index or outer pinky column, 2 further)."""

    hand: int
    finger: str
    row: int
    reach: int


def key_name(character: str) -> str:
    """pynput key name of a typed character: "a" -> "a", " " -> "Key.space".

    Raises:
        ValueError: a character no key of :data:`KEYS` types.
    """
    name = SPACE if character == " " else character
    if name not in KEYS:
        raise ValueError(f"no key types {character!r}; typists press {KEYS}")
    return name


def key_place(key: str, space_hand: int = RIGHT) -> KeyPlace:
    """The :class:`KeyPlace` of a pynput key name; space goes to the thumb of ``space_hand``."""
    if key == SPACE:
        return KeyPlace(space_hand, "thumb", -2, 0)
    if key == BACKSPACE:
        return KeyPlace(RIGHT, "pinky", 1, 2)  # far up and right of the little finger
    for row, letters in ROWS.items():
        column = letters.find(key)
        if column >= 0:
            reach = int(column in (4, 5, 10))  # t g b / y h n: index reaches in; ': pinky reaches out
            return KeyPlace(LEFT if column < 5 else RIGHT, COLUMN_FINGERS[column], row, reach)
    raise ValueError(f"{key!r} is not a key of the typing model ({KEYS})")


def key_activations(place: KeyPlace, co_activation: float) -> np.ndarray:
    """Muscle weights of one press before typing style: (2, 9), [hand, muscle], peak ~1.

    Args:
        place: the key's place.
        co_activation: weight of the idle hand's three extensors (it hovers over the keys).
    """
    weights = np.zeros((2, len(MUSCLES)))
    own, idle = weights[place.hand], weights[1 - place.hand]
    own[FLEXOR[place.finger]] = 1.0
    if place.row == 1:
        own[EXTENSOR] += 0.8  # lift the finger and reach up
    if place.row == -1:
        own[FLEXOR[place.finger]] += 0.2  # curl down: the superficial flexor harder,
        own[DEEP_FLEXOR] += 0.8  # and the deep flexor that bends the fingertip
    if place.reach:
        own[RADIAL if place.finger == "index" else ULNAR] += 0.8 * place.reach
    idle[[EXTENSOR, ULNAR, RADIAL]] = co_activation
    return weights


def _validate(config: object, ranges: Sequence[str], positive: Sequence[str], fractions: Sequence[str]) -> None:
    """ValueError naming the field and value: ranges need 0 < low <= high, positive > 0, fractions in [0, 1]."""
    for name in ranges:
        low, high = getattr(config, name)
        if not 0 < low <= high:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
    for name in positive:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name in fractions:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {getattr(config, name)}")


@dataclass(frozen=True)
class TypingConfig:
    """Ranges the typists' timing habits are drawn from (seconds unless stated)."""

    interval: tuple[float, float] = (0.16, 0.30)  # per-typist median press-to-press interval (75-40 wpm)
    interval_spread: tuple[float, float] = (0.25, 0.40)  # log-normal sigma of one interval
    hold: tuple[float, float] = (0.07, 0.12)  # per-typist median key-down time
    same_finger: float = 1.4  # interval factor: one finger, two different keys
    repeat: float = 1.1  # interval factor: the same key twice ("ll")
    hand_alternation: float = 0.8  # interval factor: the other hand presses next
    common_bigram: float = 0.85  # interval factor: a frequent English bigram (rehearsed)
    pause_rate: tuple[float, float] = (0.05, 0.25)  # chance of a pause before a word
    pause: float = 0.6  # median pause (log-normal, sigma 0.5)
    typo_rate: float = 0.01  # mean mistyped characters per character (per typist: 0 to twice this)
    reaction: tuple[float, float] = (0.6, 1.2)  # prompt shown -> first press
    linger: tuple[float, float] = (0.3, 0.8)  # last release -> next prompt
    right_thumb_space: float = 0.75  # share of typists who press space with the right thumb

    def __post_init__(self) -> None:
        ranges = ("interval", "interval_spread", "hold", "pause_rate", "reaction", "linger")
        factors = ("same_finger", "repeat", "hand_alternation", "common_bigram", "pause")
        _validate(self, ranges, factors, ("typo_rate", "right_thumb_space"))


@dataclass(frozen=True)
class MyoConfig:
    """Ranges of the muscle and electrode model (microvolts, seconds, electrodes)."""

    lead: tuple[float, float] = (0.01, 0.03)  # per-typist lead of the burst over the key press
    burst_width: tuple[float, float] = (0.015, 0.035)  # per-typist Gaussian sigma: 60-140 ms bursts
    burst_jitter: float = 0.008  # sd of one burst's timing around the typist's lead
    amplitude_spread: float = 0.2  # log-normal sigma of one press's strength
    max_rotation: float = 2.0  # per-typist band rotation drawn uniformly in [-max, max]
    session_rotation: float = 0.3  # sd of the rotation added each time the band is put on
    anatomy_spread: float = 0.4  # sd of each muscle's angle between typists
    spatial_kappa: tuple[float, float] = (3.0, 6.0)  # von Mises concentration: higher = more focal
    style_spread: float = 0.25  # per-typist log-normal sigma on every (key, muscle) weight
    co_activation: float = 0.15  # the idle hand's extensors during a press
    muscle_gain: tuple[float, float] = (20.0, 40.0)  # µV of a muscle's source at activation 1
    tonic: tuple[float, float] = (1.0, 2.0)  # µV of resting muscle tone
    muap_peak: tuple[float, float] = (60.0, 180.0)  # Hz, spectral peak of a muscle's action potentials
    contact_spread: float = 0.15  # per-session log-normal sigma of each electrode's gain
    hum: tuple[float, float] = (1.0, 8.0)  # µV of mains per electrode and session
    mains_hz: float = 60.0
    sensor_noise: float = 1.0  # µV rms of amplifier noise

    def __post_init__(self) -> None:
        ranges = ("lead", "burst_width", "spatial_kappa", "muscle_gain", "tonic", "muap_peak", "hum")
        _validate(self, ranges, ("mains_hz",), ("co_activation",))
        if self.muap_peak[1] >= SAMPLE_RATE / 4:
            raise ValueError(f"muap_peak must stay below {SAMPLE_RATE / 4} Hz, got {self.muap_peak}")
        spreads = ("burst_jitter", "amplitude_spread", "session_rotation", "anatomy_spread", "style_spread")
        for name in (*spreads, "max_rotation", "contact_spread", "sensor_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class Typist:
    """One synthetic user: timing habits and forearm. Arrays are [band, ...]; angles in electrodes."""

    name: str
    interval: float  # s, median press-to-press interval
    interval_spread: float  # log-normal sigma
    hold: float  # s, median key-down time
    pause_rate: float  # chance of a pause before a word
    typo_rate: float  # mistyped characters per character
    space_hand: int  # LEFT or RIGHT thumb on the space bar
    lead: float  # s, burst before press
    burst_width: float  # s, Gaussian sigma of a burst
    rotation: tuple[float, float]  # electrodes, (left band, right band)
    muscle_angles: np.ndarray  # (2, M) electrodes
    kappa: float  # von Mises concentration of the electrode pick-up
    muscle_gain: np.ndarray  # (2, M) µV
    tonic: np.ndarray  # (2, M) µV
    muap_peak: np.ndarray  # (2, M) Hz
    activations: np.ndarray  # (len(KEYS), 2, M): muscle weights of each key, style applied


def draw_typist(name: str, rng: np.random.Generator, typing: TypingConfig, myo: MyoConfig) -> Typist:
    """A typist with habits and anatomy drawn from the configs' ranges (all draws from ``rng``)."""
    space_hand = RIGHT if rng.random() < typing.right_thumb_space else LEFT
    base = np.stack([key_activations(key_place(key, space_hand), myo.co_activation) for key in KEYS])
    style = np.exp(myo.style_spread * rng.standard_normal(base.shape))  # (keys, 2, M)
    shape = (2, len(MUSCLES))
    return Typist(
        name=name,
        interval=float(rng.uniform(*typing.interval)),
        interval_spread=float(rng.uniform(*typing.interval_spread)),
        hold=float(rng.uniform(*typing.hold)),
        pause_rate=float(rng.uniform(*typing.pause_rate)),
        typo_rate=float(rng.uniform(0.0, 2 * typing.typo_rate)),
        space_hand=space_hand,
        lead=float(rng.uniform(*myo.lead)),
        burst_width=float(rng.uniform(*myo.burst_width)),
        rotation=(float(rng.uniform(-1, 1) * myo.max_rotation), float(rng.uniform(-1, 1) * myo.max_rotation)),
        muscle_angles=np.asarray(MUSCLE_ANGLES) + myo.anatomy_spread * rng.standard_normal(shape),
        kappa=float(rng.uniform(*myo.spatial_kappa)),
        muscle_gain=rng.uniform(*myo.muscle_gain, size=shape),
        tonic=rng.uniform(*myo.tonic, size=shape),
        muap_peak=rng.uniform(*myo.muap_peak, size=shape),
        activations=base * style,
    )


def _interval(previous: str, current: str, typist: Typist, rng: np.random.Generator, config: TypingConfig) -> float:
    """Seconds from pressing ``previous`` to pressing ``current``."""
    before, after = key_place(previous, typist.space_hand), key_place(current, typist.space_hand)
    if previous == current:
        factor = config.repeat
    elif before.hand != after.hand:
        factor = config.hand_alternation
    elif before.finger == after.finger:
        factor = config.same_finger
    else:
        factor = 1.0
    if previous + current in COMMON_BIGRAMS:
        factor *= config.common_bigram
    return typist.interval * factor * float(np.exp(typist.interval_spread * rng.standard_normal()))


def _typo_neighbour(key: str, rng: np.random.Generator) -> str | None:
    """A letter next to ``key`` on its row (None for keys without letter neighbours)."""
    for letters in ROWS.values():
        column = letters.find(key)
        if column >= 0 and key.isalpha():
            options = [letters[c] for c in (column - 1, column + 1) if 0 <= c < len(letters) and letters[c].isalpha()]
            return str(options[int(rng.integers(len(options)))])
    return None


def type_prompt(
    text: str, typist: Typist, rng: np.random.Generator, shown: float, config: TypingConfig
) -> tuple[list[dict], float]:
    """Keystrokes of ``typist`` typing ``text``, shown at ``shown`` seconds.

    Returns:
        ([{"key", "start", "end"}] in press order, seconds), and the time the next prompt may appear
        (the last release plus a linger).
    """
    strokes: list[dict] = []
    press = shown + float(rng.uniform(*config.reaction))
    previous: str | None = None

    def stroke(key: str) -> None:
        nonlocal press, previous
        if previous is not None:
            press += _interval(previous, key, typist, rng, config)
        hold = typist.hold * float(np.exp(0.25 * rng.standard_normal()))
        strokes.append({"key": key, "start": press, "end": press + hold})
        previous = key

    for position, character in enumerate(text):
        key = key_name(character)
        if position and character != " " and text[position - 1] == " " and rng.random() < typist.pause_rate:
            press += config.pause * float(np.exp(0.5 * rng.standard_normal()))
        wrong = _typo_neighbour(key, rng) if rng.random() < typist.typo_rate else None
        if wrong is not None:
            stroke(wrong)
            press += typist.interval  # noticing the slip
            stroke(BACKSPACE)
        stroke(key)
    last_release = max((s["end"] for s in strokes), default=press)
    return strokes, last_release + float(rng.uniform(*config.linger))


def band_mixing(typist: Typist, session_rotation: Sequence[float] | np.ndarray = (0.0, 0.0)) -> np.ndarray:
    """Pick-up of every muscle by every electrode: (2, 16, M), [band, electrode, muscle], peak 1.

    Args:
        typist: gives muscle angles, rotation and kappa.
        session_rotation: (2,) electrodes added to the typist's rotation for one session.
    """
    rotation = np.asarray(typist.rotation) + np.asarray(session_rotation)  # (2,) electrodes
    electrode = 2 * np.pi * np.arange(ELECTRODES) / ELECTRODES  # (16,) radians
    muscle = 2 * np.pi * (typist.muscle_angles + rotation[:, None]) / ELECTRODES  # (2, M) radians
    return np.exp(typist.kappa * (np.cos(electrode[None, :, None] - muscle[:, None, :]) - 1))  # (2, 16, M)


def muscle_activation(
    strokes: Sequence[dict], num_samples: int, typist: Typist, rng: np.random.Generator, config: MyoConfig
) -> np.ndarray:
    """Activation of each muscle over time from key presses (``start`` in seconds from sample 0): (T, 2, M)."""
    activation = np.zeros((num_samples, 2, len(MUSCLES)), np.float32)
    sigma = typist.burst_width * SAMPLE_RATE  # samples
    index = {key: number for number, key in enumerate(KEYS)}
    for stroke in strokes:
        centre = (stroke["start"] - typist.lead + config.burst_jitter * rng.standard_normal()) * SAMPLE_RATE
        strength = float(np.exp(config.amplitude_spread * rng.standard_normal()))
        low, high = max(0, int(centre - 4 * sigma)), min(num_samples, int(centre + 4 * sigma) + 1)
        if low >= high:
            continue
        envelope = strength * np.exp(-0.5 * ((np.arange(low, high) - centre) / sigma) ** 2)  # (L,)
        activation[low:high] += (envelope[:, None, None] * typist.activations[index[stroke["key"]]]).astype(np.float32)
    return activation


def muap_wavelets(peak_hz: np.ndarray) -> np.ndarray:
    """First-order Hermite-Rodriguez action potentials, unit energy: (L, *peak_hz.shape).

    ``h(t) = t / s * exp(-(t / s)^2)`` has its spectral peak at ``1 / (pi * s * sqrt(2))`` Hz.
    """
    scale = 1.0 / (np.pi * np.sqrt(2) * np.asarray(peak_hz)) * SAMPLE_RATE  # samples
    half = int(np.ceil(4 * scale.max()))
    lags = np.arange(-half, half + 1).reshape(-1, *([1] * scale.ndim)) / scale  # (L, ...)
    wavelets = lags * np.exp(-(lags**2))
    return wavelets / np.sqrt((wavelets**2).sum(axis=0, keepdims=True))


def render_band(
    activation: np.ndarray, typist: Typist, band: int, mixing: np.ndarray, rng: np.random.Generator, config: MyoConfig
) -> np.ndarray:
    """One wrist band's electrode signals, (T, 16) float32 µV at 2 kHz; contact gains and hum are drawn here.

    Args:
        activation: (T, M) muscle activations of this band's hand.
        band: LEFT or RIGHT (selects the typist's gains, tone and action potentials).
        mixing: (16, M) electrode pick-up (:func:`band_mixing`).
    """
    num_samples = len(activation)
    contact_gain = np.exp(config.contact_spread * rng.standard_normal(ELECTRODES))  # (16,)
    hum = rng.uniform(*config.hum, size=ELECTRODES)  # (16,) µV of mains
    firing = rng.standard_normal((num_samples, len(MUSCLES)), dtype=np.float32)  # asynchronous motor units
    carriers = fftconvolve(firing, muap_wavelets(typist.muap_peak[band]), mode="same", axes=0)  # (T, M)
    amplitude = typist.tonic[band] + typist.muscle_gain[band] * activation  # (T, M) µV
    electrodes = (carriers * amplitude) @ (mixing * contact_gain[:, None]).T  # (T, 16)
    seconds = np.arange(num_samples) / SAMPLE_RATE
    for harmonic, weight in ((1, 1.0), (3, 0.3), (5, 0.1)):  # odd harmonics of the mains
        angle = 2 * np.pi * config.mains_hz * harmonic * seconds[:, None]  # (T, 1)
        electrodes += weight * hum * np.sin(angle + rng.uniform(0, 2 * np.pi, size=ELECTRODES))  # (T, 16)
    electrodes += config.sensor_noise * rng.standard_normal(electrodes.shape, dtype=np.float32)
    return electrodes.astype(np.float32)


def record_session(
    strokes: Sequence[dict], num_samples: int, typist: Typist, rng: np.random.Generator, config: MyoConfig
) -> np.ndarray:
    """Both bands of one session, put on afresh (a small extra rotation): (T, 2, 16) float32 µV at 2 kHz.

    Args:
        strokes: [{"key", "start", ...}], ``start`` in seconds from sample 0.
        num_samples: T.
    """
    mixing = band_mixing(typist, config.session_rotation * rng.standard_normal(2))  # (2, 16, M)
    activation = muscle_activation(strokes, num_samples, typist, rng, config)  # (T, 2, M)
    bands = [render_band(activation[:, band], typist, band, mixing[band], rng, config) for band in (LEFT, RIGHT)]
    return np.stack(bands, axis=1)  # (T, 2, 16), [time, band, electrode]
