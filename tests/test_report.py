"""The smoke profile end to end: every notebook executed by papermill, exported, indexed, and the
index page rendered in a real headless Chromium."""

import json
import re

import pytest

from ctclab.report import page as report_page
from ctclab.report import runner as report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_report(smoke_runs):
    """(exit status, report folder) of the smoke report (conftest runs it beside the learner run)."""
    return smoke_runs.report_status, smoke_runs.report_dir


def test_every_notebook_runs_under_smoke(smoke_report):
    status, out_dir = smoke_report
    assert status == 0
    for source in report.notebooks():
        executed = out_dir / "notebooks" / source.name
        assert executed.is_file() and executed.with_suffix(".html").is_file()
        assert '"PROFILE": "smoke"' in executed.read_text() or 'PROFILE = "smoke"' in executed.read_text()


def test_index_has_figures_table_and_working_links(smoke_report):
    _, out_dir = smoke_report
    page = (out_dir / "index.html").read_text()
    assert 'class="dataframe results"' in page
    for name in ["model_0", "model_1", "model_2", "model_3", "model_4"]:
        assert f"<td>{name}</td>" in page
    targets = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert "loss_course.png" in targets
    for target in targets:
        assert (out_dir / target).is_file(), target
    assert "failed:" not in page
    for executed in (out_dir / "notebooks").glob("*.html"):  # TensorFlow's start-up noise is left out
        assert "absl::InitializeLog" not in executed.read_text(), executed.name


def test_second_run_keeps_unchanged_notebooks(smoke_report, capsys):
    """Nothing changed since the fixture's run, so no notebook executes again."""
    _, out_dir = smoke_report
    before = {path: path.stat().st_mtime for path in (out_dir / "notebooks").glob("*.ipynb")}
    assert report.main(["--profile", "smoke", "--out", str(out_dir)]) == 0
    assert capsys.readouterr().out.count("unchanged, kept") == len(report.notebooks())
    assert {path: path.stat().st_mtime for path in before} == before
    kept_times = re.findall(r"<td>(\d+) s</td><td><span class=\"cached\">", (out_dir / "index.html").read_text())
    assert len(kept_times) == len(report.notebooks()) and sum(map(int, kept_times)) > 0  # the first run's times


def test_index_renders_in_headless_chromium(smoke_report, tmp_path):
    """Debian's chromium (installed by `make system-deps`) loads the page: every image decodes,
    the results table has a row per course model, every link opens a notebook page."""
    _, out_dir = smoke_report
    playwright, context = report.open_browser(tmp_path / "user-data")
    try:
        page = context.new_page()
        page.goto((out_dir / "index.html").as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])"
        )
        assert images and all(complete and width > 0 for _, complete, width in images), images
        rows = page.eval_on_selector_all("table.results tr", "rows => rows.length")
        assert rows >= 1 + 5  # header + models 0-4
        screenshot = out_dir / "screenshot.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
        assert len(links) == len(report.notebooks())
        for link in links:
            notebook_page = context.new_page()
            notebook_page.goto(link, wait_until="load")
            assert "PROFILE" in notebook_page.content(), link
            notebook_page.close()
    finally:
        context.close()
        playwright.stop()


def test_backend_start_up_logs_are_dropped_from_the_export_only():
    import nbformat

    tf_lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1795981210.657064   15167 port.cc:153] oneDNN custom operations are on.\n",
        "E0000 00:00:1795981719.860198   15795 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n",
    ]
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import keras", outputs=[nbformat.v4.new_output("stream", name="stderr", text="".join(tf_lines))]
            ),
            nbformat.v4.new_code_cell(
                "train()",
                outputs=[
                    nbformat.v4.new_output(
                        "stream", name="stderr", text=tf_lines[1] + "UserWarning: 3 utterances skipped\n"
                    ),
                    nbformat.v4.new_output("stream", name="stdout", text=tf_lines[1]),  # stdout is never touched
                ],
            ),
        ]
    )
    cleaned = report.without_backend_logs(notebook)
    assert cleaned.cells[0].outputs == []
    assert [output.text for output in cleaned.cells[1].outputs] == ["UserWarning: 3 utterances skipped\n", tf_lines[1]]


