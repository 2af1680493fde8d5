"""The notebooks' training step under a profile: a family of models trained and compared in one call.

Every speech notebook trains a few models on the profile's corpus and scores them on the unseen-voice
test split. :func:`train_family` and :func:`compare_family` hold that recipe once, so a notebook
cell says only what differs (models, epochs, options):

    histories = train_family(models, profile, "course", epochs={"model_0": 2, ...})
    table, evaluations = compare_family(models, profile, "course")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctclab.profiles import Profile
from ctclab.training.evaluation import compare_models
from ctclab.training.trainer import train_model

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from ctclab.training.options import OptimizerConfig

PROFILE_LIMIT = "profile"  # a limit of "profile" means the profile's own train_limit


def _per_model(value: Any, name: str) -> Any:
    """``value[name]`` for a per-model mapping, else ``value`` itself (one setting for every model)."""
    return value[name] if isinstance(value, Mapping) else value


def train_family(
    models: Mapping[str, keras.Model],
    profile: Profile,
    family: str,
    epochs: int | Mapping[str, int],
    limit: int | str | None | Mapping[str, int | None] = PROFILE_LIMIT,
    minibatch_size: int | None = None,
    verbose: int = 2,
    schedule: OptimizerConfig | None | Mapping[str, OptimizerConfig | None] = None,
    **train_options: Any,
) -> dict[str, dict]:
    """Train each model on the profile's train split (validated on its valid split) into one family.

    Args:
        models: run name -> uncompiled model (a registered builder's output).
        profile: sizes the data (train / valid limits, minibatch size) and names the folders.
        family: the results folder the runs go under, ``profile.results_for(family)/<name>``.
        epochs: epochs for every model, or run name -> epochs.
        limit: training utterances (None: all; "profile": the profile's ``train_limit``), or a
            mapping from run name to one of those.
        minibatch_size: utterances per batch (default: the profile's).
        verbose: Keras progress output (2: one line per epoch, what reads well in a report).
        schedule: the optimizer schedule (see ``train_model``) for every model, or run name -> one
            (None: the default optimizer).
        **train_options: any other ``train_model`` keyword (features, schedule, spec_augment, ...).

    Returns:
        run name -> its history (as ``train_model`` returns it).
    """
    histories = {}
    for name, model in models.items():
        model_limit = _per_model(limit, name)
        print(f"--- {name}: {model.count_params():,} parameters, {_per_model(epochs, name)} epochs")
        histories[name] = train_model(
            model,
            f"{name}.pickle",
            f"{name}.keras",
            train_json=profile.descriptor("train"),
            valid_json=profile.descriptor("valid"),
            epochs=_per_model(epochs, name),
            minibatch_size=minibatch_size or profile.minibatch_size,
            sort_by_duration=True,
            limit=profile.train_limit if model_limit == PROFILE_LIMIT else model_limit,
            valid_limit=profile.valid_limit,
            results_dir=profile.results_for(family),
            verbose=verbose,
            schedule=_per_model(schedule, name),
            **train_options,
        )
    return histories


def compare_family(
    names: Mapping[str, Any] | list[str], profile: Profile, family: str
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Score the family's runs ``names`` on the profile's unseen-voice test split (``compare_models``)."""
    run_dirs = [Path(profile.results_for(family)) / name for name in names]
    return compare_models(run_dirs, profile.descriptor("test"), limit=profile.test_limit)
