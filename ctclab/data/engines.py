"""Speech synthesizers for the embedded corpus: espeak-ng, flite and festival, one function each.

Each engine speaks :class:`Request` s (a text, a voice, a rate, a pitch, an output path) and leaves
16 kHz mono 16-bit wav files behind: the engine writes its own format (espeak-ng 22.05 kHz, flite 8 or
16 kHz, festival 16 kHz diphones or 32 kHz HTS) and ``sox -R`` resamples it, as for every engine.

=========  ====================================  ==================================  ==========================
engine     voices (Debian bookworm packages)     rate                                pitch
=========  ====================================  ==================================  ==========================
espeak-ng  accent+variant (``en-gb+f3``)         words per minute (``-s``)           0-99 (``-p``)
flite      kal16, awb, rms, slt (CMU, built in)  speed factor: duration_stretch 1/r  mean f0 in Hz; rms: none
festival   kal_diphone, ked_diphone (LPC         speed factor: Duration_Stretch 1/r  mean f0 in Hz (diphones);
           diphones), cmu_us_slt_arctic_hts      (diphones), HTS ``-r`` r            HTS: none
=========  ====================================  ==================================  ==========================

A speed factor above 1 is faster than the engine's pace. Festival runs one process for a batch of
requests (a Scheme script; its start-up costs more than an utterance); every request selects its
voice and sets its own parameters, so a file's bytes do not depend on the batch it was spoken in.
All three engines and ``sox -R`` are byte-deterministic here (the same request gives the same file,
checked by the tests). flite's rms ignores an f0 target and festival 2.5's HTS module reads no
half-tone shift (only ``-r``), hence no pitch for those two voices.

Voices also name their :attr:`Voice.speaker`: flite's kal16 is the festival kal diphone set and both
engines have a voice of the CMU ARCTIC speaker slt, so a held-out-engine test excludes the speakers
it trains on (see ``corpus.held_out_engine_voices``).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

ENGINES = ("espeak-ng", "flite", "festival")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3")
BATCH_SIZES = {"espeak-ng": 1, "flite": 1, "festival": 24}  # requests per job: festival's start-up is ~0.1 s
FESTIVAL_HEAP = 1_000_000  # Scheme cells; the default 10 M costs 0.1-0.5 s of page faults per start, same audio


@dataclass(frozen=True)
class Voice:
    """One voice of a table engine (flite, festival)."""

    engine: str
    name: str  # as the engine calls it
    speaker: str  # the person recorded for it; one speaker may have voices in several engines
    pitch_range: tuple[int, int] | None  # mean f0 targets in Hz, inclusive, near the voice's own; None: fixed


FLITE_VOICES = (  # kal (8 kHz) and awb_time (a talking clock) are left out
    Voice("flite", "kal16", "kal", (80, 125)),  # diphones; own mean f0 about 87 Hz
    Voice("flite", "awb", "awb", (100, 150)),  # clustergen, Scottish English; about 126 Hz
    Voice("flite", "rms", "rms", None),  # clustergen, US English; ignores int_f0_target_mean
    Voice("flite", "slt", "slt", (150, 200)),  # clustergen, US English; about 169 Hz
)
FESTIVAL_VOICES = (
    Voice("festival", "kal_diphone", "kal", (85, 135)),  # festvox-kallpc16k; its own target 105 Hz
    Voice("festival", "ked_diphone", "ked", (85, 135)),  # festvox-kdlpc16k; 105 Hz
    Voice("festival", "cmu_us_slt_arctic_hts", "slt", None),  # festvox-us-slt-hts; no f0 control here
)
TABLE_VOICES = {"flite": FLITE_VOICES, "festival": FESTIVAL_VOICES}


class Request(NamedTuple):
    """One utterance for an engine; see the module table for the units of ``rate`` and ``pitch``."""

    text: str
    voice: str
    rate: float
    pitch: int | None
    wav_path: Path  # where the 16 kHz mono 16-bit wav goes


class SynthesisError(RuntimeError):
    """An engine or sox failed; the message names the text and the voice."""


def _fail(tool: str, request: Request, stderr: bytes | str) -> SynthesisError:
    message = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return SynthesisError(
        f"{tool} failed for text {request.text!r} with voice {request.voice!r}: "
        f"{message.strip() or 'no audio produced'}"
    )


def require(engine: str) -> None:
    """Raise a clear RuntimeError when ``engine`` (or sox) is not installed."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    tools = {"espeak-ng": ["espeak-ng"], "flite": ["flite"], "festival": ["festival"]}[engine] + ["sox"]
    for tool in tools:
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: run `make setup` or apt-get install {tool}")


