"""The learner workspace, written from the reference notebooks and modules (``make exercises``).

The reference code marks what a learner writes with solution regions::

    def log_spectrogram(samples, ...):
        # BEGIN SOLUTION: frame the signal, apply a Hann window, FFT, power density, log
        ...the reference code...
        # END SOLUTION

:func:`stub_solutions` replaces each region by a ``# TODO: <hint>`` comment and
``raise NotImplementedError``, at the region's indentation. A notebook code cell whose metadata
holds ``{"ctclab": {"check": "<call>"}}`` is an exercise: the workspace copy gets a self-check
cell right after it that runs ``<call>`` (e.g. ``checks.check_log_spectrogram(log_spectrogram)``).
A markdown cell with ``{"ctclab": {"answer": true}}`` holds a question's reference answer; the
workspace copy has an empty answer cell there instead.

``python -m ctclab.course.exercises`` writes ``exercises/`` (gitignored): every notebook with its
solutions stubbed and its self-checks, and ``sample_models.py``, the learner's module of the
course's model builders (models 1-4, ``cnn_output_length`` and the final model to write; model 0
given), which the workspace notebooks import instead of the reference. A file the learner has
changed since it was written is never overwritten: the command lists the files it left alone.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ctclab.paths import NOTEBOOKS_DIR, REPOSITORY_ROOT

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?::\s*(?P<hint>.*))?$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
EXERCISES_DIR = REPOSITORY_ROOT / "exercises"
MANIFEST = ".generated.json"  # file -> sha256 as written, to tell a learner's edits from ours
CHECK_IMPORTS = "from ctclab.course import checks, model_checks"
ANSWER_PLACEHOLDER = "**Answer:** *(double-click to write your answer here)*"


def stub_solutions(source: str, what: str = "this exercise") -> str:
    """``source`` with every solution region replaced by a TODO and ``raise NotImplementedError``.

    Raises:
        ValueError: a region that is not closed, or an END without a BEGIN.
    """
    lines, output, region = source.splitlines(keepends=True), [], None
    for number, line in enumerate(lines, start=1):
        begin, end = BEGIN.match(line.rstrip("\n")), END.match(line.rstrip("\n"))
        if begin:
            if region is not None:
                raise ValueError(f"{what}: line {number}: BEGIN SOLUTION inside another region")
            region = begin
        elif end:
            if region is None:
                raise ValueError(f"{what}: line {number}: END SOLUTION without BEGIN SOLUTION")
            indent, hint = region.group("indent"), region.group("hint") or "write your code here"
            output.append(f"{indent}# TODO: {hint}\n")
            output.append(f'{indent}raise NotImplementedError("not written yet: see the TODO above")\n')
            region = None
        elif region is None:
            output.append(line)
    if region is not None:
        raise ValueError(f"{what}: a BEGIN SOLUTION region is never closed")
    return "".join(output)


def solution_texts(source: str) -> list[str]:
    """The code inside every solution region (what must not reach the learner's copy)."""
    texts: list[str] = []
    current: list[str] | None = None
    for line in source.splitlines():
        if BEGIN.match(line):
            current = []
        elif END.match(line) and current is not None:
            texts.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return texts


# ---------------------------------------------------------------------- notebooks


def exercise_check(cell: dict) -> str | None:
    """The self-check call of an exercise cell (its metadata), None for any other cell."""
    return (cell.get("metadata", {}).get("ctclab") or {}).get("check")


def learner_notebook(notebook: dict, name: str) -> dict:
    """The workspace version of a reference notebook: solutions stubbed, a self-check after each exercise."""
    cells = []
    for index, cell in enumerate(notebook["cells"]):
        cell = json.loads(json.dumps(cell))  # a copy
        if cell["cell_type"] == "code":
            cell["source"] = stub_solutions("".join(cell["source"]), f"{name}, cell {index}").splitlines(keepends=True)
            cell["outputs"], cell["execution_count"] = [], None
        elif (cell.get("metadata", {}).get("ctclab") or {}).get("answer"):  # a question's reference answer
            cell["source"] = [ANSWER_PLACEHOLDER]
        cells.append(cell)
        check = exercise_check(cell)
        if check:
            cells.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"check-{cell.get('id', index)}",
                    "metadata": {"ctclab": {"self_check": True}},
                    "outputs": [],
                    "source": [
                        "# Self-check: run it after your cell above; it says what is still wrong.\n",
                        f"{CHECK_IMPORTS}\n",
                        "\n",
                        f"{check};",
                    ],
                }
            )
    return dict(notebook, cells=cells)


