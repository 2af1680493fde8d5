"""The learner workspace: generated from the reference, no solution left in it, every self-check failing
on the stubs with its own message and passing on the reference, learner edits never overwritten, and
the learner notebooks running top to bottom under the smoke profile with the stubs in place."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ctclab.alphabet import ENGLISH
from ctclab.course import checks, model_checks
from ctclab.course.exercises import (
    ANSWER_PLACEHOLDER,
    exercise_check,
    learner_module,
    solution_texts,
    stub_solutions,
    write_workspace,
)
from ctclab.decoding.lm import NGramLM
from ctclab.paths import NOTEBOOKS_DIR, REPOSITORY_ROOT
from ctclab.profiles import get_profile
from ctclab.runs import Run

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
REFERENCE_MODULES = [REPOSITORY_ROOT / "ctclab/models/course.py", REPOSITORY_ROOT / "ctclab/models/registry.py"]


def exercise_cells() -> list[tuple[str, int, str, str]]:
    """(notebook, cell index, reference source, check call) of every notebook exercise."""
    found = []
    for path in NOTEBOOKS:
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            if exercise_check(cell):
                found.append((path.name, index, "".join(cell["source"]), exercise_check(cell)))
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "def f():\n    # BEGIN SOLUTION: add one\n    return 1\n    # END SOLUTION\n",
            'def f():\n    # TODO: add one\n    raise NotImplementedError("not written yet: see the TODO above")\n',
        ),
        (
            "x = 1\n# BEGIN SOLUTION\ny = 2\n# END SOLUTION\nz = 3\n",
            'x = 1\n# TODO: write your code here\nraise NotImplementedError("not written yet: see the TODO above")\nz = 3\n',
        ),
        ("no regions\n", "no regions\n"),
    ],
)
def test_stub_solutions_table(source, expected):
    assert stub_solutions(source) == expected


@pytest.mark.parametrize(
    "source, message",
    [
        ("# BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n# END SOLUTION\n", "END SOLUTION without BEGIN"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "inside another region"),
    ],
)
def test_stub_solutions_rejects_broken_regions(source, message):
    with pytest.raises(ValueError, match=message):
        stub_solutions(source, "cell 3")


def test_every_notebook_has_an_exercise_and_the_course_list_is_complete():
    by_notebook = {name for name, *_ in exercise_cells()}
    assert by_notebook == {path.name for path in NOTEBOOKS}
    calls = " ".join(check for *_, check in exercise_cells())
    for check in (
        "check_log_spectrogram",
        "check_sample_models",
        "check_ctc_forward",
        "check_greedy_decode",
        "check_error_rates",
        "check_final_model",
        "check_conv_pool_length",
        "check_backoff_score",
        "check_zero_crossing_rate",
        "check_edit_operations",
        "check_chunk_filter",
    ):
        assert check in calls


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    report = write_workspace(tmp_path / "exercises")
    assert not report.left_alone and len(report.written) == len(NOTEBOOKS) + 1
    return tmp_path / "exercises"


def distinctive_solution_lines() -> set[str]:
    """Solution lines long enough to be the reference's own (not a bare `return output`)."""
    sources = [path.read_text() for path in REFERENCE_MODULES]
    sources += ["".join(cell["source"]) for path in NOTEBOOKS for cell in json.loads(path.read_text())["cells"]]
    lines = {line.strip() for source in sources for text in solution_texts(source) for line in text.splitlines()}
    given = {line.strip() for source in sources for line in stub_solutions(source).splitlines()}  # e.g. model 0
    return {line for line in lines if len(line) >= 25 and not line.startswith("#") and line not in given}


def test_no_reference_solution_text_remains_in_the_workspace(workspace):
    lines = distinctive_solution_lines()
    assert len(lines) > 30
    for path in workspace.iterdir():
        if path.suffix not in (".py", ".ipynb"):
            continue
        text = path.read_text()
        if path.suffix == ".ipynb":  # compare code, not JSON escapes
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        leaked = [line for line in lines if line in text]
        assert leaked == [], f"{path.name} still holds reference solution lines: {leaked[:3]}"
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_workspace_notebooks_have_a_check_after_each_exercise_and_empty_answers(workspace):
    for path in NOTEBOOKS:
        cells = json.loads((workspace / path.name).read_text())["cells"]
        for index, cell in enumerate(cells):
            if exercise_check(cell):
                follower = "".join(cells[index + 1]["source"])
                assert exercise_check(cell) in follower and "from ctclab.course import" in follower
        answers = [cell for cell in cells if (cell["metadata"].get("ctclab") or {}).get("answer")]
        assert all(cell["source"] == [ANSWER_PLACEHOLDER] for cell in answers)
    first = json.loads((workspace / NOTEBOOKS[0].name).read_text())["cells"]
    assert sum((cell["metadata"].get("ctclab") or {}).get("answer", False) for cell in first) == 2  # Questions 1, 2


