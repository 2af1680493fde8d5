"""JupyterLab for learners (`make lab`): a real Jupyter server on notebooks/, and notebook 01 run under the
smoke profile through a kernel that server starts, over its REST and websocket API (no browser).

A kernel started by JupyterLab works in notebooks/, so this is the check that the course finds its corpus
and writes its runs in the repository's data/ and results/ (ctclab.paths), not in notebooks/data or
notebooks/results, whatever the kernel's working directory.
"""

import asyncio
import datetime
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from tornado.websocket import websocket_connect

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = "01_speech_features_and_rnn_models.ipynb"
STARTUP_TIMEOUT = 90  # seconds for the server to answer /api/status
CELL_TIMEOUT = 900  # seconds per cell (the whole notebook takes 1-4 minutes under smoke on 2 cores)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url, method="GET", body=None, timeout=30):
    """(status, body text) of one HTTP request; an HTTP error status is returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class Server:
    """A `jupyter lab` subprocess on a free port with a random token; its output goes to ``log``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "jupyter.log"
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("CTCLAB_HOME", None)  # a learner's kernel: data/ and results/ are the repository's
        env["JUPYTER_CONFIG_DIR"] = str(workdir / "config")  # no user settings, workspaces or runtime files
        env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",  # ServerApp.token's name since jupyter_server 2.0
            f"--ServerApp.root_dir={NOTEBOOKS}",
        ]
        if os.geteuid() == 0:  # a container's root (as `make lab` does it)
            command.append("--allow-root")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def url(self, path: str) -> str:
        return f"{self.base}{path}{'&' if '?' in path else '?'}token={self.token}"

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {self.process.returncode} on start:\n{self.log_tail()}")
            try:
                if request(self.url("/api/status"), timeout=5)[0] == 200:
                    return
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        pytest.fail(f"jupyter lab did not answer /api/status within {STARTUP_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate, then kill after a timeout; then anything left in its process group (its kernels)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def execute_request(code: str, session: str) -> tuple[str, dict]:
    """An execute_request (messaging spec 5.3) for the websocket's JSON protocol: (msg_id, message)."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "test",
        "session": session,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False}
    return msg_id, {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "buffers": [],
        "channel": "shell",
    }


async def execute(connection, session: str, code: str, timeout: float = CELL_TIMEOUT) -> tuple[dict, str]:
    """Run ``code`` on the kernel: (the execute_reply's content, what it printed to stdout/stderr)."""
    msg_id, message = execute_request(code, session)
    await connection.write_message(json.dumps(message))
    printed = []
    content: dict | None = None
    idle = False
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no execute_reply within {timeout} s")
        raw = await asyncio.wait_for(connection.read_message(), remaining)
        if raw is None:
            raise ConnectionError("the kernel's websocket closed")
        if isinstance(raw, bytes):  # a message with binary buffers (widgets): not ours
            continue
        reply = json.loads(raw)
        msg_type = reply.get("msg_type") or reply["header"]["msg_type"]
        if msg_type == "status" and reply["content"].get("execution_state") in ("dead", "restarting"):
            raise ConnectionError(f"the kernel died (status {reply['content']['execution_state']!r})")
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg_type == "stream":
            printed.append(reply["content"]["text"])
        elif msg_type == "execute_reply":
            content = reply["content"]
        elif msg_type == "status" and reply["content"].get("execution_state") == "idle":
            idle = True  # iopub's last word on this request: every output has arrived
        if content is not None and idle:  # the shell reply may overtake the outputs on iopub
            return content, "".join(printed)


def code_cells() -> list[tuple[int, str]]:
    """(cell index in the notebook, source) of notebook 01's code cells, its parameters cell replaced."""
    notebook = nbformat.read(NOTEBOOKS / NOTEBOOK, as_version=4)
    cells = [(index, cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    assert cells and "parameters" in cells[0][1].metadata.get("tags", []), (
        f"{NOTEBOOK}: the first code cell is not the papermill parameters cell"
    )
    return [(cells[0][0], 'PROFILE = "smoke"')] + [(index, cell.source) for index, cell in cells[1:]]


async def run_notebook(server: Server, kernel_id: str) -> tuple[str, list[tuple[int, float]]]:
    """Notebook 01's code cells in order on the kernel: (the kernel's working directory, seconds per cell)."""
    session = uuid.uuid4().hex
    channels = server.url(f"/api/kernels/{kernel_id}/channels?session_id={session}").replace("http://", "ws://")
    connection = await websocket_connect(channels, connect_timeout=60, max_message_size=256 * 1024 * 1024)
    try:
        cells = code_cells()
        timings = []
        cwd = None
        for position, (index, source) in enumerate(cells):
            started = time.monotonic()
            try:
                reply, _ = await execute(connection, session, source)
            except (TimeoutError, ConnectionError) as error:
                pytest.fail(f"{NOTEBOOK} cell {index} (code cell {position}): {error}\n{source[:300]}")
            timings.append((index, time.monotonic() - started))
            if reply["status"] != "ok":
                traceback = ANSI.sub("", "\n".join(reply.get("traceback", [])))
                pytest.fail(
                    f"{NOTEBOOK} cell {index} (code cell {position}) failed under smoke in a JupyterLab kernel:\n"
                    f"--- source (head)\n{source[:500]}\n"
                    f"--- {reply.get('ename')}: {reply.get('evalue')}\n{traceback[-6000:]}"
                )
            if position == 0:  # right after the parameters: where the kernel works
                reply, cwd = await execute(connection, session, "import os; print(os.getcwd())", timeout=60)
                assert reply["status"] == "ok", reply
        reply, environment = await execute(
            connection,
            session,
            "import os, keras; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), keras.backend.backend())",
        )
        assert reply["status"] == "ok" and environment.split() == ["2", "tensorflow"], (reply, environment)
        return cwd.strip(), timings
    finally:
        connection.close()


def test_jupyterlab_serves_and_runs_notebook_01_in_notebooks_dir(tmp_path):
    strays = [NOTEBOOKS / name for name in ("data", "results") if (NOTEBOOKS / name).exists()]
    assert not strays, (
        f"{', '.join(map(str, strays))} existed before the test (left by an earlier run from notebooks/?): "
        "remove it, then rerun"
    )
    started = time.time()
    server = Server(tmp_path)
    try:
        server.wait_until_ready()
        status, page = request(server.url("/lab"))
        assert status == 200 and "jupyter-config-data" in page, (status, page[:500])

        status, body = request(
            server.url("/api/sessions"),
            "POST",
            {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}},
        )
        assert status == 201, f"POST /api/sessions: {status} {body[:1000]}\n{server.log_tail()}"
        session = json.loads(body)
        try:
            cwd, timings = asyncio.run(run_notebook(server, session["kernel"]["id"]))
        finally:
            request(server.url(f"/api/sessions/{session['id']}"), "DELETE")  # shuts its kernel down
    finally:
        server.stop()
    slowest = ", ".join(f"cell {index}: {seconds:.0f} s" for index, seconds in sorted(timings, key=lambda t: -t[1])[:3])
    print(f"{NOTEBOOK} under smoke in {sum(s for _, s in timings):.0f} s ({slowest})")

    assert Path(cwd).resolve() == NOTEBOOKS.resolve(), f"the kernel worked in {cwd!r}, not in notebooks/"
    assert (ROOT / "data" / "speech_smoke" / "train_corpus.json").is_file()
    run = ROOT / "results" / "smoke" / "course" / "model_0"
    assert (run / "history.json").is_file(), f"{run / 'history.json'} missing after the run"
    # an earlier smoke run's epoch is resumed, not redone (history.json kept); the setup is rewritten
    assert (run / "training.json").stat().st_mtime >= started - 2, f"{run} was not written by this run"
    for name in ("data", "results"):
        assert not (NOTEBOOKS / name).exists(), f"the run wrote {NOTEBOOKS / name}: a path resolved against the cwd"
