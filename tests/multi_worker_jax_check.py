"""JAX data parallelism: train_model(distribute=True) over two CPU devices vs no distribution; one JSON line.

``KERAS_BACKEND=jax python tests/multi_worker_jax_check.py <descriptor> <results dir>`` (run by
tests/test_multi_worker.py). XLA makes two host devices when asked before JAX starts.
"""

import json
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ctclab.models.course import simple_rnn_model  # noqa: E402
from ctclab.training.trainer import train_model  # noqa: E402

descriptor, results_dir = sys.argv[1], Path(sys.argv[2])
weights, histories = {}, {}
for distribute in (False, True):
    keras.utils.set_random_seed(0)
    model = simple_rnn_model(161)
    initial = model.get_weights()
    histories[distribute] = train_model(
        model,
        "j.pickle",
        f"jax_{distribute}.keras",
        train_json=descriptor,
        valid_json=descriptor,
        minibatch_size=2,  # every batch splits 1 + 1 between the two devices
        epochs=2,
        optimizer=keras.optimizers.SGD(0.05),
        verbose=0,
        results_dir=results_dir,
        distribute=distribute,
        val_cer=3,  # decoded outside the distribution: 3 utterances would not split between 2 devices
    )
    weights[distribute] = model.get_weights()
try:  # batches of 3 cannot be split between 2 devices: a clear error before training
    train_model(
        simple_rnn_model(161),
        "j.pickle",
        "jax_odd.keras",
        train_json=descriptor,
        valid_json=descriptor,
        minibatch_size=3,
        epochs=1,
        verbose=0,
        results_dir=results_dir,
        distribute=True,
    )
    indivisible = ""
except ValueError as error:
    indivisible = str(error)
print(
    json.dumps(
        {
            "backend": keras.backend.backend(),
            "devices": len(jax.devices()),
            "replicas": json.loads((results_dir / "jax_True" / "training.json").read_text())["replicas"],
            "max_update": max(float(np.abs(a - b).max()) for a, b in zip(weights[False], initial)),
            "max_weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(weights[False], weights[True])),
            "losses": {str(key): history["loss"] for key, history in histories.items()},
            "val_cer": {str(key): history["val_cer"] for key, history in histories.items()},
            "indivisible_error": indivisible,
        }
    )
)
