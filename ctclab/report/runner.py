"""Runs the course notebooks under a profile and writes report/index.html.

    python -m ctclab.report --profile quick      (what `make report` runs; --force re-runs everything)

Each notebook in notebooks/ (``NN_*.ipynb``, in order) is executed with papermill, ``PROFILE``
injected into its parameters cell, and saved under report/notebooks/; each executed copy is
exported to HTML with nbconvert. One line per notebook reports its time; a failing notebook is
named with its failing cell, later notebooks still run, and the index lists what succeeded.
While a notebook runs, the terminal shows one line per code cell as it starts
(``[01_speech_features_and_rnn_models] cell 7/25``) and the cell output lines that report training
progress (:func:`progress_line`: train_family's ``--- model_1: ...``, Keras' ``Epoch 3/12`` and
``... loss: 85.1 - val_loss: 90.2``), each prefixed with the notebook's name; other output stays
in the executed notebook only.

Re-running is incremental: a notebook is executed again only when its inputs changed, that is
the notebook itself, any module of the toolkit, requirements.txt, the profile, or an earlier
notebook (later notebooks read earlier ones' trained models, so a change flows downstream).
Corpora and features are cached by their own builders. :mod:`ctclab.report.page` draws the index page.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctclab import paths
from ctclab.paths import REPOSITORY_ROOT
from ctclab.profiles import get_profile
from ctclab.report.page import NotebookRun, write_index

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from playwright.sync_api import BrowserContext, Playwright

ROOT = REPOSITORY_ROOT


def notebooks() -> list[Path]:
    """The course notebooks in course order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def inputs_digest(source: Path, profile: str, upstream: str) -> str:
    """Hash of everything a notebook's outputs depend on (see the module docstring)."""
    digest = hashlib.sha256(f"{profile}|{upstream}|".encode())
    sources = [*sorted(ROOT.glob("*.py")), *sorted((ROOT / "ctclab").rglob("*.py"))]  # course modules + package
    for path in [source, ROOT / "requirements.txt", ROOT / "pyproject.toml", *sources]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# TensorFlow's C++ start-up lines ("oneDNN custom operations are on", "Could not find cuda
# drivers", ...): absl writes them to stderr before TF_CPP_MIN_LOG_LEVEL can silence them.
BACKEND_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] .*"
    r"|To enable the following instructions: .*)$"
)


def without_backend_logs(notebook: NotebookNode) -> NotebookNode:
    """Drop TensorFlow's start-up log lines from a notebook's stderr outputs (other lines stay).

    Applied to the HTML export only; the executed .ipynb under report/notebooks keeps everything.
    """
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                kept = [
                    line
                    for line in output["text"].splitlines(keepends=True)
                    if not BACKEND_LOG_LINE.match(line.rstrip("\n"))
                ]
                if not kept:
                    continue
                output["text"] = "".join(kept)
            outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
    return notebook


# Cell output lines worth showing while a notebook runs: train_family's "--- model_1: 223,829
# parameters, 2 epochs", Keras verbose=2's "Epoch 3/12" and "50/50 - 12s - 240ms/step - loss: 85.1".
PROGRESS_PREFIXES = ("--- ", "Epoch ")
LINE_BREAK = re.compile(r"\r?\n")


def progress_line(text: str) -> str | None:
    """``text`` (one line of a cell's output) stripped, if it reports training progress, else None.

    Progress is a line starting with ``--- `` (train_family's model header) or ``Epoch `` (Keras),
    or one containing ``loss:`` (Keras' end-of-epoch summary); everything else is dropped.
    """
    line = text.strip()
    if line.startswith(PROGRESS_PREFIXES) or "loss:" in line:
        return line
    return None


def executes(cell: NotebookNode) -> bool:
    """Whether nbclient will run ``cell``: a code cell with source, not tagged skip-execution."""
    return (
        cell.get("cell_type") == "code"
        and bool(str(cell.get("source", "")).strip())
        and "skip-execution" not in cell.get("metadata", {}).get("tags", [])
    )


def shown(line: str) -> str:
    """What a terminal would show of ``line``: the text after its last carriage return, no backspaces."""
    return line.rpartition("\r")[2].replace("\b", "")


class ProgressStream:
    """A file papermill writes one cell output stream into (``stdout_file``/``stderr_file``).

    Splits what arrives into lines (a line may come in pieces) and prints the progress ones. A
    carriage return overwrites the line as on a terminal, so a Keras ``verbose=1`` bar redrawn per
    step shows only as it ends the line.
    """

    def __init__(self, echo: ProgressEcho) -> None:
        self.echo = echo
        self.partial = ""

    def write(self, text: str) -> int:
        """Take ``text`` from the kernel; print each complete line that is progress."""
        *lines, self.partial = LINE_BREAK.split(self.partial + text)
        for line in lines:
            self.echo.show_if_progress(shown(line))
        return len(text)

    def flush(self) -> None:
        """Nothing to do: an unfinished line waits for its end (or for :meth:`finish`)."""

    def finish(self) -> None:
        """Print the unfinished line if it is progress (a cell ended without a newline)."""
        line, self.partial = self.partial, ""
        if line:
            self.echo.show_if_progress(shown(line))


