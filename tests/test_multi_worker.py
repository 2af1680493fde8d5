"""Multi-worker training: two TensorFlow worker processes on 127.0.0.1 against one process; JAX DataParallel."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_check_script

TIMEOUT = 240  # seconds for the two workers together; both are killed after it


def free_ports(count):
    """``count`` ports the system has just handed out as free (bound to port 0, then closed)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def check_command(mode, descriptor, results, weights, epochs=2):
    script = ROOT / "tests" / "multi_worker_check.py"
    return [sys.executable, str(script), mode, descriptor, results, weights, str(epochs)]


def environment(tmp_path, home, **extra):
    return dict(
        os.environ,
        KERAS_BACKEND="tensorflow",
        # each process its own feature cache, as on separate machines: two processes filling one
        # cold cache race on its temporary file names (ctclab.data.features.FeatureCache)
        CTCLAB_HOME=str(tmp_path / home),
        TMPDIR=str(tmp_path / "tmp"),  # where the non-chief worker's stand-in run folder goes
        CUDA_VISIBLE_DEVICES="",
        **extra,
    )


def last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def run_workers(tmp_path, descriptor, results_dirs, epochs=2):
    """Two workers of one cluster on 127.0.0.1, worker i writing under results_dirs[i]; [(returncode, stdout, stderr)]."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = check_command(
            "multi_worker", descriptor, results_dirs[index], tmp_path / f"worker_{index}.npz", epochs
        )
        workers.append(
            subprocess.Popen(
                command,
                env=environment(tmp_path, f"home_{index}", TF_CONFIG=tf_config),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=TIMEOUT))
    finally:
        for worker in workers:  # a worker whose peer died waits in a collective: stop it
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    return [(worker.returncode, stdout, stderr) for worker, (stdout, stderr) in zip(workers, outputs)]


def both_errors(outcomes):
    return "\n".join(
        f"worker {index} (exit {code}):\n{stderr[-2500:]}" for index, (code, _, stderr) in enumerate(outcomes)
    )


def run_single(tmp_path, descriptor, results_dir, epochs=2):
    completed = subprocess.run(
        check_command("single", descriptor, results_dir, tmp_path / "single.npz", epochs),
        env=environment(tmp_path, "home_single"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return last_json_line(completed.stdout)


def assert_same_weights(tmp_path, tolerance):
    """Both workers hold the same weights, and the single process' within ``tolerance``; the largest difference."""
    worker_weights = [np.load(tmp_path / f"worker_{index}.npz") for index in range(2)]
    single_weights = np.load(tmp_path / "single.npz")
    assert len(single_weights.files) == 3  # GRU kernel, recurrent kernel, bias
    for name in single_weights.files:
        np.testing.assert_allclose(worker_weights[0][name], worker_weights[1][name], atol=1e-6)
        np.testing.assert_allclose(worker_weights[0][name], single_weights[name], atol=tolerance)
    return max(float(np.abs(worker_weights[0][name] - single_weights[name]).max()) for name in single_weights)


@pytest.mark.slow
def test_two_workers_train_the_weights_one_process_trains(tone_corpus, tmp_path):
    (tmp_path / "tmp").mkdir()
    results = [tmp_path / "results_0", tmp_path / "results_1"]  # as on two machines
    outcomes = run_workers(tmp_path, tone_corpus, results)
    assert [returncode for returncode, _, _ in outcomes] == [0, 0], both_errors(outcomes)
    chief, other = (last_json_line(stdout) for _, stdout, _ in outcomes)
    alone = run_single(tmp_path, tone_corpus, tmp_path / "results_single")

    assert chief["replicas"] == other["replicas"] == 2 and chief["chief"] and not other["chief"]
    # the two workers hold the same weights, and those of one process on the same global batches
    # (float32 sums in another order: measured 1e-6; the tolerance, 1e-5, is 3e-6 of the largest update, 2.9)
    assert alone["max_update"] > 1e-3
    difference = assert_same_weights(tmp_path, 1e-5)
    print(f"largest weight difference, two workers vs one process: {difference:.2e}")
    for key in ("loss", "val_loss"):  # the metrics the strategy sums over both workers
        assert chief["history"][key] == pytest.approx(alone["history"][key], rel=1e-5), key
    assert chief["history"]["loss"] == other["history"]["loss"]
    # the validation CER: every worker decodes the same utterances with the same weights; greedy
    # decoding is discontinuous (a near-tie argmax flips with a 1e-6 change), so against one
    # process it is only held to a few characters of the 30 (0.1)
    assert chief["history"]["val_cer"] == other["history"]["val_cer"]
    assert chief["history"]["val_cer"] == pytest.approx(alone["history"]["val_cer"], abs=0.1)

    # only the chief wrote the run folder; the other worker's stand-in folder is gone
    expected = {"mw/history.json", "mw/mw.pickle", "mw/model.keras", "mw/training.json", "mw/builder.json"}
    assert expected <= set(chief["files"]) and any(f.startswith("mw/tensorboard/validation/") for f in chief["files"])
    assert any(f.startswith("mw/backup/") for f in chief["files"])
    assert other["files"] == [] and not results[1].exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert chief["training_json"]["distribute"] == "multi_worker" and chief["training_json"]["replicas"] == 2

    # resuming to 3 epochs where worker 1 cannot see the chief's backup: both stop with the reason
    for returncode, _, stderr in run_workers(tmp_path, tone_corpus, results, epochs=3):
        assert returncode != 0 and "workers would start at epochs [2, 0]" in stderr, stderr[-3000:]
    assert list((tmp_path / "tmp").iterdir()) == []  # the failed worker removed its stand-in too

    # with the run folder on storage both read, both resume and match one process resumed likewise
    outcomes = run_workers(tmp_path, tone_corpus, [results[0], results[0]], epochs=3)
    assert [returncode for returncode, _, _ in outcomes] == [0, 0], both_errors(outcomes)
    resumed = last_json_line(outcomes[0][1])
    alone = run_single(tmp_path, tone_corpus, tmp_path / "results_single", epochs=3)
    assert resumed["history"]["loss"][:2] == chief["history"]["loss"] and len(resumed["history"]["loss"]) == 3
    assert resumed["history"]["loss"] == pytest.approx(alone["history"]["loss"], rel=1e-5)
    assert_same_weights(tmp_path, 1e-5)


@pytest.mark.slow
def test_jax_data_parallel_over_two_devices_matches_one_device(tone_corpus, tmp_path):
    pytest.importorskip("jax")
    result = run_check_script("multi_worker_jax_check.py", "jax", tone_corpus, tmp_path / "results", cwd=tmp_path)
    assert result["backend"] == "jax" and result["devices"] == result["replicas"] == 2
    # the same steps on the global batch, each split 1 + 1 between the devices: measured 6e-5 after
    # six SGD steps that moved the weights by up to 2.5 (XLA's sharded sums add in another order)
    assert result["max_update"] > 0.1
    assert result["max_weight_difference"] < 5e-4
    assert result["losses"]["True"] == pytest.approx(result["losses"]["False"], rel=1e-5)
    # the validation CER of 3 utterances (decoded on one device) is there for both
    assert len(result["val_cer"]["True"]) == len(result["val_cer"]["False"]) == 2
    assert "do not split between 2 devices" in result["indivisible_error"]