def test_failing_notebook_is_named_with_its_cell(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('PROFILE = "quick"', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("raise RuntimeError('deliberate')"),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "99_broken.ipynb"
    nbformat.write(notebook, source)
    run = report.run_notebook(source, "smoke", tmp_path)
    assert run.error.startswith("99_broken.ipynb, cell") and "RuntimeError: deliberate" in run.error
    assert run.html_path.is_file()  # the partial notebook is still exported


def test_results_frame_reads_every_family(tmp_path):
    """Hand-written run folders -> one row each, with the numbers the files hold."""
    for family, run, cer in [("course", "model_2", 0.3), ("emg", "emg_gru", 0.2), ("deep", "final", 0.04)]:
        run_dir = tmp_path / family / run
        run_dir.mkdir(parents=True)
        (run_dir / "history.json").write_text(
            json.dumps({"loss": [9.0, 5.0], "val_loss": [8.0, 6.0], "epoch_seconds": [2.0, 4.0]})
        )
        (run_dir / "scores.json").write_text(
            json.dumps(
                {
                    "wer": 0.5,
                    "cer": cer,
                    "parameters": 1000,
                    "desc_file": "x/test_corpus.json",
                    "examples": [{"truth": "a b", "prediction": "a c"}],
                }
            )
        )
    frame = report_page.results_frame(tmp_path)
    assert list(frame.family) == ["course", "deep", "emg"]  # course order
    row = frame[frame.model == "emg_gru"].iloc[0]
    assert (row.epochs, row["s/epoch"], row["best val loss"], row["CER greedy"]) == (2, 3.0, 6.0, 0.2)
    assert "WER beam+LM" not in frame  # columns nobody wrote are left out
    figures = report_page.loss_figures(tmp_path, tmp_path)
    assert [file for _, file in figures] == ["loss_course.png", "loss_deep.png", "loss_emg.png", "loss_all.png"]
    assert "a c" in report_page.examples_html(tmp_path)


def test_emg_scores_give_one_report_row_per_test_file(tmp_path):
    """emg.save_scores -> scores.json with conditions -> a results row per (condition, vocabulary)."""
    from ctclab.emg import training as emg
    from ctclab.models.course import bidirectional_rnn_model

    run_dir = tmp_path / "emg" / "emg_model"
    run_dir.mkdir(parents=True)
    (run_dir / "history.json").write_text(
        json.dumps({"loss": [3.0, 2.0], "val_loss": [3.0, 2.5], "epoch_seconds": [1.0, 1.0]})
    )
    arguments = {"input_dim": 112, "units": 8}
    (run_dir / "builder.json").write_text(json.dumps({"builder": "bidirectional_rnn_model", "arguments": arguments}))
    rows = [
        {
            "model": "EMG",
            "condition": condition,
            "vocabulary": "closed",
            "references": ["a b", "c"],
            "run_dir": str(run_dir),
            "desc_file": f"data/test_{condition}_closed.json",
            "scores": {
                "greedy": (0.5, cer),
                "lm": (0.25, cer / 2),
                "utterances": 2,
                "hypotheses": {"greedy": ["a c", "c"], "lm": ["a b", "c"]},
            },
        }
        for condition, cer in (("voiced", 0.1), ("silent", 0.3))
    ]
    assert emg.save_scores(rows) == [run_dir / "scores.json"]
    frame = report_page.results_frame(tmp_path)
    assert list(frame.model) == ["emg_model (voiced, closed)", "emg_model (silent, closed)"]
    assert list(frame["test split"]) == ["test_voiced_closed.json", "test_silent_closed.json"]
    assert list(frame["CER greedy"]) == [0.1, 0.3] and list(frame["CER beam+LM"]) == [0.05, 0.15]
    assert set(frame.parameters) == {bidirectional_rnn_model(**arguments).count_params()}
    examples = report_page.examples_html(tmp_path)
    assert "<th>beam + LM</th>" in examples and "<td>a c</td><td>a b</td>" in examples


def test_the_live_decoding_section_lays_the_decoders_side_by_side(tmp_path):
    from ctclab.runs import save_streaming_summary

    assert "No streaming run" in report_page.streaming_html(tmp_path)
    rows = [
        {"signal": "sEMG playback", "decoder": "windowed", "CER live": 0.451, "latency ms median": 135.0},
        {"signal": "sEMG playback", "decoder": "stateful", "CER live": 0.288, "look-ahead ms": 104.0},
    ]
    save_streaming_summary(tmp_path, {"sentences": 10, "decoders": rows})
    page = report_page.streaming_html(tmp_path)
    header = re.search(r"Windowed vs stateful decoders</h3><table class='streaming'><tr>(.*?)</tr>", page).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == [
        "signal",
        "decoder",
        "CER live",
        "latency ms median",
        "look-ahead ms",
    ]
    assert "<td>stateful</td><td>0.288</td><td></td><td>104</td>" in page
    assert "<th>sentences</th><td>10</td>" in page
