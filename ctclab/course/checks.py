"""Self-checks for the course's exercises: pass, or one sentence on what is wrong and where to look.

Each ``check_*`` function runs a learner's function on a table of cases, compares it with an
independent expectation (a brute-force sum, scipy / jiwer / Keras, a hand-computed value) and
the package's reference, and prints one line: ``PASS <exercise>`` or ``FAIL <exercise>: <the first
problem, said so that it points at the mistake>``. A check never raises: a stub that is not
written yet, or code that crashes, is reported like any other failure, so a learner's notebook
runs top to bottom. Every check returns a :class:`CheckResult` (``bool(result)`` is "passed").

The model exercises (models 1-4, the final model) are checked in :mod:`ctclab.course.model_checks`.
"""

from __future__ import annotations

import functools
import itertools
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctclab.alphabet import ENGLISH
from ctclab.decoding.greedy import collapse_path


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one self-check.

    Attributes:
        exercise: what was checked, e.g. "STEP 1: log spectrogram".
        passed: every case agreed.
        message: "n cases agree" when passed, else the first problem in one sentence.
    """

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.exercise}: {self.message}"


class Failure(Exception):
    """Raised inside a check to stop at the first problem; its text is what the learner reads."""


def run_check(exercise: str, body: Callable[[], str], show: bool = True) -> CheckResult:
    """Run ``body`` (returns the pass message, raises :class:`Failure` with the problem) safely."""
    try:
        result = CheckResult(exercise, True, body())
    except Failure as failure:
        result = CheckResult(exercise, False, str(failure))
    except Exception as error:  # a bug in the check itself must not stop the learner's notebook
        result = CheckResult(exercise, False, f"the check itself failed ({error!r}); please report it")
        traceback.print_exc()
    if show:
        print(result)
    return result


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function; a stub or a crash becomes a :class:`Failure` naming the call."""
    name = getattr(function, "__name__", "your function")
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise Failure(f"{name} is not written yet: replace its TODO with your code") from None
    except Exception as error:
        raise Failure(f"{name} raised {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------------- STEP 1: log spectrogram


def _test_signals(sample_rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    time = np.arange(int(0.5 * sample_rate)) / sample_rate
    return {
        "a 440 Hz tone": 0.5 * np.sin(2 * np.pi * 440 * time),
        "white noise": 0.1 * rng.standard_normal(time.size),
        "a chirp": 0.3 * np.sin(2 * np.pi * (200 + 3000 * time) * time),
    }


def check_log_spectrogram(function: Callable[..., np.ndarray], show: bool = True) -> CheckResult:
    """STEP 1: ``function(samples, sample_rate=16000, window_ms=20, step_ms=10, max_freq=8000)``.

    Expected: utils.spectrogram's log power spectral density (periodic Hann window, one-sided,
    scaled by sample_rate * sum(window ** 2)); shape (frames, 161) for the course's settings.
    """
    from ctclab.data.features import FeatureConfig, spectrogram

    def body() -> str:
        config = FeatureConfig()
        for name, samples in _test_signals(config.sample_rate).items():
            expected = spectrogram(samples, config)
            got = np.asarray(call(function, samples, sample_rate=16000, window_ms=20, step_ms=10, max_freq=8000))
            if got.shape != expected.shape:
                hint = ""
                if got.ndim == 2 and got.shape[1] == expected.shape[0] and got.shape[0] == expected.shape[1]:
                    hint = ": return (frames, frequencies), not its transpose"
                elif got.ndim == 2 and got.shape[0] != expected.shape[0]:
                    hint = f": one frame every {config.hop_samples} samples, each {config.window_samples} long"
                elif got.ndim == 2 and got.shape[1] == config.window_samples // 2 + 1:
                    hint = ": keep only the bins up to max_freq"
                raise Failure(
                    f"for {name} the spectrogram should have shape {expected.shape}, yours has {got.shape}{hint}"
                )
            if np.allclose(got, expected, atol=1e-3):
                continue
            raise Failure(
                f"for {name} your values differ from utils.spectrogram by up to "
                f"{np.max(np.abs(got - expected)):.3g}{_spectrogram_hint(samples, got, config)}"
            )
        return f"{len(_test_signals(16000))} signals agree with utils.spectrogram"

    return run_check("STEP 1: log spectrogram", body, show)


def _spectrogram_hint(samples: np.ndarray, got: np.ndarray, config: Any) -> str:
    """Which common slip reproduces ``got``: no window, no log, no density scaling, no one-sided fold."""
    from ctclab.data.features import LOG_FLOOR, _frames

    frames = _frames(samples, config)
    window = np.hanning(config.window_samples + 1)[:-1]
    keep = np.fft.rfftfreq(config.window_samples, 1 / config.sample_rate) <= config.max_freq

    def variant(windowed: bool, scaled: bool, folded: bool, logged: bool) -> np.ndarray:
        taper = window if windowed else np.ones_like(window)
        power = np.abs(np.fft.rfft(frames * taper, axis=1)) ** 2
        if scaled:
            power = power / (config.sample_rate * np.sum(taper**2))
        if folded:
            power[:, 1 : (config.window_samples + 1) // 2] *= 2.0
        power = power[:, keep]
        return np.log(power + LOG_FLOOR) if logged else power

    slips = {
        (False, True, True, True): "multiply every frame by a Hann window before the FFT",
        (True, True, True, False): "take the log of the power (np.log(power + 1e-14))",
        (True, False, True, True): "scale the power by 1 / (sample_rate * sum(window ** 2)), a density",
        (True, True, False, True): "double every bin but DC and Nyquist (the one-sided spectrum)",
    }
    for settings, hint in slips.items():
        candidate = variant(*settings)
        if candidate.shape == got.shape and np.allclose(candidate, got, atol=1e-3):
            return f": {hint}"
    if np.allclose(got, np.log(np.abs(np.fft.rfft(frames * window, axis=1))[:, keep] + LOG_FLOOR), atol=1e-3):
        return ": square the magnitude (power, not amplitude)"
    return ": compare your steps with the cell above (frames, Hann window, rfft, power density, log)"


# ---------------------------------------------------------------------- the CTC forward recursion


def brute_force_ctc(log_probs: np.ndarray, label: Sequence[int], blank: int) -> float:
    """log p(label | x): the sum over every frame-level path that collapses to ``label`` (small T only)."""
    total = -math.inf
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        if collapse_path(path, blank) == list(label):
            total = np.logaddexp(total, sum(log_probs[t, s] for t, s in enumerate(path)))
    return float(total)


CTC_CASES = [  # (description, frames, label), alphabet of 3 symbols + blank (index 3)
    ("one symbol", 4, [0]),
    ("label with a repeated character", 5, [1, 1]),
    ("two different symbols", 5, [0, 2]),
    ("label as long as the frames allow", 5, [0, 1, 0]),
    ("repeat that needs every frame", 3, [2, 2]),
]


def _ctc_case_log_probs(frames: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(frames, 4))
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # (T, C) log-softmax


def check_ctc_forward(function: Callable[..., float], show: bool = True) -> CheckResult:
    """The CTC forward (alpha) recursion: ``function(log_probs (T, C), label, blank) -> log p(label | x)``.

    Expected: the brute-force sum over alignments and, independently, the course's training loss
    (``keras.ops.ctc_loss`` through ``ctc_batch_loss``).
    """

    def body() -> str:
        for case, (description, frames, label) in enumerate(CTC_CASES, start=1):
            log_probs = _ctc_case_log_probs(frames, case)
            expected = brute_force_ctc(log_probs, label, blank=3)
            got = float(call(function, log_probs, label, 3))
            if not math.isfinite(got) or abs(got - expected) > 1e-4:
                hint = {
                    "label with a repeated character": "did you require a blank between repeats?",
                    "repeat that needs every frame": "a repeated character needs a blank between its copies",
                    "label as long as the frames allow": "the paths may start at the first symbol and end at the last",
                }.get(description, "start from alpha[0] = (blank, first symbol) and sum the last two states")
                raise Failure(
                    f"your CTC log-likelihood differs from the reference by {abs(got - expected):.3g} "
                    f"on case {case} ({description}: {expected:.4f} expected, {got:.4f}): {hint}"
                )
        _agree_with_training_loss(function)
        return f"{len(CTC_CASES)} cases agree with the brute-force sum over alignments and with the training loss"

    return run_check("the CTC forward recursion", body, show)


def _agree_with_training_loss(function: Callable[..., float]) -> None:
    from ctclab.training.loss import ctc_batch_loss

    log_probs = _ctc_case_log_probs(12, 99)
    label = [0, 1, 1, 2]
    loss = ctc_batch_loss(np.asarray([label]), log_probs[None].astype(np.float32), np.asarray([4]), np.asarray([12]), 3)
    expected = -float(np.asarray(loss)[0])
    got = float(call(function, log_probs, label, 3))
    if abs(got - expected) > 1e-3:
        raise Failure(
            f"on a 12-frame utterance your log-likelihood is {got:.4f} but the training loss says "
            f"{expected:.4f}: work in log space (np.logaddexp) so long utterances do not underflow"
        )


# ---------------------------------------------------------------------- greedy decoding, WER, CER

GREEDY_CASES = [  # (frame-wise best symbols as text, "_" = blank) -> decoded text
    ("hh_e_ll_lo", "hello"),
    ("__a_a__", "aa"),
    ("aaa", "a"),
    ("_____", ""),
    ("it''s_  on", "it's on"),
    ("bb_b", "bb"),
]


def _one_hot_frames(path: str) -> np.ndarray:
    indices = [ENGLISH.blank_index if char == "_" else ENGLISH.text_to_int_sequence(char)[0] for char in path]
    probabilities = np.full((len(path), ENGLISH.output_dim), 0.01)
    probabilities[np.arange(len(path)), indices] = 1.0
    return probabilities / probabilities.sum(axis=1, keepdims=True)  # (T, C)


def check_greedy_decode(function: Callable[[np.ndarray], str], show: bool = True) -> CheckResult:
    """``function(probabilities (T, 29)) -> text``: argmax per frame, merge repeats, drop blanks."""
    from ctclab.decoding.greedy import greedy_decode

    def body() -> str:
        for path, expected in GREEDY_CASES:
            got = call(function, _one_hot_frames(path))
            if got != expected:
                hint = "merge repeated symbols first, then drop the blanks" if "_" in path else "merge repeats"
                if got == expected.replace(" ", ""):
                    hint = "index 1 is the space: keep it"
                raise Failure(
                    f'frames {path!r} ("_" is the blank) should decode to {expected!r}, yours gives {got!r}: {hint}'
                )
        rng = np.random.default_rng(0)
        for _ in range(20):
            probabilities = rng.dirichlet(np.ones(ENGLISH.output_dim) * 0.3, size=30)
            if call(function, probabilities) != greedy_decode(probabilities):
                raise Failure("on random posteriors your decoder disagrees with the reference greedy decoder")
        return f"{len(GREEDY_CASES)} table cases and 20 random posteriorgrams agree"

    return run_check("greedy CTC decoding", body, show)


ERROR_RATE_CASES = [  # (reference, hypothesis, WER, CER), counted by hand
    ("turn left", "turn left", 0.0, 0.0),
    ("turn left", "turn right", 1 / 2, 4 / 9),
    ("ace of spades", "ace spades", 1 / 3, 3 / 13),
    ("one two", "one two three", 1 / 2, 6 / 7),
    ("go", "", 1.0, 1.0),
]


def check_error_rates(wer: Callable[..., float], cer: Callable[..., float], show: bool = True) -> CheckResult:
    """``wer(references, hypotheses)`` and ``cer(...)`` over lists: edit distance summed, then divided."""
    import jiwer

    def body() -> str:
        for reference, hypothesis, expected_wer, expected_cer in ERROR_RATE_CASES:
            for name, function, expected in (("WER", wer, expected_wer), ("CER", cer, expected_cer)):
                got = float(call(function, [reference], [hypothesis]))
                if abs(got - expected) > 1e-9:
                    unit = "words" if name == "WER" else "characters (spaces count)"
                    raise Failure(
                        f"{name} of {hypothesis!r} against {reference!r} is {expected:.3f}, yours "
                        f"{got:.3f}: edit distance (substitutions + deletions + insertions) over "
                        f"reference {unit}"
                    )
        references = [case[0] for case in ERROR_RATE_CASES]
        hypotheses = [case[1] for case in ERROR_RATE_CASES]
        for name, function, reference_rate in (("WER", wer, jiwer.wer), ("CER", cer, jiwer.cer)):
            got, expected = float(call(function, references, hypotheses)), reference_rate(references, hypotheses)
            if abs(got - expected) > 1e-9:
                raise Failure(
                    f"{name} over the whole corpus is {expected:.4f} (jiwer), yours {got:.4f}: sum the "
                    "edit distances and the reference lengths over all utterances, then divide once"
                )
        return f"{len(ERROR_RATE_CASES)} hand-counted cases and the corpus totals agree with jiwer"

    return run_check("WER and CER", body, show)


# ---------------------------------------------------------------------- notebook 02: lengths


def check_conv_pool_length(function: Callable[..., Any], show: bool = True) -> CheckResult:
    """``function(length, kernel_size, dilation, pool_size)``: a "valid" dilated Conv1D then MaxPooling1D.

    Expected: the frames Keras actually returns for those two layers.
    """
    import keras

    def actual(length: int, kernel_size: int, dilation: int, pool_size: int) -> int:
        model = keras.Sequential(
            [
                keras.Input((None, 1)),
                keras.layers.Conv1D(1, kernel_size, dilation_rate=dilation, padding="valid"),
                keras.layers.MaxPooling1D(pool_size),
            ]
        )
        return int(model(np.zeros((1, length, 1), np.float32)).shape[1])

    def body() -> str:
        cases = [(100, 3, 1, 2), (100, 3, 2, 2), (57, 5, 3, 3), (64, 11, 1, 4), (30, 7, 2, 1), (19, 3, 4, 2)]
        for length, kernel_size, dilation, pool_size in cases:
            expected = actual(length, kernel_size, dilation, pool_size)
            got = call(function, length, kernel_size, dilation, pool_size)
            if got != expected:
                hint = "a dilated kernel spans dilation * (kernel_size - 1) + 1 frames"
                if dilation == 1:
                    hint = "'valid' loses kernel_size - 1 frames; pooling then keeps floor(length / pool_size)"
                raise Failure(
                    f"length {length}, kernel {kernel_size}, dilation {dilation}, pool {pool_size}: Keras "
                    f"returns {expected} frames, yours says {got}: {hint}"
                )
        return f"{len(cases)} configurations agree with Keras' Conv1D + MaxPooling1D"

    return run_check("output length through dilation and pooling", body, show)


# ---------------------------------------------------------------------- notebook 03: back-off


def check_backoff_score(function: Callable[..., float], lm: Any, show: bool = True) -> CheckResult:
    """``function(lm, word, context) -> log10 p(word | context)`` from the ARPA tables by back-off."""

    def body() -> str:
        words = sorted(lm.words)[:40] + ["<unk-word>"]
        contexts: list[tuple[str, ...]] = [(), ("<s>",)]
        contexts += [gram[:-1] for gram in itertools.islice(lm.log10_probs[-1], 40)]
        contexts += [(gram[-1],) for gram in itertools.islice(lm.log10_probs[-1], 20)]
        checked = 0
        for context in contexts:
            for word in words[:15]:
                expected = lm.log10_prob(word, context)
                got = float(call(function, lm, word, context))
                checked += 1
                if abs(got - expected) > 1e-6:
                    found = (*context, word) in lm.log10_probs[len(context)] if len(context) < lm.order else False
                    hint = (
                        "it is in the table: return its log10 probability"
                        if found
                        else f"when {' '.join((*context, word))!r} is not in the table, add the back-off weight of "
                        f"{' '.join(context) or 'the empty context'!r} to the score with one context word fewer"
                    )
                    if word not in lm.vocabulary:
                        hint = "a word outside the vocabulary is scored as <unk>"
                    raise Failure(
                        f"log10 p({word} | {' '.join(context) or '-'}) is {expected:.4f}, yours {got:.4f}: {hint}"
                    )
        return f"{checked} (word, context) pairs agree with the language model"

    return run_check("Kneser-Ney back-off score", body, show)


# ---------------------------------------------------------------------- notebook 04: an EMG feature


def check_zero_crossing_rate(function: Callable[[np.ndarray], np.ndarray], show: bool = True) -> CheckResult:
    """``function(frames (N, L, C)) -> (N, C)``: sign changes between neighbours / frame length."""
    from ctclab.emg.signal import zero_crossing_rate

    def body() -> str:
        table = [  # one frame, one channel -> expected rate, counted by hand
            ([1.0, -1.0, 1.0, -1.0], 3 / 4),
            ([1.0, 2.0, 3.0, 4.0], 0.0),
            ([-1.0, -2.0, 3.0, 4.0], 1 / 4),
            ([0.0, -1.0, 0.0, 1.0], 2 / 4),  # 0 counts as positive
        ]
        for values, expected in table:
            got = np.asarray(call(function, np.asarray(values)[None, :, None]), float)
            if got.shape != (1, 1):
                raise Failure(
                    f"frames of shape (1, 4, 1) should give shape (1, 1), yours gives {got.shape}: "
                    "count along the time axis (axis 1)"
                )
            if abs(got[0, 0] - expected) > 1e-9:
                hint = "divide the number of sign changes by the frame length"
                if values[0] == 0.0:
                    hint = "0 counts as positive (librosa's rule): only a strictly negative sample is negative"
                raise Failure(f"frame {values} has rate {expected}, yours {got[0, 0]:.4f}: {hint}")
        frames = np.random.default_rng(0).normal(size=(5, 16, 8))
        if not np.allclose(call(function, frames), zero_crossing_rate(frames)):
            raise Failure("on random (5, 16, 8) frames your rates differ from emg_signal.zero_crossing_rate")
        return "4 hand-counted frames and random 8-channel frames agree"

    return run_check("zero-crossing rate (a Gaddy & Klein feature)", body, show)


# ---------------------------------------------------------------------- notebook 05: S, D and I


def _brute_force_distance(reference: str, hypothesis: str) -> int:
    """The edit distance by plain recursion over the first characters (independent of any table)."""

    @functools.cache
    def distance(i: int, j: int) -> int:
        if i == len(reference) or j == len(hypothesis):
            return len(reference) - i + len(hypothesis) - j
        keep = distance(i + 1, j + 1) + (reference[i] != hypothesis[j])
        return min(keep, distance(i + 1, j) + 1, distance(i, j + 1) + 1)

    return distance(0, 0)


def check_edit_operations(function: Callable[[str, str], tuple[int, int, int]], show: bool = True) -> CheckResult:
    """``function(reference, hypothesis) -> (S, D, I)`` of one minimum-edit alignment.

    Expected: S + D + I is the edit distance (a brute-force recursion) and D - I is
    len(reference) - len(hypothesis); where the minimum alignment is unique the counts are
    hand-checked exactly (where it is not, e.g. "ab" against "ba", any minimum split passes).
    """

    def body() -> str:
        table = [  # reference, hypothesis -> (S, D, I), counted by hand (each alignment unique)
            ("abc", "abc", (0, 0, 0)),
            ("abc", "abd", (1, 0, 0)),
            ("abc", "ac", (0, 1, 0)),
            ("ac", "abc", (0, 0, 1)),
            ("", "xy", (0, 0, 2)),
            ("xy", "", (0, 2, 0)),
            ("the cat", "te cab", (1, 1, 0)),
        ]
        for reference, hypothesis, expected in table:
            got = call(function, reference, hypothesis)
            try:
                got = tuple(int(count) for count in got)
            except (TypeError, ValueError):
                raise Failure(f"return the three counts (S, D, I) as a tuple, yours returned {got!r}") from None
            if len(got) != 3:
                raise Failure(f"return the three counts (S, D, I), yours returned {len(got)} values")
            if got != expected:
                names = ("substitutions", "deletions", "insertions")
                wrong = next(name for name, a, b in zip(names, got, expected, strict=True) if a != b)
                hint = {
                    "deletions": "a deletion is a reference character missing from the hypothesis",
                    "insertions": "an insertion is a hypothesis character with no reference character",
                    "substitutions": "a substitution replaces one character by another (a match costs 0)",
                }[wrong]
                raise Failure(f"{reference!r} against {hypothesis!r} has (S, D, I) = {expected}, yours {got}: {hint}")
        rng = np.random.default_rng(0)
        for _ in range(60):
            reference = "".join(rng.choice(list("ab "), size=rng.integers(0, 8)))
            hypothesis = "".join(rng.choice(list("ab "), size=rng.integers(0, 8)))
            s, d, i = (int(count) for count in call(function, reference, hypothesis))
            distance = _brute_force_distance(reference, hypothesis)
            if min(s, d, i) < 0 or s + d + i != distance:
                raise Failure(
                    f"{reference!r} against {hypothesis!r} needs {distance} edits, your S + D + I = {s + d + i}: "
                    "take the cheapest of the three moves in every cell and trace the path back"
                )
            if d - i != len(reference) - len(hypothesis):
                raise Failure(
                    f"{reference!r} against {hypothesis!r}: deletions minus insertions must be the length "
                    f"difference {len(reference) - len(hypothesis)}, yours {d - i}: are D and I swapped?"
                )
        return "7 hand-counted pairs and 60 random pairs (against a brute-force edit distance) agree"

    return run_check("substitutions, deletions and insertions", body, show)


# ---------------------------------------------------------------------- notebook 06: a causal filter


def check_chunk_filter(filter_class: Callable[..., Any], show: bool = True) -> CheckResult:
    """``filter_class(sos, channels)`` with ``process(chunk (n, channels)) -> (n, channels)``.

    Expected: any chunking gives exactly scipy's ``sosfilt`` of the whole signal (zero initial state).
    """
    from scipy import signal

    def body() -> str:
        sos = signal.butter(3, 20.0, btype="highpass", fs=1000.0, output="sos")
        whole = np.random.default_rng(0).normal(size=(1000, 2)).cumsum(axis=0)  # drifting: the filter matters
        expected = signal.sosfilt(sos, whole, axis=0)
        for sizes in ([1000], [100] * 10, [1, 7, 250, 3, 739], [333, 333, 334]):
            instance = call(filter_class, sos, 2)
            pieces, start = [], 0
            for size in sizes:
                pieces.append(np.asarray(call(instance.process, whole[start : start + size])))
                start += size
            got = np.concatenate(pieces)
            if got.shape != expected.shape:
                raise Failure(f"chunks {sizes} gave shape {got.shape}, expected {expected.shape}")
            error = float(np.max(np.abs(got - expected)))
            if error > 1e-8:
                hint = (
                    "carry the filter state (sosfilt's zi) from one chunk to the next"
                    if len(sizes) > 1
                    else "filter forward only, starting from a zero state"
                )
                raise Failure(
                    f"with chunks {sizes} your output differs from filtering the whole signal by {error:.3g}: {hint}"
                )
        return "4 chunkings equal scipy.signal.sosfilt over the whole signal"

    return run_check("a causal filter across chunks", body, show)


def summary(results: Iterable[CheckResult]) -> str:
    """One line: how many checks pass, and which fail."""
    results = list(results)
    failing = [result.exercise for result in results if not result]
    return f"{len(results) - len(failing)} of {len(results)} checks pass" + (
        f"; failing: {', '.join(failing)}" if failing else ""
    )
