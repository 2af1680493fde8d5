"""Fast recurrent layers: Keras' GRU, LSTM and SimpleRNN with the input projection taken out of the loop.

On CPU, ``keras.layers.GRU`` runs the whole cell in every time step, so each step multiplies
one frame of the input by the input kernel, a (B, F) x (F, 3u) product too small to use the
machine. These layers are subclasses of the Keras layers with the same weights, the same
parameter counts, the same configuration and the same arithmetic; only ``inner_loop`` differs:

1. the input projection of every frame is one large product, ``(T, B, F) x (F, 3u) + bias``;
2. the loop (``tf.while_loop`` on TensorFlow, ``jax.lax.scan`` on JAX, compiled with the
   training step) does only the recurrence: ``h @ recurrent_kernel`` and the gates. The GRU's
   recurrence on TensorFlow on a CPU is one compiled op instead (:mod:`ctclab.models.fused`,
   forward and backward in C++), where most of a ``tf.while_loop``'s time would go to scheduling
   the small per-step ops.

Masks (``mask=`` or a ``Masking`` layer), ``go_backwards`` (and so ``Bidirectional``),
``zero_output_for_mask``, initial states, ``return_state`` and input ``dropout`` (one mask for
all frames, as Keras' own loop uses) behave as in Keras; tests/test_recurrent.py checks outputs
and gradients against the Keras layers on both backends. Configurations without a fast path
(``recurrent_dropout`` while training, ``implementation=1`` with dropout, other backends) run
Keras' own loop, so every configuration still works.

A model saved with these layers records them as ``ctc_lab>GRU`` etc. (this module must be
imported to load it: ``import ctclab.models`` does); models saved with Keras' layers still load
as Keras' layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops

from ctclab.models import fused
from ctclab.models.layers import PACKAGE

Tensor = Any
Step = Callable[[tuple, tuple], tuple]  # (carry, frame inputs) -> (carry, frame output)


LOOPS = ("tensorflow", "jax")  # the backends with a compiled loop here; others run Keras' loop


def _scan(step: Step, carry: tuple, xs: tuple) -> tuple[tuple, Tensor]:
    """Run ``step`` over the leading (time) axis of every ``xs`` tensor: (final carry, stacked outputs).

    ``step(carry, x_t)`` returns ``(carry, y_t)`` with ``y_t`` shaped like ``carry[0]``. Runs as
    ``jax.lax.scan`` on JAX and as a ``tf.while_loop`` over TensorArrays on TensorFlow (inside the
    training step's tf.function, so the loop is part of the compiled graph).
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.lax.scan(step, carry, xs)
    import tensorflow as tf

    steps = tf.shape(xs[0])[0]
    inputs = [tf.TensorArray(x.dtype, size=steps, element_shape=x.shape[1:]).unstack(x) for x in xs]
    outputs = tf.TensorArray(carry[0].dtype, size=steps, element_shape=carry[0].shape)

    def body(time: Tensor, outputs: Any, *carry: Tensor) -> tuple:
        new_carry, output = step(carry, tuple(array.read(time) for array in inputs))
        return (time + 1, outputs.write(time, output), *new_carry)

    final = tf.while_loop(
        lambda time, *_: time < steps, body, (tf.constant(0), outputs, *carry), maximum_iterations=steps
    )
    return tuple(final[2:]), final[1].stack()


def _state_list(initial_state: Any) -> list:
    return list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]


