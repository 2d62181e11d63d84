"""The grid of one target: sources x freeze settings x folds, resumable.

Layout of a workdir::

    config.json                       the config of the grid, as run
    <source>-freeze<True|False>/fold<k>/
        checkpoints/                  per-epoch progress (removed once finished)
        model/                        final weights (a converted-checkpoint dir)
        test_predictions.npz          probs, labels, paths of the test split
        log.jsonl                     one record per epoch
        metrics.json                  written last: its presence marks the run done
    AUC.csv                           the paper's schema (docs/protocol.md#result-files)
    summary.json                      every run's metrics, mean/std per source/freeze

Re-running the same command skips finished runs and resumes unfinished ones.
"""

import csv
import dataclasses
import functools
import io
import json
import logging
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tensorboardX
from flax import nnx
from ml_collections import ConfigDict

from jaxtransfer import models, pretraining
from jaxtransfer.analysis import cca
from jaxtransfer.data import augment, builders, loader, prepare, splits, synthetic
from jaxtransfer.models import pretrained, resnet
from jaxtransfer.runtime import files, processes
from jaxtransfer.training import engine, metrics, steps

SOURCES = ("ImageNet", "RadImageNet", "random")
CATEGORICAL_TARGETS = ("isic", "knee")
WEIGHT_DOWNLOADS = {
    "ImageNet": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (Keras "
    "applications ImageNet weights)",
    "RadImageNet": "RadImageNet-ResNet50_notop.h5 (from the RadImageNet authors)",
}
PAPER_CODE = "github.com/DovileDo/revisiting-transfer"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    source: str
    freeze: bool
    fold: int

    @property
    def setting(self) -> str:
        return f"{self.source}-freeze{self.freeze}"

    @property
    def directory(self) -> str:
        return f"{self.setting}/fold{self.fold}"


def grid(config: ConfigDict) -> list[RunSpec]:
    """Every run of the config, fold-major (each fold's data is loaded once)."""
    for source in config.grid.sources:
        if source not in SOURCES:
            raise ValueError(
                f"config.grid.sources: unknown {source!r}; known {SOURCES}"
            )
    return [
        RunSpec(source, freeze, fold)
        for fold in config.grid.folds
        for source in config.grid.sources
        for freeze in config.grid.freeze
        if not (source == "random" and freeze)  # the paper has no frozen random
    ]


# --- inputs ------------------------------------------------------------------


def dataset_dir(config: ConfigDict, size: int | None = None) -> Path:
    """The prepared dataset at ``size`` (default: the training size)."""
    return builders.prepared_dir(
        config.data.data_dir,
        config.data.name,
        size or config.data.size,
        paper_folds=bool(config.data.paper_folds),
    )


def cca_image_size(config: ConfigDict) -> int:
    """The CCA's image size: config.analysis.image_size, else the training's.

    docs/protocol.md#image-sizes
    """
    return config.analysis.get("image_size") or config.data.size


def is_prepared(config: ConfigDict, size: int) -> bool:
    """Whether the target's dataset at ``size`` has been prepared."""
    return (dataset_dir(config, size) / "dataset_info.json").is_file()


def unprepared_message(config: ConfigDict, size: int, use: str) -> str:
    """Where the dataset at ``size`` (needed for ``use``) is missing, and the fix."""
    return (
        f"no prepared dataset at {dataset_dir(config, size)} ({use}). Prepare it "
        f"from the raw download with: {prepare_command(config, size)}"
    )


def prepare_command(config: ConfigDict, size: int) -> str:
    """The command that prepares the target's dataset at ``size``."""
    folds = (
        f" --paper_folds {config.data.paper_folds}" if config.data.paper_folds else ""
    )
    return (
        f"python -m jaxtransfer.data.prepare --dataset {config.data.name} "
        f"--manual_dir {config.data.manual_dir} --data_dir {config.data.data_dir} "
        f"--size {size}{folds}"
    )


def synthetic_source(config: ConfigDict, source: str) -> pretraining.SyntheticSource:
    """How a demo's stand-in for ``source`` is pre-trained (its own seed each)."""
    return pretraining.SyntheticSource(
        config.init.synthetic_domains[source],
        config.data.size,
        config.init.synthetic_epochs,
        config.seed + SOURCES.index(source),
    )


class MissingInputs(FileNotFoundError):
    """Inputs a run needs are missing; the message says where each comes from."""


def ensure_inputs(config: ConfigDict) -> Path:
    """Checks (or, for synthetic demos, creates) every input before any compute.

    Returns the prepared dataset directory.
    """
    problems = []
    for source in config.grid.sources:
        if source == "random":
            continue
        path = Path(config.init[source])
        domain = config.init.synthetic_domains.get(source)
        if domain and processes.is_primary() and not pretrained.is_checkpoint(path):
            pretraining.make(synthetic_source(config, source), path)
        if not domain and not pretrained.is_checkpoint(path):
            problems.append(
                f"config.init.{source} = {path} is not a converted checkpoint. "
                f"Download {WEIGHT_DOWNLOADS[source]} and run: python -m "
                f"converters.keras_h5 --input <file>.h5 --output {path}"
            )
    sizes = [config.data.size]
    if config.analysis.enabled and cca_image_size(config) != config.data.size:
        # the CCA's stimuli (docs/protocol.md#image-sizes)
        sizes.append(cca_image_size(config))
    if config.data.synthetic and processes.is_primary():  # the others wait below
        raw = Path(config.data.manual_dir)
        if not raw.exists():
            synthetic.write_target(
                config.target,
                raw,
                image_size=config.data.size,
                **config.data.synthetic_options.to_dict(),
            )
        for size in sizes:
            prepare.prepare(
                prepare.parse_args(
                    [
                        "--dataset",
                        config.data.name,
                        "--manual_dir",
                        str(raw),
                        "--data_dir",
                        config.data.data_dir,
                        "--size",
                        str(size),
                        "--no_progress",
                    ]
                )
            )
    processes.sync_processes("synthetic inputs and sources written")
    unprepared = [
        size
        for size in sizes
        if not config.data.synthetic and not is_prepared(config, size)
    ]
    if (
        unprepared
        and config.data.paper_folds
        and not splits.has_paper_fold_csvs(config.data.paper_folds)
    ):
        problems.append(
            f"config.data.paper_folds = {config.data.paper_folds} holds no fold "
            "CSVs ({train,val,test}_fold{1..5}.csv). They come with the paper's "
            f"code, {PAPER_CODE} (folder data/{config.target}/); put them there, "
            "or set --config.data.paper_folds='' to make folds with the paper's "
            "procedure (docs/protocol.md#folds: grouped targets then get other folds)"
        )
    for size in unprepared:
        use = "training" if size == config.data.size else "CCA stimuli"
        problems.append(unprepared_message(config, size, use))
    if problems:
        raise MissingInputs("cannot start:\n- " + "\n- ".join(problems))
    return dataset_dir(config)


def load_fold(directory: Path, fold: int, protocol: str) -> tuple[dict, tuple]:
    """The fold's splits in host memory (v1: val = test = held out), class names."""
    parts = {
        name: loader.load_split(directory, f"fold{fold}_{name}")
        for name in ("train", "val", "test")
    }
    class_names = parts["train"].class_names
    if protocol == "v1":
        held_out = {
            field: np.concatenate([getattr(parts[s], field) for s in ("val", "test")])
            for field in ("images", "labels", "paths")
        }
        parts["val"] = parts["test"] = held_out
    else:
        parts = {
            name: {f: getattr(s, f) for f in ("images", "labels", "paths")}
            for name, s in parts.items()
        }
    return parts, class_names


# --- one run -------------------------------------------------------------------


def run_rng(seed: int, spec: RunSpec) -> jax.Array:
    """The run's key, the same in every process (no Python hash)."""
    key = jax.random.key(seed)
    for part in (SOURCES.index(spec.source), int(spec.freeze), spec.fold):
        key = jax.random.fold_in(key, part)
    return key


def num_outputs(config: ConfigDict, num_classes: int) -> int:
    """v1 binary targets use a 1-unit sigmoid head; everything else C units."""
    return (
        1
        if num_classes == 2 and config.train.binary_loss == "sigmoid_bce"
        else num_classes
    )


def loss_name(config: ConfigDict, num_classes: int) -> str:
    if config.target in CATEGORICAL_TARGETS or num_classes > 2:
        return "softmax_cross_entropy"
    return config.train.binary_loss


def build_model(config: ConfigDict, spec: RunSpec, outputs: int) -> resnet.ResNet:
    """The run's starting point: a source's backbone plus a fresh head.

    docs/protocol.md#model
    """
    rngs = nnx.Rngs(jax.random.fold_in(jax.random.key(config.seed), spec.fold))
    make = models.get(config.model.name)
    dropout = 0.0 if spec.source == "random" else config.model.head_dropout
    # Parameters stay float32 (master weights); compute_dtype sets the arithmetic.
    model = make(
        num_classes=outputs,
        head_dropout=dropout,
        rngs=rngs,
        dtype=jnp.dtype(config.model.compute_dtype),
    )
    if spec.source != "random":
        source, _ = pretrained.load(config.init[spec.source])
        if (source.stage_sizes, source.num_features) != (
            model.stage_sizes,
            model.num_features,
        ):
            raise ValueError(
                f"config.init.{spec.source} = {config.init[spec.source]} holds a "
                f"ResNet with stage sizes {source.stage_sizes} and "
                f"{source.num_features} features; config.model.name="
                f"{config.model.name!r} builds {model.stage_sizes}, "
                f"{model.num_features}"
            )
        backbone = nnx.state(source, (nnx.Param, nnx.BatchStat))
        if source.head is not None:  # a converted fine-tuned model: its head stays
            backbone = nnx.State({k: v for k, v in backbone.items() if k != "head"})
        nnx.update(model, backbone)
    return model


def stages(config: ConfigDict, spec: RunSpec) -> list[engine.Stage]:
    """freezeTrue: head-only stage then fine-tuning; otherwise fine-tuning.

    docs/protocol.md#fine-tuning
    """
    t = config.train
    finetune = engine.Stage(
        "finetune",
        t.learning_rate,
        t.num_epochs,
        "loss",
        t.patience,
        head_only=False,
        bn_train=t.stage2_bn_train if spec.freeze else True,
        keep_best=True,
    )
    if not spec.freeze:
        return [finetune]
    head = engine.Stage(
        "head",
        t.head_learning_rate,
        t.num_epochs if t.head_num_epochs is None else t.head_num_epochs,
        "accuracy",
        t.head_patience,
        head_only=True,
        bn_train=False,
        keep_best=t.head_keep_best,
    )
    return [head, finetune]


def step_config_for(config: ConfigDict, num_classes: int) -> steps.StepConfig:
    """The static step settings of a target's runs (stages set lr and BN mode)."""
    augment_config = None
    if config.train.augment:
        augment_config = augment.config_for_target(
            config.target, convention=config.train.augment_convention
        )
    return steps.StepConfig(
        loss=loss_name(config, num_classes),
        compute_dtype=config.model.compute_dtype,
        augment=augment_config,
        remat=config.train.remat,
    )


class RunLog:
    """A run's epoch records: JSONL, TensorBoard scalars, a log line (process 0)."""

    def __init__(self, spec: RunSpec, run_dir: Path):
        self.spec, self.run_dir = spec, run_dir
        self.closed = False
        self.writes = processes.is_primary()  # every process trains; one writes
        self.records = 0
        if self.writes:
            self.jsonl = open(run_dir / "log.jsonl", "a")
            self.scalars = tensorboardX.SummaryWriter(str(run_dir / "tensorboard"))

    def restart(self, history: list[dict]) -> None:
        """Resumed from a checkpoint: the log holds exactly its ``history``."""
        if not self.writes:
            return
        self.jsonl.close()
        lines = [json.dumps({"run": self.spec.directory, **r}) + "\n" for r in history]
        files.write_text(self.run_dir / "log.jsonl", "".join(lines))
        self.jsonl = open(self.run_dir / "log.jsonl", "a")
        self.records = len(history)

    def __call__(self, record: dict) -> None:
        if not self.writes:
            return
        self.jsonl.write(json.dumps({"run": self.spec.directory, **record}) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            if "/" in key:
                self.scalars.add_scalar(key, value, self.records)
        self.scalars.flush()
        self.records += 1
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
        val_auc=functools.partial(validation_auc, config),
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

    def epoch(self, run: engine.Run, record: dict) -> None:
        self.logs[run.name](record)

    def resumed(self, run: engine.Run, history: list[dict]) -> None:
        self.logs[run.name].restart(history)

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


def group_key(model: nnx.Module, run_stages: list[engine.Stage]):
    """Runs with equal keys train together (one program, the same stages)."""
    return nnx.graphdef(model), tuple(run_stages)


def train_runs(
    config: ConfigDict,
    specs: list[RunSpec],
    folds: dict,
    workdir: Path,
    timings: engine.Timings | None = None,
) -> dict[RunSpec, dict]:
    """Trains and tests ``specs`` with the engine, as few groups as possible.

    Runs with the same architecture and stages (e.g. the ImageNet and
    RadImageNet freezeFalse runs of every fold) are members of one ``engine.train``
    call over the device mesh (docs/training.md#devices).
    """
    splits = {
        fold: {name: engine.Split(d["images"], d["labels"]) for name, d in data.items()}
        for fold, (data, _) in folds.items()
    }  # one object per split: runs of a fold share it on device
    groups: dict = {}
    for spec in specs:
        outputs = num_outputs(config, len(folds[spec.fold][1]))
        model = build_model(config, spec, outputs)
        run = engine.Run(
            spec.directory,
            model,
            splits[spec.fold],
            run_rng(config.seed, spec),
            workdir / spec.directory / "checkpoints",
        )
        groups.setdefault(group_key(model, stages(config, spec)), []).append(
            (spec, run)
        )
    callbacks = GridCallbacks(config, specs, folds, workdir)
    try:
        for group in groups.values():
            group_specs = [spec for spec, _ in group]
            class_names = folds[group_specs[0].fold][1]
            engine.train(
                [run for _, run in group],
                stages(config, group_specs[0]),
                num_classes=num_outputs(config, len(class_names)),
                step_config=step_config_for(config, len(class_names)),
                settings=settings_for(config),
                callbacks=callbacks,
                timings=timings,
            )
    finally:
        callbacks.close()
    return callbacks.results


def finish_run(
    config: ConfigDict,
    spec: RunSpec,
    model: resnet.ResNet,
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
    outputs = num_outputs(config, num_classes)
    aucs = metrics.auc_scores(data["test"]["labels"], probs)
    definition = auc_key(config, num_classes)
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


# config.eval.auc: a key of metrics.auc_scores, or v1's choice per target
# (docs/protocol.md#auc).
AUC_CHOICES = ("keras_micro", "micro", "macro", "weighted", "binary", "v1_sklearn")


def check_auc_choice(choice: str) -> None:
    """Raises a ValueError naming config.eval.auc unless ``choice`` is known."""
    if choice not in AUC_CHOICES:
        raise ValueError(f"config.eval.auc={choice!r}: expected one of {AUC_CHOICES}")


def auc_key(config: ConfigDict, num_classes: int) -> str:
    """Which AUC fills the AUC column; a clear error if it does not fit.

    docs/protocol.md#auc
    """
    choice = config.eval.auc
    check_auc_choice(choice)
    if choice == "binary" and num_classes != 2:
        raise ValueError(
            f"config.eval.auc='binary' needs a binary target; {config.target} has "
            f"{num_classes} classes (use 'keras_micro', 'micro', 'macro' or 'weighted')"
        )
    if choice == "v1_sklearn":
        return "binary" if num_classes == 2 else "weighted"
    return choice


def validation_auc(config: ConfigDict, labels: np.ndarray, probs: np.ndarray) -> float:
    """An epoch's validation AUC, by ``config.eval.auc``; NaN for one class."""
    if np.unique(labels).size < 2:
        return float("nan")
    return metrics.auc_scores(labels, probs)[auc_key(config, probs.shape[1])]


# --- the grid ------------------------------------------------------------------


def paper_row_order(result: dict) -> tuple:
    """Sort key of the paper's AUC.csv: per freeze setting, fold by fold, ImageNet
    then RadImageNet; the random-init rows last."""
    return (
        result["source"] == "random",
        result["freeze"] != "freezeFalse",
        int(result["fold"].removeprefix("fold")),
        SOURCES.index(result["source"]),
    )


def auc_csv(results: list[dict]) -> str:
    """AUC.csv in the paper's schema and row order: target,source,freeze,fold,AUC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["target", "source", "freeze", "fold", "AUC"])
    for r in sorted(results, key=paper_row_order):
        writer.writerow(
            [r["target"], r["source"], r["freeze"], r["fold"], repr(r["AUC"])]
        )
    return out.getvalue()


def summarize(results: list[dict]) -> dict:
    """Mean and sample SD of AUC (x100) per source/freeze, as AUC_mean.csv."""
    table = {}
    for r in results:
        table.setdefault(f"{r['source']}-{r['freeze']}", []).append(100 * r["AUC"])
    return {
        setting: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"),
            "folds": len(v),
        }
        for setting, v in table.items()
    }


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


def check_resume(config: ConfigDict, workdir: Path) -> None:
    """Refuses to resume a workdir whose finished runs used another config."""
    recorded = workdir / "config.json"
    if not recorded.is_file():
        return
    old = files.flatten(json.loads(recorded.read_text()))
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
    if config.analysis.enabled:
        cca.resolve_decomposition(
            config.analysis.cca_decomposition, "config.analysis.cca_decomposition"
        )
    check_auc_choice(config.eval.auc)  # whether it fits the target: once data is read
    models.get(config.model.name)
    directory = ensure_inputs(config)
    primary = processes.is_primary()  # every process trains; process 0 writes
    workdir.mkdir(parents=True, exist_ok=True)
    if primary:
        files.write_text(
            workdir / "config.json", config.to_json_best_effort(indent=2) + "\n"
        )
    finished, pending = {}, []
    for spec in grid(config):
        done = workdir / spec.directory / "metrics.json"
        if done.is_file():
            finished[spec] = json.loads(done.read_text())
            shutil.rmtree(workdir / spec.directory / "checkpoints", ignore_errors=True)
            logging.info("%s: finished earlier, skipped", spec.directory)
        else:
            pending.append(spec)
    if pending:
        folds = {
            fold: load_fold(directory, fold, config.protocol)
            for fold in sorted({spec.fold for spec in pending})
        }
        for _, class_names in folds.values():
            auc_key(config, len(class_names))  # before any training
        timings = engine.Timings()
        finished.update(train_runs(config, pending, folds, workdir, timings))
        logging.info("training time: %s", timings.summary())
    results = [finished[spec] for spec in grid(config)]
    summary = {"runs": results, "AUC": summarize(results)}
    if primary:
        files.write_text(workdir / "AUC.csv", auc_csv(results))
        files.write_text(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
        print_table(config, summary["AUC"])
    if config.analysis.enabled and primary:
        from jaxtransfer import analyze  # local: analyze imports this module

        analyze.run(workdir)  # with the settings config.json records
    processes.sync_processes("grid and analysis written")
    return summary


def print_table(config: ConfigDict, table: dict) -> None:
    print(
        f"\n{config.target}: test AUC ({config.eval.auc}), mean ± sd over folds, x100"
    )
    for setting, stats in sorted(table.items()):
        print(
            f"  {setting:<28} {stats['mean']:6.1f} ± {stats['std']:5.2f}  "
            f"({stats['folds']} folds)"
        )
