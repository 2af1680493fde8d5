"""Run under any KERAS_BACKEND: build models 0-4, compare the CTC loss with brute force, train one step.

Prints one JSON line; tests/test_training.py runs it with KERAS_BACKEND=jax in a subprocess
(the backend is fixed when keras is first imported).
"""

import json

import keras
import numpy as np
from ctc_reference import brute_force_ctc, random_ctc_case

from ctclab.models.registry import build
from ctclab.training.loss import CTCTrainer, ctc_batch_loss

result = {"backend": keras.backend.backend()}
builders = ["simple_rnn_model", "rnn_model", "cnn_rnn_model", "deep_rnn_model", "bidirectional_rnn_model"]
models = {name: build(name, input_dim=13) for name in builders}
result["output_shapes_ok"] = all(
    tuple(model(np.zeros((1, 50, 13), np.float32)).shape) == (1, model.output_length(50), 29)
    for model in models.values()
)
labels, logits, label_length, logit_length, blank = random_ctc_case(np.random.default_rng(3))
ours = np.asarray(ctc_batch_loss(labels, logits, label_length, logit_length, blank))
reference = [
    brute_force_ctc(logits[b, : logit_length[b]], labels[b, : label_length[b]], blank) for b in range(len(labels))
]
result["max_ctc_error"] = float(np.max(np.abs(ours - np.asarray(reference))))
trainer = CTCTrainer(models["cnn_rnn_model"])
# the same compile as train_model: jax.jit on JAX (its only compiled path), no XLA on TensorFlow
trainer.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=keras.backend.backend() == "jax")
rng = np.random.default_rng(0)
x = {"features": rng.normal(size=(2, 60, 13)).astype(np.float32), "input_length": np.array([60, 44], np.int32)}
y = {"labels": np.array([[2, 3, 4], [5, 6, 0]], np.int32), "label_length": np.array([3, 2], np.int32)}
before = [np.array(v) for v in trainer.trainable_variables]
losses = [float(trainer.train_on_batch(x, y)) for _ in range(3)]
result["train_losses"] = losses
result["weights_changed"] = any(not np.allclose(a, np.array(b)) for a, b in zip(before, trainer.trainable_variables))
print(json.dumps(result))
