"""Data-parallel training on two logical CPU devices; prints one JSON line (run in a subprocess).

The logical devices must be configured before TensorFlow initializes, so tests/test_training_options.py
runs this file with a fresh interpreter: ``python tests/distribute_check.py <descriptor> <results dir>``.
"""

import json
import sys
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

# the logical devices must exist before Keras first touches TensorFlow: imports after them
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ctclab.models import deep as deep_models  # noqa: E402
from ctclab.training import options as training_options  # noqa: E402
from ctclab.training.loss import CTCTrainer  # noqa: E402
from ctclab.training.trainer import train_model  # noqa: E402

descriptor, results_dir = sys.argv[1], Path(sys.argv[2])
result = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}

# 1. One SGD step on the same batch, on one device and split 2 + 2 over two replicas, from the same weights.
keras.utils.set_random_seed(0)
single = deep_models.deep_birnn_model(13, units=8, recur_layers=1, normalization="none", dropout_rate=0.0)
rng = np.random.default_rng(0)
features = rng.normal(size=(4, 30, 13)).astype(np.float32)
features[2:, 24:] = 0.0  # two shorter utterances, zero-padded like the generator does
initial = single.get_weights()
x = {"features": features, "input_length": np.array([30, 30, 24, 24], np.int32)}
y = {
    "labels": np.array([[2, 3, 4], [5, 6, 0], [7, 7, 8], [9, 0, 0]], np.int32),
    "label_length": np.array([3, 2, 3, 1], np.int32),
}
with training_options.training_scope(single, distribute=True) as (replicated, strategy):
    result["replicas"] = strategy.num_replicas_in_sync
    trainer = CTCTrainer(replicated)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    # fit splits a tf.data batch between the replicas (train_on_batch would give each the whole batch)
    history = trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    result["distributed_loss"] = history.history["loss"][0]
local = CTCTrainer(single)
local.compile(optimizer=keras.optimizers.SGD(0.1))
result["single_loss"] = float(local.train_on_batch(x, y))
result["max_weight_difference"] = max(
    float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), replicated.get_weights())
)
result["max_update"] = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), initial))

# 2. train_model(distribute=True) on a real descriptor: the loss must go down.
model = deep_models.cnn_birnn_model(161, filters=16, kernel_size=5, units=16, recur_layers=1, dropout_rate=0.0)
history = train_model(
    model,
    "d.pickle",
    "distributed.keras",
    train_json=descriptor,
    valid_json=descriptor,
    minibatch_size=3,
    epochs=3,
    verbose=0,
    results_dir=results_dir,
    distribute=True,
)
result["losses"] = history["loss"]
result["training_json"] = json.loads((results_dir / "distributed" / "training.json").read_text())
print(json.dumps(result))
