"""Shared fixtures: small audio files and descriptor folders written into tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ctclab.data import descriptors

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, frequency: float = 440.0, seed: int = 0) -> Path:
    """A sine plus a little noise, so it is neither silent nor degenerate."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = 0.3 * np.sin(2 * np.pi * frequency * time) + 0.01 * rng.normal(size=time.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples.astype(np.float32), sample_rate)
    return path


def write_descriptors(path: Path, records: list[dict]) -> Path:
    """A descriptor file of ``records`` at ``path`` (the package's one writer)."""
    return descriptors.write_descriptors(records, path)


@pytest.fixture
def tone_corpus(tmp_path: Path) -> Path:
    """Six good utterances of 0.6-1.6 s with short texts; returns the descriptor path."""
    records = []
    for index, text in enumerate(["hi", "go left", "one two", "ace", "it's on", "stop"]):
        seconds = 0.6 + 0.2 * index
        write_tone(tmp_path / "wav" / f"{index}.wav", seconds, frequency=200 + 100 * index, seed=index)
        records.append({"key": f"wav/{index}.wav", "duration": seconds, "text": text})
    return write_descriptors(tmp_path / "train_corpus.json", records)


def run_check_script(name: str, backend: str, *arguments, cwd: Path | None = None) -> dict:
    """Run tests/<name> in a fresh interpreter on ``backend``; the JSON dict of its last stdout line.

    The Keras backend (and TensorFlow's logical devices) are fixed when a process first imports
    them, so checks of another configuration run as their own process.
    """
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tests" / name), *map(str, arguments)],
        cwd=cwd,
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, f"{name} failed:\n{completed.stderr[-3000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class SmokeRuns:
    """The course run twice under the smoke profile: the report and the learner workspace."""

    report_status: int  # ctclab.report's exit status
    report_dir: Path  # its index.html and notebooks/
    workspace: Path  # the learner workspace (write_workspace), stubs in place
    learner_dir: Path  # the workspace's notebooks as executed
    learner_home: Path  # the learner run's CTCLAB_HOME (its corpora and runs)
    learner_status: int  # tests/learner_run.py's exit status
    learner_log: str  # its stdout and stderr


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> SmokeRuns:
    """Both smoke executions of the notebooks, started together so they share the two cores.

    The report over the reference notebooks runs in this process (``ctclab.report``'s own entry
    point); the learner workspace's notebooks run meanwhile in a second process
    (tests/learner_run.py) with CTCLAB_HOME in a temporary folder. Each is mostly one busy Python
    thread (kernel start-up, tracing, small batches), so side by side they take about the time of
    the longer one.
    """
    from ctclab.course.exercises import write_workspace
    from ctclab.report import runner

    root = tmp_path_factory.mktemp("smoke")
    workspace, learner_dir, home, log = root / "exercises", root / "executed", root / "home", root / "learner.log"
    write_workspace(workspace)
    with log.open("w") as log_file:
        learner = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "learner_run.py"), str(workspace), str(learner_dir)],
            env=dict(os.environ, CTCLAB_HOME=str(home), KERAS_BACKEND="tensorflow"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            status = runner.main(["--profile", "smoke", "--out", str(root / "report"), "--force"])
        finally:
            learner_status = learner.wait(timeout=1800)
    return SmokeRuns(status, root / "report", workspace, learner_dir, home, learner_status, log.read_text())
