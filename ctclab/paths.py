"""Where the repository is: the folder that holds notebooks/, data/, results/ and report/.

The package lives one level below it (an editable install, as the Makefile makes). Paths in
profiles are relative to this folder.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPOSITORY_ROOT / "notebooks"
REPORT_DIR = REPOSITORY_ROOT / "report"
