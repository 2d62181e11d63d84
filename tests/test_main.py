"""`python -m jaxtransfer.main`: two processes over localhost (jax.distributed), and
its stop when inputs are missing.

Two processes with two virtual CPU devices each train a two-run grid together
(ImageNet and RadImageNet, fine-tuned): one member slot on each process's devices,
each run's batch split over its two. (Both stages over two processes:
tests/training/test_devices.py.)
Process 0 alone writes the shared files (the synthetic data and the pre-trained
stand-ins included), each run's model and log are written once, completely, and
AUC.csv holds the AUC of the saved test predictions.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import multiprocess
import numpy as np
import pytest

from jaxtransfer.models import pretrained
from jaxtransfer.runtime import xla_flags
from jaxtransfer.training import metrics as metrics_lib

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
                config.init.RadImageNet = {str(tmp_path / "sources" / "RadImageNet")!r}
                config.grid.sources = ("ImageNet", "RadImageNet")
                config.grid.freeze = (False,)
                config.grid.folds = (1,)
                config.train.num_epochs = 1
                config.train.head_num_epochs = 1
                config.analysis.enabled = False
                return config
            """
        )
    )
    return path


def _read_auc(workdir):
    with open(workdir / "AUC.csv") as f:
        return list(csv.DictReader(f))


def test_two_processes_run_the_grid_and_write_each_result_once(tmp_path):
    port = multiprocess.free_port()
    config = _config_file(tmp_path)
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{xla_flags.CPU_NO_DEADLOCK} "
        "--xla_force_host_platform_device_count=2",
    }
    main = [sys.executable, "-m", "jaxtransfer.main", f"--config={config}"]
    commands = [
        [
            *main,
            f"--workdir={tmp_path / 'two'}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        ]
        for i in range(2)
    ]
    for out in multiprocess.run_together(commands, cwd=REPO, env=env):
        assert "process 1/2" in out or "process 0/2" in out

    # That two processes train as one is the engine's test
    # (tests/training/test_devices.py); here, that process 0 wrote each result
    # once and whole: AUC.csv holds the AUC of the saved predictions.
    rows = _read_auc(tmp_path / "two")
    assert [(r["source"], r["freeze"]) for r in rows] == [
        ("ImageNet", "freezeFalse"),
        ("RadImageNet", "freezeFalse"),
    ]
    for row in rows:
        run_dir = tmp_path / "two" / f"{row['source']}-{row['freeze']}" / "fold1"
        model, metadata = pretrained.load(run_dir / "model")
        assert metadata["source_format"] == "jaxtransfer_run"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        saved = np.load(run_dir / "test_predictions.npz")
        assert len(saved["labels"]) == metrics["num_test"]
        aucs = metrics_lib.auc_scores(saved["labels"], saved["probs"])
        assert float(row["AUC"]) == pytest.approx(aucs[metrics["AUC_definition"]])
        history = [
            json.loads(line)
            for line in (run_dir / "log.jsonl").read_text().splitlines()
        ]
        assert len(history) == metrics["epochs"]  # each epoch logged once
    leftovers = [p for p in (tmp_path / "two").rglob("*") if "partial" in p.name]
    assert leftovers == []


@pytest.mark.bad_input
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


@pytest.mark.bad_input
def test_a_listed_override_of_a_tuple_field_is_split(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "jaxtransfer.main", "--config=configs/demo.py",
            "--config.grid.sources=ImageNet,Rad", f"--workdir={tmp_path / 'run'}",
        ],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    # Split into its two sources, of which the second is unknown.
    assert "error: config.grid.sources: unknown 'Rad'; known" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
