"""The project's compiled TensorFlow CPU ops: one library, built once per machine, loaded once.

Two sources, each documented in its header: ``gru_sequence.cc`` (a GRU's whole recurrence,
forward and backward: :mod:`ctclab.models.fused`) and ``ctc_loss.cc`` (the CTC loss with its
gradient: :mod:`ctclab.training.ctc_op`). ``make setup`` builds them (``python -m
ctclab.kernels``, about 40 s) with g++ against the installed TensorFlow's headers into
``kernels/build/``. The library's file name carries a key of the sources, the TensorFlow version,
the compile flags and the CPU's instruction sets, so a changed source, an upgraded TensorFlow or
a clone copied to another CPU never loads a stale library: it is simply missing, each op's
caller then runs its plain TensorFlow path (same results, slower) and one warning says what to
run.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

KERNELS = Path(__file__).parent
SOURCES = (KERNELS / "gru_sequence.cc", KERNELS / "ctc_loss.cc")
BUILD = KERNELS / "build"
# AVX-512 FP16 is off: g++ 12 cannot compile Eigen's FP16 packet code that TensorFlow ships
COMPILER = ["g++", "-O3", "-march=native", "-mno-avx512fp16", "-shared", "-fPIC", "-Wno-deprecated-declarations"]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _tf_flags() -> list[str]:
    import tensorflow as tf

    return [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def library_path() -> Path:
    """Where this machine's build of the ops lives (whether or not it exists yet)."""
    import tensorflow as tf

    sources = [source.read_text() for source in SOURCES]
    key = "\n".join([*sources, tf.__version__, " ".join(COMPILER + _tf_flags()), _cpu_flags()])
    return BUILD / f"ctclab_ops-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the ops for this machine (about 40 s); return the library's path.

    Raises:
        RuntimeError: g++ is missing or the compilation failed; the message has the compiler's output.
    """
    target = library_path()
    if target.exists():
        return target
    BUILD.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    command = [*COMPILER, *map(str, SOURCES), "-o", str(partial), *_tf_flags()]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise RuntimeError("g++ not found: `make setup` installs it (Debian package g++)") from error
    if result.returncode != 0:
        errors = "\n".join(line for line in result.stderr.splitlines() if "error" in line)[-4000:]
        raise RuntimeError(f"compiling {' '.join(map(str, SOURCES))} failed ({' '.join(command)}):\n{errors}")
    partial.replace(target)  # atomic: a concurrent loader sees the whole file or none
    for stale in BUILD.glob("*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


@cache
def library() -> Any | None:
    """The loaded op library, or None (with one warning) when it is not built for this machine."""
    import tensorflow as tf

    path = library_path()
    if not path.exists():
        warnings.warn(
            f"ctclab: the compiled ops are not built for this machine ({path.name}); GRU layers and the CTC "
            "loss run their plain TensorFlow code instead (same results, slower). Build them with "
            "`make setup` or `python -m ctclab.kernels`.",
            stacklevel=3,
        )
        return None
    return tf.load_op_library(str(path))


def on_cpu_outside_xla() -> bool:
    """Whether a CPU-only custom op fits the current context: no GPU / TPU, not inside XLA."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return False  # a CPU-only op would pull every step off the accelerator
    return not control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())  # XLA can't compile it


def main() -> None:
    """``python -m ctclab.kernels``: build the ops for this machine (a no-op when they are built)."""
    try:
        path = build()
    except RuntimeError as error:
        sys.exit(f"ctclab.kernels: {error}")
    print(f"compiled ops: {path.relative_to(KERNELS.parent.parent)}")