# ---------------------------------------------------------------------- the learner's model module


LEARNER_MODULE_HEADER = '''"""Your acoustic models: the course's sample_models.py exercise (written by `make exercises`).

Write models 1-4, cnn_output_length and your final model where the TODOs are; model 0 is given.
The self-check cells of notebook 01 build each of them and say what is still wrong. Every builder
returns an uncompiled model whose last layer is a softmax named "softmax" and which carries
``model.output_length`` (input frames -> output frames), like model 0 below.
"""

from __future__ import annotations

import keras
from keras import layers

from ctclab.alphabet import ENGLISH
from ctclab.models.deep import cnn_birnn_model
from ctclab.models.recurrent import GRU  # keras.layers.GRU (same arguments and weights), with a faster CPU loop
from ctclab.models.registry import features_input, finish_model, model_builder, recurrent_layer, time_dense_softmax

'''


def _function_sources(path: Path, names: Sequence[str]) -> list[str]:
    """Source of the top-level functions ``names`` of ``path`` (decorators included), in that order."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list]) - 1
            end = node.end_lineno or node.lineno
            while end < len(lines) and lines[end][:1].isspace() and lines[end].strip().startswith("#"):
                end += 1  # indented comments after the last statement (an END SOLUTION) belong to it
            found[node.name] = "".join(lines[start:end])
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"{path}: no function {missing}")
    return [found[name] for name in names]


def learner_module() -> str:
    """The learner's sample_models.py: the reference builders with their solutions stubbed."""
    package = REPOSITORY_ROOT / "ctclab" / "models"
    pieces = _function_sources(package / "registry.py", ["cnn_output_length"])
    pieces += _function_sources(
        package / "course.py",
        ["simple_rnn_model", "rnn_model", "cnn_rnn_model", "deep_rnn_model", "bidirectional_rnn_model", "final_model"],
    )
    body = "\n\n".join(piece.rstrip("\n") + "\n" for piece in pieces)
    return stub_solutions(LEARNER_MODULE_HEADER + "\n" + body, "sample_models.py")


# ---------------------------------------------------------------------- the workspace


@dataclass
class WorkspaceReport:
    """What :func:`write_workspace` did."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    left_alone: list[Path] = field(default_factory=list)  # edited by the learner: never overwritten

    def summary(self) -> str:
        lines = [f"exercises: {len(self.written)} written, {len(self.unchanged)} already up to date"]
        if self.left_alone:
            lines.append(f"left alone ({len(self.left_alone)} you have edited; delete one to get a fresh copy):")
            lines += [f"  {path}" for path in self.left_alone]
        return "\n".join(lines)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def workspace_files(notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, str]:
    """Relative file name -> content of the whole learner workspace."""
    files = {"sample_models.py": learner_module()}
    for path in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        notebook = learner_notebook(json.loads(path.read_text()), path.name)
        files[path.name] = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    return files


def write_workspace(out_dir: Path = EXERCISES_DIR, notebooks_dir: Path = NOTEBOOKS_DIR) -> WorkspaceReport:
    """Write (or refresh) the learner workspace in ``out_dir`` without touching the learner's edits.

    A file is rewritten only when it does not exist or still holds exactly what an earlier run
    wrote (its digest is in ``out_dir/.generated.json``); any other existing file is left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    report = WorkspaceReport()
    for name, content in workspace_files(notebooks_dir).items():
        path = out_dir / name
        if path.exists():
            current = path.read_text()
            if current == content:
                report.unchanged.append(path)
                manifest[name] = _digest(content)
                continue
            if manifest.get(name) != _digest(current):  # not what we wrote last time: the learner's
                report.left_alone.append(path)
                continue
        path.write_text(content)
        manifest[name] = _digest(content)
        report.written.append(path)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctclab.course.exercises [--out DIR]``: write the learner workspace."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXERCISES_DIR, help="workspace folder (default: exercises/)")
    args = parser.parse_args(argv)
    report = write_workspace(args.out)
    print(report.summary())
    print(f"open it with `make lab` (JupyterLab), then {args.out.name}/01_speech_features_and_rnn_models.ipynb")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
