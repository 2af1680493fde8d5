"""Features and clips of a whole corpus on disk, read back one utterance at a time.

:class:`AudioGenerator <ctclab.data.generator.AudioGenerator>` holds no corpus in memory: the
features of every kept utterance go once into a :class:`FeatureStore` (one float32 file, frames
of all utterances back to back, plus their offsets), and each batch reads its utterances back
with ``os.pread``. The bytes read belong to the batch's arrays and are freed with them; nothing is
memory-mapped (mapped pages would count in the process's resident memory for as long as the map
lives). A training generator that augments reads its raw clips back the same way
(:class:`AudioClips`). :func:`fill_cache` computes missing feature-cache files in parallel
processes, with a progress bar.

Memory, then, is the batch, the prefetch queue and per utterance a few numbers (key, duration,
text, labels, offset, length): about 1 kB per utterance, 30 MB for LibriSpeech's train-clean-100.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from ctclab.data.audio import read_audio
from ctclab.data.features import FeatureCache, FeatureConfig

PARALLEL_FROM = 100  # missing files per process below which one process featurizes alone


class FeatureStore(Sequence):
    """Utterance features (T_i, F) float32 in one file; ``store[i]`` reads utterance i back.

    Args:
        feature_dim: F.
        folder: where the file goes (a fresh temporary folder inside it, removed when the store
            is garbage-collected or :meth:`close` is called); None: the system's temporary
            folder (``$TMPDIR``, else /tmp: point it at a disk with room for the corpus's features).
    """

    def __init__(self, feature_dim: int, folder: str | Path | None = None):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="features_", dir=folder))
        self.path = self.folder / "features.f32"
        self.feature_dim = feature_dim
        self.offsets: list[int] = []  # first frame of every utterance
        self.lengths: list[int] = []  # its frames
        self.frames = 0
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 (closed in finish / close)
        self._fd: int | None = None
        self._pid = 0
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)

    def append(self, feature: np.ndarray) -> int:
        """Write one (T, F) array; returns its index."""
        array = np.ascontiguousarray(feature, np.float32)
        if array.ndim != 2 or array.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape (frames, {self.feature_dim}), got {array.shape}")
        if self._file is None:
            raise ValueError("the store is finished: no more appends")
        self._file.write(array.tobytes())
        self.offsets.append(self.frames)
        self.lengths.append(array.shape[0])
        self.frames += array.shape[0]
        return len(self.offsets) - 1

    def finish(self) -> None:
        """End writing; reads may start."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # one descriptor per process (data workers)
            self._fd, self._pid = os.open(self.path, os.O_RDWR), os.getpid()
        return self._fd

    def _span(self, index: int) -> tuple[int, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"utterance {index} of {len(self)}")
        index %= len(self)
        bytes_per_frame = 4 * self.feature_dim
        return self.offsets[index] * bytes_per_frame, self.lengths[index] * bytes_per_frame

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        self.finish()
        offset, size = self._span(index)
        data = os.pread(self._descriptor(), size, offset)
        return np.frombuffer(bytearray(data), np.float32).reshape(-1, self.feature_dim)  # a writable copy

    def __setitem__(self, index: int, feature: np.ndarray) -> None:
        """Overwrite utterance ``index`` with an array of the same shape."""
        self.finish()
        offset, size = self._span(index)
        array = np.ascontiguousarray(feature, np.float32)
        if array.nbytes != size or array.shape[1:] != (self.feature_dim,):
            raise ValueError(f"utterance {index} has shape ({size // (4 * self.feature_dim)}, {self.feature_dim})")
        os.pwrite(self._descriptor(), array.tobytes(), offset)

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def __getstate__(self) -> dict:  # data workers in other processes read the same file
        self.finish()
        state = dict(self.__dict__)
        state.update(_file=None, _fd=None, _pid=0, _cleanup=None)
        return state

    def close(self) -> None:
        """Remove the file now."""
        self.finish()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        if self._cleanup is not None:
            self._cleanup()


class AudioClips(Sequence):
    """The clips of ``keys`` as float32 (N_i,) arrays, read from disk on every access."""

    def __init__(self, keys: Sequence[str], sample_rate: int):
        self.keys, self.sample_rate = list(keys), sample_rate

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return np.asarray(read_audio(self.keys[index], self.sample_rate), np.float32)

    def __len__(self) -> int:
        return len(self.keys)


def _fill_one(cache: FeatureCache, key: str) -> str | None:
    try:
        cache.get(key)
    except ValueError as error:  # bad audio: the generator skips and counts it when it loads
        return str(error)
    return None


def fill_cache(
    keys: Sequence[str], config: FeatureConfig, cache_dir: str | Path, workers: int | None = None, verbose: bool = True
) -> int:
    """Compute the feature-cache files of ``keys`` that are missing, in ``workers`` processes.

    Returns:
        How many were computed (bad files are left for the generator to skip and count).
    """
    cache = FeatureCache(config, cache_dir)
    missing = []
    for key in keys:
        try:
            if not cache._path(key).is_file():
                missing.append(key)
        except OSError:  # a file that does not exist: the generator reports it
            continue
    workers = min(workers or os.cpu_count() or 1, len(missing) // PARALLEL_FROM)  # a pool costs a second or two
    if workers <= 1:
        for key in tqdm(missing, desc="features", disable=not verbose or not missing, leave=False):
            _fill_one(cache, key)
        return len(missing)
    # spawned workers: a forked copy of a process running TensorFlow threads may deadlock
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(functools.partial(_fill_one, cache), missing, chunksize=64)
        for _ in tqdm(results, total=len(missing), desc=f"features ({workers} processes)", disable=not verbose):
            pass
    return len(missing)
