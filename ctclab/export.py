"""Export a trained run as artifacts that run without the project: a SavedModel and a ``.keras`` file.

A run's ``model.keras`` holds the project's own layers (``ctc_lab>GRU``, ``PaddingMask``, ...) and
its ``output_length`` is a Python attribute set by the builder, so only ``Run.load_model`` (which
rebuilds the model from builder.json) can use it. :func:`export_run` writes, into ``out_dir``:

    model.keras      the same network rebuilt from stock Keras layers and ops, with the run's weights:
                     inputs {"features": (B, T, F) float32 normalized features, "lengths": (B,) int32
                     frames}, outputs {"probabilities": (B, T', C) float32, "output_lengths": (B,)
                     int32}; ``keras.models.load_model(path)`` loads it with no project code.
    saved_model/     a TensorFlow SavedModel (Keras' ExportArchive) of that model with endpoints
                     ``serve(audio, lengths)`` (the default signature) and ``featurize(audio, lengths)``
                     for spectrogram runs, and ``serve_features(features, lengths)`` for every run.
    export.json      what a user needs around them: alphabet (characters in index order, then the
                     blank), sample rate, feature settings, normalization, signatures.

``audio`` is (B, N) float32 16 kHz mono samples in [-1, 1], zero-padded to the longest clip, and
``lengths`` its (B,) int32 true sample counts. The endpoints compute the run's 161-bin log
spectrogram in the graph (frames of 320 samples every 160, periodic Hann window, rFFT, one-sided
power spectral density, ``log(p + 1e-14)``, in float64 like :func:`ctclab.data.features.spectrogram`:
bit-identical to it in tests/test_export.py, which allows 1e-5 in normalized units), apply the
training normalization and give each clip ``1 + (lengths - 320) // 160`` frames (0 when shorter
than one window).

How the stock model keeps the project's behaviour: frames at and beyond ``lengths`` are set to
zero first (the project pads with zeros after normalization); every ``PaddingMask`` becomes a
mask computed from ``lengths`` through the same time reductions (:func:`reduced_length`), every
``ZeroPadding`` a multiplication by it, and the project's GRU / LSTM / SimpleRNN become Keras'
own layers of the same configuration (same weights, one to one). ``output_lengths`` is the run's
``model.output_length`` applied to the ``lengths`` input while the graph is built, so the
arithmetic is stored as Keras ops that ``load_model`` restores. Models with other project layers
(attention, streaming) are refused with the layer's name.

Usage::

    python -m ctclab export RUN_DIR OUT_DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from ctclab.data.features import LOG_FLOOR, FeatureConfig, Normalizer
from ctclab.models import recurrent
from ctclab.models.layers import PaddingMask, SpecAugment, ZeroPadding, reduced_length
from ctclab.runs import Run

KERAS_FILE = "model.keras"
SAVED_MODEL = "saved_model"
METADATA = "export.json"
FORMAT_VERSION = 1

STOCK_RNNS: dict[type, type[layers.Layer]] = {
    recurrent.GRU: layers.GRU,
    recurrent.LSTM: layers.LSTM,
    recurrent.SimpleRNN: layers.SimpleRNN,
}  # the project's fast recurrent layers -> Keras' layers with the same weights


def _stock_layer(operation: Any) -> Any:
    """A fresh stock-Keras copy of ``operation`` (its weights are copied later); project mask layers as they are.

    Raises:
        ValueError: for a project layer with no stock equivalent.
    """
    if isinstance(operation, (PaddingMask, ZeroPadding, SpecAugment)):
        return operation  # replaced when called (see _call_stock)
    if type(operation) in STOCK_RNNS:
        return STOCK_RNNS[type(operation)].from_config(operation.get_config())
    if type(operation) is layers.Bidirectional:
        return layers.Bidirectional(
            _stock_layer(operation.forward_layer),
            backward_layer=_stock_layer(operation.backward_layer),
            merge_mode=operation.merge_mode,
            name=operation.name,
        )
    if not type(operation).__module__.startswith("keras."):
        raise ValueError(
            f"layer {operation.name!r} is a {type(operation).__module__}.{type(operation).__name__}, which has no "
            f"stock Keras equivalent here; export supports the models built from Keras layers, the project's "
            f"recurrent layers and its padding masks"
        )
    if not isinstance(operation, layers.Layer):
        return operation  # a Keras op (ops.add, ...): stateless
    return type(operation).from_config(operation.get_config())


def _frame_mask(x: keras.KerasTensor, lengths: keras.KerasTensor) -> keras.KerasTensor:
    """(B, T, ...) tensor and (B,) lengths -> (B, T) bool, True on the first ``lengths`` frames (stock ops only)."""
    first = x[:, :, 0] if len(x.shape) == 3 else x[:, :, 0, 0]  # (B, T): any slice with the time axis
    positions = ops.cumsum(ops.ones_like(first, dtype="int32"), axis=1)  # (B, T) 1-based
    return ops.less_equal(positions, ops.expand_dims(ops.cast(lengths, "int32"), 1))


def _zero_outside(x: keras.KerasTensor, mask: keras.KerasTensor) -> keras.KerasTensor:
    """``x`` (B, T, ...) with every frame where ``mask`` (B, T) is False set to zero."""
    keep = ops.cast(mask, x.dtype)
    for _ in range(len(x.shape) - 2):
        keep = ops.expand_dims(keep, -1)
    return x * keep


def stock_model(model: keras.Model) -> keras.Model:
    """The project model ``model`` rebuilt from stock Keras layers and ops, with its weights and output lengths.

    Args:
        model: a built Functional model from the registry (``Run.load_model()``), input (B, T, F).

    Returns:
        A model {"features": (B, T, F), "lengths": (B,) int32} -> {"probabilities": (B, T', C),
        "output_lengths": (B,) int32}; see the module docstring.

    Raises:
        ValueError: for a layer with no stock equivalent.
    """
    features = keras.Input(shape=model.input.shape[1:], name="features")
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    zeroed = _zero_outside(features, _frame_mask(features, lengths))

    def call(operation: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(operation, PaddingMask):
            source, x = args
            if source is not zeroed:
                raise ValueError(f"{operation.name}: a padding mask of something else than the model input")
            return _frame_mask(x, reduced_length(lengths, operation.reductions))
        if isinstance(operation, ZeroPadding):
            return _zero_outside(*args)
        if isinstance(operation, SpecAugment):
            return args[0]  # identity at inference
        return operation(*args, **kwargs)

    # clone_model's own walk through the graph (it cannot add the lengths input, so it is called directly)
    probabilities = model._run_through_graph(zeroed, operation_fn=_stock_layer, call_fn=call)
    output_lengths = ops.cast(model.output_length(lengths), "int32")  # the builder's arithmetic, as Keras ops
    exported = keras.Model(
        {"features": features, "lengths": lengths},
        {"probabilities": probabilities, "output_lengths": output_lengths},
        name=f"{model.name}_export",
    )
    for layer in model.layers:
        if layer.weights:
            exported.get_layer(layer.name).set_weights(layer.get_weights())
    return exported


def _spectrogram_constants(config: FeatureConfig) -> dict[str, Any]:
    """The window, the density scale of every rFFT bin and how many bins are kept, as in ``spectrogram``."""
    length = config.window_samples
    window = np.hanning(length + 1)[:-1]  # periodic Hann
    scale = np.full(length // 2 + 1, 1.0 / (config.sample_rate * np.sum(window**2)))
    scale[1 : (length + 1) // 2] *= 2.0  # one-sided: every bin but DC and Nyquist doubled
    kept = int(np.count_nonzero(np.fft.rfftfreq(length, d=1.0 / config.sample_rate) <= config.max_freq))
    return {"window": window, "scale": scale, "bins": kept}


class _Featurizer:
    """Audio (B, N) + sample counts (B,) -> normalized log spectrogram (B, T, F) + frame counts (B,), in TF ops."""

    def __init__(self, config: FeatureConfig, normalizer: Normalizer):
        import tensorflow as tf

        constants = _spectrogram_constants(config)
        self.window_samples, self.hop_samples, self.bins = config.window_samples, config.hop_samples, constants["bins"]
        self.window = tf.constant(constants["window"], tf.float64)
        self.scale = tf.constant(constants["scale"], tf.float64)
        self.mean = tf.constant(normalizer.mean, tf.float32)
        self.std = tf.constant(normalizer.std, tf.float32)

    def __call__(self, audio: Any, lengths: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        frames = tf.signal.frame(tf.cast(audio, tf.float64), self.window_samples, self.hop_samples, axis=-1)
        spectrum = tf.signal.rfft(frames * self.window)  # (B, T, W // 2 + 1) complex128
        power = tf.math.square(tf.math.abs(spectrum)) * self.scale
        logs = tf.cast(tf.math.log(power[..., : self.bins] + LOG_FLOOR), tf.float32)
        frame_lengths = tf.maximum(0, 1 + (tf.cast(lengths, tf.int32) - self.window_samples) // self.hop_samples)
        mask = tf.sequence_mask(frame_lengths, tf.shape(logs)[1], tf.float32)[..., None]
        return (logs - self.mean) / self.std * mask, frame_lengths


def _write_saved_model(
    model: keras.Model, features: Any, normalizer: Normalizer, path: Path, feature_dim: int
) -> list[str]:
    """The SavedModel of ``model`` (from :func:`stock_model`) with audio endpoints for spectrogram runs; its endpoints."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoints = []

    def predict(features_in: Any, frame_lengths: Any) -> dict:
        outputs = model({"features": features_in, "lengths": frame_lengths}, training=False)
        return {"probabilities": outputs["probabilities"], "output_lengths": outputs["output_lengths"]}

    audio_spec = [
        tf.TensorSpec([None, None], tf.float32, name="audio"),
        tf.TensorSpec([None], tf.int32, name="lengths"),
    ]
    if isinstance(features, FeatureConfig) and features.kind == "spectrogram":
        featurizer = _Featurizer(features, normalizer)

        def serve(audio: Any, lengths: Any) -> dict:
            return predict(*featurizer(audio, lengths))

        def featurize(audio: Any, lengths: Any) -> dict:
            normalized, frame_lengths = featurizer(audio, lengths)
            return {"features": normalized, "frame_lengths": frame_lengths}

        archive.add_endpoint("serve", serve, input_signature=audio_spec)  # the first: also "serving_default"
        archive.add_endpoint("featurize", featurize, input_signature=audio_spec)
        endpoints += ["serve", "featurize"]
    features_spec = [
        tf.TensorSpec([None, None, feature_dim], tf.float32, name="features"),
        tf.TensorSpec([None], tf.int32, name="lengths"),
    ]
    archive.add_endpoint("serve_features", predict, input_signature=features_spec)
    endpoints.append("serve_features")
    if path.exists():
        shutil.rmtree(path)
    archive.write_out(str(path), verbose=False)
    return endpoints


def export_run(run_dir: str | Path, out_dir: str | Path) -> dict:
    """Write the run's model as ``model.keras``, ``saved_model/`` and ``export.json`` into ``out_dir``.

    Args:
        run_dir: a trained run folder (model.keras + builder.json, see :mod:`ctclab.runs`).
        out_dir: where the artifacts go (created; earlier artifacts there are replaced).

    Returns:
        The metadata written to export.json.

    Raises:
        ValueError: when the run was not trained with train_model or its model has a layer with
            no stock Keras equivalent.
    """
    run = Run(Path(run_dir))
    model, normalizer, features, alphabet = run.load_model()
    exported = stock_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exported.save(out / KERAS_FILE)
    feature_dim = int(model.input.shape[-1])
    endpoints = _write_saved_model(exported, features, normalizer, out / SAVED_MODEL, feature_dim)
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run": str(run.folder),
        "builder": run.builder(),
        "keras_model": KERAS_FILE,
        "saved_model": SAVED_MODEL,
        "saved_model_endpoints": endpoints,
        "alphabet": {
            "name": alphabet.name,
            "characters": list(alphabet.characters),
            "blank_index": alphabet.blank_index,
            "output_dim": alphabet.output_dim,
        },
        "features": dict(dataclasses.asdict(features), config=type(features).__name__, feature_dim=feature_dim),
        "normalization": {"mean": normalizer.mean.tolist(), "std": normalizer.std.tolist()},
        "inputs": {
            "audio": "(B, N) float32 mono samples at features.sample_rate, zero-padded; lengths (B,) int32 samples",
            "features": "(B, T, feature_dim) float32 normalized features; lengths (B,) int32 frames",
        },
        "outputs": {
            "probabilities": "(B, T', output_dim) float32 per-frame softmax; frames past output_lengths are padding",
            "output_lengths": "(B,) int32 T' of every utterance",
        },
    }
    if isinstance(features, FeatureConfig) and features.kind == "spectrogram":
        metadata["features"].update(
            window_samples=features.window_samples,
            hop_samples=features.hop_samples,
            window="periodic hann",
            log_floor=LOG_FLOOR,
        )
    (out / METADATA).write_text(json.dumps(metadata, indent=1))
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctclab export RUN_DIR OUT_DIR``: 0, or 2 with the reason on stderr (not a trained run, a layer
    with no stock Keras equivalent)."""
    parser = argparse.ArgumentParser(prog="python -m ctclab export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a trained run folder (model.keras + builder.json)")
    parser.add_argument("out_dir", type=Path, help="where model.keras, saved_model/ and export.json go")
    arguments = parser.parse_args(argv)
    try:
        metadata = export_run(arguments.run_dir, arguments.out_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"export: {error}", file=sys.stderr)
        return 2
    print(
        f"{arguments.out_dir}: {KERAS_FILE}, {SAVED_MODEL}/ ({', '.join(metadata['saved_model_endpoints'])}), {METADATA}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