class ProgressEcho:
    """What ``make report`` prints while papermill runs one notebook.

    Its :meth:`notebook_start` and :meth:`cell_execute` are nbclient's ``on_notebook_start`` and
    ``on_cell_execute`` hooks ("cell n/m" as each code cell starts); ``stdout`` and ``stderr`` are
    the files papermill copies cell output into, and only progress lines get through them.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.cells = 0
        self.started = 0
        self.stdout = ProgressStream(self)
        self.stderr = ProgressStream(self)

    def say(self, text: str) -> None:
        """Print ``text`` prefixed with the notebook's name (to the current sys.stdout)."""
        print(f"[{self.name}] {text}", flush=True)

    def show_if_progress(self, text: str) -> None:
        """Print ``text`` if :func:`progress_line` keeps it."""
        line = progress_line(text)
        if line is not None:
            self.say(line)

    def finish(self) -> None:
        """Print what the last cell left without a newline."""
        self.stdout.finish()
        self.stderr.finish()

    def notebook_start(self, notebook: NotebookNode, **_: Any) -> None:
        """nbclient hook: the parameterized notebook is about to run; count its code cells."""
        self.cells = sum(1 for cell in notebook.cells if executes(cell))
        self.started = 0

    def cell_execute(self, cell: NotebookNode, cell_index: int, **_: Any) -> None:
        """nbclient hook: a code cell is about to run; print "cell n/m"."""
        self.finish()
        self.started += 1
        self.say(f"cell {self.started}/{self.cells}")


def run_notebook(source: Path, profile: str, out_dir: Path, log_output: bool = False) -> NotebookRun:
    """Execute ``source`` with papermill under ``profile`` and export it to HTML.

    While it runs, prints "cell n/m" as each code cell starts and the cells' training progress
    lines (see :class:`ProgressEcho`); ``log_output`` also passes every output to papermill's logger.
    """
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    executed = out_dir / source.name
    echo = ProgressEcho(source.stem)
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters={"PROFILE": profile},
            cwd=str(ROOT),
            progress_bar=False,
            kernel_name="python3",
            log_output=log_output,
            stdout_file=echo.stdout,
            stderr_file=echo.stderr,
            on_notebook_start=echo.notebook_start,
            on_cell_execute=echo.cell_execute,
        )
    except papermill.PapermillExecutionError as failure:
        error = f"{source.name}, cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
    finally:
        echo.finish()
    seconds = time.perf_counter() - started
    html_path = None
    if executed.is_file():
        body, _ = HTMLExporter().from_notebook_node(without_backend_logs(nbformat.read(executed, as_version=4)))
        html_path = executed.with_suffix(".html")
        html_path.write_text(body)
    return NotebookRun(source.stem, seconds, html_path, error)


def run_all(profile: str, out_dir: Path, force: bool = False, log_output: bool = False) -> list[NotebookRun]:
    """Run every notebook in order, skipping those whose inputs did not change since a clean run."""
    notebook_dir = out_dir / "notebooks"
    notebook_dir.mkdir(parents=True, exist_ok=True)
    runs, upstream = [], ""
    for number, source in enumerate(notebooks(), start=1):
        digest = upstream = inputs_digest(source, profile, upstream)
        stamp = notebook_dir / f"{source.stem}.inputs"
        html_path = notebook_dir / f"{source.stem}.html"
        stamped = stamp.read_text().split() if stamp.is_file() else []  # [digest, seconds of that run]
        if not force and html_path.is_file() and stamped[:1] == [digest]:
            runs.append(
                NotebookRun(source.stem, float(stamped[1]) if len(stamped) > 1 else 0.0, html_path, cached=True)
            )
            print(f"[report] {number}/{len(notebooks())} {source.name}: unchanged, kept", flush=True)
            continue
        stamp.unlink(missing_ok=True)
        print(f"[report] {number}/{len(notebooks())} {source.name} ({profile}) ...", flush=True)
        run = run_notebook(source, profile, notebook_dir, log_output)
        runs.append(run)
        if run.error is None:
            stamp.write_text(f"{digest}\n{run.seconds:.1f}\n")
        print(
            f"[report] {number}/{len(notebooks())} {source.name}: "
            f"{'FAILED ' + run.error if run.error else 'ok'} in {run.seconds:.0f} s",
            flush=True,
        )
    return runs


def open_browser(user_data_dir: Path) -> tuple[Playwright, BrowserContext]:
    """A headless Debian chromium (installed by `make system-deps`) driven through playwright.

    Returns (playwright, context); close the context, then stop playwright. A fresh
    ``user_data_dir`` per call, so no profile lock or cache leaks between runs.
    """
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed: run `make setup` (it apt-get installs chromium)")
    playwright = sync_playwright().start()
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=chromium,
        headless=True,
        args=["--headless", "--no-sandbox", "--disable-gpu"],
        viewport={"width": 1280, "height": 900},
    )
    return playwright, context


def screenshot(index: Path, png: Path) -> Path:
    """Render ``index`` in headless chromium and save a full-page PNG (the README's picture)."""
    import tempfile

    with tempfile.TemporaryDirectory() as user_data:
        playwright, context = open_browser(Path(user_data))
        try:
            page = context.new_page()
            page.goto(Path(index).resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(png), full_page=True)
        finally:
            context.close()
            playwright.stop()
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course notebooks and write report/index.html.")
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "quick"), help="smoke | quick | full")
    parser.add_argument("--out", default=str(paths.report_dir()), help="report folder")
    parser.add_argument("--force", action="store_true", help="re-run every notebook even if unchanged")
    parser.add_argument("--log-output", action="store_true", help="stream notebook output to the terminal")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a full-page screenshot of the index")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)  # validates the name
    out_dir = Path(args.out)
    started = time.perf_counter()
    runs = run_all(profile.name, out_dir, args.force, args.log_output)
    total = time.perf_counter() - started
    index = write_index(out_dir, runs, profile.name, Path(profile.results_dir), total)
    if args.screenshot:
        print(f"[report] screenshot: {screenshot(index, Path(args.screenshot))}")
    failed = [run.name for run in runs if run.error]
    print(
        f"[report] wrote {index}: {len(runs) - len(failed)}/{len(runs)} notebooks ok, "
        f"{total / 60:.1f} min total" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
