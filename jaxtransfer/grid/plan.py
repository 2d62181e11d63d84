"""A target's runs and how each trains: the study's rules, read from the config.

Every run is a source x freeze setting x fold (``RunSpec``); its model, stages and
step settings follow docs/protocol.md#fine-tuning. Runs with the same architecture
and stages train together (``group_key``).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jaxtransfer import models
from jaxtransfer.data import augment, splits
from jaxtransfer.models import layers, pretrained
from jaxtransfer.training import engine, steps

SOURCES = ("ImageNet", "RadImageNet", "random")
CATEGORICAL_TARGETS = ("isic", "knee")


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


# config field -> (what it must be, the test): numbers the grid cannot run with.
RANGES = {
    "train.learning_rate": ("a number > 0", lambda v: v > 0 and v != float("inf")),
    "train.head_learning_rate": ("a number > 0", lambda v: v > 0 and v != float("inf")),
    "train.num_epochs": ("an integer >= 1", lambda v: v >= 1),
    "train.patience": ("an integer >= 1", lambda v: v >= 1),
    "train.head_patience": ("an integer >= 1", lambda v: v >= 1),
    "train.batch_size": ("an integer >= 1", lambda v: v >= 1),
    "train.eval_batch_size": ("an integer >= 1", lambda v: v >= 1),
}


def check(config: ConfigDict) -> None:
    """Raises a ValueError naming the field if a rule of the config is unknown or a
    number is out of range."""
    for field in ("grid.sources", "grid.freeze_sources"):
        for source in _get(config, field):
            if source not in SOURCES:
                raise ValueError(f"config.{field}: unknown {source!r}; known {SOURCES}")
    if not config.grid.sources:
        raise ValueError(f"config.grid.sources is empty: expected some of {SOURCES}")
    for fold in config.grid.folds:
        if fold not in range(1, splits.NUM_FOLDS + 1):
            raise ValueError(
                f"config.grid.folds: fold {fold!r}: expected 1..{splits.NUM_FOLDS} "
                "(the study's 5-fold cross-validation)"
            )
    for field, (expected, ok) in RANGES.items():
        value = _get(config, field)
        if not ok(value):  # NaN fails too
            raise ValueError(f"config.{field} = {value!r}: expected {expected}")
    # Keras's smallest input for the network; larger sizes are Keras's too, the
    # last feature map rounding down as Keras's does.
    smallest = models.min_size(config.model.name)
    if not config.data.size >= smallest:
        raise ValueError(
            f"config.data.size = {config.data.size!r}: expected an integer >= "
            f"{smallest} (the smallest input of {config.model.name})"
        )
    for field in ("train.monitor", "train.head_monitor"):
        if _get(config, field) not in engine.MONITORS:
            raise ValueError(
                f"config.{field}={_get(config, field)!r}: expected one of "
                f"{engine.MONITORS}"
            )


def _get(config: ConfigDict, field: str):
    section, name = field.split(".")
    return config[section][name]


def runs(config: ConfigDict) -> list[RunSpec]:
    """Every run of the config, fold-major (each fold's data is loaded once)."""
    check(config)
    return [
        RunSpec(source, freeze, fold)
        for fold in config.grid.folds
        for source in config.grid.sources
        for freeze in config.grid.freeze
        if not freeze or source in config.grid.freeze_sources
    ]


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


def _architecture(config: ConfigDict, spec: RunSpec, outputs: int) -> dict:
    """The model constructor's arguments but its ``rngs``: what sets a run's graph."""
    dropout = (
        config.model.random_head_dropout
        if spec.source == "random"
        else config.model.head_dropout
    )
    # Parameters stay float32 (master weights); compute_dtype sets the arithmetic.
    return dict(
        num_classes=outputs,
        head_dropout=dropout,
        dtype=jnp.dtype(config.model.compute_dtype),
    )


def fresh_model(config: ConfigDict, spec: RunSpec, outputs: int) -> layers.Backbone:
    """The run's architecture, randomly initialised (the random source's start)."""
    rngs = nnx.Rngs(jax.random.fold_in(jax.random.key(config.seed), spec.fold))
    make = models.get(config.model.name)
    return make(**_architecture(config, spec, outputs), rngs=rngs)


def build_model(config: ConfigDict, spec: RunSpec, outputs: int) -> layers.Backbone:
    """The run's starting point: a source's backbone plus a fresh head.

    docs/protocol.md#model
    """
    model = fresh_model(config, spec, outputs)
    if spec.source != "random":
        source, _ = pretrained.load(config.init[spec.source])
        built = (type(source), source.architecture)
        if built != (type(model), model.architecture):
            raise ValueError(
                f"config.init.{spec.source} = {config.init[spec.source]} holds a "
                f"{source.display_name}; config.model.name={config.model.name!r} "
                f"builds a {model.display_name}"
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
        t.monitor,
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
        t.head_monitor,
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


def group_key(model: nnx.Module, run_stages: list[engine.Stage]):
    """Runs with equal keys train together (one program, the same stages)."""
    return nnx.graphdef(model), tuple(run_stages)


def spec_group_key(config: ConfigDict, spec: RunSpec, outputs: int):
    """``group_key`` of a run without building its weights.

    The graph comes from shapes alone, once per architecture (a grid's runs share
    two or three), so keying a whole grid costs no more than keying one run.
    """
    architecture = tuple(sorted(_architecture(config, spec, outputs).items()))
    return (
        _graphdef(config.model.name, architecture),
        tuple(stages(config, spec)),
    )


@functools.lru_cache(maxsize=16)
def _graphdef(name: str, architecture: tuple) -> nnx.GraphDef:
    make = models.get(name)
    # The key's value does not enter the graph; nnx.Rngs is made inside the trace.
    model = nnx.eval_shape(
        lambda: make(**dict(architecture), rngs=nnx.Rngs(jax.random.key(0)))
    )
    return nnx.graphdef(model)
