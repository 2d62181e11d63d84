"""The grid driver end to end on a synthetic download (tiny model, one fold)."""

import csv
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from configs import default, demo
from jaxtransfer import grid, main
from jaxtransfer.grid import plan, results, runner
from jaxtransfer.models import pretrained
from jaxtransfer.runtime import files


def _config(tmp_path, demo_sources):
    config = demo.get_config()
    config.init.update(demo_sources)
    config.data.manual_dir = str(tmp_path / "raw")
    config.data.data_dir = str(tmp_path / "prepared")
    config.data.synthetic_options.counts = {"benign": 20, "malignant": 16, "normal": 8}
    config.grid.sources = ("ImageNet", "random")
    config.grid.folds = (1,)
    config.train.num_epochs = 2
    config.train.head_num_epochs = 1
    config.analysis.enabled = False  # tested on its own in tests/analysis
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory, demo_sources):
    """The grid of ``_config``, run once without interruption."""
    root = tmp_path_factory.mktemp("finished")
    config = _config(root, demo_sources)
    return config, root / "run", grid.run(config, root / "run")


def test_grid_writes_results_in_the_paper_schema_and_resumes(finished):
    config, workdir, summary = finished

    with open(workdir / "AUC.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["target", "source", "freeze", "fold", "AUC"]
    assert [(r["source"], r["freeze"]) for r in rows] == [
        ("ImageNet", "freezeFalse"),
        ("ImageNet", "freezeTrue"),
        ("random", "freezeFalse"),
    ]
    for row, run in zip(rows, summary["runs"]):
        assert 0.0 <= float(row["AUC"]) <= 1.0
        assert float(row["AUC"]) == run["auc"][run["AUC_definition"]]
        assert run["AUC_definition"] == "keras_micro"
        run_dir = workdir / f"{row['source']}-{row['freeze']}" / "fold1"
        assert not (run_dir / "checkpoints").exists()
        predictions = np.load(run_dir / "test_predictions.npz")
        assert predictions["probs"].shape == (run["num_test"], 2)
        np.testing.assert_allclose(predictions["probs"].sum(1), 1.0, rtol=1e-5)
        epochs = [json.loads(line) for line in open(run_dir / "log.jsonl")]
        assert len(epochs) == run["epochs"]
    head_runs = [r for r in summary["runs"] if r["freeze"] == "freezeTrue"]
    assert head_runs[0]["epochs"] == 3  # one head-only epoch, then two fine-tuning

    # Re-running skips every finished run and reports the same numbers.
    stamp = (workdir / "ImageNet-freezeFalse/fold1/metrics.json").stat().st_mtime_ns
    again = grid.run(config, workdir)
    assert again["runs"] == summary["runs"]
    assert (
        workdir / "ImageNet-freezeFalse/fold1/metrics.json"
    ).stat().st_mtime_ns == stamp


@pytest.mark.bad_input
def test_missing_inputs_stop_before_any_compute(tmp_path, demo_sources):
    config = _config(tmp_path, demo_sources)
    config.data.synthetic = False
    config.init.synthetic_domains = {}
    config.model.name = "resnet50"
    config.init.ImageNet = str(tmp_path / "weights" / "imagenet")
    with pytest.raises(FileNotFoundError) as error:
        grid.run(config, tmp_path / "run")
    message = str(error.value)
    assert "python -m converters.keras_h5" in message
    assert "python -m jaxtransfer.data.prepare --dataset breast" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.bad_input
def test_targets_expect_the_papers_fold_csvs(tmp_path):
    config = default.for_target("knee")
    assert config.data.paper_folds == "data/paper_folds/knee"
    config.init.ImageNet = config.init.RadImageNet = str(tmp_path / "weights")
    config.data.data_dir = str(tmp_path / "prepared")
    config.data.paper_folds = str(tmp_path / "folds")
    with pytest.raises(FileNotFoundError) as error:
        grid.run(config, tmp_path / "run")
    message = str(error.value)
    assert f"config.data.paper_folds = {tmp_path / 'folds'} holds no fold CSVs" in (
        message
    )
    assert "github.com/DovileDo/revisiting-transfer" in message
    assert f"--paper_folds {tmp_path / 'folds'}" in message  # the prepare command
    (tmp_path / "folds").mkdir()
    for part in ("train", "val", "test"):
        for k in range(1, 6):
            (tmp_path / "folds" / f"{part}_fold{k}.csv").touch()
    with pytest.raises(FileNotFoundError) as error:
        grid.run(config, tmp_path / "run")
    assert "holds no fold CSVs" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "section, field, value, message",
    [
        ("analysis", "cca_decomposition", "qr", "cca_decomposition='qr': expected"),
        ("eval", "auc", "roc", "config.eval.auc='roc': expected one of"),
        ("model", "name", "resnet5", "config.model.name='resnet5': expected one of"),
        ("train", "monitor", "auc", "config.train.monitor='auc': expected one of"),
        (
            "grid",
            "freeze_sources",
            ("ImageNet", "Rad"),
            "freeze_sources: unknown 'Rad'",
        ),
        ("grid", "sources", ("ImageNet", "Rad"), "config.grid.sources: unknown 'Rad'"),
        ("grid", "sources", (), "config.grid.sources is empty"),
        ("grid", "folds", (1, 6), "config.grid.folds: fold 6: expected 1..5"),
        (
            "train",
            "learning_rate",
            -1e-5,
            "config.train.learning_rate = -1e-05: expected a number > 0",
        ),
        ("train", "head_learning_rate", float("nan"), "head_learning_rate = nan"),
        ("train", "batch_size", 0, "config.train.batch_size = 0: expected an integer"),
        ("train", "num_epochs", 0, "config.train.num_epochs = 0: expected an integer"),
        ("data", "size", 16, "config.data.size = 16: expected an integer >= 32"),
        # The Inceptions' smallest input is Keras's 75 px; the demo trains at 32.
        ("model", "name", "inception_v3", r"config.data.size = 32: .* >= 75 \("),
    ],
)
@pytest.mark.bad_input
def test_unknown_choices_stop_before_any_compute(
    tmp_path, demo_sources, section, field, value, message
):
    config = _config(tmp_path, demo_sources)
    config.analysis.enabled = True
    config[section][field] = value
    with pytest.raises(ValueError, match=message):
        main.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "raw").exists()


