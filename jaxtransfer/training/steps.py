"""One member's step math: pure functions of a ``TrainState`` and a batch.

The engine (``training.engine``) runs these over a member axis; here they see one
run. A step gathers its batch from the split on device by index (uint8), augments
and preprocesses it on device, and returns metric *sums* so that the engine reads
them once per epoch. Nothing here knows about devices except ``data_parallel``:
the member's batch is constrained to the mesh's ``data`` axis, which the caller
sets with ``jax.set_mesh``.
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec

from jaxtransfer.data import augment as augment_lib
from jaxtransfer.data import preprocess
from jaxtransfer.runtime import xla_flags
from jaxtransfer.training import metrics, optim

DATA_AXIS = "data"  # the mesh axis a member's batch is split over


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree of arrays."""

    step: jax.Array
    trainable: Any  # nnx.State of the parameters being trained
    frozen: Any  # nnx.State of the parameters held fixed (empty when none)
    batch_stats: Any  # nnx.State of the BatchNorm statistics
    opt_state: Any

    @property
    def weights(self) -> tuple:
        """What a model is made of: ``(trainable, frozen, batch_stats)``."""
        return (self.trainable, self.frozen, self.batch_stats)


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The static math of a stage's steps (hashable: compiled programs key on it)."""

    learning_rate: float = 1e-5
    loss: str = "softmax_cross_entropy"
    bn_train: bool = True  # BatchNorm on batch statistics while training
    preprocessing: str = "caffe"
    compute_dtype: str = "float32"
    augment: augment_lib.AugmentConfig | None = None
    # Keep only block inputs for the backward pass and recompute each block:
    # less activation memory for about one more forward pass of compute.
    remat: bool = False

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


def _gather(images, labels, indices, num_classes, augment, rng, preprocessing, split):
    """Batch ``indices`` of the on-device split: augmented, preprocessed, one-hot."""
    batch = images[indices].astype(jnp.float32)  # (B, H, W, 3) in 0..255
    if split:  # the member's batch, and all work on it, over the data axis
        batch = jax.lax.with_sharding_constraint(batch, PartitionSpec(DATA_AXIS))
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
    data_parallel: bool = False,
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
        data_parallel,
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
    weights: tuple,
    images: jax.Array,
    labels: jax.Array,
    indices: jax.Array,
    mask: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: StepConfig,
    data_parallel: bool = False,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Inference of ``weights`` on ``images[indices]``: masked sums, probabilities."""
    batch, onehot = _gather(
        images, labels, indices, num_classes, None, None, config.preprocessing,
        data_parallel,
    )  # fmt: skip
    model = nnx.merge(graphdef, *weights)
    logits, _ = model(batch.astype(config.compute_dtype), taps=())
    logits = logits.astype(jnp.float32)
    per_example = metrics.LOSSES[config.loss](logits, onehot)
    correct = metrics.predictions(logits) == labels[indices]
    sums = {
        "loss": jnp.where(mask, per_example, 0).sum(),
        "correct": (correct & mask).sum().astype(jnp.float32),
        "count": mask.sum().astype(jnp.float32),
    }
    return sums, metrics.probabilities(logits)


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
