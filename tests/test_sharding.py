"""Training does not depend on the device count: 1 vs 8 devices vs 2 processes.

Each set-up runs in its own process (the device count is fixed when jax starts);
8 virtual CPU devices exceed the cores here, which the trainer detects and handles
by blocking on every step.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("sharded_run.py")


def _run(output, *extra, processes=1):
    port = None
    if processes > 1:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = s.getsockname()[1]
    commands = [
        [sys.executable, str(SCRIPT), str(output), *extra]
        + (
            [
                "--process",
                str(i),
                "--processes",
                str(processes),
                "--coordinator",
                f"localhost:{port}",
            ]
            if processes > 1
            else []
        )
        for i in range(processes)
    ]
    running = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    for process in running:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out[-3000:]
    return json.loads(Path(output).read_text())


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("one") / "result.json")


def _assert_same_training(actual, expected):
    assert [(r["stage"], r["epoch"]) for r in actual["history"]] == [
        (r["stage"], r["epoch"]) for r in expected["history"]
    ]
    for a, e in zip(actual["history"], expected["history"]):
        for key in ("train/loss", "val/loss"):
            np.testing.assert_allclose(a[key], e[key], rtol=1e-4)
        for key in ("train/accuracy", "val/accuracy"):
            assert a[key] == e[key]
    np.testing.assert_allclose(actual["checksum"], expected["checksum"], rtol=1e-5)


def test_eight_devices_match_one(one_device, tmp_path):
    eight = _run(tmp_path / "result.json", "--devices", "8")
    assert one_device["devices"] == 1 and eight["devices"] == 8
    assert eight["param_devices"] == 8  # the state really is on all eight
    _assert_same_training(eight, one_device)


def test_two_processes_match_one(one_device, tmp_path):
    two = _run(tmp_path / "result.json", processes=2)
    assert two["devices"] == 2 and two["param_devices"] == 2
    _assert_same_training(two, one_device)
