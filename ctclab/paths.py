"""Where the course's files live: the one owner of the data/, results/ and report/ folders.

They sit in the repository (the folder above the package, as ``pip install -e .`` leaves it), so a
notebook finds the corpus and the trained runs whatever its kernel's working directory is
(JupyterLab starts kernels in notebooks/). ``$CTCLAB_HOME`` moves all three elsewhere (the tests
point it at a temporary folder). Relative results and cache folders, and the course's default
descriptor files, are taken under the home folder (:func:`resolve`); a descriptor file a user
passes is used as given.
"""

from __future__ import annotations

import os
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPOSITORY_ROOT / "notebooks"
HOME_VARIABLE = "CTCLAB_HOME"


def home() -> Path:
    """The folder holding data/, results/ and report/: ``$CTCLAB_HOME``, else the repository."""
    return Path(os.environ.get(HOME_VARIABLE) or REPOSITORY_ROOT)


def data_dir(*parts: str) -> Path:
    """``<home>/data/<parts>``: corpora and the feature cache."""
    return home().joinpath("data", *parts)


def results_dir(*parts: str) -> Path:
    """``<home>/results/<parts>``: trained runs."""
    return home().joinpath("results", *parts)


def report_dir() -> Path:
    """``<home>/report``: the HTML report and the executed notebooks."""
    return home() / "report"


def resolve(path: str | Path) -> Path:
    """``path`` itself when absolute, else under :func:`home` (so "results/quick" is the repository's)."""
    path = Path(path)
    return path if path.is_absolute() else home() / path
