"""Out-of-core data: the generator's memory is bounded by the batch, not by the corpus."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ctclab.data import feature_store
from ctclab.data.descriptors import write_descriptors
from ctclab.data.feature_store import FeatureStore, fill_cache
from ctclab.data.features import FeatureCache, FeatureConfig, FrameStatistics, Normalizer, featurize_file

UTTERANCES = 20_000
SECONDS = 0.25  # 4,000 samples: 24 spectrogram frames of 161 bins
BOUND_MB = 100  # the stated bound on growth of the peak resident memory while loading and one epoch (measured: 22)


def write_corpus(folder: Path, count: int, seconds: float = SECONDS) -> Path:
    """``count`` short tones in noise as 16 kHz WAVs, and their descriptor file."""
    rng = np.random.default_rng(0)
    samples = int(16000 * seconds)
    t = np.arange(samples) / 16000
    records = []
    for index in range(count):
        path = folder / f"{index:05d}.wav"
        clip = 0.3 * np.sin(2 * np.pi * (200 + index % 700) * t) + 0.05 * rng.normal(size=samples)
        soundfile.write(path, clip.astype(np.float32), 16000, subtype="PCM_16")
        records.append({"key": str(path), "duration": seconds, "text": "ab"})
    return write_descriptors(records, folder / "corpus.json")


@pytest.mark.slow
def test_an_epoch_over_20000_utterances_stays_within_the_memory_bound(tmp_path):
    """Held in memory, the corpus's features alone would be 309 MB (float32), 618 MB more as float64."""
    descriptor = write_corpus(tmp_path, UTTERANCES)
    script = Path(__file__).with_name("out_of_core_check.py")
    result = subprocess.run(
        [sys.executable, str(script), str(descriptor), str(tmp_path / "features")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    corpus_mb = UTTERANCES * 24 * 161 * 4 / 2**20  # 24 frames of 161 float32 bins each: 295 MiB
    assert figures["utterances"] == UTTERANCES and figures["frames"] == figures["store_frames"] == UTTERANCES * 24
    growth = figures["peak_mb"] - figures["baseline_mb"]
    assert growth < BOUND_MB < corpus_mb / 2, figures


def test_the_store_gives_back_what_was_written_and_cleans_up(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(int(rng.integers(1, 40)), 7)).astype(np.float32) for _ in range(25)]
    store = FeatureStore(7, tmp_path)
    assert [store.append(a) for a in arrays] == list(range(25))
    store.finish()
    assert len(store) == 25 and store.frames == sum(len(a) for a in arrays)
    for got, expected in zip(store, arrays):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(store[-1], arrays[-1])
    replaced = arrays[3] * 2
    store[3] = replaced
    np.testing.assert_array_equal(store[3], replaced)
    with pytest.raises(ValueError, match=r"has shape"):
        store[3] = np.zeros((1, 7))
    with pytest.raises(IndexError):
        store[25]
    folder = store.folder
    store.close()
    assert not folder.exists()


def read_in_child(store: FeatureStore, index: int, queue) -> None:
    queue.put(store[index])


def test_a_data_worker_process_reads_the_same_store(tmp_path):
    store = FeatureStore(3, tmp_path)
    store.append(np.arange(12, dtype=np.float32).reshape(4, 3))
    store.finish()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=read_in_child, args=(pickle.loads(pickle.dumps(store)), 0, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    np.testing.assert_array_equal(got, np.arange(12).reshape(4, 3))


def test_frame_statistics_equal_numpy_on_the_concatenation():
    rng = np.random.default_rng(2)
    arrays = [1e4 + rng.normal(size=(int(rng.integers(1, 30)), 5)) * 1e-3 for _ in range(200)]  # a large mean
    frames = np.concatenate(arrays)
    normalizer = Normalizer.fit(iter(arrays))  # a generator: one pass, nothing kept
    np.testing.assert_allclose(normalizer.mean, frames.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(normalizer.std, frames.std(axis=0), rtol=1e-4)
    naive = np.sqrt(np.mean(frames.astype(np.float32) ** 2, axis=0) - np.mean(frames.astype(np.float32), axis=0) ** 2)
    assert not np.allclose(naive, frames.std(axis=0), rtol=0.1)  # why the merge: float32 sums of squares fail here
    with pytest.raises(ValueError, match="no frames"):
        FrameStatistics().normalizer()


def test_parallel_featurization_writes_the_same_cache_files(tmp_path, monkeypatch):
    descriptor = write_corpus(tmp_path, 6, seconds=0.3)
    keys = [line["key"] for line in map(json.loads, descriptor.read_text().splitlines())]
    monkeypatch.setattr(feature_store, "PARALLEL_FROM", 1)
    config = FeatureConfig()
    assert fill_cache(keys, config, tmp_path / "cache", workers=2, verbose=False) == 6
    cache = FeatureCache(config, tmp_path / "cache")
    for key in keys:
        np.testing.assert_array_equal(np.load(cache._path(key)), featurize_file(key, config))
    assert fill_cache(keys, config, tmp_path / "cache", workers=2, verbose=False) == 0  # all there now
