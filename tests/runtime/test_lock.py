"""runtime.lock: one job per workdir, a dead job's lock taken over."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxtransfer.runtime import lock

REPO = Path(__file__).resolve().parents[2]


def _holder(workdir: Path) -> subprocess.Popen:
    """Another process that holds ``workdir`` until it is killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from jaxtransfer.runtime import lock
        with lock.hold({str(workdir)!r}):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "held\n"
    return process


def test_a_held_workdir_is_refused_naming_the_holder(tmp_path):
    with lock.hold(tmp_path):
        with pytest.raises(lock.WorkdirBusy) as busy:
            with lock.hold(tmp_path):
                pass
    assert f"process {os.getpid()} on " in str(busy.value)
    assert str(tmp_path) in str(busy.value)
    assert not (tmp_path / lock.FILENAME).exists()  # released cleanly
    with lock.hold(tmp_path):  # and free again
        pass


def test_a_workdir_made_for_nothing_is_removed(tmp_path):
    with lock.hold(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with lock.hold(tmp_path / "used"):
        (tmp_path / "used" / "result.txt").write_text("x")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["result.txt"]


def test_the_lock_of_a_killed_job_is_taken_over(tmp_path, caplog):
    holder = _holder(tmp_path)
    with pytest.raises(lock.WorkdirBusy, match=f"process {holder.pid} on "):
        with lock.hold(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / lock.FILENAME).exists()  # what the killed job left
    with caplog.at_level(logging.WARNING), lock.hold(tmp_path):
        pass
    assert f"left by a job that ended: process {holder.pid} on " in caplog.text


def test_main_refuses_a_workdir_a_live_job_holds(tmp_path):
    holder = _holder(tmp_path / "run")
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "jaxtransfer.main", "--config=configs/demo.py",
                f"--workdir={tmp_path / 'run'}",
            ],
            cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"is in use by another job (process {holder.pid} on " in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [lock.FILENAME]
