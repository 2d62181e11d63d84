"""Runs (or resumes) a target's grid: trains the pending runs, writes the results."""

import collections
import functools
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import tensorboardX
from ml_collections import ConfigDict

from jaxtransfer import models
from jaxtransfer.grid import inputs, plan, results
from jaxtransfer.grid.plan import RunSpec
from jaxtransfer.models import layers, pretrained
from jaxtransfer.runtime import files, processes
from jaxtransfer.training import engine, metrics


class RunLog:
    """A run's epoch records: JSONL, TensorBoard scalars, a log line (process 0).

    A log holds exactly the epochs its run's weights went through: a fresh run
    starts it empty, a resumed one rewrites its checkpoint's history (``restart``),
    so an epoch an attempt logged before it was killed, and before the save of
    that epoch landed, is not kept twice.
    """

    def __init__(self, spec: RunSpec, run_dir: Path):
        self.spec, self.run_dir = spec, run_dir
        self.closed = False
        self.writes = processes.is_primary()  # every process trains; one writes
        self.records = 0
        if self.writes:
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
            self.jsonl = open(run_dir / "log.jsonl", "w")
            self.scalars = tensorboardX.SummaryWriter(str(run_dir / "tensorboard"))

    def restart(self, history: list[dict]) -> None:
        """Resumed from a checkpoint: the log holds exactly its ``history``."""
        if not self.writes:
            return
        self.jsonl.close()
        lines = [json.dumps({"run": self.spec.directory, **r}) + "\n" for r in history]
        files.write_text(self.run_dir / "log.jsonl", "".join(lines))
        self.jsonl = open(self.run_dir / "log.jsonl", "a")
        for record in history:
            self._add_scalars(record)

    def __call__(self, record: dict) -> None:
        if not self.writes:
            return
        self.jsonl.write(json.dumps({"run": self.spec.directory, **record}) + "\n")
        self.jsonl.flush()
        self._add_scalars(record)
        logging.info(
            "%s %s epoch %d: loss %.4f val_loss %.4f val_acc %.3f val_auc %.3f "
            "(%.0f img/s)",
            self.spec.directory,
            record["stage"],
            record["epoch"],
            record["train/loss"],
            record["val/loss"],
            record["val/accuracy"],
            record.get("val/auc", float("nan")),
            record["timing/images_per_s"],
        )

    def _add_scalars(self, record: dict) -> None:
        for key, value in record.items():
            if "/" in key:
                self.scalars.add_scalar(key, value, self.records)
        self.scalars.flush()
        self.records += 1

    def close(self) -> None:
        if self.writes and not self.closed:
            self.closed = True
            self.jsonl.close()
            self.scalars.close()


def settings_for(config: ConfigDict) -> engine.Settings:
    """How the engine runs the grid (none of it changes a run's numbers)."""
    return engine.Settings(
        batch_size=config.train.batch_size,
        eval_batch_size=config.train.eval_batch_size,
        member_mode=config.mesh.member_mode,
        members=config.mesh.members,
        slots_per_device=config.mesh.slots_per_device,
        checkpoint_every_s=config.train.checkpoint_every_s,
        val_auc=functools.partial(results.validation_auc, config),
        progress=config.log.progress,
    )


class GridCallbacks(engine.Callbacks):
    """Writes each run's records as it trains and its results as it finishes."""

    def __init__(self, config: ConfigDict, specs, folds: dict, workdir: Path):
        self.config, self.folds, self.workdir = config, folds, workdir
        self.specs = {spec.directory: spec for spec in specs}
        self.logs = {}
        for spec in specs:
            (workdir / spec.directory).mkdir(parents=True, exist_ok=True)
            self.logs[spec.directory] = RunLog(spec, workdir / spec.directory)
        self.results: dict[RunSpec, dict] = {}
        self.failures: dict[RunSpec, dict] = {}

    def epoch(self, run: engine.Run, record: dict) -> None:
        self.logs[run.name](record)

    def resumed(self, run: engine.Run, history: list[dict]) -> None:
        self.logs[run.name].restart(history)

    def failed(self, run: engine.Run, history: list[dict], failure: dict) -> None:
        self.logs[run.name].close()
        spec = self.specs[run.name]
        self.failures[spec] = mark_failed(spec, failure, self.workdir)

    def finished(self, run, history, test, probs) -> None:
        spec = self.specs[run.name]
        self.logs[run.name].close()
        data, class_names = self.folds[spec.fold]
        self.results[spec] = finish_run(
            self.config, spec, run.model, history, test, probs, data, class_names,
            self.workdir,
        )  # fmt: skip

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


