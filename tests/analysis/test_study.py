"""The analysis CLI end to end on a tiny finished grid, against the paper's tables."""

import csv
import json

import command_line
import numpy as np
import pytest
from paper_reference import PAPER_RESULTS, needs_paper_results

from configs import demo
from jaxtransfer import analyze, main
from jaxtransfer.analysis import similarity, study, tables

PAPER_SCHEMA_FILES = {
    "CCA_breast.csv": "CCA_breast.csv",
    "similarity.csv": "similarity.csv",
    "simVSaucImNet.csv": "simVSaucImNet.csv",
    "simVSaucRadNet.csv": "simVSaucRadNet.csv",
    "AUC_mean.csv": "AUC_mean.csv",
}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, demo_sources):
    """A finished breast grid: all sources and freeze settings, one fold, tiny."""
    tmp = tmp_path_factory.mktemp("grid")
    config = demo.get_config()
    config.init.update(demo_sources)
    config.data.manual_dir = str(tmp / "raw")
    config.data.data_dir = str(tmp / "prepared")
    config.data.synthetic_options.counts = {"benign": 40, "malignant": 30, "normal": 10}
    config.grid.folds = (1,)
    config.train.num_epochs = 1
    config.train.head_num_epochs = 1
    # CCA stimuli at another size than training (docs/protocol.md#image-sizes)
    config.analysis.image_size = 48
    config.seed = 7  # the analysis CLI takes it from config.json
    main.run(config, tmp / "run")
    return tmp / "run"


