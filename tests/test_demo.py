"""The quickstart demo, shrunk: conversion + extraction end to end."""

import json

from jaxtransfer import demo


def test_demo_runs_end_to_end(tmp_path):
    summary = demo.run(str(tmp_path), num_images=4, size=32)
    assert summary["shapes"]["conv1_relu"] == [4, 16, 16, 64]
    assert summary["shapes"]["probs"] == [4, 2]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["shapes"] == summary["shapes"]
    assert (tmp_path / "checkpoint" / "metadata.json").is_file()