def train_runs(
    config: ConfigDict,
    specs: list[RunSpec],
    folds: dict,
    workdir: Path,
    timings: engine.Timings | None = None,
    planned: list[RunSpec] | None = None,
) -> tuple[dict[RunSpec, dict], dict[RunSpec, dict]]:
    """Trains and tests ``specs`` with the engine, as few groups as possible.

    Returns the results of the runs that finished and the failures of those
    whose training loss became NaN or inf.

    Runs with the same architecture and stages (e.g. the ImageNet and
    RadImageNet freezeFalse runs of every fold) are members of one ``engine.train``
    call over the device mesh (docs/training.md#devices). Each group's cohort is
    its runs among ``planned`` (the whole grid, finished runs included; default
    ``specs``): a run resumed after the others finished trains in the programs
    of an uninterrupted grid, bit for bit.
    """
    splits = {
        fold: {name: engine.Split(d["images"], d["labels"]) for name, d in data.items()}
        for fold, (data, _) in folds.items()
    }  # one object per split: runs of a fold share it on device
    # Every fold holds the target's classes.
    outputs = plan.num_outputs(config, len(next(iter(folds.values()))[1]))
    keys = {
        spec: plan.spec_group_key(config, spec, outputs)
        for spec in [*specs, *(planned or [])]
    }
    cohorts = collections.Counter(keys[spec] for spec in planned or specs)
    groups: dict = {}
    for spec in specs:
        run = engine.Run(
            spec.directory,
            plan.build_model(config, spec, outputs),
            splits[spec.fold],
            plan.run_rng(config.seed, spec),
            workdir / spec.directory / "checkpoints",
        )
        groups.setdefault(keys[spec], []).append((spec, run))
    callbacks = GridCallbacks(config, specs, folds, workdir)
    try:
        for key, group in groups.items():
            group_specs = [spec for spec, _ in group]
            class_names = folds[group_specs[0].fold][1]
            engine.train(
                [run for _, run in group],
                plan.stages(config, group_specs[0]),
                num_classes=outputs,
                step_config=plan.step_config_for(config, len(class_names)),
                settings=settings_for(config),
                callbacks=callbacks,
                timings=timings,
                cohort=cohorts[key],
            )
    finally:
        callbacks.close()
    return callbacks.results, callbacks.failures


FAILED = "failed.json"


def mark_failed(spec: RunSpec, failure: dict, workdir: Path) -> dict:
    """Records a diverged run in its ``failed.json``; re-runs skip it."""
    record = {"run": spec.directory, **failure}
    if processes.is_primary():
        files.write_text(
            workdir / spec.directory / FAILED, json.dumps(record, indent=2) + "\n"
        )
    return record


def failure_note(failure: dict) -> str:
    return (
        f"{failure['run']} failed: training loss {failure['train/loss']} in stage "
        f"{failure['stage']}, epoch {failure['epoch']} (its {FAILED}; delete it "
        "to train the run again)"
    )


