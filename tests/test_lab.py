"""`make lab` leaves the repository clean: a real Jupyter server with the project's config saves notebooks under
notebooks/ without outputs, offers the labkit kernel first and starts it over encrypted sockets."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from jupyter_client import BlockingKernelClient

from labkit import paths
from labkit.lab import pre_save_hook, strip_outputs

TOKEN = "labkit-lab-test"


def _notebook():
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": 3,
                "metadata": {"tags": ["parameters"]},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
                "source": "x = 1",
            },
            {"cell_type": "markdown", "metadata": {}, "source": "# t"},
        ],
        "metadata": {
            "kernelspec": {"name": "labkit", "display_name": "Python (labkit)", "language": "python"},
            "widgets": {"state": {}},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_the_hook_strips_notebooks_under_notebooks_only():
    model = {"type": "notebook", "content": _notebook()}
    pre_save_hook(model, "notebooks/01a.ipynb")
    cell = model["content"]["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None and cell["metadata"] == {"tags": ["parameters"]}
    assert "widgets" not in model["content"]["metadata"] and model["content"]["cells"][0]["source"] == "x = 1"
    elsewhere = {"type": "notebook", "content": _notebook()}
    pre_save_hook(elsewhere, "scratch/try.ipynb")
    assert elsewhere["content"] == _notebook()
    assert strip_outputs({"cells": []}) == {"cells": []}


def _api(base, path, method="GET", body=None):
    request = urllib.request.Request(
        f"{base}{path}?token={TOKEN}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _connection_file(runtime, timeout_s: float = 60.0):
    """The kernel's connection file once it is completely written (it appears before its content does)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for path in runtime.glob("kernel-*.json"):
            try:
                if "shell_port" in json.loads(path.read_text()):
                    return path
            except ValueError:
                pass
        assert time.monotonic() < deadline, f"no complete connection file in {runtime}"
        time.sleep(0.2)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "JUPYTER_CONFIG_PATH": str(paths.ROOT / "jupyter_config"),
        "PYTHONPATH": str(paths.ROOT),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "server",
                "--allow-root",
                f"--port={port}",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.port_retries=0",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 40
            while True:
                try:
                    _api(base, "/api/status")
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                    time.sleep(0.3)
            yield base, root, log
        finally:
            proc.terminate()
            proc.wait(15)


def test_a_saved_notebook_keeps_no_outputs_and_the_kernel_is_labkit_and_encrypted(server):
    base, root, log = server
    _api(base, "/api/contents/notebooks/01a.ipynb", "PUT", {"type": "notebook", "content": _notebook()})
    _api(base, "/api/contents/scratch.ipynb", "PUT", {"type": "notebook", "content": _notebook()})
    saved = json.loads((root / "notebooks" / "01a.ipynb").read_text())
    assert saved["cells"][0]["outputs"] == [] and saved["cells"][0]["execution_count"] is None
    assert json.loads((root / "scratch.ipynb").read_text())["cells"][0]["outputs"]  # outside notebooks/: as is
    assert _api(base, "/api/kernelspecs")["default"] == "labkit"
    kernel = _api(base, "/api/kernels", "POST", {})
    try:
        assert kernel["name"] == "labkit"
        connection = _connection_file(root.parent / "runtime")
        assert json.loads(connection.read_text()).get("curve_secretkey"), "no CurveZMQ key was provisioned"
        client = BlockingKernelClient(connection_file=str(connection))  # talks to it over the same keys
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=30)  # IOPub subscribed before we execute
            reply = client.execute_interactive("1 + 1", timeout=30)
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok"
        assert "without encryption" not in log.read_text(), log.read_text()[-1500:]
    finally:
        _api(base, f"/api/kernels/{kernel['id']}", "DELETE")