def espeak_voice_grid() -> tuple[list[str], list[str]]:
    """The installed espeak-ng :data:`ACCENTS` and :data:`VARIANTS`, in table order (a voice is ``accent+variant``)."""
    require("espeak-ng")

    def listing(kind: str) -> str:
        return subprocess.run(["espeak-ng", f"--voices={kind}"], capture_output=True, text=True, check=True).stdout

    languages = {line.split()[1] for line in listing("en").splitlines()[1:] if line.strip()}
    variants_installed = set(re.findall(r"!v/(\S+)", listing("variant")))
    accents = [accent for accent in ACCENTS if accent in languages]
    variants = [variant for variant in VARIANTS if variant in variants_installed]
    if not accents or not variants:
        raise RuntimeError(f"espeak-ng has none of the accents {ACCENTS} or none of the variants {VARIANTS}")
    return accents, variants


@functools.cache
def installed_voices(engine: str) -> frozenset[str]:
    """Names of the voices ``engine`` has here ("flite" or "festival")."""
    require(engine)
    if engine == "flite":  # "Voices available: kal awb_time kal16 awb rms slt"
        listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
        return frozenset(listing.split(":", 1)[-1].split())
    if engine == "festival":  # "(cmu_us_slt_arctic_hts ked_diphone kal_diphone)"
        command = ["festival", "--heap", str(FESTIVAL_HEAP), "-b", "(print (voice.list))"]
        listing = subprocess.run(command, capture_output=True, text=True).stdout
        return frozenset(re.findall(r"[\w-]+", listing))
    raise ValueError(f"installed_voices lists flite or festival voices, not {engine!r}")


def table_voices(engine: str) -> list[Voice]:
    """The :data:`TABLE_VOICES` of ``engine``, all of them installed, else a clear RuntimeError."""
    voices = list(TABLE_VOICES[engine])
    missing = [voice.name for voice in voices if voice.name not in installed_voices(engine)]
    if missing:
        raise RuntimeError(f"{engine} lacks the voices {missing}: run `make setup` (the Makefile installs them)")
    return voices


def version(engine: str) -> str:
    """The engine's version line, for the corpus manifest (flite prints a copyright line first)."""
    require(engine)
    output = subprocess.run([engine, "--version"], capture_output=True, text=True).stdout
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown"


def resample(audio: bytes | Path, request: Request, sample_rate: int) -> None:
    """Write ``audio`` (a wav file's bytes, or its path) as mono 16-bit wav at ``sample_rate``."""
    # -R makes sox's dither repeatable, so equal inputs give equal bytes
    source = ["-"] if isinstance(audio, bytes) else [str(audio)]
    command = ["sox", "-R", "-t", "wav", *source, "-r", str(sample_rate), "-c", "1", "-b", "16", str(request.wav_path)]
    result = subprocess.run(command, input=audio if isinstance(audio, bytes) else None, capture_output=True)
    if result.returncode:
        raise _fail("sox", request, result.stderr)


def speak_espeak(request: Request, sample_rate: int) -> None:
    """espeak-ng with voice ``accent+variant`` at ``rate`` words per minute and pitch 0-99."""
    pitch = 50 if request.pitch is None else request.pitch
    command = ["espeak-ng", "-v", request.voice, "-s", str(int(request.rate)), "-p", str(pitch), "--stdout"]
    speak = subprocess.run([*command, request.text], capture_output=True)
    if speak.returncode or not speak.stdout:
        raise _fail("espeak-ng", request, speak.stderr)
    resample(speak.stdout, request, sample_rate)


