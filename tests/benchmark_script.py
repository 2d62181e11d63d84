"""Runs a script of benchmarks/ on the CPU, as the benchmarks' smoke tests do."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *options: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> <options>`` from the repo root, output captured."""
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *options],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rows(script: str, *options: str) -> list[dict]:
    """The JSON rows a successful run prints, one per line."""
    result = run(script, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]