class _FastLoop(layers.RNN):
    """What the three layers share: the precomputed input projection, masks, direction and the loop.

    Never used alone: ``GRU(_FastLoop, layers.GRU)`` puts the Keras layer next in the method order,
    so ``super().inner_loop`` here is that layer's own loop.
    """

    def _projected(self, sequences: Tensor, training: bool, input_bias: Tensor | None) -> Tensor:
        """Every frame's input product, time-major (T, B, gates * units), in processing order."""
        cell = self.cell
        if training and 0 < cell.dropout < 1:
            # the cell's dropout mask, drawn by RNN.call before the loop: Keras applies the same one to every frame
            sequences = sequences * ops.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), 1)
        projected = ops.matmul(ops.transpose(sequences, (1, 0, 2)), cell.kernel)  # every frame in one product
        if input_bias is not None:
            projected = projected + input_bias
        return ops.flip(projected, axis=0) if self.go_backwards else projected

    def _time_mask(self, mask: Tensor | list | tuple | None) -> Tensor | None:
        """The layer's mask time-major (T, B) bool, in processing order; None when unmasked."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is None:
            return None
        time_mask = ops.transpose(ops.cast(mask, "bool"), (1, 0))
        return ops.flip(time_mask, axis=0) if self.go_backwards else time_mask

    def _fast_loop(
        self,
        sequences: Tensor,
        initial_state: Any,
        mask: Tensor | None,
        training: bool,
        cell_step: Callable[[tuple, tuple], tuple[Tensor, tuple]],
        input_bias: Tensor | None,
        split: int | None = None,
    ) -> Any:
        """Keras ``inner_loop``'s (last_output, outputs, states); Keras' own loop where there is no fast path.

        ``cell_step(x_t, states) -> (output, new_states)`` is the cell with its input product already
        applied: ``x_t`` is one frame of ``inputs @ kernel + input_bias``, as one tensor, or as two
        (the first ``split`` columns and the rest: slicing once for all frames, not in every step).
        """
        cell = self.cell
        keras_loop = keras.backend.backend() not in LOOPS or (training and cell.recurrent_dropout > 0)
        if keras_loop or (training and 0 < cell.dropout < 1 and getattr(cell, "implementation", 2) == 1):
            return super().inner_loop(sequences, initial_state, mask, training)
        states = _state_list(initial_state)
        mask = self._time_mask(mask)
        projected = self._projected(sequences, training, input_bias)
        xs: tuple = (projected,) if split is None else (projected[..., :split], projected[..., split:])
        if mask is not None:
            xs += (ops.expand_dims(mask, -1),)  # (T, B, 1)
        if mask is None:  # every frame counts: the carry is the states alone

            def step(states: tuple, x: tuple) -> tuple:
                output, new_states = cell_step(x, states)
                return new_states, output

            last_states, outputs = _scan(step, tuple(states), xs)
            return outputs[-1], ops.transpose(outputs, (1, 0, 2)), list(last_states)

        zeros = ops.zeros_like(states[0])

        def masked_step(carry: tuple, x: tuple) -> tuple:
            previous_output, carried, mask_t = carry[0], carry[1:], x[-1]
            output, new_states = cell_step(x[:-1], carried)
            kept = tuple(ops.where(mask_t, new, old) for new, old in zip(new_states, carried, strict=True))
            # on masked frames Keras repeats the previous output, or gives zeros with zero_output_for_mask
            output = ops.where(mask_t, output, zeros if self.zero_output_for_mask else previous_output)
            return (output, *kept), output

        (last_output, *final_states), outputs = _scan(masked_step, (zeros, *states), xs)
        return last_output, ops.transpose(outputs, (1, 0, 2)), final_states


def _activation_name(cell: Any) -> str | None:
    """The compiled op's name for the cell's candidate activation, None when it has no such activation."""
    names = {keras.activations.tanh: "tanh", keras.activations.relu: "relu", keras.activations.linear: "linear"}
    return names.get(cell.activation)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRU(_FastLoop, layers.GRU):
    """``keras.layers.GRU`` (same arguments, weights and results) with the input product out of the loop.

    On TensorFlow on a CPU, with the sigmoid recurrent activation, a tanh / ReLU / linear candidate
    and float32 weights, the recurrence runs as one compiled op (:mod:`ctclab.models.fused`).
    """

    def _fused(self, training: bool) -> bool:
        cell = self.cell
        return (
            keras.backend.backend() == "tensorflow"
            and not (training and cell.recurrent_dropout > 0)
            and not (training and 0 < cell.dropout < 1 and cell.implementation == 1)
            and cell.recurrent_activation is keras.activations.sigmoid
            and _activation_name(cell) in fused.ACTIVATIONS
            and self.compute_dtype == "float32"
            and fused.available()
        )

    def inner_loop(self, sequences: Tensor, initial_state: Any, mask: Tensor | None, training: bool = False) -> Any:
        cell, units = self.cell, self.units
        input_bias = recurrent_bias = None
        if cell.use_bias:
            if cell.reset_after:
                input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
            else:
                input_bias = cell.bias
        if self._fused(training):  # the compiled op: the whole recurrence in one call
            h0 = _state_list(initial_state)[0]
            if recurrent_bias is None:
                recurrent_bias = ops.zeros((3 * units,), h0.dtype)
            activation = _activation_name(cell)
            assert activation is not None  # _fused checked it
            projected = self._projected(sequences, training, input_bias)
            h, state = fused.gru_sequence(
                projected,
                h0,
                cell.recurrent_kernel,
                recurrent_bias,
                cell.reset_after,
                activation,
                self._time_mask(mask),
                self.zero_output_for_mask,
            )
            return h[-1], ops.transpose(h, (1, 0, 2)), [state]
        kernel_zr, kernel_h = cell.recurrent_kernel[:, : 2 * units], cell.recurrent_kernel[:, 2 * units :]

        def cell_step(x: tuple, states: tuple) -> tuple[Tensor, tuple]:
            # x: this frame's input product, (B, 2u) for z and r (one activation op for both) and (B, u) for h
            (x_zr, x_h), h_tm1 = x, states[0]
            if cell.reset_after:
                inner = ops.matmul(h_tm1, cell.recurrent_kernel)
                if recurrent_bias is not None:
                    inner = inner + recurrent_bias
                zr = cell.recurrent_activation(x_zr + inner[:, : 2 * units])
                recurrent_h = zr[:, units:] * inner[:, 2 * units :]
            else:
                zr = cell.recurrent_activation(x_zr + ops.matmul(h_tm1, kernel_zr))
                recurrent_h = ops.matmul(zr[:, units:] * h_tm1, kernel_h)
            z = zr[:, :units]
            hh = cell.activation(x_h + recurrent_h)
            h = z * h_tm1 + (1 - z) * hh
            return h, (h,)

        return self._fast_loop(sequences, initial_state, mask, training, cell_step, input_bias, split=2 * units)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTM(_FastLoop, layers.LSTM):
    """``keras.layers.LSTM`` (same arguments, weights and results) with the input product out of the loop."""

    def inner_loop(self, sequences: Tensor, initial_state: Any, mask: Tensor | None, training: bool = False) -> Any:
        cell, units = self.cell, self.units

        def cell_step(x: tuple, states: tuple) -> tuple[Tensor, tuple]:
            h_tm1, c_tm1 = states
            z = x[0] + ops.matmul(h_tm1, cell.recurrent_kernel)
            i = cell.recurrent_activation(z[:, :units])
            f = cell.recurrent_activation(z[:, units : 2 * units])
            c = f * c_tm1 + i * cell.activation(z[:, 2 * units : 3 * units])
            o = cell.recurrent_activation(z[:, 3 * units :])
            h = o * cell.activation(c)
            return h, (h, c)

        return self._fast_loop(
            sequences, initial_state, mask, training, cell_step, cell.bias if cell.use_bias else None
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class SimpleRNN(_FastLoop, layers.SimpleRNN):
    """``keras.layers.SimpleRNN`` (same arguments, weights and results) with the input product out of the loop."""

    def inner_loop(self, sequences: Tensor, initial_state: Any, mask: Tensor | None, training: bool = False) -> Any:
        cell = self.cell

        def cell_step(x: tuple, states: tuple) -> tuple[Tensor, tuple]:
            output = x[0] + ops.matmul(states[0], cell.recurrent_kernel)
            if cell.activation is not None:
                output = cell.activation(output)
            return output, (output,)

        return self._fast_loop(
            sequences, initial_state, mask, training, cell_step, cell.bias if cell.use_bias else None
        )
