"""Self-checks for the model exercises: ``cnn_output_length``, models 1-4 and the final model.

A model check builds the learner's model in the course's configuration and compares it with the
reference builder of :mod:`ctclab.models.course`: the output shape and softmax, ``output_length``
against the frames the model really returns for many input lengths, the course's published
parameter count, the layer types, and a short overfit on two utterances (the CTC loss must fall).
Each prints ``PASS`` or ``FAIL`` with one sentence, as in :mod:`ctclab.course.checks`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ctclab.course.checks import CheckResult, Failure, call, run_check

if TYPE_CHECKING:
    import keras

    from ctclab.profiles import Profile

INPUT_DIM = 161  # the course's spectrogram
# model -> (reference builder, the course's configuration, the course's published parameter count)
COURSE_MODELS: dict[str, tuple[str, dict[str, Any], int]] = {
    "model_0": ("simple_rnn_model", {"reset_after": False}, 16_617),
    "model_1": ("rnn_model", {"units": 200, "activation": "relu", "reset_after": False}, 223_829),
    "model_2": (
        "cnn_rnn_model",
        {
            "filters": 200,
            "kernel_size": 11,
            "conv_stride": 2,
            "conv_border_mode": "valid",
            "units": 200,
            "reset_after": False,
        },
        442_029,
    ),
    "model_3": ("deep_rnn_model", {"units": 200, "recur_layers": 2, "reset_after": False}, 465_229),
    "model_4": ("bidirectional_rnn_model", {"units": 200, "reset_after": False}, 446_029),
}
LENGTHS = (11, 12, 23, 50, 99, 100, 161, 237)  # odd and even, shorter and longer than a kernel


def _reference(builder: str) -> Callable[..., keras.Model]:
    from ctclab.models import course

    return getattr(course, builder)


def _output_frames(model: keras.Model, length: int) -> int:
    features = np.random.default_rng(length).normal(size=(1, length, model.input_shape[-1])).astype(np.float32)
    return int(np.asarray(model(features, training=False)).shape[1])


def _layer_types(model: keras.Model) -> Counter:
    """Layer classes, bidirectional wrappers counted with the layer inside (input layers left out)."""
    names = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Bidirectional":
            kind = f"Bidirectional({type(layer.forward_layer).__name__})"
        names.append(kind)
    return Counter(names)


def check_cnn_output_length(function: Callable[..., Any], show: bool = True) -> CheckResult:
    """``cnn_output_length(input_length, filter_size, border_mode, stride, dilation=1)`` against Keras' Conv1D."""
    import keras

    def body() -> str:
        if call(function, None, 11, "valid", 2) is not None:
            raise Failure("cnn_output_length(None, ...) should return None (an unknown length stays unknown)")
        checked = 0
        for border_mode in ("valid", "same", "causal"):
            for filter_size, stride, dilation in ((11, 2, 1), (3, 1, 1), (5, 3, 1), (3, 2, 2), (1, 1, 1), (7, 4, 3)):
                # Keras strides only undilated kernels: dilate at stride 1, then keep every stride-th frame
                layer = keras.layers.Conv1D(1, filter_size, padding=border_mode, dilation_rate=dilation)
                for length in (23, 50, 100, 161):
                    unstrided = int(layer(np.zeros((1, length, 1), np.float32)).shape[1])
                    expected = len(range(0, unstrided, stride))
                    got = call(function, length, filter_size, border_mode, stride, dilation)
                    checked += 1
                    if got != expected:
                        hint = "striding keeps every stride-th frame: ceil(length / stride)"
                        if border_mode == "valid":
                            hint = "'valid' first loses the (dilated) kernel span minus one frame, then strides"
                        if dilation > 1:
                            hint = "a dilated kernel spans filter_size + (filter_size - 1) * (dilation - 1) frames"
                        raise Failure(
                            f"cnn_output_length({length}, {filter_size}, {border_mode!r}, {stride}, "
                            f"dilation={dilation}) returned {got}, a Conv1D gives {expected}: {hint}"
                        )
        return f"{checked} configurations agree with Keras' Conv1D"

    return run_check("cnn_output_length", body, show)


def _check_structure(model: keras.Model, name: str) -> None:
    """29 outputs through a softmax named "softmax", and output_length equal to the real frames."""
    if model.output_shape[-1] != 29:
        raise Failure(f"{name} outputs {model.output_shape[-1]} values per frame; it needs 29 (28 characters + blank)")
    last = model.layers[-1]
    if last.name != "softmax" or getattr(getattr(last, "activation", None), "__name__", "") != "softmax":
        raise Failure(
            f"{name}'s last layer must be an Activation('softmax') named 'softmax' (the CTC loss reads "
            f"the logits before it); yours is {type(last).__name__} {last.name!r}"
        )
    if not hasattr(model, "output_length"):
        raise Failure(f"{name} has no output_length: set model.output_length = lambda x: ... before returning it")
    for length in LENGTHS:
        real = _output_frames(model, length)
        claimed = model.output_length(length)
        if claimed != real:
            hint = (
                "account for the convolution's stride and padding (use cnn_output_length)"
                if real < length
                else "no layer here changes the number of frames"
            )
            raise Failure(f"output_length({length}) says {claimed} but your model returns {real} frames: {hint}")