def speak_flite(request: Request, sample_rate: int) -> None:
    """flite with a built-in voice; ``rate`` a speed factor, ``pitch`` a mean f0 in Hz or None."""
    if request.voice not in installed_voices("flite"):  # flite itself falls back to kal without a word
        raise _fail("flite", request, f"no such voice; flite has {sorted(installed_voices('flite'))}")
    settings = ["--setf", f"duration_stretch={1 / request.rate:.4f}"]
    if request.pitch is not None:
        settings += ["--setf", f"int_f0_target_mean={request.pitch}"]
    with tempfile.TemporaryDirectory(prefix="flite-") as folder:
        native = Path(folder) / "native.wav"
        speak = subprocess.run(
            ["flite", "-voice", request.voice, *settings, "-t", request.text, "-o", str(native)], capture_output=True
        )
        if speak.returncode or not native.is_file() or native.stat().st_size <= 44:
            raise _fail("flite", request, speak.stderr)
        resample(native, request, sample_rate)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_script(requests: Sequence[Request], native_paths: Sequence[Path]) -> str:
    """The Scheme that speaks each request into its native-rate wav; each one sets all its parameters."""
    lines = []
    for request, native in zip(requests, native_paths):
        lines.append(f"(voice_{request.voice})")  # resets the voice's parameters each time
        if request.voice.endswith("_hts"):  # the HTS engine reads -r (speech speed) per utterance
            lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {request.rate:.4f}))))')
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1 / request.rate:.4f})")
            if request.pitch is not None:  # the diphone voices' linear-regression f0 targets
                lines.append(
                    f"(set! int_lr_params '((target_f0_mean {request.pitch}) (target_f0_std 14) "
                    "(model_f0_mean 170) (model_f0_std 34)))"
                )
        lines.append(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(request.text)})) "
            f"{_scheme_string(str(native))} 'riff)"
        )
    return "\n".join(lines) + "\n"


def speak_festival(requests: Sequence[Request], sample_rate: int) -> None:
    """festival, one process for all ``requests``; ``rate`` a speed factor, ``pitch`` f0 in Hz or None."""
    for request in requests:
        if request.voice not in installed_voices("festival"):
            raise _fail("festival", request, f"no such voice; festival has {sorted(installed_voices('festival'))}")
    with tempfile.TemporaryDirectory(prefix="festival-") as folder:
        natives = [Path(folder) / f"{index}.wav" for index in range(len(requests))]
        script = Path(folder) / "speak.scm"
        script.write_text(festival_script(requests, natives))
        speak = subprocess.run(["festival", "--heap", str(FESTIVAL_HEAP), "-b", str(script)], capture_output=True)
        for request, native in zip(requests, natives):
            if not native.is_file() or native.stat().st_size <= 44:
                raise _fail("festival", request, speak.stderr + speak.stdout)
            resample(native, request, sample_rate)


def speak(engine: str, requests: Sequence[Request], sample_rate: int = 16000) -> None:
    """Speak every request with ``engine``; raises :class:`SynthesisError` naming the text and voice."""
    require(engine)
    if engine == "festival":
        speak_festival(requests, sample_rate)
        return
    speak_one = speak_espeak if engine == "espeak-ng" else speak_flite
    for request in requests:
        speak_one(request, sample_rate)


def speak_all(requests: Sequence[tuple[str, Request]], sample_rate: int = 16000, workers: int = 2) -> None:
    """Speak (engine, request) pairs with ``workers`` jobs in flight, in batches of :data:`BATCH_SIZES`.

    A batch holds one engine's requests sorted by voice (festival loads a voice when it changes); the
    big batches start first. Stops at the first failure and raises it.
    """
    jobs: list[tuple[str, list[Request]]] = []
    for engine in sorted(ENGINES, key=lambda name: -BATCH_SIZES[name]):
        mine = sorted((request for name, request in requests if name == engine), key=lambda r: r.voice)  # fewer loads
        size = BATCH_SIZES[engine]
        jobs += [(engine, mine[start : start + size]) for start in range(0, len(mine), size)]
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(requests), desc="synthesis", unit="utt") as bar:
        futures = {pool.submit(speak, engine, batch, sample_rate): len(batch) for engine, batch in jobs}
        try:
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future])
        except BaseException:
            pool.shutdown(cancel_futures=True)  # stop at the first failure
            raise