def test_auc_choice_is_checked_against_the_target():
    config = demo.get_config()
    config.eval.auc = "binary"
    assert results.auc_key(config, 2) == "binary"
    with pytest.raises(ValueError, match="needs a binary target; breast has 3"):
        results.auc_key(config, 3)  # run() asks before training each fold
    config.eval.auc = "v1_sklearn"
    assert [results.auc_key(config, n) for n in (2, 7)] == ["binary", "weighted"]


def test_auc_csv_rows_follow_the_papers_order():
    config = _config_for_grid()
    run_results = [
        dict(target="knee", source=s.source, freeze=f"freeze{s.freeze}",
             fold=f"fold{s.fold}", AUC=0.5)
        for s in reversed(plan.runs(config))
    ]  # fmt: skip
    rows = list(csv.reader(results.auc_csv(run_results).splitlines()))[1:]
    expected = [
        (source, freeze, f"fold{fold}")
        for freeze in ("freezeFalse", "freezeTrue")
        for fold in (1, 2)
        for source in ("ImageNet", "RadImageNet")
    ] + [("random", "freezeFalse", "fold1"), ("random", "freezeFalse", "fold2")]
    assert [tuple(r[1:4]) for r in rows] == expected


def _config_for_grid():
    config = demo.get_config()
    config.grid.sources = ("ImageNet", "RadImageNet", "random")
    config.grid.freeze = (False, True)
    config.grid.folds = (1, 2)
    return config


def test_mesh_settings_and_cohorts_reach_the_engine(
    tmp_path, demo_sources, monkeypatch
):
    seen = []

    def train(runs, stages, **kwargs):
        seen.append(([run.name for run in runs], kwargs["settings"], kwargs["cohort"]))
        raise RuntimeError("stop before training")

    monkeypatch.setattr(runner.engine, "train", train)
    config = _config(tmp_path, demo_sources)
    config.grid.sources = ("ImageNet", "RadImageNet")
    config.grid.freeze = (False,)
    config.mesh.member_mode = "vmap"
    config.mesh.slots_per_device = 3
    with pytest.raises(RuntimeError, match="stop before training"):
        grid.run(config, tmp_path / "run")
    ((names, settings, cohort),) = seen  # one architecture and stage list: one call
    assert sorted(names) == sorted(
        f"{s}-freezeFalse/fold1" for s in config.grid.sources
    )
    assert (settings.member_mode, settings.slots_per_device) == ("vmap", 3)
    assert cohort == 2
    # One run finished before a kill: the other resumes in the programs of two.
    files.write_text(tmp_path / "run" / names[0] / "metrics.json", "{}")
    with pytest.raises(RuntimeError, match="stop before training"):
        grid.run(config, tmp_path / "run")
    assert seen[1][0] == names[1:] and seen[1][2] == 2


