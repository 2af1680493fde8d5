"""Run an exported model without the project: ``python tests/export_load.py EXPORT_DIR INPUTS.npz OUTPUTS.npz RUN_MODEL``.

tests/test_export.py runs this in a fresh interpreter. ``ctclab`` cannot be imported here (an
import hook refuses it, and the script checks ``sys.modules`` at the end); only TensorFlow, Keras
and NumPy are used, as a user of the artifacts would.

INPUTS.npz holds ``audio`` (B, N) float32, ``samples`` (B,) int32, ``features`` (B, T, F) float32
(the project's normalized features, zero-padded) and ``frames`` (B,) int32. OUTPUTS.npz gets every
endpoint's outputs; the last stdout line is a JSON summary, which also says whether RUN_MODEL (the
run's own model.keras, with the project's layers) loaded here: it must not, or the hook proves nothing.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class NoProject(importlib.abc.MetaPathFinder):
    """Refuse every import of the project's package."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - the finder protocol
        if name == "ctclab" or name.startswith("ctclab."):
            raise ImportError(f"{name}: the exported model must run without the project")
        return None


sys.meta_path.insert(0, NoProject())

import keras  # noqa: E402 - after the import hook
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

export_dir, inputs_path, outputs_path, run_model = sys.argv[1:5]
inputs = np.load(inputs_path)
metadata = json.load(open(os.path.join(export_dir, "export.json")))

saved = tf.saved_model.load(os.path.join(export_dir, metadata["saved_model"]))
audio, samples = tf.constant(inputs["audio"]), tf.constant(inputs["samples"])
features, frames = tf.constant(inputs["features"]), tf.constant(inputs["frames"])
served = saved.serve(audio, samples)
featurized = saved.featurize(audio, samples)
served_features = saved.serve_features(features, frames)
default = saved.signatures["serving_default"](audio=audio, lengths=samples)

model = keras.models.load_model(os.path.join(export_dir, metadata["keras_model"]))
keras_outputs = model({"features": inputs["features"], "lengths": inputs["frames"]})

outputs = {
    "serve_probabilities": served["probabilities"],
    "serve_output_lengths": served["output_lengths"],
    "default_probabilities": default["probabilities"],
    "featurize_features": featurized["features"],
    "featurize_frame_lengths": featurized["frame_lengths"],
    "serve_features_probabilities": served_features["probabilities"],
    "serve_features_output_lengths": served_features["output_lengths"],
    "keras_probabilities": keras_outputs["probabilities"],
    "keras_output_lengths": keras_outputs["output_lengths"],
}
np.savez(outputs_path, **{name: np.asarray(value) for name, value in outputs.items()})
try:
    keras.models.load_model(run_model)
    run_model_error = ""
except Exception as error:  # noqa: BLE001 - any failure to load counts
    run_model_error = f"{type(error).__name__}: {str(error)[:4000]}"
project_modules = sorted(name for name in sys.modules if name == "ctclab" or name.startswith("ctclab."))
layer_modules = sorted({type(layer).__module__.split(".")[0] for layer in model._flatten_layers()})
summary = {"project_modules": project_modules, "layer_modules": layer_modules, "run_model_error": run_model_error}
print(json.dumps(summary))
