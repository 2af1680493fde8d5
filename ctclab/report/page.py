"""What the report shows: every trained run's numbers and curves, gathered from results/, as HTML.

The notebooks leave their results on disk, one run folder per trained model under
``results/<profile>/<family>/`` (files described in :mod:`ctclab.runs`, which alone reads them),
plus notebook 06's live-decoding figures. Families are "course" (notebook 01), "deep" (02),
"transformers" (03), "emg" (04) and "typing" (05). :mod:`ctclab.report.runner` runs the notebooks and calls
:func:`write_index`.
"""

from __future__ import annotations

import html
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ctclab.report.tables import column_formats
from ctclab.runs import Run, find_runs, load_streaming_summary

if TYPE_CHECKING:
    import pandas as pd

FAMILY_TITLES = {
    "course": "Course models 0-4 (notebook 01)",
    "deep": "Deep models (notebook 02)",
    "transformers": "Attention models (notebook 03)",
    "emg": "sEMG models (notebook 04)",
    "typing": "EMG typing models (notebook 05)",
}
SCORE_COLUMNS = {  # scores.json key -> results-table column
    "wer": "WER greedy",
    "cer": "CER greedy",
    "wer_beam": "WER beam",
    "cer_beam": "CER beam",
    "wer_lm": "WER beam+LM",
    "cer_lm": "CER beam+LM",
}


@dataclass
class NotebookRun:
    """What happened to one notebook: its name, time, HTML export and error (None: ok).

    ``cached``: kept from an earlier run (its inputs did not change); ``seconds`` is then that run's.
    """

    name: str
    seconds: float
    html_path: Path | None
    error: str | None = None
    cached: bool = False


def profile_runs(results_dir: Path) -> list[Run]:
    """Every run (a folder with a history.json) under results/<profile>/<family>/."""
    return find_runs(results_dir, depth=2)


def results_frame(results_dir: Path) -> pd.DataFrame:
    """One row per trained run: family, size, training time, best validation loss, scores.

    Returns:
        A pandas DataFrame (empty when nothing was trained), ordered by family then CER.
    """
    import pandas as pd

    rows = []
    for run in profile_runs(results_dir):
        history, scores = run.history(), run.scores()
        seconds = history.get("epoch_seconds") or [float("nan")]
        row = {
            "family": run.family,
            "model": run.name,
            "builder": run.builder().get("builder", ""),
            "parameters": scores.get("parameters"),
            "epochs": len(history.get("loss", [])),
            "s/epoch": sum(seconds) / len(seconds),
            "best val loss": min(history.get("val_loss") or [float("nan")]),
            "test split": Path(scores["desc_file"]).name if "desc_file" in scores else None,
        }
        for condition in scores.get("conditions") or [scores]:  # one row per test split or condition
            labelled = dict(row, **{column: condition.get(key) for key, column in SCORE_COLUMNS.items()})
            if condition is not scores:
                label = ", ".join(str(condition[key]) for key in ("condition", "vocabulary") if condition.get(key))
                labelled["model"] = f"{run.name} ({label})"
                if condition.get("desc_file"):
                    labelled["test split"] = Path(condition["desc_file"]).name
            rows.append(labelled)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.dropna(axis="columns", how="all")
    order = {family: index for index, family in enumerate(FAMILY_TITLES)}
    frame["_order"] = frame.family.map(lambda family: order.get(family, len(order)))
    sort_by = ["_order"] + (["CER greedy"] if "CER greedy" in frame else [])
    return frame.sort_values(sort_by).drop(columns="_order").reset_index(drop=True)


def results_html(frame: pd.DataFrame) -> str:
    """The results table as HTML (percentages for error rates)."""
    if frame.empty:
        return "<p>No trained models.</p>"
    return frame.to_html(index=False, formatters=column_formats(frame), classes="results", na_rep="-", border=0)