def test_head_stage_runs_up_to_num_epochs_unless_told_otherwise():
    config = default.for_target("knee")
    config.train.num_epochs = 7
    spec = plan.RunSpec("ImageNet", True, 1)
    head, finetune = plan.stages(config, spec)
    assert (head.name, finetune.name) == ("head", "finetune")
    assert head.num_epochs == finetune.num_epochs == 7
    config.train.head_num_epochs = 2
    assert plan.stages(config, spec)[0].num_epochs == 2


def test_v1_splits_without_the_v1_preset_are_flagged():
    assert runner.partial_v1_warning(default.for_target("knee")) is None
    assert runner.partial_v1_warning(default.for_target("knee", arg="v1")) is None
    config = default.for_target("knee")
    config.protocol = "v1"
    warning = runner.partial_v1_warning(config)
    assert "only the splits follow v1" in warning and "patience 30" in warning
    assert "configs/knee.py:v1" in warning


def test_head_stage_keeps_its_last_weights_as_the_reference_unless_told_otherwise():
    config = default.for_target("knee")
    spec = plan.RunSpec("ImageNet", True, 1)
    head, finetune = plan.stages(config, spec)
    # docs/protocol.md#head-stage, and ModelCheckpoint
    assert not head.keep_best and finetune.keep_best
    config.train.head_keep_best = True
    assert plan.stages(config, spec)[0].keep_best


@pytest.mark.bad_input
def test_cca_stimuli_at_the_papers_size_are_checked_before_any_compute(tmp_path):
    assert default.for_target("knee").analysis.image_size == 112
    config = default.for_target("thyroid")
    assert (config.data.size, config.analysis.image_size) == (112, 224)  # CCA.py's
    config.init.ImageNet = config.init.RadImageNet = str(tmp_path / "weights")
    config.data.data_dir = str(tmp_path / "prepared")
    config.data.paper_folds = ""
    with pytest.raises(FileNotFoundError) as error:
        grid.run(config, tmp_path / "run")
    message = str(error.value)
    for size, use in ((112, "training"), (224, "CCA stimuli")):
        assert f"size{size}/1.0.0 ({use})" in message
        assert f"--data_dir {tmp_path / 'prepared'} --size {size}\n" in message + "\n"
    config.analysis.enabled = False
    with pytest.raises(FileNotFoundError) as error:
        grid.run(config, tmp_path / "run")
    assert "--size 224" not in str(error.value)


@pytest.mark.bad_input
def test_resuming_with_another_config_is_refused_before_any_compute(
    tmp_path, demo_sources
):
    config = _config(tmp_path, demo_sources)
    workdir = tmp_path / "run"
    workdir.mkdir()
    files.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
    runner.check_resume(config, workdir)
    # More folds, another execution mode, no analysis: the same runs' numbers.
    config.grid.folds = (1, 2)
    config.mesh.slots_per_device = 1
    config.train.checkpoint_every_s = 5.0
    config.analysis.enabled = True
    runner.check_resume(config, workdir)
    config.train.learning_rate = 0.1
    with pytest.raises(ValueError, match=r"train.learning_rate: 0.001 -> 0.1\)"):
        grid.run(config, workdir)
    assert not (tmp_path / "raw").exists()


def test_the_papers_stage_rules_come_from_the_config():
    config = default.for_target("knee")
    names = {spec.directory.split("/")[0] for spec in plan.runs(config)}
    assert names == {
        "ImageNet-freezeFalse", "ImageNet-freezeTrue", "RadImageNet-freezeFalse",
        "RadImageNet-freezeTrue", "random-freezeFalse",
    }  # fmt: skip
    head, finetune = plan.stages(config, plan.RunSpec("ImageNet", True, 1))
    assert (head.monitor, finetune.monitor) == ("accuracy", "loss")
    config.grid.freeze_sources = ("ImageNet",)
    config.train.monitor = "accuracy"
    names = {spec.directory.split("/")[0] for spec in plan.runs(config)}
    assert "RadImageNet-freezeTrue" not in names and "ImageNet-freezeTrue" in names
    assert plan.stages(config, plan.RunSpec("ImageNet", False, 1))[0].monitor == (
        "accuracy"
    )


