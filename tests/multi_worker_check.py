"""One process of a multi-worker training check; writes its trained weights and prints one JSON line.

``python tests/multi_worker_check.py <multi_worker|single> <descriptor> <results dir> <weights .npz> [epochs]``

With ``multi_worker`` the process is the worker ``TF_CONFIG`` names (tests/test_multi_worker.py
starts two on 127.0.0.1 and one ``single`` process with the same settings to compare against).
The strategy is created first, before any model: TensorFlow configures its collective ops when it
starts.
"""

import json
import sys
from pathlib import Path

mode, descriptor, results_dir, weights_path = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 2  # a run folder with fewer epochs is resumed

from ctclab.training import options as training_options  # noqa: E402

strategy = training_options.multi_worker_strategy() if mode == "multi_worker" else None

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ctclab.models.course import simple_rnn_model  # noqa: E402
from ctclab.training.trainer import train_model  # noqa: E402

keras.utils.set_random_seed(0)
model = simple_rnn_model(161)  # no batch normalization: its statistics would be per replica
initial = model.get_weights()
history = train_model(
    model,
    "mw.pickle",
    "mw.keras",
    train_json=descriptor,
    valid_json=descriptor,
    minibatch_size=2,  # 6 utterances: 3 global batches of 2, one utterance per worker
    epochs=epochs,
    optimizer=keras.optimizers.SGD(0.05),
    verbose=0,
    results_dir=results_dir,
    distribute="multi_worker" if strategy is not None else False,
    tensorboard=True,
)
np.savez(weights_path, *model.get_weights())
run_dir = results_dir / "mw"
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "chief": training_options.is_chief(strategy),
            "max_update": max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), initial)),
            "history": history,
            "files": sorted(str(path.relative_to(results_dir)) for path in results_dir.rglob("*") if path.is_file())
            if results_dir.exists()
            else [],
            "training_json": json.loads((run_dir / "training.json").read_text()) if run_dir.exists() else None,
        }
    )
)