def _parameter_hint(model: keras.Model, name: str, expected: int) -> str:
    got = model.count_params()
    base = f"{expected:,} parameters expected for the course configuration, yours has {got:,}"
    inner = [
        getattr(layer, side)
        for layer in model.layers
        for side in ("forward_layer", "backward_layer")
        if hasattr(layer, side)
    ]
    grus = [layer for layer in [*model.layers, *inner] if type(layer).__name__ == "GRU"]
    extra = got - expected
    if grus and extra == sum(3 * layer.units for layer in grus):
        return f"{base}: the course's GRU has one bias per gate (reset_after=False)"
    if extra < 0:
        return f"{base}: a layer is missing or smaller than the description (units, filters, kernel size)"
    return f"{base}: compare each layer's size with the description above the exercise"


def check_course_model(
    builder: Callable[..., keras.Model], name: str, show: bool = True, overfit_steps: int = 25
) -> CheckResult:
    """Model ``name`` ("model_1" ... "model_4") written as ``builder``, checked against the reference."""

    def body() -> str:
        reference_name, configuration, parameters = COURSE_MODELS[name]
        model = call(builder, input_dim=INPUT_DIM, **configuration)
        _check_structure(model, name)
        expected_types = _layer_types(_reference(reference_name)(INPUT_DIM, **configuration))
        got_types = _layer_types(model)
        if got_types != expected_types:
            missing = sorted((expected_types - got_types).elements())
            unexpected = sorted((got_types - expected_types).elements())
            raise Failure(
                f"{name} uses {', '.join(sorted(expected_types))}; yours "
                + (f"lacks {', '.join(missing)}" if missing else "")
                + (" and " if missing and unexpected else "")
                + (f"has an extra {', '.join(unexpected)}" if unexpected else "")
            )
        if model.count_params() != parameters:
            raise Failure(_parameter_hint(model, name, parameters))
        before, after = overfit_two_utterances(call(builder, input_dim=13, **_small(configuration)), overfit_steps)
        if not after < 0.9 * before:
            raise Failure(
                f"training {name} for {overfit_steps} steps on two utterances did not lower the CTC loss "
                f"({before:.1f} -> {after:.1f}): is every layer connected to the output?"
            )
        return (
            f"shape, softmax, output_length on {len(LENGTHS)} lengths, {parameters:,} parameters, layer types; "
            f"CTC loss on two utterances {before:.1f} -> {after:.1f}"
        )

    return run_check(f"{name}", body, show)


def _small(configuration: dict[str, Any]) -> dict[str, Any]:
    """The same architecture with small layers, so the overfit step takes a second."""
    small = dict(configuration)
    for key in ("units", "filters"):
        if key in small:
            small[key] = 16
    return small


def overfit_two_utterances(model: keras.Model, steps: int = 25, seed: int = 0) -> tuple[float, float]:
    """Mean CTC loss on two fixed random utterances before and after ``steps`` Adam steps on them."""
    import keras

    from ctclab.training.loss import CTCTrainer

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    frames = 60
    x = {
        "features": rng.normal(size=(2, frames, model.input_shape[-1])).astype(np.float32),
        "input_length": np.asarray([frames, frames - 10], np.int32),
    }
    y = {
        "labels": np.asarray([[8, 9, 1, 2, 0, 0], [20, 21, 22, 20, 0, 0]], np.int32),
        "label_length": np.asarray([4, 4], np.int32),
    }
    trainer = CTCTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=5.0))
    before = float(trainer.evaluate(x, y, verbose=0))
    for _ in range(steps):
        trainer.train_on_batch(x, y)
    after = float(trainer.evaluate(x, y, verbose=0))
    return before, after


def check_final_model(builder: Callable[..., keras.Model], profile: Profile, show: bool = True) -> CheckResult:
    """The final model: it builds, its output_length is exact, and its run beats model 2's validation loss.

    The runs are the ones this notebook trained: ``results/<profile>/course/final`` and ``model_2``.
    """
    from ctclab.runs import Run

    def body() -> str:
        model = call(builder, input_dim=INPUT_DIM)
        _check_structure(model, "final_model")
        final, model_2 = (Run.named(profile.results_for("course"), name) for name in ("final", "model_2"))
        if not final.history().get("val_loss"):
            raise Failure(f"no trained final model in {final.folder}: run the training cell above first")
        if not model_2.history().get("val_loss"):
            raise Failure(f"no trained model_2 in {model_2.folder} to compare with: train the course models first")
        ours, theirs = min(final.history()["val_loss"]), min(model_2.history()["val_loss"])
        if not ours < theirs:
            raise Failure(
                f"your final model's best validation loss is {ours:.1f}, model 2 reached {theirs:.1f}: "
                "add capacity where it helps (a deeper or bidirectional RNN after the convolution, dropout)"
            )
        return f"output_length exact; best validation loss {ours:.1f} < model 2's {theirs:.1f}"

    return run_check("the final model", body, show)


def parameter_table() -> dict[str, int]:
    """The course's published parameter counts, by model."""
    return {name: count for name, (_, _, count) in COURSE_MODELS.items()}


def check_sample_models(module: Any, show: bool = True) -> list[CheckResult]:
    """Every model exercise of a learner's sample_models module: cnn_output_length, then models 1-4."""
    results = [check_cnn_output_length(module.cnn_output_length, show)]
    for name, (builder, _, _) in COURSE_MODELS.items():
        if name != "model_0":  # given
            results.append(check_course_model(getattr(module, builder), name, show))
    return results
