"""Run profiles: one switch (smoke / quick / full) that sizes data and training everywhere.

Make passes ``PROFILE`` to the corpus builder and the report; each notebook's papermill
``parameters`` cell sets ``PROFILE`` and reads its numbers from :func:`get_profile`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

from ctclab import paths

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """How big a run is.

    Attributes:
        name: "smoke", "quick" or "full".
        corpus_size: train + valid + test utterances of the embedded speech corpus; its held-out-engine
            split (test_engine, spoken by flite) adds as many as test (10 %).
        epochs: default epochs for a model under this profile (notebooks pick their own per model
            with :meth:`pick` where models differ in cost).
        train_limit: training utterances used (None: all).
        valid_limit: validation utterances used (None: all).
        test_limit: held-out test utterances scored (None: all).
        minibatch_size: utterances per batch.
        (corpus_dir / descriptor() say where the corpus is, results_dir where models go.)
    """

    name: str
    corpus_size: int
    epochs: int
    train_limit: int | None
    valid_limit: int | None
    test_limit: int | None
    minibatch_size: int = 20

    @property
    def corpus_dir(self) -> str:
        """Where this profile's speech corpus lives: <home>/data/speech for quick, data/speech_<name> else.

        Separate folders let a smoke run (tests, CI) leave the quick corpus in place.
        """
        return self.data_folder("speech")

    def data_folder(self, stem: str) -> str:
        """This profile's folder for one built dataset: <home>/data/<stem> for quick, data/<stem>_<name> else."""
        return str(paths.data_dir(stem if self.name == "quick" else f"{stem}_{self.name}"))

    @property
    def results_dir(self) -> str:
        """Where this profile's trained models go: results/<name>/<family>/<model>/."""
        return str(paths.results_dir(self.name))

    def results_for(self, family: str) -> str:
        """Run folder parent for one family of models, e.g. results/quick/course.

        Families: "course" (notebook 01), "deep" (02), "transformers" (03), "emg" (04), "typing" (05);
        the report draws one loss-curve figure per family.
        """
        return f"{self.results_dir}/{family}"

    def pick(self, **values: T) -> T:
        """The value given for this profile: ``profile.pick(smoke=1, quick=8, full=30)``.

        Lets each notebook or module size its own work without a field per setting here.
        """
        if self.name not in values:
            raise ValueError(f"no value for profile {self.name!r} in {sorted(values)}")
        return values[self.name]

    def descriptor(self, split: str) -> str:
        """Path of the ``split`` ("train", "valid", "test", "test_engine") descriptor file."""
        return f"{self.corpus_dir}/{split}_corpus.json"


PROFILES = {
    # CI: every notebook in about two minutes on 2 cores; numbers are meaningless, paths are not.
    "smoke": Profile(
        "smoke", corpus_size=150, epochs=1, train_limit=40, valid_limit=20, test_limit=20, minibatch_size=10
    ),
    # default of `make report`: the whole course in under 30 minutes on 2 cores; models learn.
    # batches of 32 (the course used 20): recurrent steps cost about the same per batch on CPU.
    "quick": Profile(
        "quick", corpus_size=2000, epochs=6, train_limit=None, valid_limit=None, test_limit=None, minibatch_size=32
    ),
    # course-length training, for a GPU or a long CPU night.
    "full": Profile("full", corpus_size=8000, epochs=20, train_limit=None, valid_limit=None, test_limit=None),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else $PROFILE, else "quick"."""
    name = name or os.environ.get("PROFILE", "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]
