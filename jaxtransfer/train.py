"""Fine-tuning one run as the paper does: pure jitted steps, Keras-style epochs.

One run = one (source, freeze, fold). ``fit`` trains a stage until early stopping
(PROTOCOL.md §4): the head-only stage (frozen backbone, BatchNorm in inference mode,
Adam 1e-3, early stopping on validation accuracy) and the fine-tuning stage (all
weights, Adam 1e-5, early stopping on validation loss, best weights kept).

The steps follow the functional NNX loop: the model is split once into a graph
definition and state pytrees, ``train_step``/``eval_step`` are plain ``jax.jit``
functions of those pytrees, and nothing reaches the host between steps. The data
of a split lives on device as uint8; steps gather their batch by index, augment
and preprocess on device.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxtransfer import metrics, optim, xla_flags
from jaxtransfer.data import augment as augment_lib
from jaxtransfer.data import preprocess


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree of arrays."""

    step: jax.Array
    trainable: Any  # nnx.State of the parameters being trained
    frozen: Any  # nnx.State of the parameters held fixed (empty when none)
    batch_stats: Any  # nnx.State of the BatchNorm statistics
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of a stage's steps (hashable: bound with partial)."""

    learning_rate: float = 1e-5
    loss: str = "softmax_cross_entropy"
    bn_train: bool = True  # BatchNorm on batch statistics while training
    preprocessing: str = "caffe"
    compute_dtype: str = "float32"
    augment: augment_lib.AugmentConfig | None = None
    # Keep only block inputs for the backward pass and recompute each block:
    # less memory (for large ensembles), about one more forward pass of compute.
    remat: bool = False
    # Where each step's batch lives (sharding.batch_sharded); None: one device.
    batch_sharding: Any = None

    @property
    def optimizer(self) -> optax.GradientTransformation:
        return optim.keras_adam(self.learning_rate)


def head_only(path, _value) -> bool:
    """nnx filter: the classification head's parameters."""
    return "head" in (str(p) for p in path)


def create_state(
    model: nnx.Module, optimizer: optax.GradientTransformation, trainable_filter
) -> tuple[nnx.GraphDef, TrainState]:
    """Splits ``model`` into a graph definition and a fresh ``TrainState``."""
    graphdef, trainable, frozen, batch_stats = nnx.split(
        model, nnx.All(nnx.Param, trainable_filter), nnx.Param, nnx.BatchStat
    )
    state = TrainState(
        step=jnp.zeros([], jnp.int32),
        trainable=trainable,
        frozen=frozen,
        batch_stats=batch_stats,
        opt_state=optimizer.init(trainable),
    )
    return graphdef, state


def update_model(model: nnx.Module, state: TrainState) -> None:
    """Writes a state's weights and statistics back into ``model``."""
    nnx.update(model, state.trainable, state.frozen, state.batch_stats)


def _gather(
    images, labels, indices, num_classes, augment, rng, preprocessing, sharding
):
    """Batch ``indices`` of the on-device split: augmented, preprocessed, one-hot."""
    batch = images[indices].astype(jnp.float32)  # (B, H, W, 3) in 0..255
    if sharding is not None:  # split the batch (and all work on it) over devices
        batch = jax.lax.with_sharding_constraint(batch, sharding)
    if augment is not None:
        batch = augment_lib.augment(rng, batch, augment)
    batch = preprocess.get(preprocessing)(batch)
    # A 1-unit sigmoid head (v1 binary) still has two classes; its loss reads the
    # class-1 column of the one-hot labels.
    return batch, jax.nn.one_hot(labels[indices], max(num_classes, 2))


