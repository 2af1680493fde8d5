"""Surface-EMG signal processing: mains notch, high-pass, resampling and the three feature sets.

Three published input pipelines, chosen by :class:`EMGFeatureConfig` ``kind``:

- ``"gaddy"`` (Gaddy & Klein's silent-speech features). Raw EMG (T, 8) at 1000 Hz is notched at
  the mains frequency and its harmonics (IIR notch, Q 30, forward-backward), high-passed at 2 Hz
  (3rd-order Butterworth, forward-backward) and resampled to 516.79 Hz (6 x 86.13 Hz, the mel
  frame rate of 22050 Hz audio with hop 256). Per channel, on the mean-removed signal ``x``: ``w``
  is ``x`` smoothed twice by a 9-point moving average, ``p = x - w`` its high-frequency residual and
  ``r = |p|``. On 16-sample frames every 6 samples (no centring) we take 5 time-domain values,
  mean(w), RMS(w), RMS(r), zero-crossing rate(p), mean(r), and the 9 magnitudes of a 16-point
  Hann-windowed FFT of ``x``: 14 per channel, 112 for 8 channels, one frame every 11.6 ms.
- ``"log_spectrogram"`` (emg2qwerty's typing features). 32 channels (16 per wrist) at 2000 Hz,
  already high-passed by the recording rig: per channel the power of a periodic-Hann 64-point
  FFT every 16 samples (125 frames/s), divided by the window energy (torchaudio's
  ``normalized=True``), then log10(power + 1e-6): 33 bins per channel, 1056 for 32 channels.
- ``"raw"`` (the input of Gaddy & Klein's raw-EMG model, whose convolutions learn the features;
  :meth:`EMGFeatureConfig.raw_emg`). The same notch and high-pass, then resampled to 689.06 Hz
  (8 x 86.13 Hz: after the model's three stride-2 blocks, one output per mel frame) and squashed
  as Gaddy & Klein do, 50 tanh(x / 20 / 50) for x in microvolts: about x / 20 for ordinary EMG,
  at most +-50 for artefacts. A "frame" is one sample: (T', channels) float32, 1.45 ms apart.

Everything here works on the samples it is given (no state across calls), so a live decoder can
call :func:`emg_features` on each incoming window. With ``causal=True`` every filter runs forward
once from a settled state and no mean is removed, so the features of a recording are what a live
stream computes sample by sample, once (:class:`ctclab.live.feature_stream.EMGFeatureStream`). Arrays are (time, channels) throughout;
units are microvolts for raw EMG and Hz for rates.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FEATURE_KINDS = ("gaddy", "log_spectrogram", "raw")
GADDY_TIME_FEATURES = ("mean(w)", "rms(w)", "rms(r)", "zcr(p)", "mean(r)")  # w smooth, p residual, r = |p|
ZERO_THRESHOLD = 1e-10  # |p| at or below this counts as 0, which counts as positive (librosa's rule)
LOG_SPECTROGRAM_FLOOR = 1e-6  # emg2qwerty's log10(power + 1e-6)
RAW_RATE = 689.06  # Hz: Gaddy & Klein's raw-EMG rate, 8 x 86.13 Hz (22050 Hz audio / hop 256)
RAW_SCALE = 20.0  # µV per unit of the raw input (Gaddy & Klein's x / 20)
SMOOTHING_WIDTH = 9  # points of Gaddy & Klein's moving average (applied twice)
CAUSAL_SMOOTHING_SPAN = 2 * (SMOOTHING_WIDTH // 2)  # samples the double average reaches each way
RAW_LIMIT = 50.0  # units: the soft limit of RAW_LIMIT * tanh(x / RAW_LIMIT) (Gaddy & Klein's 50)


@dataclass(frozen=True)
class EMGFeatureConfig:
    """Which EMG features to compute and from what input.

    Attributes:
        kind: "gaddy" (5 time-domain + FFT magnitudes per channel), "log_spectrogram" or
            "raw" (the filtered, resampled, squashed signal itself; see :meth:`raw_emg`).
        sample_rate: rate of the raw input in Hz (1000 for Gaddy & Klein / OpenBCI Cyton WiFi).
        num_channels: electrodes in the input (8 for Gaddy & Klein, 32 for emg2qwerty).
        mains_hz: mains frequency to notch out with its harmonics (60 in the Americas, 50 in
            Europe); None skips the notch (emg2qwerty data is delivered filtered).
        notch_harmonics: how many multiples of ``mains_hz`` to notch (Gaddy & Klein use 1-7);
            multiples at or above Nyquist are skipped.
        notch_quality: quality factor of each notch (30: a 2 Hz wide notch at 60 Hz).
        highpass_hz: high-pass cutoff that removes electrode drift and offset; None skips it.
        highpass_order: Butterworth order of the high-pass (applied forward and backward).
        feature_rate: rate the filtered signal is resampled to before framing, Hz (516.79 for
            Gaddy & Klein); None keeps ``sample_rate``.
        frame_length: samples per analysis frame at ``feature_rate`` (16; also the FFT size;
            1 for "raw", whose frames are single samples).
        frame_hop: samples between frames (6 gives 86.13 frames/s at 516.79 Hz; 1 for "raw").
        causal: what a live stream can compute once per sample: notches, high-pass and the
            anti-alias low-pass run forward only, starting settled on the first sample (no
            backward pass, which would need the whole recording), and the Gaddy features keep the
            signal's mean (the 2 Hz high-pass has removed it). A frame then depends on its own
            samples and CAUSAL_SMOOTHING_SPAN resampled samples after them (the centred moving
            averages). Models for stateful streaming train on these features.
    """

    kind: str = "gaddy"
    sample_rate: float = 1000.0
    num_channels: int = 8
    mains_hz: float | None = 60.0
    notch_harmonics: int = 7
    notch_quality: float = 30.0
    highpass_hz: float | None = 2.0
    highpass_order: int = 3
    feature_rate: float | None = 516.79
    frame_length: int = 16
    frame_hop: int = 6
    causal: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"EMG feature kind {self.kind!r} is not one of {FEATURE_KINDS}")
        if self.sample_rate <= 0 or self.num_channels < 1:
            raise ValueError(f"need sample_rate > 0 and num_channels >= 1, got {self.sample_rate}, {self.num_channels}")
        if self.kind == "raw" and (self.frame_length, self.frame_hop) != (1, 1):
            raise ValueError(
                f"kind 'raw' has one sample per frame: need frame_length = frame_hop = 1, got "
                f"{self.frame_length}, {self.frame_hop} (EMGFeatureConfig.raw_emg() sets them)"
            )
        if self.kind != "raw" and (self.frame_length < 2 or not 1 <= self.frame_hop):
            raise ValueError(f"need frame_length >= 2 and frame_hop >= 1, got {self.frame_length}, {self.frame_hop}")
        if self.feature_rate is not None and not 0 < self.feature_rate <= self.sample_rate:
            raise ValueError(f"feature_rate must lie in (0, sample_rate={self.sample_rate}], got {self.feature_rate}")
        if self.highpass_hz is not None and not 0 < self.highpass_hz < self.sample_rate / 2:
            raise ValueError(f"highpass_hz must lie in (0, Nyquist), got {self.highpass_hz}")

    @classmethod
    def emg2qwerty(cls) -> EMGFeatureConfig:
        """emg2qwerty's LogSpectrogram(n_fft=64, hop=16) on 2 x 16 channels at 2 kHz."""
        return cls(
            kind="log_spectrogram",
            sample_rate=2000.0,
            num_channels=32,
            mains_hz=None,
            highpass_hz=None,
            feature_rate=None,
            frame_length=64,
            frame_hop=16,
        )

    @classmethod
    def raw_emg(cls, feature_rate: float = RAW_RATE) -> EMGFeatureConfig:
        """Gaddy & Klein's raw-EMG input: 8 channels at 1 kHz, notched at 60 Hz x 1-7, high-passed
        at 2 Hz, resampled to ``feature_rate`` (689.06 Hz), squashed; one sample per frame."""
        return cls(kind="raw", feature_rate=feature_rate, frame_length=1, frame_hop=1)

    @property
    def frequency_bins(self) -> int:
        """One-sided FFT bins per frame: frame_length // 2 + 1 (9 for Gaddy, 33 for emg2qwerty)."""
        return self.frame_length // 2 + 1

    @property
    def features_per_channel(self) -> int:
        if self.kind == "raw":
            return 1  # the sample itself
        extra = len(GADDY_TIME_FEATURES) if self.kind == "gaddy" else 0
        return extra + self.frequency_bins

    @property
    def feature_dim(self) -> int:
        """Size of one feature frame (112 for Gaddy with 8 channels, 1056 for emg2qwerty, 8 for raw)."""
        return self.num_channels * self.features_per_channel

    @property
    def frame_rate(self) -> float:
        """Rate the frames are sampled at (the rate after resampling), Hz."""
        return self.feature_rate or self.sample_rate

    @property
    def frame_hop_ms(self) -> float:
        """Time between feature frames in milliseconds (11.61 for Gaddy, 8 for emg2qwerty, 1.45 for raw)."""
        return 1000.0 * self.frame_hop / self.frame_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames :func:`emg_features` returns for ``num_samples`` raw input samples (for "raw":
        resampled_length(num_samples, sample_rate, frame_rate), one frame per resampled sample)."""
        resampled = resampled_length(num_samples, self.sample_rate, self.frame_rate)
        return max(0, 1 + (resampled - self.frame_length) // self.frame_hop)

    def cache_name(self) -> str:
        """A short stable name for cache folders."""
        settings = asdict(self)
        if not self.causal:
            del settings["causal"]  # the names cached before the field existed stay valid
        digest = hashlib.sha1(repr(sorted(settings.items())).encode()).hexdigest()[:10]
        return f"emg-{self.kind}-{digest}"

    @property
    def frame_context(self) -> int:
        """Resampled samples a frame reads past each end of its own (the centred smoothing's)."""
        return CAUSAL_SMOOTHING_SPAN if self.kind == "gaddy" else 0


# ------------------------------------------------------------------------------------ filters


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a (time,) or (time, channels) array, got shape {x.shape}")
    return x[:, None] if x.ndim == 1 else x


def notch_sections(sample_rate: float, mains_hz: float = 60.0, harmonics: int = 7, quality: float = 30.0) -> np.ndarray:
    """Second-order sections of IIR notches at ``mains_hz`` x 1..harmonics below Nyquist: (K, 6)."""
    if mains_hz <= 0 or harmonics < 1:
        raise ValueError(f"need mains_hz > 0 and harmonics >= 1, got {mains_hz}, {harmonics}")
    frequencies = [mains_hz * multiple for multiple in range(1, harmonics + 1) if mains_hz * multiple < sample_rate / 2]
    return np.concatenate([signal.tf2sos(*signal.iirnotch(f, quality, fs=sample_rate)) for f in frequencies])


def highpass_sections(sample_rate: float, cutoff_hz: float, order: int = 3) -> np.ndarray:
    """Second-order sections of a Butterworth high-pass: (ceil(order / 2), 6)."""
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff_hz must lie in (0, Nyquist={sample_rate / 2}), got {cutoff_hz}")
    return signal.butter(order, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")


def zero_phase(x: np.ndarray, sections: np.ndarray) -> np.ndarray:
    """Run second-order sections forward and backward along time (squared magnitude, zero phase).

    The odd-extension padding shrinks for short inputs, so any window of 2+ samples works.
    """
    x = np.asarray(x, dtype=np.float64)
    padding = min(3 * (2 * len(sections) + 1), x.shape[0] - 1)
    return signal.sosfiltfilt(sections, x, axis=0, padlen=padding)


def forward_filter(
    x: np.ndarray, sections: np.ndarray, state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run second-order sections forward only (causal), from ``state`` or settled on the first sample.

    Args:
        x: (T, C) signal.
        sections: (K, 6) second-order sections.
        state: the (K, 2, C) state a previous call returned (the stream so far); None starts as
            if ``x[0]`` had always been there (no step at the start, like a filter run for ever).

    Returns:
        (filtered (T, C) float64, state after the last sample). Calling it chunk by chunk with
        the returned state equals one call on the concatenation.
    """
    x = np.asarray(x, dtype=np.float64)
    if state is None:
        if x.shape[0] == 0:
            raise ValueError("a forward filter needs a first sample to settle on")
        state = signal.sosfilt_zi(sections)[:, :, None] * x[0][None, None, :]  # (K, 2, C)
    return signal.sosfilt(sections, x, axis=0, zi=state)


def notch_filter(
    x: np.ndarray, sample_rate: float, mains_hz: float = 60.0, harmonics: int = 7, quality: float = 30.0
) -> np.ndarray:
    """Remove mains hum: an IIR notch at ``mains_hz`` x 1..harmonics, run forward and backward.

    Args:
        x: (T,) or (T, C) signal.
        sample_rate: Hz.
        mains_hz: 60 or 50 (any positive value is accepted).
        harmonics: multiples to notch; those at or above Nyquist are skipped.
        quality: notch quality factor: width (-3 dB) = frequency / quality.

    Returns:
        Filtered float64 array, same shape as ``x`` (zero phase).
    """
    return zero_phase(x, notch_sections(sample_rate, mains_hz, harmonics, quality))


def highpass(x: np.ndarray, sample_rate: float, cutoff_hz: float, order: int = 3) -> np.ndarray:
    """Butterworth high-pass run forward and backward (zero phase, squared magnitude response).

    Args:
        x: (T,) or (T, C) signal.
        sample_rate, cutoff_hz: Hz.
        order: filter order (3, as Gaddy & Klein).
    """
    return zero_phase(x, highpass_sections(sample_rate, cutoff_hz, order))


def resampled_length(num_samples: int, source_rate: float, target_rate: float) -> int:
    """Samples :func:`resample` returns: floor(num_samples * target_rate / source_rate)."""
    return int(num_samples * target_rate / source_rate) if target_rate != source_rate else num_samples


def antialias_sections(source_rate: float, target_rate: float) -> np.ndarray:
    """8th-order Butterworth low-pass at 0.45 x ``target_rate``, for downsampling: (4, 6)."""
    return signal.butter(8, 0.45 * target_rate, btype="lowpass", fs=source_rate, output="sos")


def resample(x: np.ndarray, source_rate: float, target_rate: float, antialias: bool = True) -> np.ndarray:
    """Resample by linear interpolation (any rate ratio, e.g. 1000 -> 516.79 Hz).

    Output sample ``n`` is the input interpolated at time ``n / target_rate``. Gaddy & Klein
    interpolate without a low-pass; with ``antialias`` (the default) a zero-phase 8th-order
    Butterworth at 0.45 x ``target_rate`` runs first when downsampling, so energy above the new
    Nyquist does not fold back.

    Args:
        x: (T,) or (T, C).

    Returns:
        (resampled_length(T), ...) float64.
    """
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"rates must be positive, got {source_rate}, {target_rate}")
    x = np.asarray(x, dtype=np.float64)
    if target_rate == source_rate:
        return x
    if antialias and target_rate < source_rate:
        x = zero_phase(x, antialias_sections(source_rate, target_rate))
    return _interpolate(x, source_rate, target_rate)


def _interpolate(x: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Linear interpolation of (T,) or (T, C) onto the ``target_rate`` grid starting at 0."""
    positions = np.arange(resampled_length(x.shape[0], source_rate, target_rate)) * (source_rate / target_rate)
    left = np.minimum(positions.astype(np.int64), x.shape[0] - 2)  # (T',) index of the left neighbour
    fraction = (positions - left).reshape(-1, *([1] * (x.ndim - 1)))
    return x[left] * (1 - fraction) + x[left + 1] * fraction


@functools.lru_cache(maxsize=16)
def preprocessing_sections(config: EMGFeatureConfig) -> np.ndarray | None:
    """Every filter ``config`` asks for as one cascade: notches, high-pass, anti-alias low-pass.

    The filters are linear and time-invariant, so one forward-backward pass of the cascade equals
    running them one after another (and is 2-3x faster than separate passes).
    """
    sections = []
    if config.mains_hz is not None:
        sections.append(
            notch_sections(config.sample_rate, config.mains_hz, config.notch_harmonics, config.notch_quality)
        )
    if config.highpass_hz is not None:
        sections.append(highpass_sections(config.sample_rate, config.highpass_hz, config.highpass_order))
    if config.frame_rate < config.sample_rate:
        sections.append(antialias_sections(config.sample_rate, config.frame_rate))
    return np.concatenate(sections) if sections else None


def preprocess(emg: np.ndarray, config: EMGFeatureConfig) -> np.ndarray:
    """Notch, high-pass and resample raw EMG as ``config`` says: (T, C) -> (T', C) at frame_rate."""
    x = _as_2d(emg)
    sections = preprocessing_sections(config)
    if sections is not None:
        x = forward_filter(x, sections)[0] if config.causal else zero_phase(x, sections)
    return x if config.frame_rate == config.sample_rate else _interpolate(x, config.sample_rate, config.frame_rate)


# ----------------------------------------------------------------------------------- features


def frame_signal(x: np.ndarray, frame_length: int, frame_hop: int) -> np.ndarray:
    """(T, C) -> (N, frame_length, C) frames every ``frame_hop`` samples, no padding (center=False)."""
    if x.shape[0] < frame_length:
        raise ValueError(f"{x.shape[0]} samples is shorter than one frame ({frame_length})")
    frames = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=0)  # (T-L+1, C, L)
    return frames[::frame_hop].transpose(0, 2, 1)  # (N, L, C)


def double_moving_average(x: np.ndarray, width: int = SMOOTHING_WIDTH) -> np.ndarray:
    """A ``width``-point moving average applied twice along time ('same' length, zero outside)."""
    kernel = np.ones(width) / width
    smooth_once = np.apply_along_axis(np.convolve, 0, x, kernel, mode="same")
    return np.apply_along_axis(np.convolve, 0, smooth_once, kernel, mode="same")


def fft_magnitudes(frames: np.ndarray) -> np.ndarray:
    """|FFT| of periodic-Hann-windowed frames: (N, L, C) -> (N, L // 2 + 1, C)."""
    length = frames.shape[1]
    window = signal.get_window("hann", length)  # periodic (DFT-even), as librosa / torch use
    return np.abs(np.fft.rfft(frames * window[None, :, None], axis=1))


def zero_crossing_rate(frames: np.ndarray) -> np.ndarray:
    """Sign changes between neighbouring samples / frame length: (N, L, C) -> (N, C).

    Values within ZERO_THRESHOLD of 0 count as 0, and 0 counts as positive (librosa's rule).
    """
    negative = frames < -ZERO_THRESHOLD
    return np.count_nonzero(negative[:, 1:] != negative[:, :-1], axis=1) / frames.shape[1]


def gaddy_features(x: np.ndarray, frame_length: int = 16, frame_hop: int = 6, remove_mean: bool = True) -> np.ndarray:
    """Gaddy & Klein's per-channel features of an already filtered, resampled signal.

    Args:
        x: (T, C) signal at the feature rate.
        remove_mean: subtract each channel's mean over ``x`` first (Gaddy & Klein's; off for
            causal features, where the mean of a whole recording is not known yet).

    Returns:
        (N, C * (5 + frame_length // 2 + 1)) float32, channel-major: for each channel
        [mean(w), rms(w), rms(r), zcr(p), mean(r), |FFT| bins 0..L/2].
    """
    x = _as_2d(x)
    if remove_mean:
        x = x - x.mean(axis=0, keepdims=True)
    smooth = double_moving_average(x)  # w
    residual = x - smooth  # p
    rectified = np.abs(residual)  # r
    smooth_frames = frame_signal(smooth, frame_length, frame_hop)  # (N, L, C)
    rectified_frames = frame_signal(rectified, frame_length, frame_hop)
    time_features = np.stack(
        [
            smooth_frames.mean(axis=1),
            np.sqrt(np.mean(smooth_frames**2, axis=1)),
            np.sqrt(np.mean(rectified_frames**2, axis=1)),
            zero_crossing_rate(frame_signal(residual, frame_length, frame_hop)),
            rectified_frames.mean(axis=1),
        ],
        axis=1,
    )  # (N, 5, C)
    spectrum = fft_magnitudes(frame_signal(x, frame_length, frame_hop))  # (N, L/2+1, C)
    per_channel = np.concatenate([time_features, spectrum], axis=1)  # (N, 14, C)
    return per_channel.transpose(0, 2, 1).reshape(per_channel.shape[0], -1).astype(np.float32)  # (N, C*14)


def log_spectrogram(x: np.ndarray, n_fft: int = 64, hop: int = 16) -> np.ndarray:
    """emg2qwerty's log10 power spectrogram: (T, C) -> (N, C * (n_fft // 2 + 1)) float32, channel-major.

    Power is |FFT(frame * hann)|^2 / sum(hann^2) (torchaudio ``normalized=True``, ``center=False``).
    """
    frames = frame_signal(_as_2d(x), n_fft, hop)  # (N, n_fft, C)
    window = signal.get_window("hann", n_fft)
    power = fft_magnitudes(frames) ** 2 / np.sum(window**2)  # (N, bins, C)
    log_power = np.log10(power + LOG_SPECTROGRAM_FLOOR)
    return log_power.transpose(0, 2, 1).reshape(log_power.shape[0], -1).astype(np.float32)


def squash_raw(x: np.ndarray) -> np.ndarray:
    """Gaddy & Klein's scaling of filtered raw EMG: RAW_LIMIT * tanh(x / RAW_SCALE / RAW_LIMIT).

    Args:
        x: (T, C) microvolts.

    Returns:
        (T, C) float32 in (-RAW_LIMIT, RAW_LIMIT): x / RAW_SCALE for |x| well below 1000 µV
        (within 1 % up to 170 µV), so EMG stays linear while electrode pops are capped.
    """
    return (RAW_LIMIT * np.tanh(np.asarray(x, dtype=np.float64) / (RAW_SCALE * RAW_LIMIT))).astype(np.float32)


def emg_features(emg: np.ndarray, config: EMGFeatureConfig = EMGFeatureConfig()) -> np.ndarray:
    """Features of one raw recording or live window, as ``config`` describes.

    Args:
        emg: (T, config.num_channels) raw EMG at ``config.sample_rate`` (microvolts).
        config: which pipeline.

    Returns:
        (config.num_frames(T), config.feature_dim) float32.

    Raises:
        ValueError: wrong shape, non-finite samples or fewer samples than one frame needs.
    """
    emg = np.asarray(emg)
    if emg.ndim != 2 or emg.shape[1] != config.num_channels:
        raise ValueError(f"expected EMG of shape (time, {config.num_channels}), got {emg.shape}")
    if not np.all(np.isfinite(emg)):
        raise ValueError(f"EMG has {np.count_nonzero(~np.isfinite(emg))} non-finite samples")
    if config.num_frames(emg.shape[0]) < 1:
        raise ValueError(
            f"{emg.shape[0]} samples at {config.sample_rate} Hz is too short for one "
            f"{config.frame_length}-sample frame at {config.frame_rate} Hz"
        )
    return frame_features(preprocess(emg, config), config)


def frame_features(x: np.ndarray, config: EMGFeatureConfig) -> np.ndarray:
    """The features of an already filtered, resampled (T', C) signal: (frames, config.feature_dim)."""
    if config.kind == "raw":
        return squash_raw(x)  # (T', C): one frame per resampled sample
    if config.kind == "gaddy":
        return gaddy_features(x, config.frame_length, config.frame_hop, remove_mean=not config.causal)
    return log_spectrogram(x, config.frame_length, config.frame_hop)


def feature_names(config: EMGFeatureConfig = EMGFeatureConfig()) -> list[str]:
    """Name of every feature column, e.g. "ch1 rms(w)", "ch1 fft 3" or "ch1 raw" (channel-major)."""
    if config.kind == "raw":
        return [f"ch{channel + 1} raw" for channel in range(config.num_channels)]
    time_names = GADDY_TIME_FEATURES if config.kind == "gaddy" else ()
    per_channel = [*time_names, *(f"fft {k}" for k in range(config.frequency_bins))]
    return [f"ch{channel + 1} {name}" for channel in range(config.num_channels) for name in per_channel]


# -------------------------------------------------------------------------------------- plots


def plot_emg_channels(
    raw: np.ndarray,
    filtered: np.ndarray | None = None,
    sample_rate: float = 1000.0,
    channel_names: Sequence[str] | None = None,
    title: str = "EMG channels",
) -> Figure:
    """One row per channel: raw (grey) and, if given, filtered (colour) against time in seconds.

    Each channel is drawn on its own y scale; the raw trace is mean-removed so drift shows.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    raw = _as_2d(raw)
    num_channels = raw.shape[1]
    names = channel_names or [f"ch{channel + 1}" for channel in range(num_channels)]
    figure, axes = plt.subplots(num_channels, 1, figsize=(12, 1.1 * num_channels + 0.8), sharex=True, squeeze=False)
    seconds = np.arange(raw.shape[0]) / sample_rate
    for channel, axis in enumerate(axes[:, 0]):
        axis.plot(seconds, raw[:, channel] - raw[:, channel].mean(), color="0.6", linewidth=0.5, label="raw")
        if filtered is not None:
            axis.plot(seconds, _as_2d(filtered)[:, channel], linewidth=0.5, label="filtered")
        axis.set_ylabel(names[channel], rotation=0, ha="right", va="center")
        axis.tick_params(labelsize=7)
    axes[0, 0].set_title(title + " (µV)")
    if filtered is not None:
        axes[0, 0].legend(loc="upper right", fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    return figure


def plot_emg_features(
    features: np.ndarray, config: EMGFeatureConfig = EMGFeatureConfig(), title: str = "EMG features"
) -> Figure:
    """Heat map of a (frames, feature_dim) feature matrix; horizontal lines separate channels."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(12, 5))
    seconds = features.shape[0] * config.frame_hop_ms / 1000
    image = axis.imshow(
        features.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, seconds, 0, features.shape[1]),
        interpolation="nearest",
    )
    for channel in range(1, config.num_channels):
        axis.axhline(channel * config.features_per_channel, color="white", linewidth=0.4)
    figure.colorbar(image, ax=axis, pad=0.01)
    axis.set(title=title, xlabel="time (s)", ylabel=f"feature ({config.features_per_channel} per channel)")
    figure.tight_layout()
    return figure
