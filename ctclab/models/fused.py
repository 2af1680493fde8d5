"""A GRU's whole recurrence as one compiled TensorFlow CPU op (forward) and one (backward).

The op is ``ctclab/kernels/gru_sequence.cc``, built with the project's other ops by ``make
setup`` (:mod:`ctclab.kernels`). When it is not built for this machine,
``ctclab.models.recurrent.GRU`` runs its ``tf.while_loop`` (same results, about twice as slow).

Why a compiled op: in a ``tf.while_loop`` every small gate operation of every time step is
scheduled on its own, and that scheduling, not arithmetic, is most of a recurrent training
step on a CPU. The op runs the time loop in C++, one shard of the batch per worker thread.
The input product of all frames (``x @ kernel + bias``) and the weight gradients stay large
products outside it (``gru_sequence`` and its registered gradient). Masks follow Keras' RNN.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ctclab import kernels

ACTIVATIONS = ("tanh", "relu", "linear")  # the candidate activations the op implements


@cache
def library() -> Any | None:
    """The compiled ops with the GRU's gradient registered, or None when they are not built."""
    import tensorflow as tf

    ops = kernels.library()
    if ops is not None:
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
    return kernels.on_cpu_outside_xla() and library() is not None