def test_a_workdir_recorded_before_a_rule_became_a_field_resumes(tmp_path):
    config = demo.get_config()
    recorded = json.loads(config.to_json_best_effort())
    del recorded["train"]["monitor"], recorded["model"]["random_head_dropout"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    runner.check_resume(config, tmp_path)  # the values the code used then
    config.train.monitor = "accuracy"
    with pytest.raises(ValueError, match="train.monitor: 'loss' -> 'accuracy'"):
        runner.check_resume(config, tmp_path)


@pytest.mark.bad_input
def test_a_dataset_prepared_by_another_release_is_named(finished, tmp_path):
    config, _, _ = finished
    config = config.copy_and_resolve_references()
    prepared = Path(config.data.data_dir)
    version_dir = next(prepared.glob("*/*/*/dataset_info.json")).parent
    older = tmp_path / version_dir.relative_to(prepared).parent / "0.9.0"
    shutil.copytree(version_dir, older)
    config.data.synthetic = False
    config.data.data_dir = str(tmp_path)
    with pytest.raises(grid.MissingInputs) as error:
        grid.run(config, tmp_path / "run")
    assert "holds only version 0.9.0, prepared by another release" in str(error.value)
    assert f"(this one reads {version_dir.name})" in str(error.value)


@pytest.mark.bad_input
def test_a_checkpoint_of_another_model_is_named(finished, tmp_path):
    config, _, _ = finished
    config = config.copy_and_resolve_references()
    config.model.name = "resnet50"  # the sources are the tiny model's
    with pytest.raises(ValueError) as error:
        grid.run(config, tmp_path / "run")
    assert f"config.init.ImageNet = {config.init.ImageNet}" in str(error.value)
    assert "holds a ResNet (blocks [1, 1, 1, 1], width 8)" in str(error.value)
    assert "config.model.name='resnet50' builds a ResNet50" in str(error.value)


@pytest.mark.bad_input
def test_a_diverging_run_is_marked_failed_and_the_grid_goes_on(tmp_path, demo_sources):
    """The ImageNet stand-in's weights, scaled until its activations overflow:
    its runs' loss is NaN from the first step; the random run is unaffected."""
    model, metadata = pretrained.load(demo_sources["ImageNet"])
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x * 1e30, params))
    pretrained.save(model, metadata, tmp_path / "overflowing")
    config = _config(tmp_path, demo_sources)
    config.init.ImageNet = str(tmp_path / "overflowing")
    summary = grid.run(config, tmp_path / "run")
    assert [(r["source"], r["freeze"]) for r in summary["runs"]] == [
        ("random", "freezeFalse")
    ]
    assert [(f["run"], f["stage"], f["epoch"]) for f in summary["failed"]] == [
        ("ImageNet-freezeFalse/fold1", "finetune", 1),
        ("ImageNet-freezeTrue/fold1", "head", 1),
    ]
    with open(tmp_path / "run" / "AUC.csv") as f:
        assert [r["source"] for r in csv.DictReader(f)] == ["random"]
    failed = tmp_path / "run" / "ImageNet-freezeTrue" / "fold1" / "failed.json"
    assert json.loads(failed.read_text())["epoch"] == 1
    # A re-run skips the failed runs as it skips the finished one.
    stamp = failed.stat().st_mtime_ns
    again = grid.run(config, tmp_path / "run")["failed"]
    assert [(f["run"], f["epoch"]) for f in again] == [
        (f["run"], f["epoch"]) for f in summary["failed"]
    ]
    assert failed.stat().st_mtime_ns == stamp


def _record(epoch):
    return {
        "stage": "finetune", "epoch": epoch, "train/loss": 1.0, "val/loss": 1.0,
        "val/accuracy": 0.5, "timing/images_per_s": 1.0,
    }  # fmt: skip


def _logged_epochs(run_dir):
    return [json.loads(line)["epoch"] for line in open(run_dir / "log.jsonl")]


def test_a_runs_log_holds_each_epoch_its_weights_went_through_once(tmp_path):
    """A killed attempt logged epochs 1 and 2, but only epoch 1's save landed (or
    none did): the next attempt's log holds the checkpoint's history, then goes on."""
    spec = plan.RunSpec("ImageNet", False, 1)
    run_dir = tmp_path / spec.directory
    config = demo.get_config()
    run = type("Run", (), {"name": spec.directory})()
    for history in ([_record(1)], []):  # resumed after epoch 1; started afresh
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "log.jsonl").write_text(
            "".join(json.dumps(_record(e)) + "\n" for e in (1, 2))
        )
        callbacks = runner.GridCallbacks(config, [spec], {}, tmp_path)
        if history:
            callbacks.resumed(run, history)
        callbacks.epoch(run, _record(len(history) + 1))
        callbacks.close()
        assert _logged_epochs(run_dir) == [r["epoch"] for r in history] + [
            len(history) + 1
        ]
        events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        assert len(events) == 1, events  # the killed attempt's are gone
