"""The smoke profile end to end: every notebook executed by papermill, exported, and indexed."""

import re

import pytest

import report


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    status = report.main(["--profile", "smoke", "--out", str(out_dir)])
    return status, out_dir


def test_every_notebook_runs_under_smoke(smoke_report):
    status, out_dir = smoke_report
    assert status == 0
    for source in report.notebooks():
        executed = out_dir / "notebooks" / source.name
        assert executed.is_file() and executed.with_suffix(".html").is_file()


def test_index_has_figure_table_and_working_links(smoke_report):
    _, out_dir = smoke_report
    page = (out_dir / "index.html").read_text()
    assert '<table border="1" class="dataframe results">' in page
    for name in ["model_0", "model_1", "model_2", "model_3", "model_4"]:
        assert f"<td>{name}</td>" in page
    targets = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert "loss_curves.png" in targets
    for target in targets:
        assert (out_dir / target).is_file(), target
    assert "failed" not in re.sub(r"\.failed\{[^}]*\}", "", page)


def test_failing_notebook_is_named_with_its_cell(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('PROFILE = "quick"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError('deliberate')"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "99_broken.ipynb"
    nbformat.write(notebook, source)
    run = report.run_notebook(source, "smoke", tmp_path)
    assert run.error.startswith("99_broken.ipynb, cell") and "RuntimeError: deliberate" in run.error
    assert run.html_path.is_file()  # the partial notebook is still exported