def finish_run(
    config: ConfigDict,
    spec: RunSpec,
    model: layers.Backbone,
    history: list[dict],
    test: dict,
    probs: np.ndarray,
    data: dict,
    class_names,
    workdir: Path,
) -> dict:
    """Writes a tested run's model, predictions and metrics (metrics.json last)."""
    run_dir = workdir / spec.directory
    num_classes = len(class_names)
    outputs = plan.num_outputs(config, num_classes)
    aucs = metrics.auc_scores(data["test"]["labels"], probs)
    definition = results.auc_key(config, num_classes)
    result = {
        "target": config.target,
        "source": spec.source,
        "freeze": f"freeze{spec.freeze}",
        "fold": f"fold{spec.fold}",
        "AUC": aucs[definition],
        "AUC_definition": definition,  # which of `auc` (docs/protocol.md#auc)
        "auc": aucs,
        "test/loss": test["loss"],
        "test/accuracy": test["accuracy"],
        "num_test": len(data["test"]["labels"]),
        "epochs": len(history),
        "image_size": config.data.size,
    }
    metadata = pretrained.make_metadata(
        model,
        source_format="jaxtransfer_run",
        run=spec.directory,
        head_activation="sigmoid" if outputs == 1 else "softmax",
    )
    pretrained.save(model, metadata, run_dir / "model", overwrite=True)
    if processes.is_primary():
        with files.atomic_file(run_dir / "test_predictions.npz") as partial:
            np.savez(
                partial,
                probs=probs,
                labels=data["test"]["labels"],
                paths=np.asarray(data["test"]["paths"], dtype=str),
            )
        files.write_text(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return result


# Config fields a resumed grid may change: which runs (grid), where the inputs
# live, and what does not change a run's numbers beyond float rounding.
RESUMABLE_CHANGES = (
    "grid.",
    "analysis.",
    "log.",
    "host.",
    "data.manual_dir",
    "data.data_dir",
    "mesh.",
    "train.ensemble",  # workdirs from before the engine recorded these two
    "train.checkpoint_every_s",
    "train.remat",
    "train.eval_batch_size",
)


# Fields added to the config after workdirs were recorded without them, with the
# value every run before them used: such a workdir resumes while they keep it.
ADDED_FIELDS = {
    "model.random_head_dropout": 0.0,
    "train.monitor": "loss",
    "train.head_monitor": "accuracy",
}


def check_resume(config: ConfigDict, workdir: Path) -> None:
    """Refuses to resume a workdir whose finished runs used another config."""
    recorded = workdir / "config.json"
    if not recorded.is_file():
        return
    old = {**ADDED_FIELDS, **files.flatten(json.loads(recorded.read_text()))}
    new = files.flatten(json.loads(config.to_json_best_effort()))
    missing = "(not set)"
    changed = [
        f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
        and not key.startswith(RESUMABLE_CHANGES)
    ]
    if changed:
        raise ValueError(
            f"{recorded}: this workdir's runs used another config, and resuming "
            f"would mix settings ({'; '.join(changed)}). Use a new --workdir, or "
            "the recorded values."
        )


def partial_v1_warning(config: ConfigDict) -> str | None:
    """A warning when v1's splits were asked for without the rest of the v1 preset."""
    if config.protocol != "v1" or config.preset == "v1":
        return None
    return (
        "config.protocol='v1' without the v1 preset: only the splits follow v1; "
        f"patience {config.train.patience}, binary loss {config.train.binary_loss!r} "
        f"and AUC {config.eval.auc!r} stay as set. For the protocol behind the "
        "published tables use the config file's :v1 argument "
        "(e.g. --config=configs/knee.py:v1)."
    )


def run(config: ConfigDict, workdir: str | os.PathLike) -> dict:
    """Runs (or resumes) the whole grid of ``config`` in ``workdir``."""
    workdir = Path(workdir)
    check_resume(config, workdir)
    if warning := partial_v1_warning(config):
        logging.warning(warning)
    plan.check(config)
    # Whether the AUC fits the target is checked once the data is read.
    results.check_auc_choice(config.eval.auc)
    models.get(config.model.name)
    directory = inputs.ensure_inputs(config)
    primary = processes.is_primary()  # every process trains; process 0 writes
    workdir.mkdir(parents=True, exist_ok=True)
    if primary:
        files.write_text(
            workdir / "config.json", config.to_json_best_effort(indent=2) + "\n"
        )
    finished, failed, pending = {}, {}, []
    for spec in plan.runs(config):
        done = workdir / spec.directory / "metrics.json"
        if done.is_file():
            finished[spec] = json.loads(done.read_text())
            shutil.rmtree(workdir / spec.directory / "checkpoints", ignore_errors=True)
            logging.info("%s: finished earlier, skipped", spec.directory)
        elif (workdir / spec.directory / FAILED).is_file():
            failed[spec] = json.loads((workdir / spec.directory / FAILED).read_text())
        else:
            pending.append(spec)
    if pending:
        folds = {
            fold: inputs.load_fold(directory, fold, config.protocol)
            for fold in sorted({spec.fold for spec in pending})
        }
        for _, class_names in folds.values():
            results.auc_key(config, len(class_names))  # before any training
        timings = engine.Timings()
        done, diverged = train_runs(
            config, pending, folds, workdir, timings, planned=plan.runs(config)
        )
        finished.update(done)
        failed.update(diverged)
        logging.info("training time: %s", timings.summary())
    run_results = [finished[spec] for spec in plan.runs(config) if spec in finished]
    failures = [failed[spec] for spec in plan.runs(config) if spec in failed]
    for failure in failures:
        logging.warning(failure_note(failure))
    summary = {
        "runs": run_results,
        "AUC": results.summarize(run_results),
        "failed": failures,
    }
    if primary:
        files.write_text(workdir / "AUC.csv", results.auc_csv(run_results))
        files.write_text(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
        results.print_table(config, summary["AUC"])
        for failure in failures:
            print(f"  {failure_note(failure)}")
    processes.sync_processes("grid written")
    return summary
