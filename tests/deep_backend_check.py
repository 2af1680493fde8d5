"""Run under any KERAS_BACKEND: every deep builder's shapes and padding invariance; eight training steps of two.

Prints one JSON line; tests/test_deep_models.py runs it with KERAS_BACKEND=jax in a subprocess
(the backend is fixed when keras is first imported).
"""

import json

import keras
import numpy as np
from test_deep_models import SMALL

from ctclab.models.registry import build
from ctclab.training.loss import CTCTrainer

TRAINED = ("cnn_birnn_model", "tds_mhsa_model")
STEPS = 8  # training steps (dropout makes single steps noisy; the seed makes the run repeatable)
keras.utils.set_random_seed(0)  # initial weights and dropout masks
rng = np.random.default_rng(0)
features = rng.normal(size=(2, 48, 13)).astype(np.float32)
features[1, 30:] = 0.0  # the second utterance has 30 frames
x = {"features": features, "input_length": np.array([48, 30], np.int32)}
y = {"labels": np.array([[2, 3, 4], [5, 6, 0]], np.int32), "label_length": np.array([3, 2], np.int32)}
result = {"backend": keras.backend.backend(), "models": {}}
for builder, variants in SMALL.items():
    model = build(builder, input_dim=13, **variants[0])
    output = np.asarray(model(features))
    alone = np.asarray(model(features[1:, :30]))
    frames = model.output_length(30)
    checks = {
        "shape_ok": output.shape == (2, model.output_length(48), 29),
        "padding_difference": float(np.max(np.abs(output[1, :frames] - alone[0, :frames]))),
    }
    if builder in TRAINED:  # compiling a training step takes 10-30 s per model: a masked-RNN and an attention model
        trainer = CTCTrainer(model)
        trainer.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)  # as train_model on JAX
        checks["losses"] = [float(trainer.train_on_batch(x, y)) for _ in range(STEPS)]
    result["models"][builder] = checks
print(json.dumps(result))