def loss_figures(results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """One seaborn loss-curve PNG per family, plus one of every run; returns (title, file) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctclab.report.plots import plot_loss_curves

    families: dict[str, dict] = {}
    for run in profile_runs(results_dir):
        history = run.history()
        if history.get("loss"):
            families.setdefault(run.family, {})[run.name] = history
    figures = []
    groups = [(FAMILY_TITLES.get(family, family), family, runs) for family, runs in sorted(families.items())]
    if len(groups) > 1:
        every_run = {f"{family}/{name}": h for family, runs in families.items() for name, h in runs.items()}
        groups.append(("Every trained model", "all", every_run))
    for title, stem, histories in groups:
        figure = plot_loss_curves(histories, title=f"CTC loss: {title}")
        file_name = f"loss_{stem}.png"
        figure.savefig(out_dir / file_name, dpi=100)
        plt.close(figure)
        figures.append((title, file_name))
    return figures


def examples_html(results_dir: Path, per_family: int = 4) -> str:
    """A few decoded test utterances with their truth, from the best run of each family."""
    sections = []
    best: dict[str, tuple[float, Run, dict]] = {}
    for run in profile_runs(results_dir):
        scores = run.scores()
        if scores.get("examples") and (run.family not in best or scores["cer"] < best[run.family][0]):
            best[run.family] = (scores["cer"], run, scores)
    for family, (cer, run, scores) in best.items():
        shown = scores["examples"][:per_family]
        fused = any("beam+LM" in example for example in shown)  # LM transcripts when the run has them
        rows = "".join(
            f"<tr><td>{html.escape(example['truth'])}</td><td>{html.escape(example['prediction'])}</td>"
            + (f"<td>{html.escape(example.get('beam+LM', ''))}</td>" if fused else "")
            + "</tr>"
            for example in shown
        )
        header = "<tr><th>truth</th><th>greedy transcript</th>" + ("<th>beam + LM</th>" if fused else "") + "</tr>"
        sections.append(
            f"<h3>{html.escape(FAMILY_TITLES.get(family, family))}: {html.escape(run.name)} "
            f"(CER {cer:.1%} greedy)</h3><table class='examples'>{header}{rows}</table>"
        )
    return "".join(sections) or "<p>No decoded examples.</p>"


def streaming_html(results_dir: Path) -> str:
    """Notebook 06's live-decoding measurements, if it wrote them."""
    streaming = load_streaming_summary(results_dir)
    if not streaming:
        return "<p>No streaming run.</p>"
    decoders = streaming.pop("decoders", [])
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in streaming.items()
    )
    page = f"<table class='streaming'>{rows}</table>"
    if decoders:  # one row per decoder: the windowed baseline and the stateful model, sEMG and speech
        columns = list(dict.fromkeys(key for row in decoders for key in row))
        header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(column, '')))}</td>" for column in columns) + "</tr>"
            for row in decoders
        )
        page += f"<h3>Windowed vs stateful decoders</h3><table class='streaming'><tr>{header}</tr>{body}</table>"
    return page


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def environment(profile: str, total_seconds: float) -> dict[str, str]:
    """Backend, library versions, machine and wall time of this report."""
    from importlib import metadata

    import keras

    versions = {}
    for package in ("tensorflow", "jax", "numpy", "brainflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "profile": profile,
        "Keras backend": keras.backend.backend(),
        "Keras": keras.__version__,
        **versions,
        "Python": platform.python_version(),
        "CPU cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "total wall time": f"{total_seconds / 60:.1f} min",
    }


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.failed{color:#b00}.cached{color:#666}img{max-width:100%;border:1px solid #eee}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1em}"""


def write_index(out_dir: Path, runs: list[NotebookRun], profile: str, results_dir: Path, total_seconds: float) -> Path:
    """Write ``out_dir/index.html`` (and its figures) for the notebooks ``runs`` of ``profile``."""
    notebook_rows = []
    for run in runs:
        name = html.escape(run.name)
        link = f'<a href="notebooks/{html.escape(run.html_path.name)}">{name}</a>' if run.html_path else name
        status = (
            f'<span class="failed">failed: {html.escape(run.error)}</span>'
            if run.error
            else '<span class="cached">ok (unchanged: time of its last run)</span>'
            if run.cached
            else "ok"
        )
        notebook_rows.append(f"<tr><td>{link}</td><td>{run.seconds:.0f} s</td><td>{status}</td></tr>")
    figures = (
        "".join(
            f'<figure><img src="{file}" alt="loss curves: {html.escape(title)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
            for title, file in loss_figures(results_dir, out_dir)
        )
        or "<p>No trained models.</p>"
    )
    env_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in environment(profile, total_seconds).items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CTC Lab report ({html.escape(profile)})</title>
<style>{STYLE}</style></head><body>
<h1>CTC Lab report <small>({html.escape(profile)} profile)</small></h1>
<h2 id="notebooks">Notebooks</h2>
<table><tr><th>notebook</th><th>time</th><th>status</th></tr>{"".join(notebook_rows)}</table>
<h2 id="loss-curves">Loss curves</h2><p>Solid: training loss; dashed: validation loss.</p>
<div class="figures">{figures}</div>
<h2 id="results">Results on the held-out split</h2>
<p>Speech: test voices never heard in training; the final speech model also on a held-out engine (a
synthesizer never used in training) and on a noisy, reverberant copy of the test split. sEMG: held-out
utterances of the synthetic sessions.</p>
{results_html(results_frame(results_dir))}
<h2 id="examples">Decoded examples</h2>{examples_html(results_dir)}
<h2 id="streaming">Live decoding (notebook 06)</h2>{streaming_html(results_dir)}
<h2 id="environment">Environment</h2><table>{env_rows}</table>
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index
