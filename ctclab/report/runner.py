"""Runs the course notebooks under a profile and writes report/index.html.

    python -m ctclab.report --profile quick      (what `make report` runs; --force re-runs everything)

Each notebook in notebooks/ (``NN_*.ipynb``, in order) is executed with papermill, ``PROFILE``
injected into its parameters cell, and saved under report/notebooks/; each executed copy is
exported to HTML with nbconvert. One line per notebook reports its time; a failing notebook is
named with its failing cell, later notebooks still run, and the index lists what succeeded.

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
from typing import TYPE_CHECKING

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


def run_notebook(source: Path, profile: str, out_dir: Path, log_output: bool = False) -> NotebookRun:
    """Execute ``source`` with papermill under ``profile`` and export it to HTML."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    executed = out_dir / source.name
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
        )
    except papermill.PapermillExecutionError as failure:
        error = f"{source.name}, cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
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
