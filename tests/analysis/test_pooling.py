"""Pooling analysed targets: the paper's pooled CCA vs AUC gain from its own
per-target tables.

Each target workdir is built from the paper's result CSVs (its rows of AUC.csv,
similarity.csv, simVSauc*.csv and its CCA_<target>.csv, with the v1 config), laid
out as `jaxtransfer.main` and `jaxtransfer.analyze` leave it; pooling the seven must
give back the paper's pooled tables and regressions.
"""

import json
import shutil

import command_line
import pytest
from paper_reference import PAPER_GAIN, PAPER_RESULTS, needs_paper_results

from configs import default
from jaxtransfer import pool
from jaxtransfer.analysis import pooling, similarity, tables
from jaxtransfer.runtime import files

pytestmark = needs_paper_results
TARGETS = ("isic", "pcam-small", "chest", "breast", "thyroid", "knee", "mammograms")


def _paper(name):
    return tables.read_csv(PAPER_RESULTS / name)


def make_target_workdir(root, target, arg="v1", **overrides):
    """A finished, analysed workdir of ``target`` holding the paper's rows."""
    workdir = root / target
    analysis = workdir / "analysis"
    analysis.mkdir(parents=True)
    config = default.for_target(target, arg=arg)
    for key, value in overrides.items():  # dotted keys, e.g. eval.auc
        group, name = key.split(".")
        config[group][name] = value
    files.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
    auc = [r for r in _paper("AUC.csv") if r["target"] == target]
    files.write_text(workdir / "AUC.csv", tables.csv_text(tables.AUC_HEADER, auc))
    sim = [r for r in _paper("similarity.csv") if r["target"] == target]
    files.write_text(
        analysis / "similarity.csv", tables.csv_text(tables.SIMILARITY_HEADER, sim)
    )
    for source, name in tables.GAIN_FILES.items():
        rows = [
            r
            for r in _paper(name)
            if similarity.target_of(r["model1"], source) == target
        ]
        files.write_text(analysis / name, tables.csv_text(tables.CCA_HEADER, rows))
    shutil.copy(PAPER_RESULTS / f"CCA_{target}.csv", analysis)
    files.write_text(analysis / "summary.json", "{}\n")
    return workdir


def _sorted_rows(rows):
    return sorted(tuple(r.items()) for r in rows)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """The seven paper targets as workdirs, pooled through the CLI."""
    root = tmp_path_factory.mktemp("targets")
    workdirs = [make_target_workdir(root, t) for t in TARGETS]
    out = tmp_path_factory.mktemp("pooled") / "all"
    argv = ["--workdir", str(out), "--reference", str(PAPER_RESULTS)]
    assert pool.main([*argv, *map(str, workdirs)]) == 0
    return out


def test_pooled_regression_is_the_papers(pooled):
    stats = {}
    for row in tables.read_csv(pooled / "gain_stats.csv"):
        stats.setdefault(row["source"], {})[row["layer"]] = row
    for source, expected in PAPER_GAIN.items():
        got = [
            (round(float(stats[source][layer]["slope"]), 2),
             round(float(stats[source][layer]["r"]), 2))
            for layer in similarity.LAYERS
        ]  # fmt: skip
        assert got == expected, source
        for layer in similarity.LAYERS:
            assert int(stats[source][layer]["n"]) == 35
            assert 0 < float(stats[source][layer]["p"]) < 1
    # RadImageNet block3, the strongest: r = -0.56 over 35 points, p < 0.001.
    assert float(stats["RadImageNet"]["block3"]["p"]) < 1e-3
    summary = json.loads((pooled / "summary.json").read_text())
    assert summary["gain_points"] == {"ImageNet": 35, "RadImageNet": 35}
    assert summary["config"]["protocol"] == "v1"
    assert summary["config"]["eval.auc"] == "v1_sklearn"
    assert summary["notes"] == []


def test_pooled_tables_are_the_papers(pooled):
    for name, count in [
        ("simVSaucImNet.csv", 35),
        ("simVSaucRadNet.csv", 35),
        ("similarity.csv", 140),
        ("AUC.csv", 175),
        *((f"CCA_{t}.csv", 70) for t in TARGETS),
    ]:
        ours, paper = tables.read_csv(pooled / name), _paper(name)
        assert len(ours) == count, name
        assert list(ours[0]) == list(paper[0]), name  # the paper's header
        assert _sorted_rows(ours) == _sorted_rows(paper), name
    # AUC_mean.csv: the paper's header, and its printed mean and SD on every row.
    ours = tables.read_csv(pooled / "AUC_mean.csv")
    paper = _paper("AUC_mean.csv")
    assert list(ours[0]) == list(paper[0]) and len(ours) == 175

    def key(r):
        return r["target"], r["source"], r["freeze"], r["fold"]

    printed = {key(r): (float(r["mean"]), float(r["std"])) for r in paper}
    assert {key(r): (float(r["mean"]), float(r["std"])) for r in ours} == printed