@needs_paper_results
def test_cli_writes_paper_schemas_and_a_side_by_side_report(workdir):
    assert (
        analyze.main(["--workdir", str(workdir), "--reference", str(PAPER_RESULTS)])
        == 0
    )
    out = workdir / "analysis"
    for ours, paper in PAPER_SCHEMA_FILES.items():
        assert _header(out / ours) == _header(PAPER_RESULTS / paper), ours

    cca_rows = _rows(out / "CCA_breast.csv")
    assert len(cca_rows) == 14  # every pair of the paper, one fold
    assert {r["fold"] for r in cca_rows} == {"fold1"}
    # The paper's pairs in its row order (each pair's folds together).
    paper_pairs = [
        (r["model1"], r["model2"])
        for r in _rows(PAPER_RESULTS / "CCA_breast.csv")
        if r["fold"] == "fold1"
    ]
    assert [(r["model1"], r["model2"]) for r in cca_rows] == paper_pairs
    for row in cca_rows:
        for layer in ("conv1", "block1", "block2"):  # enough datapoints here
            assert 0.0 < float(row[layer]) <= 1.0 + 1e-6
    sampling = json.loads((out / "CCA_breast_sampling.json").read_text())
    fold = sampling["folds"]["fold1"]
    assert fold["stimuli"] == "fold1_test (held out), 48 px"
    assert fold["image_size"] == 48
    assert fold["decomposition"] == "linalg"  # "auto" on a CPU
    assert fold["repetitions"] == 5 and fold["seed"] == [7, 1]  # (config.seed, fold)
    assert set(fold["taps"]) == {
        "conv1_relu",
        "conv2_block1_out",
        "conv3_block1_out",
        "conv4_block1_out",
        "conv5_block1_out",
    }

    sim = _rows(out / "similarity.csv")
    assert [(r["freeze"], r["prob"]) for r in sim] == [
        ("freezeFalse", "real"),
        ("freezeFalse", "rand"),
        ("freezeTrue", "real"),
        ("freezeTrue", "rand"),
    ]
    assert _rows(out / "simVSaucImNet.csv") == [
        r
        for r in cca_rows
        if (r["model1"], r["model2"]) == ("breast-ImageNet-freezeFalse", "ImageNet")
    ]
    for name in ("auc", "cca_layers", "similarity", "cca_vs_auc_gain", "conv1_filters"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    assert not list(out.glob(".*partial"))

    report_text = (out / "report.md").read_text()
    # Paper AUC from AUC_mean.csv beside this run's (one fold: no SD).
    run_auc = {
        (r["source"], r["freeze"]): float(r["AUC"]) for r in _rows(workdir / "AUC.csv")
    }
    line = next(
        ln
        for ln in report_text.splitlines()
        if ln.startswith("| breast | ImageNet | freezeFalse |")
    )
    assert "90.5 ± 3.83" in line
    assert f"{100 * run_auc[('ImageNet', 'freezeFalse')]:.1f}" in line
    assert (
        "| breast | random | freezeFalse |" in report_text
        and "51.2 ± 9.99" in report_text
    )
    # Paper CCA, mean ± SD over its 5 folds, from CCA_breast.csv.
    paper = [
        float(r["conv1"])
        for r in _rows(PAPER_RESULTS / "CCA_breast.csv")
        if (r["model1"], r["model2"]) == ("breast-ImageNet-freezeFalse", "ImageNet")
    ]
    expected = f"{np.mean(paper):.2f} ± {np.std(paper, ddof=1):.2f}"
    paper_line = next(
        ln
        for ln in report_text.splitlines()
        if ln.startswith("| breast-ImageNet-freezeFalse | ImageNet | paper |")
    )
    assert paper_line.split(" | ")[3] == expected
    assert "| breast-ImageNet-freezeFalse | ImageNet | this run |" in report_text
    # Prediction similarity and the CCA vs AUC gain regression, paper beside run.
    paper_sim = [
        float(r["value"])
        for r in _rows(PAPER_RESULTS / "similarity.csv")
        if (r["target"], r["freeze"], r["prob"]) == ("breast", "freezeFalse", "real")
    ]
    assert f"{np.mean(paper_sim):.3f} ± {np.std(paper_sim, ddof=1):.3f}" in report_text
    # The gain regression is per target (n = folds), beside the paper's over the
    # same target's 5 folds, never beside its pooled (n = 35) numbers.
    gain = report_text.split("## CCA(fine-tuned, init) vs relative AUC gain")[1]
    gain = gain.split("\n## ")[0]
    assert "breast only (per target)" in gain and "python -m jaxtransfer.pool" in gain
    assert "this run, breast only: slope / r / p (n)" in gain
    assert "(n=35)" not in report_text and "-3.00 / -0.56" not in report_text
    paper_points = similarity.gain_points(
        tables.read_csv(PAPER_RESULTS / "simVSaucRadNet.csv"),
        tables.read_csv(PAPER_RESULTS / "AUC.csv"),
        "RadImageNet",
    )
    paper_breast = similarity.gain_regression(
        [p for p in paper_points if p["target"] == "breast"]
    )["block3"]
    assert paper_breast["n"] == 5
    line = next(
        ln for ln in gain.splitlines() if ln.startswith("| RadImageNet | block3")
    )
    s = paper_breast
    assert line.endswith(f"| {s['slope']:.2f} / {s['r']:.2f} / {s['p']:.2g} (n=5) |")


def test_rerun_with_the_recorded_seed_reproduces_the_cca(workdir):
    out = workdir / "analysis"
    first = (out / "CCA_breast.csv").read_text()
    assert json.loads((out / "CCA_breast_sampling.json").read_text())["seed"] == 7
    study.run(workdir, reference="")  # seed and the rest from config.json
    assert (out / "CCA_breast.csv").read_text() == first
    assert (
        "paper"
        not in (workdir / "analysis" / "report.md")
        .read_text()
        .split("## Test AUC")[1]
        .split("\n")[2]
    )


@pytest.mark.bad_input
def test_cli_refuses_a_workdir_without_a_finished_grid(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")  # training started, AUC.csv not yet
    err = command_line.fails(analyze.main, ["--workdir", tmp_path], capsys)
    assert f"{tmp_path}: no AUC.csv" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    with pytest.raises(study.NotAFinishedGrid, match="no config.json or AUC.csv"):
        study.run(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
