"""`python -m jaxtransfer.main`: two processes over localhost (jax.distributed), and
its stop when inputs are missing.

Both processes train a one-run grid together (ImageNet with a frozen-base first
stage, so both stages run; one run keeps the test's compile time down); process 0
alone writes the shared files (the synthetic data and the pre-trained ImageNet
stand-in included), and the run's model is saved once, completely.
"""

import csv
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from jaxtransfer import xla_flags
from jaxtransfer.models import pretrained

REPO = Path(__file__).resolve().parents[1]


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "two_process_config.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from configs import demo


            def get_config(arg=None):
                config = demo.get_config(arg)
                config.data.manual_dir = {str(tmp_path / "raw")!r}
                config.data.data_dir = {str(tmp_path / "prepared")!r}
                config.init.ImageNet = {str(tmp_path / "sources" / "ImageNet")!r}
                config.init.synthetic_epochs = 1
                config.data.synthetic_options.counts = dict(
                    benign=20, malignant=16, normal=8
                )
                config.grid.sources = ("ImageNet",)
                config.grid.freeze = (True,)  # both stages in one run
                config.grid.folds = (1,)
                config.train.num_epochs = 2
                config.train.head_num_epochs = 1
                config.analysis.enabled = False
                return config
            """
        )
    )
    return path


def test_two_processes_run_the_grid_and_write_each_result_once(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workdir = tmp_path / "run"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags.CPU_NO_DEADLOCK,
    }
    commands = [
        [
            sys.executable,
            "-m",
            "jaxtransfer.main",
            f"--config={_config_file(tmp_path)}",
            f"--workdir={workdir}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        ]
        for i in range(2)
    ]
    running = [
        subprocess.Popen(
            c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for c in commands
    ]
    for process in running:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out.decode()[-3000:]
        assert b"process 1/2" in out or b"process 0/2" in out

    with open(workdir / "AUC.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["source"], r["freeze"]) for r in rows] == [("ImageNet", "freezeTrue")]
    for row in rows:
        assert 0.0 <= float(row["AUC"]) <= 1.0
        run_dir = workdir / f"{row['source']}-{row['freeze']}" / "fold1"
        model, metadata = pretrained.load(run_dir / "model")
        assert metadata["source_format"] == "jaxtransfer_run"
        assert (run_dir / "metrics.json").is_file()
    leftovers = [p for p in workdir.rglob("*") if "partial" in p.name]
    assert leftovers == []


def test_missing_inputs_stop_with_the_message_alone(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxtransfer.main",
            "--config=configs/knee.py",
            f"--config.init.ImageNet={tmp_path / 'nowhere'}",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "cannot start:" in result.stderr
    assert f"config.init.ImageNet = {tmp_path / 'nowhere'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not workdir.exists()  # nothing written before the inputs are there