def test_pooled_workdir_is_a_reference_and_has_figures_and_report(pooled):
    again = tables.read_reference(pooled, list(TARGETS))
    paper = tables.read_reference(PAPER_RESULTS, list(TARGETS))
    for source, per_layer in paper["gain_stats_all"].items():
        for layer, expected in per_layer.items():  # equal up to the summation order
            assert again["gain_stats"][source][layer] == pytest.approx(expected)
            assert paper["gain_stats"][source][layer] == expected
    for name in ("cca_vs_auc_gain", "auc", "similarity"):
        for ext in ("png", "pdf"):
            assert (pooled / f"{name}.{ext}").stat().st_size > 1000
    assert not list(pooled.glob(".*partial*"))
    report = (pooled / "report.md").read_text()
    assert "this run, 7 targets pooled: slope / r / p (n)" in report
    assert "paper, the same targets: slope / r / p (n)" in report
    line = next(
        ln for ln in report.splitlines() if ln.startswith("| RadImageNet | block3")
    )
    cells = line.strip("| ").split(" | ")
    assert cells[2] == cells[3] and cells[2].startswith("-3.00 / -0.56 / ")
    assert cells[2].endswith("(n=35)")
    assert "| knee | ImageNet | freezeFalse | 91.5 ± 1.08 | 5 | 91.5 ± 1.08 |" in report


def test_a_subset_is_compared_with_the_papers_same_targets_and_all(tmp_path):
    workdirs = [make_target_workdir(tmp_path, t) for t in ("knee", "chest")]
    summary = pooling.run(workdirs, tmp_path / "two", reference=PAPER_RESULTS)
    assert summary["gain_points"] == {"ImageNet": 10, "RadImageNet": 10}
    report = (tmp_path / "two" / "report.md").read_text()
    for column in ("this run, 2 targets pooled", "paper, these targets",
                   "paper, all 7 targets"):  # fmt: skip
        assert f"{column}: slope / r / p (n)" in report
    line = next(
        ln for ln in report.splitlines() if ln.startswith("| RadImageNet | block3")
    )
    cells = line.strip("| ").split(" | ")
    assert cells[2] == cells[3] and cells[2].endswith("(n=10)")
    assert cells[4].startswith("-3.00 / -0.56 / ") and cells[4].endswith("(n=35)")


@pytest.mark.parametrize(
    "missing",
    [
        "config.json",
        "AUC.csv",
        "analysis/summary.json",
        "analysis/similarity.csv",
        "analysis/simVSaucRadNet.csv",
        "analysis/CCA_knee.csv",
    ],
)
@pytest.mark.bad_input
def test_a_missing_result_file_is_named_with_its_workdir(tmp_path, missing):
    workdirs = [make_target_workdir(tmp_path, t) for t in ("chest", "knee")]
    (workdirs[1] / missing).unlink()
    with pytest.raises(FileNotFoundError) as error:
        pooling.run(workdirs, tmp_path / "all")
    assert str(workdirs[1]) in str(error.value) and missing in str(error.value)
    assert not (tmp_path / "all").exists()


@pytest.mark.bad_input
def test_the_same_target_twice_is_refused(tmp_path):
    knee = make_target_workdir(tmp_path, "knee")
    other = tmp_path / "again"
    shutil.copytree(knee, other / "knee")
    with pytest.raises(ValueError, match="'knee' given twice") as error:
        pooling.run([knee, other / "knee"], tmp_path / "all")
    assert str(knee) in str(error.value) and str(other / "knee") in str(error.value)
    with pytest.raises(ValueError, match="given twice"):
        pooling.run([knee, knee], tmp_path / "all")
    assert not (tmp_path / "all").exists()


@pytest.mark.parametrize(
    "arg,overrides,field",
    [
        (None, {}, "protocol"),  # v2 vs v1: splits and early stopping
        ("v1", {"eval.auc": "keras_micro"}, "eval.auc"),
        ("v1", {"model.name": "tiny"}, "model.name"),
    ],
)
@pytest.mark.bad_input
def test_configs_that_change_the_numbers_are_refused(tmp_path, arg, overrides, field):
    knee = make_target_workdir(tmp_path, "knee")
    chest = make_target_workdir(tmp_path, "chest", arg, **overrides)
    with pytest.raises(ValueError, match=f"field '{field}' differs") as error:
        pooling.run([knee, chest], tmp_path / "all")
    assert str(knee) in str(error.value) and str(chest) in str(error.value)
    assert not (tmp_path / "all").exists()


def test_other_config_differences_are_noted_not_refused(tmp_path):
    knee = make_target_workdir(tmp_path, "knee")
    chest = make_target_workdir(tmp_path, "chest", **{"train.batch_size": 64})
    runs = [pooling.read_target(knee), pooling.read_target(chest)]
    shared, notes = pooling.check_poolable(runs)
    assert shared["protocol"] == "v1"
    assert len(notes) == 1 and "train.batch_size" in notes[0]
    assert "128" in notes[0] and "64" in notes[0]


@pytest.mark.bad_input
def test_rows_of_another_target_are_refused(tmp_path):
    knee = make_target_workdir(tmp_path, "knee")
    chest = make_target_workdir(tmp_path, "chest")
    shutil.copy(chest / "AUC.csv", knee / "AUC.csv")
    with pytest.raises(ValueError, match="target 'chest'.*says 'knee'") as error:
        pooling.read_target(knee)
    assert str(knee / "AUC.csv") in str(error.value)


@pytest.mark.bad_input
def test_the_cli_reports_errors_and_never_writes_into_an_input(tmp_path, capsys):
    knee = make_target_workdir(tmp_path, "knee")
    chest = make_target_workdir(tmp_path, "chest")
    err = command_line.fails(pool.main, ["--workdir", knee, knee, chest], capsys)
    assert "must not be an input" in err
    make_target_workdir(tmp_path, "breast")
    argv = ["--workdir", tmp_path / "breast", knee, chest]
    assert "holds a config.json" in command_line.fails(pool.main, argv, capsys)
    (chest / "AUC.csv").unlink()
    argv = ["--workdir", tmp_path / "all", knee, chest]
    assert "AUC.csv is missing" in command_line.fails(pool.main, argv, capsys)
    assert not (tmp_path / "all").exists()
