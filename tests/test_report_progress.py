"""What `make report` prints while a notebook runs: "cell n/m" per code cell and the training
progress lines (train_family's headers, Keras verbose=2's epochs and losses), nothing else."""

import pytest

from ctclab.report import runner as report


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Keras verbose=2
        ("Epoch 3/12\n", "Epoch 3/12"),
        ("Epoch 1/2", "Epoch 1/2"),
        (
            "50/50 - 12s - 240ms/step - loss: 85.1 - val_loss: 90.2\n",
            "50/50 - 12s - 240ms/step - loss: 85.1 - val_loss: 90.2",
        ),
        ("\r50/50 - 1s - loss: 1.0\r\n", "50/50 - 1s - loss: 1.0"),
        ("loss: 1.0", "loss: 1.0"),
        # train_family
        ("--- model_1: 223,829 parameters, 2 epochs\n", "--- model_1: 223,829 parameters, 2 epochs"),
        ("--- final_model: 1,024 parameters, 12 epochs", "--- final_model: 1,024 parameters, 12 epochs"),
        # ordinary output: dropped
        ("", None),
        ("\n", None),
        ("hello\n", None),
        ("Model: functional\n", None),
        ("Total params: 223,829 (874.33 KB)\n", None),
        ("----------------\n", None),
        ("epochs = 12\n", None),
        ("the loss fell\n", None),
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", None),
    ],
)
def test_progress_line_keeps_only_training_progress(text, expected):
    assert report.progress_line(text) == expected


def test_stream_joins_pieces_into_lines(capsys):
    echo = report.ProgressEcho("01_demo")
    echo.stdout.write("Epo")
    echo.stdout.write("ch 1/2\nirrelevant\n5/5 - 1s - lo")
    assert capsys.readouterr().out == "[01_demo] Epoch 1/2\n"
    echo.stdout.write("ss: 2.5")
    echo.finish()
    assert capsys.readouterr().out == "[01_demo] 5/5 - 1s - loss: 2.5\n"


def test_carriage_return_overwrites_the_line(capsys):
    echo = report.ProgressEcho("01_demo")
    echo.stdout.write("1/5 - loss: 3.0\r\b\b2/5 - loss: 2.0\r")
    echo.stdout.write("5/5 - loss: 1.0\nnext\r\n")
    assert capsys.readouterr().out == "[01_demo] 5/5 - loss: 1.0\n"


def test_running_notebook_prints_cells_and_progress_only(tmp_path, capfd):
    import nbformat

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('PROFILE = "quick"', metadata={"tags": ["parameters"]}),
            nbformat.v4.new_markdown_cell("# not a code cell"),
            nbformat.v4.new_code_cell('print("--- model_1: 10 parameters, 2 epochs")\nprint("Epoch 1/2")'),
            nbformat.v4.new_code_cell('print("irrelevant chatter")\nprint("5/5 - 0s - loss: 1.0 - val_loss: 1.5")'),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "98_progress.ipynb"
    nbformat.write(notebook, source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = report.run_notebook(source, "smoke", out_dir)
    printed = capfd.readouterr().out
    assert run.error is None and run.html_path.is_file()
    # papermill injects a parameters cell after the tagged one: 4 code cells in all
    expected = [
        "[98_progress] cell 1/4",
        "[98_progress] cell 2/4",
        "[98_progress] cell 3/4",
        "[98_progress] --- model_1: 10 parameters, 2 epochs",
        "[98_progress] Epoch 1/2",
        "[98_progress] cell 4/4",
        "[98_progress] 5/5 - 0s - loss: 1.0 - val_loss: 1.5",
    ]
    assert [line for line in printed.splitlines() if line.startswith("[98_progress]")] == expected
    assert "irrelevant chatter" not in printed
    # the executed notebook still holds every output
    executed = nbformat.read(out_dir / source.name, as_version=4)
    outputs = "".join(output.get("text", "") for cell in executed.cells for output in cell.get("outputs", []))
    assert "irrelevant chatter" in outputs and "Epoch 1/2" in outputs
