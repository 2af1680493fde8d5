"""Execute the learner workspace's notebooks under the smoke profile, one after another.

``python tests/learner_run.py WORKSPACE OUT_DIR``: each WORKSPACE/NN_*.ipynb is run by papermill
with its cwd in the workspace (so it imports the workspace's own sample_models.py) and written to
OUT_DIR under the same name; the first failure stops the run with papermill's error. conftest's
``smoke_runs`` starts this in its own process, alongside the report's run of the reference
notebooks; the caller sets CTCLAB_HOME so the learner's corpora and runs stay out of results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import papermill


def main(workspace: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(workspace.glob("[0-9][0-9]_*.ipynb")):
        papermill.execute_notebook(
            str(path),
            str(out_dir / path.name),
            parameters={"PROFILE": "smoke"},
            cwd=str(workspace),
            progress_bar=False,
            kernel_name="python3",
        )
        print(f"{path.name}: ok", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
