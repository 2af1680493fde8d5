"""A GRU's whole recurrence as one compiled TensorFlow CPU op (forward) and one (backward).

``kernels/gru_sequence.cc`` is built once per machine by ``make setup`` (``python -m
ctclab.models.kernels``) with g++ against the installed TensorFlow's headers, into
``kernels/build/``. The file name carries a key of the source, the TensorFlow version, the
compile flags and the CPU's instruction sets, so a changed source, an upgraded TensorFlow or a
clone copied to another CPU never loads a stale library: it is simply missing, and
``ctclab.models.recurrent.GRU`` then runs its ``tf.while_loop`` (same results, about twice as
slow) and says once what to run.

Why a compiled op: in a ``tf.while_loop`` every small gate operation of every time step is
scheduled on its own, and that scheduling, not arithmetic, is most of a recurrent training
step on a CPU. The op runs the time loop in C++, one shard of the batch per worker thread.
The input product of all frames (``x @ kernel + bias``) and the weight gradients stay large
products outside it (``gru_sequence`` and its registered gradient). Masks follow Keras' RNN.
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

KERNELS = Path(__file__).parent / "kernels"
SOURCE = KERNELS / "gru_sequence.cc"
BUILD = KERNELS / "build"
ACTIVATIONS = ("tanh", "relu", "linear")  # the candidate activations the op implements
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
    """Where this machine's build of the op lives (whether or not it exists yet)."""
    import tensorflow as tf

    key = "\n".join([SOURCE.read_text(), tf.__version__, " ".join(COMPILER + _tf_flags()), _cpu_flags()])
    return BUILD / f"gru_sequence-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the op for this machine (about 30 s); return the library's path.

    Raises:
        RuntimeError: g++ is missing or the compilation failed; the message has the compiler's output.
    """
    target = library_path()
    if target.exists():
        return target
    BUILD.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    command = [*COMPILER, str(SOURCE), "-o", str(partial), *_tf_flags()]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise RuntimeError("g++ not found: `make setup` installs it (Debian package g++)") from error
    if result.returncode != 0:
        errors = "\n".join(line for line in result.stderr.splitlines() if "error" in line)[-4000:]
        raise RuntimeError(f"compiling {SOURCE} failed ({' '.join(command)}):\n{errors}")
    partial.replace(target)  # atomic: a concurrent loader sees the whole file or none
    for stale in BUILD.glob("gru_sequence-*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


@cache
def library() -> Any | None:
    """The loaded op library with its gradient registered, or None (with one warning) when not built."""
    import tensorflow as tf

    path = library_path()
    if not path.exists():
        warnings.warn(
            f"ctclab: the compiled GRU op is not built for this machine ({path.name}); GRU layers run their "
            "tf.while_loop instead (same results, slower). Build it with `make setup` or "
            "`python -m ctclab.models.kernels`.",
            stacklevel=3,
        )
        return None
    ops = tf.load_op_library(str(path))
    tf.RegisterGradient("CtcLabGruForward")(_gradient)
    return ops


def _gradient(op: Any, dh: Any, _dgates: Any, _daux: Any, dstates: Any) -> tuple:
    """Gradients of xp, h0, the recurrent kernel and bias (none for the mask): the backward op plus large products."""
    import tensorflow as tf

    xp, h0, recurrent_kernel, recurrent_bias, mask = op.inputs
    h, gates, aux, states = op.outputs
    reset_after = op.get_attr("reset_after")
    if dstates is None:
        dstates = tf.zeros_like(states)
    dxp, drec, dh0 = library().ctc_lab_gru_backward(  # type: ignore[union-attr]
        dh,
        dstates,
        h0,
        h,
        gates,
        aux,
        states,
        mask,
        recurrent_kernel,
        reset_after=reset_after,
        zero_output_for_mask=op.get_attr("zero_output_for_mask"),
        activation=op.get_attr("activation"),
    )
    units = tf.shape(h0)[1]
    carried = states if mask.shape.rank == 2 else h  # each step's state: the outputs when unmasked (mask (0,))
    h_prev = tf.reshape(tf.concat([h0[None], carried[:-1]], 0), [-1, units])  # (T * B, u): each step's input state
    if reset_after:  # every gate's recurrent term is h_prev @ U + b
        d = tf.reshape(drec, [-1, 3 * units])
        return dxp, dh0, tf.matmul(h_prev, d, transpose_a=True), tf.reduce_sum(d, 0), None
    # z and r see h_prev @ U_zr; the candidate sees (r * h_prev) @ U_h, kept by the forward op as aux
    d = tf.reshape(dxp, [-1, 3 * units])
    kernel_zr = tf.matmul(h_prev, d[:, : 2 * units], transpose_a=True)
    kernel_h = tf.matmul(tf.reshape(aux, [-1, units]), d[:, 2 * units :], transpose_a=True)
    return dxp, dh0, tf.concat([kernel_zr, kernel_h], 1), tf.zeros_like(recurrent_bias), None


def gru_sequence(
    xp: Any,
    h0: Any,
    recurrent_kernel: Any,
    recurrent_bias: Any,
    reset_after: bool,
    activation: str,
    mask: Any | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[Any, Any]:
    """A GRU's outputs (T, B, u) and final state (B, u) given its input products ``xp`` (T, B, 3u), gates z, r, h.

    ``recurrent_bias`` (3u,) is Keras' second bias row with ``reset_after`` (zeros without it);
    the recurrent activation is the sigmoid. ``mask`` (T, B) bool, in processing order, follows
    Keras: masked frames carry the state and repeat the previous output (zeros with
    ``zero_output_for_mask``). Differentiable in ``xp``, ``h0`` and the recurrent weights.
    """
    import tensorflow as tf

    masked = mask is not None
    mask = tf.cast(mask, xp.dtype) if masked else tf.zeros([0], xp.dtype)
    h, _, _, states = library().ctc_lab_gru_forward(  # type: ignore[union-attr]
        xp,
        h0,
        recurrent_kernel,
        recurrent_bias,
        mask,
        reset_after=reset_after,
        zero_output_for_mask=zero_output_for_mask,
        activation=activation,
    )
    return h, (states[-1] if masked else h[-1])


def available() -> bool:
    """Whether the op can run here: TensorFlow on CPU only, outside XLA, and the library built."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return False  # a CPU-only op would pull every step off the accelerator
    if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        return False  # XLA cannot compile a custom op
    return library() is not None


def main() -> None:
    """``python -m ctclab.models.kernels``: build the op for this machine (a no-op when it is built)."""
    try:
        path = build()
    except RuntimeError as error:
        sys.exit(f"ctclab.models.fused: {error}")
    print(f"compiled GRU op: {path.relative_to(KERNELS.parent.parent.parent)}")


if __name__ == "__main__":
    main()
