"""Runs the course notebooks under a profile and writes report/index.html.

    python report.py --profile quick      (what `make report` runs)

Each notebook in notebooks/ (``NN_*.ipynb``, in order) is executed with papermill, ``PROFILE``
injected into its parameters cell, and saved under report/notebooks/; each executed copy is
exported to HTML with nbconvert. The index page links them and adds the loss curves of every
trained model, the held-out results table and the environment. A failing notebook is named with
its failing cell; the report still lists what succeeded.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from profiles import get_profile

ROOT = Path(__file__).resolve().parent


@dataclass
class NotebookRun:
    """What happened to one notebook."""

    name: str
    seconds: float
    html_path: Path | None
    error: str | None = None


def notebooks() -> list[Path]:
    """The course notebooks in course order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def run_notebook(source: Path, profile: str, out_dir: Path) -> NotebookRun:
    """Execute ``source`` with papermill under ``profile`` and export it to HTML."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    executed = out_dir / source.name
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters={"PROFILE": profile}, cwd=str(ROOT), progress_bar=False,
            kernel_name="python3",
        )
    except papermill.PapermillExecutionError as failure:
        error = f"{source.name}, cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
    seconds = time.perf_counter() - started
    html_path = None
    if executed.is_file():
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
        html_path = executed.with_suffix(".html")
        html_path.write_text(body)
    return NotebookRun(source.stem, seconds, html_path, error)


def results_table(results_dir: Path) -> str:
    """HTML table of every trained run with held-out scores (empty string if none)."""
    import pandas as pd

    rows = []
    for run_dir in sorted(p.parent for p in results_dir.glob("*/history.json")):
        history = json.loads((run_dir / "history.json").read_text())
        scores_path = run_dir / "scores.json"
        scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
        builder = json.loads((run_dir / "builder.json").read_text())["builder"] if (run_dir / "builder.json").is_file() else ""
        rows.append({
            "model": run_dir.name, "builder": builder, "epochs": len(history.get("loss", [])),
            "seconds/epoch": sum(history.get("epoch_seconds", [0])) / max(1, len(history.get("epoch_seconds", []))),
            "best val loss": min(history.get("val_loss", [float("nan")])),
            "test WER (greedy)": scores.get("wer"), "test CER (greedy)": scores.get("cer"),
        })
    if not rows:
        return ""
    frame = pd.DataFrame(rows)
    return frame.to_html(index=False, float_format=lambda value: f"{value:.3f}", classes="results", na_rep="-")


def loss_figure(results_dir: Path, out_dir: Path) -> str | None:
    """Save the loss curves of every run as a PNG; returns its file name."""
    import matplotlib

    matplotlib.use("Agg")
    from train_utils import load_histories
    from utils import plot_loss_curves

    histories = {name: history for name, history in load_histories(results_dir).items() if history.get("loss")}
    if not histories:
        return None
    figure = plot_loss_curves(histories, title="CTC loss of every trained model")
    figure.savefig(out_dir / "loss_curves.png", dpi=110)
    return "loss_curves.png"


def environment(profile: str, total_seconds: float) -> dict[str, str]:
    import keras

    return {
        "profile": profile,
        "Keras backend": keras.backend.backend(),
        "Keras": keras.__version__,
        "Python": platform.python_version(),
        "CPU cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "total wall time": f"{total_seconds / 60:.1f} min",
    }


def write_index(out_dir: Path, runs: list[NotebookRun], profile: str, total_seconds: float) -> Path:
    results_dir = ROOT / get_profile(profile).results_dir
    figure = loss_figure(results_dir, out_dir)
    table = results_table(results_dir)
    items = []
    for run in runs:
        link = f'<a href="notebooks/{run.html_path.name}">{html.escape(run.name)}</a>' if run.html_path else html.escape(run.name)
        status = f'<span class="failed">failed: {html.escape(run.error)}</span>' if run.error else "ok"
        items.append(f"<tr><td>{link}</td><td>{run.seconds:.0f} s</td><td>{status}</td></tr>")
    env_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in environment(profile, total_seconds).items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CTC Lab report ({profile})</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.failed{{color:#b00}}img{{max-width:100%}}</style>
</head><body>
<h1>CTC Lab report</h1>
<h2>Notebooks</h2><table><tr><th>notebook</th><th>time</th><th>status</th></tr>{''.join(items)}</table>
<h2>Loss curves</h2>{f'<img src="{figure}" alt="loss curves of every trained model">' if figure else '<p>No trained models.</p>'}
<h2>Results on the held-out split (unseen voices)</h2>{table or '<p>No scored models.</p>'}
<h2>Environment</h2><table>{env_rows}</table>
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course notebooks and write report/index.html.")
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "quick"), help="smoke | quick | full")
    parser.add_argument("--out", default=str(ROOT / "report"), help="report folder")
    args = parser.parse_args(argv)
    get_profile(args.profile)  # validates the name
    out_dir = Path(args.out)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    started, runs = time.perf_counter(), []
    for source in notebooks():
        print(f"[report] {source.name} ({args.profile}) ...", flush=True)
        run = run_notebook(source, args.profile, out_dir / "notebooks")
        runs.append(run)
        print(f"[report] {source.name}: {'FAILED ' + run.error if run.error else 'ok'} in {run.seconds:.0f} s", flush=True)
    total = time.perf_counter() - started
    index = write_index(out_dir, runs, args.profile, total)
    print(f"[report] wrote {index} in {total / 60:.1f} min total")
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
