"""Training does not depend on the device count, and survives SIGKILL.

Each set-up runs in its own process (the device count is fixed when jax starts):
1 device, 8 virtual devices (more than the cores here: queued sharded steps could
deadlock, and the trainer blocks on every step on CPUs), 2 processes over localhost,
and a run killed with SIGKILL mid-training then re-run.
"""

import json
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from jaxtransfer import sharding
from jaxtransfer.models import pretrained

SCRIPT = Path(__file__).with_name("sharded_run.py")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A compilation cache shared by the module's runs of the same programs."""
    return str(tmp_path_factory.mktemp("compilation_cache"))


def _command(output, cache):
    return [sys.executable, str(SCRIPT), str(output), "--compilation_cache", cache]


def _run(output, cache, *extra, processes=1):
    port = None
    if processes > 1:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = s.getsockname()[1]
    commands = [
        [*_command(output, cache), *extra]
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
def one_device(tmp_path_factory, cache):
    return _run(tmp_path_factory.mktemp("one") / "result.json", cache)


def test_the_loop_blocks_on_each_step_on_cpus_only(monkeypatch):
    assert sharding.block_each_step(None)  # this machine's devices are CPUs
    assert sharding.block_each_step(sharding.make_mesh())
    monkeypatch.setattr(jax, "devices", lambda: [types.SimpleNamespace(platform="gpu")])
    assert not sharding.block_each_step(None)


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


def test_eight_devices_match_one(one_device, cache, tmp_path):
    eight = _run(tmp_path / "result.json", cache, "--devices", "8")
    assert one_device["devices"] == 1 and eight["devices"] == 8
    assert eight["param_devices"] == 8  # the state really is on all eight
    _assert_same_training(eight, one_device)


def _saved_checksum(output):
    """Weight checksum of the model a run saved beside its result."""
    model, _ = pretrained.load(f"{output}.model")
    weights = jax.tree.leaves(nnx.state(model, nnx.Param))
    return float(sum(np.abs(np.asarray(w, np.float64)).sum() for w in weights))


def test_two_processes_match_one(one_device, cache, tmp_path):
    output = tmp_path / "result.json"
    two = _run(output, cache, processes=2)
    assert two["devices"] == 2 and two["param_devices"] == 2
    _assert_same_training(two, one_device)
    # Both processes saved the model; exactly the trained weights landed, once.
    assert _saved_checksum(output) == two["checksum"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "result.json",
        "result.json.ckpt",
        "result.json.model",
    ]


def test_ensemble_on_eight_devices_matches_the_sequential_run(
    one_device, cache, tmp_path
):
    both = _run(tmp_path / "result.json", cache, "--devices", "8", "--ensemble")
    assert both["param_devices"] == 8
    _assert_same_training(both, one_device)  # member "a" is the sequential run
    assert np.isfinite(both["second_checksum"]) and both["second_checksum"] > 0


def test_sigkill_mid_training_then_rerun_matches_uninterrupted(
    one_device, cache, tmp_path
):
    output = tmp_path / "result.json"
    checkpoints = Path(f"{output}.ckpt")
    process = subprocess.Popen(
        _command(output, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    # Kill once the fine-tuning stage has saved its first epoch (checkpoint 2).
    while time.monotonic() < deadline and process.poll() is None:
        steps = [int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()]
        if steps and max(steps) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists()
    resumed = _run(output, cache)
    _assert_same_training(resumed, one_device)
    assert resumed["checksum"] == one_device["checksum"]  # same device: bit for bit
