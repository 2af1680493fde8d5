"""The one owner of a run folder: every file in it, and finding and picking runs.

A training run owns ``results/<profile>/<family>/<name>/`` (or ``<results_dir>/<name>/``):

    history.json          loss / val_loss / seconds per epoch, appended every epoch
    <name>.pickle         the same history as a pickle (the course's format)
    model.keras           the acoustic model with the best validation loss so far
    builder.json          builder name + arguments (the model is rebuilt from it)
    normalization.json    the training feature mean / std the model was trained with
    features.json         the feature configuration, with the name of its class
    alphabet.txt          the label alphabet's name
    training.json         the training options (precision, replicas, schedule, L2, SpecAugment)
    scores.json           held-out scores and decoded examples (evaluation, decoding, sEMG scoring)
    backup/               last epoch's weights + optimizer state; a re-run resumes from here
    tensorboard/          TensorBoard event files (train_model(tensorboard=True); train/ and validation/)

and a profile's results folder holds ``streaming.json``, notebook 06's live measurements.

Only this module reads or writes those files; :class:`Run` is the handle the trainer, the
evaluators, sEMG scoring, live decoding and the report use. Importing it does not import Keras
(only :meth:`Run.load_model` and :meth:`Run.parameters` build a model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctclab import paths
from ctclab.alphabet import Alphabet, get_alphabet
from ctclab.data.features import FEATURE_KINDS, FeatureConfig, Normalizer
from ctclab.emg.signal import EMGFeatureConfig

if TYPE_CHECKING:
    import keras

FEATURE_CONFIGS: dict[str, type] = {"FeatureConfig": FeatureConfig, "EMGFeatureConfig": EMGFeatureConfig}
STREAMING_SUMMARY = "streaming.json"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, data: Any, indent: int | None = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=indent))
    temporary.replace(path)  # atomic: a reader never sees half a file
    return path


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder and everything in it.

    Attributes:
        folder: the run's folder, ``<results_dir>/<name>``.
    """

    folder: Path

    @classmethod
    def named(cls, results_dir: str | Path, name: str) -> Run:
        """The run called ``name`` under ``results_dir`` (``name`` may be a file name: its stem counts)."""
        return cls(Path(results_dir) / Path(name).stem)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def family(self) -> str:
        """The folder above the run: "course", "deep", "transformers", "emg", ..."""
        return self.folder.parent.name

    # ------------------------------------------------------------------ paths the trainer hands to Keras

    @property
    def model_path(self) -> Path:
        return self.folder / "model.keras"

    @property
    def backup_dir(self) -> Path:
        return self.folder / "backup"

    @property
    def history_path(self) -> Path:
        return self.folder / "history.json"

    # ------------------------------------------------------------------ writing (the trainer, evaluators)

    def start(self, resume: bool, builder_config: dict | None = None, parameters: int | None = None) -> None:
        """Create the folder; without ``resume`` forget an earlier run's history and backup.

        An earlier run of another model under the same name is never resumed (its backup could
        not be loaded into this model): one whose builder.json names another builder or other
        arguments than ``builder_config``, or whose parameter count (builder.json, else
        scores.json) differs from ``parameters``.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = self.builder()
        saved_parameters = saved.get("parameters", self.scores().get("parameters"))
        keys = ("builder", "module", "arguments")
        current = json.loads(json.dumps(builder_config or {}))  # tuples as lists, as builder.json holds them
        other_builder = bool(current and saved) and any(saved.get(key) != current.get(key) for key in keys)
        other_size = None not in (parameters, saved_parameters) and parameters != saved_parameters
        if resume and (other_builder or other_size):
            print(
                f"{self.folder}: the earlier run here was another model ({saved.get('builder', '?')}, "
                f"{saved_parameters} parameters), not this model ({parameters}); training starts over"
            )
            resume = False
        if not resume:
            for stale in (self.history_path, self.backup_dir):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()

    def save_setup(
        self,
        normalizer: Normalizer,
        features: Any,
        alphabet: Alphabet,
        builder_config: dict | None,
        parameters: int | None = None,
    ) -> None:
        """What a trained model needs to be used again: normalizer, features, alphabet, builder (and its size)."""
        class_name = type(features).__name__
        if class_name not in FEATURE_CONFIGS:
            raise ValueError(f"unknown feature configuration {class_name}; expected one of {sorted(FEATURE_CONFIGS)}")
        normalizer.save(self.folder / "normalization.json")
        _write_json(self.folder / "features.json", dict(dataclasses.asdict(features), config=class_name), None)
        (self.folder / "alphabet.txt").write_text(alphabet.name)
        if builder_config:
            _write_json(
                self.folder / "builder.json",
                dict(builder_config, **({} if parameters is None else {"parameters": parameters})),
            )

    def save_training_options(self, options: dict) -> None:
        _write_json(self.folder / "training.json", options)

    def save_history(self, history: dict, pickle_name: str | None = None) -> None:
        """history.json (and the course's pickle of the same dict, when ``pickle_name`` is given)."""
        _write_json(self.history_path, history)
        if pickle_name:
            with open(self.folder / pickle_name, "wb") as handle:
                pickle.dump(history, handle)

    def save_scores(self, scores: dict) -> Path:
        """Replace scores.json."""
        return _write_json(self.folder / "scores.json", scores)

    def update_scores(self, **fields: Any) -> Path:
        """Add or overwrite fields of scores.json, keeping the others."""
        return self.save_scores(dict(self.scores(), **fields))

    # ------------------------------------------------------------------ reading

    def history(self) -> dict:
        """history.json as a dict of lists ({} before the first epoch)."""
        return _read_json(self.history_path)

    def scores(self) -> dict:
        """scores.json ({} when the run was not scored)."""
        return _read_json(self.folder / "scores.json")

    def builder(self) -> dict:
        """builder.json: {"builder": name, "arguments": {...}} ({} when absent)."""
        return _read_json(self.folder / "builder.json")

    def training_options(self) -> dict:
        return _read_json(self.folder / "training.json")

    def features(self) -> FeatureConfig | EMGFeatureConfig:
        """The feature configuration the run was trained on, as its own dataclass."""
        fields = json.loads((self.folder / "features.json").read_text())
        class_name = fields.pop("config", None)
        if class_name is None:  # runs written before the class was stored: the kind tells
            class_name = "FeatureConfig" if fields.get("kind") in FEATURE_KINDS else "EMGFeatureConfig"
        return FEATURE_CONFIGS[class_name](**fields)

    def normalizer(self) -> Normalizer:
        return Normalizer.load(self.folder / "normalization.json")

    def alphabet(self) -> Alphabet:
        return get_alphabet((self.folder / "alphabet.txt").read_text().strip())

    @property
    def is_trained(self) -> bool:
        """A best model was saved and can be rebuilt."""
        return self.model_path.is_file() and (self.folder / "builder.json").is_file()

    def best_val_loss(self) -> float:
        history = self.history()
        return min(history.get("val_loss") or history.get("loss") or [math.inf])

    def load_model(self) -> tuple[keras.Model, Normalizer, FeatureConfig | EMGFeatureConfig, Alphabet]:
        """Rebuild the acoustic model from builder.json and load its best weights.

        Returns:
            (model with output_length, training normalizer, feature configuration, alphabet).
        """
        from ctclab.models.registry import build

        config = self.builder()
        if not config:
            raise ValueError(f"{self.folder}: no builder.json; the run was not trained with train_model")
        model = build(config["builder"], config.get("module"), **config["arguments"])
        model.load_weights(self.model_path)
        return model, self.normalizer(), self.features(), self.alphabet()

    def parameters(self) -> int | None:
        """The model's parameter count, rebuilt from builder.json without weights (None if absent)."""
        from ctclab.models.registry import build

        config = self.builder()
        return build(config["builder"], config.get("module"), **config["arguments"]).count_params() if config else None


# ---------------------------------------------------------------------- finding and picking runs


def find_runs(results_dir: str | Path, depth: int = 1, trained: bool = False) -> list[Run]:
    """Runs (folders with a history.json) ``depth`` levels under ``results_dir``, sorted by path.

    Args:
        results_dir: e.g. ``profile.results_for("course")`` (depth 1) or ``profile.results_dir``
            (depth 2: every family).
        depth: how many folder levels below ``results_dir`` a run sits.
        trained: only runs whose best model was saved (:attr:`Run.is_trained`).
    """
    pattern = "/".join(["*"] * depth) + "/history.json"
    runs = [Run(path.parent) for path in sorted(Path(results_dir).glob(pattern))]
    return [run for run in runs if run.is_trained] if trained else runs


def best_run(results_dir: str | Path, where: Callable[[Run], bool] | None = None) -> Run | None:
    """The trained run under ``results_dir`` with the lowest best validation loss (None if none)."""
    scored = [
        (run.best_val_loss(), run.name, run)
        for run in find_runs(results_dir, trained=True)
        if where is None or where(run)
    ]
    return min(scored)[2] if scored else None


def best_scored_run(results_dir: str | Path, where: Callable[[Run], bool] | None = None) -> Run | None:
    """The trained run with the lowest CER in its scores.json, else the most recently trained."""
    candidates = [
        (run.scores().get("cer", math.inf), -run.model_path.stat().st_mtime, run.name, run)
        for run in find_runs(results_dir, trained=True)
        if where is None or where(run)
    ]
    return min(candidates)[3] if candidates else None


def load_history(path: str | Path) -> dict:
    """A run's history (course name): ``path`` is the run folder or its history.json."""
    path = Path(path)
    return Run(path.parent if path.name == "history.json" else path).history()


def load_histories(results_dir: str | Path = "results", names: Iterable[str] | None = None) -> dict[str, dict]:
    """History of every run under ``results_dir`` (or only ``names``), keyed by run name."""
    wanted = None if names is None else set(names)
    runs = find_runs(paths.resolve(results_dir))
    return {run.name: run.history() for run in runs if wanted is None or run.name in wanted}


def load_trained_model(
    run_dir: str | Path,
) -> tuple[keras.Model, Normalizer, FeatureConfig | EMGFeatureConfig, Alphabet]:
    """:meth:`Run.load_model` of the run in ``run_dir``."""
    return Run(Path(run_dir)).load_model()


def save_streaming_summary(results_dir: str | Path, summary: dict) -> Path:
    """Notebook 06's live-decoding measurements, beside the profile's runs."""
    return _write_json(Path(results_dir) / STREAMING_SUMMARY, summary)


def load_streaming_summary(results_dir: str | Path) -> dict:
    return _read_json(Path(results_dir) / STREAMING_SUMMARY)
