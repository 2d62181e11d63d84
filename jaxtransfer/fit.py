"""One run's stages, epoch by epoch, with per-epoch checkpoints and resume.

A run is a list of ``Stage`` s (head-only then fine-tuning for freezeTrue, one
fine-tuning stage otherwise). After every epoch the run's full progress (stage,
epoch, train state, best weights, early-stopping state, history) is saved with
orbax; re-running the same run restores it and continues exactly where it stopped,
so a killed run loses at most the epoch in flight.
"""

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from jaxtransfer import sharding, train


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the protocol (PROTOCOL.md §4)."""

    name: str  # 'head' or 'finetune'
    learning_rate: float
    num_epochs: int
    monitor: str  # 'loss' or 'accuracy' (on the validation split)
    patience: int
    head_only: bool  # train the head alone, backbone frozen (BN in inference mode)
    bn_train: bool  # BatchNorm on batch statistics while training (Q3)
    keep_best: bool  # end on the best-monitored weights (ModelCheckpoint)

    @property
    def mode(self) -> str:
        return "min" if self.monitor == "loss" else "max"


@dataclasses.dataclass
class Split:
    """A split on device: uint8 images (N, H, W, 3) and int32 labels (N,)."""

    images: jax.Array
    labels: jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class NonFiniteLoss(FloatingPointError):
    """A training loss became NaN or inf; the last good checkpoint is kept."""


def _leaves(tree) -> dict[str, Any]:
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _unflatten(like, leaves: dict[str, Any]):
    treedef = jax.tree.structure(like)
    return jax.tree.unflatten(treedef, [leaves[k] for k in sorted(leaves)])


def _abstract(tree):
    return _leaves(jax.tree.map(ocp.utils.to_shape_dtype_struct, tree))


def _weights(state: train.TrainState):
    return (state.trainable, state.frozen, state.batch_stats)


class RunCheckpointer:
    """Per-epoch orbax checkpoints of one run: train state, best weights, progress."""

    def __init__(self, directory: str | os.PathLike):
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
        )

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def progress(self) -> dict | None:
        step = self.latest()
        if step is None:
            return None
        restored = self.manager.restore(
            step, args=ocp.args.Composite(progress=ocp.args.JsonRestore())
        )
        return restored["progress"]

    def save(self, progress: dict, state: train.TrainState, best) -> None:
        step = (self.latest() or 0) + 1
        self.manager.save(
            step,
            args=ocp.args.Composite(
                progress=ocp.args.JsonSave(progress),
                state=ocp.args.StandardSave(_leaves(state)),
                best=ocp.args.StandardSave(_leaves(best)),
            ),
        )
        self.manager.wait_until_finished()

    def restore(self, state_like: train.TrainState, best_like):
        step = self.latest()
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(state_like)),
                best=ocp.args.StandardRestore(_abstract(best_like)),
            ),
        )
        return (
            _unflatten(state_like, restored["state"]),
            _unflatten(best_like, restored["best"]),
        )

    def close(self) -> None:
        self.manager.close()


def for_mesh(
    step_config: train.StepConfig, mesh: Mesh | None
) -> tuple[train.StepConfig, bool]:
    """Steps that split each batch over ``mesh``, and whether to block on each
    (`sharding.block_each_step`).

    Returns ``step_config`` unchanged without a mesh.
    """
    if mesh is not None:
        step_config = dataclasses.replace(
            step_config, batch_sharding=sharding.batch_sharded(mesh)
        )
    return step_config, sharding.block_each_step(mesh)


def run_stages(
    model: nnx.Module,
    stages: list[Stage],
    data: dict[str, Split],
    *,
    num_classes: int,
    step_config: train.StepConfig,
    batch_size: int,
    eval_batch_size: int,
    rng: jax.Array,
    checkpointer: RunCheckpointer,
    log: Callable[[dict], None] = lambda record: None,
    progress_desc: str = "",
    mesh: Mesh | None = None,
) -> list[dict]:
    """Trains ``model`` through ``stages`` in place, resuming from ``checkpointer``.

    With a ``mesh``, the state is replicated over its devices and every batch is
    sharded over them (``data`` must already be replicated there).

    Returns the per-epoch history (one dict per epoch, all stages).
    """
    step_config, sync_every_step = for_mesh(step_config, mesh)
    saved = checkpointer.progress()
    start_stage = saved["stage"] if saved else 0
    history = saved["history"] if saved else []
    for index in range(start_stage, len(stages)):
        stage = stages[index]
        stage_config = dataclasses.replace(
            step_config, learning_rate=stage.learning_rate, bn_train=stage.bn_train
        )
        trainable = train.head_only if stage.head_only else nnx.Param
        graphdef, state = train.create_state(model, stage_config.optimizer, trainable)
        if mesh is not None:
            state = sharding.put_replicated(state, mesh)
        best = train.copy_weights(state)
        stopper = train.EarlyStopping(stage.mode, stage.patience)
        start_epoch = 0
        if saved and saved["stage"] == index:
            state, best = checkpointer.restore(state, _weights(best))
            best = state.replace(
                trainable=best[0], frozen=best[1], batch_stats=best[2], opt_state=None
            )
            stopper = train.EarlyStopping(**saved["early_stopping"])
            start_epoch = saved["epoch"]
            if saved.get("stage_done"):
                start_epoch = stage.num_epochs  # finished: skip straight to the end
            logging.info(
                "resuming %s stage %s at epoch %d",
                progress_desc,
                stage.name,
                start_epoch,
            )
        train_step, eval_step = train.make_steps(graphdef, num_classes, stage_config)
        stage_rng = jax.random.fold_in(rng, index)
        steps_per_epoch = math.ceil(len(data["train"]) / batch_size)
        for epoch in range(start_epoch, stage.num_epochs):
            epoch_rng = jax.random.fold_in(stage_rng, epoch)
            shuffle_rng, step_rng = jax.random.split(epoch_rng)
            bar = tqdm(
                total=steps_per_epoch,
                leave=False,
                disable=None,
                desc=f"{progress_desc} {stage.name} epoch {epoch + 1}",
            )
            start = time.perf_counter()
            sums = []
            for indices in train.epoch_batches(
                shuffle_rng, len(data["train"]), batch_size
            ):
                state, step_sums = train_step(
                    state,
                    data["train"].images,
                    data["train"].labels,
                    jnp.asarray(indices),
                    step_rng,
                )
                sums.append(step_sums)
                if sync_every_step:
                    jax.block_until_ready(state)
                bar.update()
            sums = jax.device_get(sums)  # one transfer per epoch
            seconds = time.perf_counter() - start
            bar.close()
            train_loss = sum(s["loss"] for s in sums) / sum(s["count"] for s in sums)
            if not np.isfinite(train_loss):
                raise NonFiniteLoss(
                    f"{progress_desc}: non-finite training loss {train_loss} in stage "
                    f"{stage.name}, epoch {epoch + 1}; the last good checkpoint "
                    f"(epoch {epoch}) is kept"
                )
            val, _ = train.evaluate(
                eval_step,
                state,
                data["val"].images,
                data["val"].labels,
                eval_batch_size,
            )
            improved, stop = stopper.update(val[stage.monitor], epoch)
            if improved and stage.keep_best:
                best = train.copy_weights(state)
            record = {
                "stage": stage.name,
                "epoch": epoch + 1,
                "train/loss": float(train_loss),
                "train/accuracy": float(
                    sum(s["correct"] for s in sums) / sum(s["count"] for s in sums)
                ),
                "val/loss": val["loss"],
                "val/accuracy": val["accuracy"],
                "timing/images_per_s": len(data["train"]) / seconds,
            }
            history.append(record)
            log(record)
            done = stop or epoch + 1 == stage.num_epochs
            checkpointer.save(
                {
                    "stage": index,
                    "epoch": epoch + 1,
                    "stage_done": done,
                    "early_stopping": dataclasses.asdict(stopper),
                    "history": history,
                },
                state,
                _weights(best),
            )
            if done:
                break
        final = best if stage.keep_best else state
        train.update_model(model, final)
    return history