def loss_and_grads(
    state: TrainState,
    batch: jax.Array,
    onehot: jax.Array,
    dropout_rng: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    config: StepConfig,
) -> tuple[tuple[jax.Array, jax.Array, Any], Any]:
    """Per-example losses, logits, updated BatchNorm statistics, and gradients.

    A pure function of ``state.trainable``: the model is merged inside the traced
    loss. With ``config.remat`` each block is recomputed from its input in the
    backward pass (``nnx.remat``); the gradients are the same up to float rounding.
    """
    if config.remat:  # at trace time: a clear error instead of an XLA abort
        xla_flags.check_remat_compiles(jax.default_backend())

    def loss_fn(trainable):
        # copy: fresh Variables at this trace level, so BatchNorm may update them.
        model = nnx.merge(
            graphdef, trainable, state.frozen, state.batch_stats, copy=True
        )
        logits, _ = model(
            batch,
            train=True,
            bn_train=config.bn_train,
            dropout_rng=dropout_rng,
            taps=(),
            remat=config.remat,
        )
        logits = logits.astype(jnp.float32)
        per_example = metrics.LOSSES[config.loss](logits, onehot)
        new_stats = nnx.state(model, nnx.BatchStat)
        return per_example.mean(), (per_example, logits, new_stats)

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    return aux, grads


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    indices: jax.Array,
    rng: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: StepConfig,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on the batch ``images[indices]``; returns metric sums."""
    augment_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, state.step))
    batch, onehot = _gather(
        images,
        labels,
        indices,
        num_classes,
        config.augment,
        augment_rng,
        config.preprocessing,
        config.batch_sharding,
    )
    (per_example, logits, new_stats), grads = loss_and_grads(
        state,
        batch.astype(config.compute_dtype),
        onehot,
        dropout_rng,
        graphdef=graphdef,
        config=config,
    )
    updates, opt_state = config.optimizer.update(
        grads, state.opt_state, state.trainable
    )
    trainable = optax.apply_updates(state.trainable, updates)
    correct = metrics.predictions(logits) == labels[indices]
    sums = {
        "loss": per_example.sum(),
        "correct": correct.sum().astype(jnp.float32),
        "count": jnp.asarray(per_example.shape[0], jnp.float32),
    }
    new_state = state.replace(
        step=state.step + 1,
        trainable=trainable,
        batch_stats=new_stats if config.bn_train else state.batch_stats,
        opt_state=opt_state,
    )
    return new_state, sums


def eval_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    indices: jax.Array,
    mask: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: StepConfig,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Inference on ``images[indices]``: masked metric sums and probabilities."""
    batch, onehot = _gather(
        images,
        labels,
        indices,
        num_classes,
        None,
        None,
        config.preprocessing,
        config.batch_sharding,
    )
    model = nnx.merge(graphdef, state.trainable, state.frozen, state.batch_stats)
    logits, _ = model(batch.astype(config.compute_dtype), taps=())
    logits = logits.astype(jnp.float32)
    per_example = metrics.LOSSES[config.loss](logits, onehot)
    correct = metrics.predictions(logits) == labels[indices]
    sums = {
        "loss": jnp.where(mask, per_example, 0).sum(),
        "correct": (correct & mask).sum().astype(jnp.float32),
        "count": mask.sum().astype(jnp.float32),
    }
    probs = metrics.probabilities(logits)
    if config.batch_sharding is not None:  # every process gets every probability
        everywhere = jax.sharding.NamedSharding(
            config.batch_sharding.mesh, jax.sharding.PartitionSpec()
        )
        probs = jax.lax.with_sharding_constraint(probs, everywhere)
    return sums, probs


@dataclasses.dataclass
class EarlyStopping:
    """Keras ``EarlyStopping`` (min_delta 0, no restore) plus its best epoch.

    Keras counts every epoch as a wait, resets on a strict improvement, and stops
    once ``wait >= patience``. ``ModelCheckpoint(save_best_only)`` keeps the first
    epoch reaching the best value, as ``improved`` reports here.
    """

    mode: str  # 'min' or 'max'
    patience: int
    best: float | None = None
    best_epoch: int = -1
    wait: int = 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Returns ``(improved, stop)`` after an epoch ending with ``value``."""
        self.wait += 1
        improved = self.best is None or (
            value < self.best if self.mode == "min" else value > self.best
        )
        if improved:
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
        return improved, self.wait >= self.patience


def epoch_batches(
    rng: jax.Array, num_examples: int, batch_size: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Index batches of one epoch, Keras style: ceil(N/B) steps, last one partial."""
    order = (
        np.asarray(jax.random.permutation(rng, num_examples))
        if shuffle
        else np.arange(num_examples)
    )
    return [order[i : i + batch_size] for i in range(0, num_examples, batch_size)]


def padded_batches(num_examples: int, batch_size: int):
    """Fixed-size index batches with a mask: eval never recompiles on the last one."""
    for start in range(0, num_examples, batch_size):
        indices = np.arange(start, start + batch_size)
        mask = indices < num_examples
        yield np.where(mask, indices, 0), mask


@functools.lru_cache(maxsize=32)
def make_steps(graphdef: nnx.GraphDef, num_classes: int, config: StepConfig):
    """The jitted ``(train_step, eval_step)`` of a stage.

    Cached on its static arguments, so every run of a grid with the same stage
    reuses one compiled step instead of compiling its own.
    """
    train = jax.jit(
        functools.partial(
            train_step, graphdef=graphdef, num_classes=num_classes, config=config
        ),
        donate_argnums=0,
    )
    evaluate_ = jax.jit(
        functools.partial(
            eval_step, graphdef=graphdef, num_classes=num_classes, config=config
        )
    )
    return train, evaluate_


def evaluate(
    step: Callable,
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    batch_size: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Loss, accuracy and probabilities over a whole split (each example once)."""
    sums, probs = [], []
    for indices, mask in padded_batches(len(labels), batch_size):
        batch_sums, batch_probs = step(state, images, labels, indices, mask)
        sums.append(batch_sums)
        probs.append(batch_probs)
    sums, probs = jax.device_get((sums, probs))
    total = {k: sum(s[k] for s in sums) for k in sums[0]}
    probs = np.concatenate(probs)[: len(labels)]
    return {
        "loss": float(total["loss"] / total["count"]),
        "accuracy": float(total["correct"] / total["count"]),
    }, probs


def copy_weights(state: TrainState) -> TrainState:
    """A copy of a state's weights (not aliased by donated buffers), no optimizer."""
    return state.replace(
        trainable=jax.tree.map(jnp.copy, state.trainable),
        frozen=jax.tree.map(jnp.copy, state.frozen),
        batch_stats=jax.tree.map(jnp.copy, state.batch_stats),
        opt_state=None,
    )