def test_learner_edits_are_never_overwritten(workspace):
    edited = workspace / NOTEBOOKS[0].name
    edited.write_text(edited.read_text().replace("TODO", "my own attempt", 1))
    mine = edited.read_text()
    deleted = workspace / "sample_models.py"
    deleted.unlink()
    report = write_workspace(workspace)
    assert report.left_alone == [edited] and edited.read_text() == mine
    assert report.written == [deleted] and deleted.is_file()  # a deleted file comes back fresh
    assert len(report.unchanged) == len(NOTEBOOKS) - 1
    assert "you have edited" in report.summary() and str(edited) in report.summary()


def load_learner_module(path: Path):
    spec = importlib.util.spec_from_file_location("learner_sample_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def namespace_for(source: str) -> dict:
    """Run an exercise cell's source the way the notebook does, with what the checks refer to."""
    lm = NGramLM.train(["ace of spades", "turn left at noon", "ace of hearts", "turn right at two"], order=3)
    namespace = {"np": np, "ENGLISH": ENGLISH, "lm": lm, "checks": checks, "model_checks": model_checks}
    if re.search(r"^(def|class) ", source, flags=re.M):  # a function exercise; the others build and train models
        exec(compile(source, "<exercise>", "exec"), namespace)
    return namespace


def run_checks(call: str, namespace: dict) -> list[checks.CheckResult]:
    results = eval(call, namespace)
    results = results if isinstance(results, (list, tuple)) else [results]
    return [item for result in results for item in (result if isinstance(result, list) else [result])]


def fake_course_runs(final_loss: float, model_2_loss: float) -> None:
    for name, loss in (("final", final_loss), ("model_2", model_2_loss)):
        run = Run.named(get_profile("smoke").results_for("course"), name)
        run.start(resume=False)
        run.save_history({"loss": [loss + 5], "val_loss": [loss + 1, loss]})


@pytest.mark.slow
def test_every_self_check_fails_on_the_stub_with_its_own_message_and_passes_on_the_reference(
    workspace, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    learner = load_learner_module(workspace / "sample_models.py")
    import sample_models as reference  # the course module: the reference builders

    fake_course_runs(final_loss=40.0, model_2_loss=60.0)  # the final run beat model 2
    messages = []
    for notebook, index, source, call in exercise_cells():
        cases = (("stub", stub_solutions(source)), ("reference", source))
        for label, code in cases:
            namespace = namespace_for(code)
            namespace.update(sample_models=learner if label == "stub" else reference, profile=get_profile("smoke"))
            for result in run_checks(call, namespace):
                assert "the check itself failed" not in result.message, f"{notebook} cell {index}: {result}"
                if label == "stub":
                    assert not result.passed, f"{notebook} cell {index}: the stub passes {result.exercise}"
                    messages.append(result.message)
                else:
                    assert result.passed, f"{notebook} cell {index}: the reference fails: {result}"
    assert len(messages) >= 14 and all("not written yet" in message for message in messages)
    assert len({re.sub(r"\W", "", m.split(" is not")[0]) for m in messages}) >= 12  # each names its function
    printed = capsys.readouterr().out
    assert printed.count("PASS ") >= 14 and printed.count("FAIL ") >= 14


@pytest.mark.slow
def test_the_final_model_check_compares_with_model_2(tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    from ctclab.models.course import final_model

    profile = get_profile("smoke")
    assert "run the training cell above first" in model_checks.check_final_model(final_model, profile).message
    fake_course_runs(final_loss=70.0, model_2_loss=60.0)
    result = model_checks.check_final_model(final_model, profile)
    assert not result and "best validation loss is 70.0, model 2 reached 60.0" in result.message


@pytest.mark.slow
def test_learner_notebooks_run_top_to_bottom_under_smoke_with_the_stubs(smoke_runs):
    """conftest's smoke_runs executed a fresh workspace's notebooks (tests/learner_run.py)."""
    assert smoke_runs.learner_status == 0, smoke_runs.learner_log[-3000:]
    for path in NOTEBOOKS:
        cells = json.loads((smoke_runs.learner_dir / path.name).read_text())["cells"]
        printed = "".join("".join(out.get("text", "")) for cell in cells for out in cell.get("outputs", []))
        injected = [cell for cell in cells if "injected-parameters" in cell["metadata"].get("tags", [])]
        assert ["".join(cell["source"]).strip() for cell in injected] == ['# Parameters\nPROFILE = "smoke"']
        assert "FAIL " in printed, f"{path.name}: no self-check reported the stubs"
        if path.name.startswith("01_"):  # the workspace's own sample_models.py, not the reference, was imported
            assert "FAIL model_1: rnn_model is not written yet" in printed
            assert "model_1: not written yet" in printed  # left out of training, the notebook went on
    assert (smoke_runs.learner_home / "results" / "smoke" / "course" / "model_0" / "history.json").is_file()
    workspace = smoke_runs.workspace
    assert not (workspace / "data").exists() and not (workspace / "results").exists()


def test_the_learner_module_keeps_model_0_and_stubs_the_rest():
    source = learner_module()
    assert "def simple_rnn_model" in source and source.count("raise NotImplementedError") == 6
    assert "from ctclab.models.registry import cnn_output_length" not in source  # the learner writes it
