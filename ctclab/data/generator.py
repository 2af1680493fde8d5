"""JSON-lines descriptors -> padded CTC minibatches, as a ``keras.utils.PyDataset``.

A descriptor file holds one utterance per line: ``{"key": audio path, "duration": seconds,
"text": lowercase transcript}``; a relative key is read relative to the descriptor's folder.

:class:`AudioGenerator` featurizes every utterance once (cached as ``.npy`` under
``data/features/<config>/`` so later runs and epochs do no FFT work), checks it, and serves
batches ``(x, y)`` with

    x = {"features": (B, T, F) float32, "input_length": (B,) int32}
    y = {"labels": (B, L) int32, "label_length": (B,) int32}

where ``T`` and ``L`` are the longest feature / label in the batch rounded up to a multiple of
``pad_multiple`` / 8 (fewer distinct shapes means fewer graph retraces). Padding frames are
zeros after normalization (the training mean) and never count: the loss reads the true lengths.

Bad utterances never reach training: each is reported with its file and reason and counted in
:attr:`AudioGenerator.skipped`.

**Augmentation** (``augment=AugmentConfig(...)``, training generators only): the generator then
also keeps every clip's waveform in memory as float32 (4 bytes x 16,000 per second of audio:
64 kB/s, 224 MiB for the quick corpus' 1.02 h training split, about 0.9 GiB for the full
profile's four times as many utterances; as much again as the cached spectrograms, 161 x 4 bytes
x 100 frames per second, already held), and every batch is featurized from freshly augmented audio (see
:mod:`ctclab.data.augment`), normalized with the statistics fitted on the clean features. The
draw for utterance ``i`` in epoch ``e`` comes from ``default_rng((seed, 1, e, i))``, so epochs
differ and a run is reproducible. Speed perturbation changes the number of frames, so
``input_length`` is taken from the augmented features; a draw that leaves too few frames for the
label (or less than one analysis window) falls back to the clean features for that draw,
counted in :attr:`AudioGenerator.augment_fallbacks`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import keras
import numpy as np
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks or exports

from ctclab import paths
from ctclab.alphabet import ENGLISH, Alphabet
from ctclab.data.audio import AudioError, read_audio
from ctclab.data.augment import AugmentConfig, Augmenter
from ctclab.data.descriptors import read_descriptors
from ctclab.data.feature_store import AudioClips, FeatureStore, fill_cache
from ctclab.data.features import FeatureCache, FeatureConfig, FrameStatistics, Normalizer, featurize

if TYPE_CHECKING:
    import tensorflow as tf

    from ctclab.emg.signal import EMGFeatureConfig

LABEL_PAD_MULTIPLE = 8  # labels padded to a multiple of 8 characters to bound shape variety
AUGMENT_STREAM = 1  # seeds augmentation draws apart from the shuffling draws (seed, epoch)


@dataclass
class SkipReport:
    """Utterances left out of a generator, counted by reason, with every file named."""

    items: list[tuple[str, str, str]] = field(default_factory=list)  # (file, reason, detail)

    def add(self, file: str, reason: str, detail: str) -> None:
        self.items.append((file, reason, detail))

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason, _ in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, source: str, kept: int) -> str:
        if not self.items:
            return f"{source}: {kept} utterances, none skipped"
        lines = [f"{source}: {kept} utterances kept, {len(self.items)} skipped {self.counts}"]
        lines += [f"  skipped {file}: {detail}" for file, _, detail in self.items[:20]]
        if len(self.items) > 20:
            lines.append(f"  ... and {len(self.items) - 20} more")
        return "\n".join(lines)


def minimum_ctc_frames(labels: np.ndarray) -> int:
    """Output frames CTC needs for ``labels``: one per character plus a blank between repeats."""
    return int(len(labels) + np.count_nonzero(labels[1:] == labels[:-1]))


class AudioGenerator(keras.utils.PyDataset):
    """Minibatches of (features, labels) with true lengths for CTC training.

    Args:
        desc_file: JSON-lines descriptor file.
        features: which features to compute (spectrogram by default, as in the course).
        alphabet: character alphabet for the labels.
        minibatch_size: utterances per batch (20, the course's value).
        max_duration: longer clips are skipped and counted, in seconds (10 s, as the course).
        sort_by_duration: SortaGrad: the first epoch goes shortest-first; later epochs shuffle.
        shuffle: shuffle utterances between epochs (False gives a fixed order: use for
            validation / test).
        normalizer: feature standardization; None fits one on this file's features (do this for
            training and pass the training normalizer to validation and test generators).
        output_length: the model's ``output_length``; utterances whose output would be too
            short for their label under CTC are skipped. None means "as many frames as input".
        cache_dir: where features are cached; None disables the disk cache.
        feature_loader: ``key -> (T, F) array`` used instead of the audio feature cache (the sEMG
            path passes its own); a ``ValueError`` it raises skips the utterance as "bad input".
            ``features`` must then be that loader's configuration (anything with a
            ``feature_dim``).
        pad_multiple: the time axis is padded to a multiple of this many frames.
        limit: keep only the first ``limit`` descriptor lines (for quick runs).
        seed: shuffling and augmentation seed.
        augment: augment every training batch on the fly (see the module docstring); None
            serves the cached clean features. Only for audio (no ``feature_loader``) and
            shuffled (training) generators: validation and test never augment.
        featurize_workers: processes that compute missing feature-cache files first (audio
            only; default: one per CPU core; 1: in this process).
        verbose: print the skip summary and show a progress bar while featurizing.
        **pydataset_kwargs: ``workers`` / ``use_multiprocessing`` / ``max_queue_size``.
    """

    def __init__(
        self,
        desc_file: str | Path,
        features: FeatureConfig | EMGFeatureConfig = FeatureConfig(),
        alphabet: Alphabet = ENGLISH,
        minibatch_size: int = 20,
        max_duration: float = 10.0,
        sort_by_duration: bool = False,
        shuffle: bool = True,
        normalizer: Normalizer | None = None,
        output_length: Callable | None = None,
        cache_dir: str | Path | None = "data/features",
        feature_loader: Callable[[str], np.ndarray] | None = None,
        pad_multiple: int = 16,
        limit: int | None = None,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        featurize_workers: int | None = None,
        verbose: bool = True,
        **pydataset_kwargs,
    ):
        super().__init__(**pydataset_kwargs)
        if minibatch_size < 1:
            raise ValueError(f"minibatch_size must be at least 1, got {minibatch_size}")
        if augment is not None and (feature_loader is not None or not shuffle):
            raise ValueError(
                "augment is for audio training generators: not with a feature_loader, and not with "
                "shuffle=False (validation and test generators never augment)"
            )
        self.desc_file, self.features, self.alphabet = Path(desc_file), features, alphabet
        self.minibatch_size, self.pad_multiple = minibatch_size, pad_multiple
        self.sort_by_duration, self.shuffle = sort_by_duration, shuffle
        self.output_length = output_length or (lambda length: length)
        self.seed = seed
        self.skipped = SkipReport()
        self.augment_fallbacks: Counter[str] = Counter()  # clean features served instead, by reason
        self._keep_waveforms = augment is not None
        records = read_descriptors(desc_file)[:limit]
        self.feats = FeatureStore(features.feature_dim)  # on disk (the temporary folder, $TMPDIR), read per batch
        if feature_loader is None:  # ``features`` is then an audio FeatureConfig (see the docstring)
            audio = cast(FeatureConfig, features)
            if cache_dir is not None:
                keys = [r["key"] for r in records if r["duration"] <= max_duration]
                fill_cache(keys, audio, cache_dir, featurize_workers, verbose)
            load: Callable[[str], np.ndarray] = FeatureCache(audio, cache_dir).get
        else:
            load = feature_loader
        statistics = None if normalizer is not None else FrameStatistics()  # fitted while loading: one pass
        self._load(records, max_duration, load, verbose, statistics)
        # (N_i,) float32 clips read back from disk per batch, only when augmenting
        self.waveforms: Sequence[np.ndarray] = (
            AudioClips(self.keys, cast(FeatureConfig, features).sample_rate) if self._keep_waveforms else []
        )
        if not self.texts:
            raise ValueError(f"{desc_file}: no usable utterances\n{self.skipped.summary(str(desc_file), 0)}")
        self.normalizer = normalizer or cast(FrameStatistics, statistics).normalizer()  # clean, even when augmenting
        self.augmenter = (
            None if augment is None else Augmenter(augment, self.waveforms, cast(FeatureConfig, features).sample_rate)
        )
        self.epoch = 0
        self._order = self._epoch_order()
        if verbose:
            print(self.skipped.summary(str(desc_file), len(self.texts)))

    def _load(
        self,
        records: list[dict],
        max_duration: float,
        load: Callable[[str], np.ndarray],
        verbose: bool,
        statistics: FrameStatistics | None,
    ) -> None:
        self.keys, self.durations, self.texts, self.labels = [], [], [], []
        for record in tqdm(records, desc=f"features {self.desc_file.name}", disable=not verbose, leave=False):
            key, text = record["key"], record["text"]
            if record["duration"] > max_duration:
                self.skipped.add(key, "too long", f"{record['duration']:.2f} s > max_duration {max_duration} s")
                continue
            try:
                labels = np.asarray(self.alphabet.text_to_int_sequence(text), np.int32)
            except ValueError as error:
                self.skipped.add(key, "bad text", str(error))
                continue
            try:
                feature = load(key)
                if self._keep_waveforms:
                    self._waveform(key)  # readable (augmenting reads it again per batch)
            except ValueError as error:  # AudioError for audio, any ValueError from a feature_loader
                self.skipped.add(key, "bad audio" if isinstance(error, AudioError) else "bad input", str(error))
                continue
            frames, needed = int(self.output_length(feature.shape[0])), minimum_ctc_frames(labels)
            if frames < needed:
                self.skipped.add(
                    key,
                    "too short for label",
                    f"{feature.shape[0]} frames -> {frames} model outputs < {needed} needed for {text!r}",
                )
                continue
            self.keys.append(key)
            self.durations.append(record["duration"])
            self.texts.append(text)
            self.labels.append(labels)
            self.feats.append(feature)
            if statistics is not None:
                statistics.add(feature)
        self.feats.finish()

    def _waveform(self, key: str) -> np.ndarray:
        """(N,) float32 samples of ``key`` for augmentation (read_audio raises AudioError for bad audio)."""
        return np.asarray(read_audio(key, cast(FeatureConfig, self.features).sample_rate), np.float32)

    # ------------------------------------------------------------------- ordering (SortaGrad)

    def _epoch_order(self, epoch: int | None = None) -> list[np.ndarray]:
        """Utterance indices of every batch of ``epoch`` (default: the current one).

        A pure function of (seed, epoch), so any pass over the data can compute its own order.

        Sorted by duration in the first epoch with SortaGrad and always without shuffling.
        Shuffled epochs draw a random permutation, sort it by duration within buckets of 16
        batches (so a batch holds clips of similar length and little padding), then shuffle the
        batch order.
        """
        epoch = self.epoch if epoch is None else epoch
        durations = np.asarray(self.durations)
        if not self.shuffle or (self.sort_by_duration and epoch == 0):
            order = np.argsort(durations, kind="stable")
            return [order[i : i + self.minibatch_size] for i in range(0, len(order), self.minibatch_size)]
        rng = np.random.default_rng((self.seed, epoch))
        permutation = rng.permutation(len(durations))
        bucket = self.minibatch_size * 16
        batches = []
        for start in range(0, len(permutation), bucket):
            chunk = permutation[start : start + bucket]
            chunk = chunk[np.argsort(durations[chunk], kind="stable")]
            batches += [chunk[i : i + self.minibatch_size] for i in range(0, len(chunk), self.minibatch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()

    # ------------------------------------------------------------------------------ batches

    def __len__(self) -> int:
        return math.ceil(len(self.texts) / self.minibatch_size)

    def __getitem__(self, index: int):
        return self.get_batch(self._order[index], self.epoch)

    def utterance_features(self, index: int, epoch: int | None = None) -> np.ndarray:
        """(T, F) unnormalized features of utterance ``index`` as epoch ``epoch`` serves them.

        Without augmentation (or with ``epoch=None``) the cached clean features; with it, the
        features of that epoch's augmented clip, or the clean ones when that draw is unusable
        (counted in :attr:`augment_fallbacks`).
        """
        if self.augmenter is None or epoch is None:
            return self.feats[index]
        rng = np.random.default_rng((self.seed, AUGMENT_STREAM, epoch, int(index)))
        samples = self.augmenter(self.waveforms[index], rng, exclude=int(index))
        config = cast(FeatureConfig, self.features)
        if samples.shape[0] < config.window_samples:
            self.augment_fallbacks["shorter than one window"] += 1
            return self.feats[index]
        feature = featurize(samples, config)
        if int(self.output_length(feature.shape[0])) < minimum_ctc_frames(self.labels[index]):
            self.augment_fallbacks["too short for label"] += 1
            return self.feats[index]
        if not np.all(np.isfinite(feature)):
            self.augment_fallbacks["non-finite features"] += 1
            return self.feats[index]
        return feature

    def get_batch(self, indices: Sequence[int] | np.ndarray, epoch: int | None = None) -> tuple[dict, dict]:
        """Pad the utterances ``indices`` into one batch (see the module docstring).

        ``epoch`` picks the augmentation draw of a training generator with ``augment``; None
        (or no ``augment``) serves the clean cached features.
        """
        feats = [self.utterance_features(i, epoch) for i in indices]  # (T_i, F) each
        input_length = np.asarray([feature.shape[0] for feature in feats], np.int32)
        label_length = np.asarray([len(self.labels[i]) for i in indices], np.int32)
        time_steps = int(math.ceil(input_length.max() / self.pad_multiple) * self.pad_multiple)
        label_steps = int(math.ceil(label_length.max() / LABEL_PAD_MULTIPLE) * LABEL_PAD_MULTIPLE)
        features = np.zeros((len(indices), time_steps, self.features.feature_dim), np.float32)  # (B, T, F)
        labels = np.zeros((len(indices), label_steps), np.int32)  # (B, L); padding never read
        for row, i in enumerate(indices):
            features[row, : input_length[row]] = self.normalizer(feats[row])
            labels[row, : label_length[row]] = self.labels[i]
        return (
            {"features": features, "input_length": input_length},
            {"labels": labels, "label_length": label_length},
        )

    def fit_data(self) -> AudioGenerator | tf.data.Dataset:
        """What to hand to ``Model.fit``: this PyDataset, or on TensorFlow a ``tf.data`` view of it.

        Keras infers a PyDataset's tensor shapes from its first two batches, which would freeze
        the padded time and label axes of later batches; the TensorFlow view declares those
        axes variable instead (one graph trace) and prefetches two batches in a background
        thread, so augmenting and featurizing the next batches overlaps the training step. Pass k
        over the dataset serves epoch k's order (and augmentation draws) whenever the previous
        pass's prefetch thread finishes. Other backends take the PyDataset as is.
        """
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        signature = (
            {
                "features": tf.TensorSpec((None, None, self.features.feature_dim), tf.float32),
                "input_length": tf.TensorSpec((None,), tf.int32),
            },
            {"labels": tf.TensorSpec((None, None), tf.int32), "label_length": tf.TensorSpec((None,), tf.int32)},
        )

        passes = itertools.count()

        def batches():  # tf.data calls this once per epoch; pass k serves epoch k's order
            epoch = next(passes)
            for indices in self._epoch_order(epoch):
                yield self.get_batch(indices, epoch)
            self.epoch, self._order = epoch + 1, self._epoch_order(epoch + 1)

        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)

    def normalized_feature(self, index: int) -> np.ndarray:
        """(T, F) normalized features of utterance ``index`` (descriptor order after skips)."""
        return self.normalizer(self.feats[index])


def vis_train_features(
    index: int = 0, desc_file: str | Path = "data/speech/train_corpus.json", k_samples: int = 100
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, str]:
    """One training example as text, raw audio, normalized MFCC and spectrogram (course name).

    The normalization statistics come from the first ``k_samples`` training clips, like the
    course's ``fit_train(k_samples=100)``.

    Returns:
        (text, raw audio samples, normalized MFCC (T, 13), normalized spectrogram (T, 161),
        audio path).
    """
    records = read_descriptors(paths.resolve(desc_file))
    if not 0 <= index < len(records):
        raise ValueError(f"index {index} is outside {desc_file} ({len(records)} utterances)")
    record = records[index]
    normalized = []
    for kind in ("mfcc", "spectrogram"):
        cache = FeatureCache(FeatureConfig(kind=kind))
        normalizer = Normalizer.fit([cache.get(r["key"]) for r in records[:k_samples]])
        normalized.append(normalizer(cache.get(record["key"])))
    return record["text"], read_audio(record["key"]), normalized[0], normalized[1], record["key"]
