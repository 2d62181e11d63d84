"""Several runs of the grid trained as one ensemble in one program (beyond the paper).

``fit.run_stages`` trains one run at a time. ``run_members`` trains M runs
("members": e.g. the folds of a target, or the sources of a fold) at once: their
train states are stacked along a leading member axis and one jitted step,
``jax.vmap`` of ``train.train_step``, updates all of them. Each member keeps what
the sequential run would have had, so the numbers are those of training the
members one by one with ``fit.run_stages`` (up to float rounding, see below):

* its own weights, optimizer state, BatchNorm statistics and step counter;
* its own data (train and val splits of any sizes N_m), epoch order and keys
  (``fold_in(fold_in(rng, stage), epoch)``, exactly as ``fit.run_stages``);
* its own Keras early stopping and best weights, on the host. A member that has
  stopped is *masked*: its step still runs inside the vmapped program, but
  ``jnp.where(active, new, old)`` keeps its whole state (weights, optimizer,
  BatchNorm statistics, step) as it was and its metric sums are zero. A stage
  ends once every member has stopped (or after ``num_epochs``).

Batches. Keras runs ceil(N/B) steps per epoch, the last one partial, and
BatchNorm's batch statistics of that partial step are over its real examples
only. Padding a partial batch to B with masked examples would change those
statistics (and the draw of augmentation parameters, which depends on the batch
shape) unless BatchNorm, the loss and the augmentation were all made mask-aware.
Instead, step k of an epoch *groups members by batch shape*: every member whose
k-th batch has b examples runs in one vmapped call of shape (M, b), with every
other member masked in that call. Each member therefore sees exactly the batch
shapes of its sequential run. The price: a step index at which members have
different batch sizes (typically the last, partial step of folds whose N differ
by a few examples) costs one call per distinct size, each computing all M
members; that is at most M extra calls per epoch. One program is compiled per
distinct batch size, as in the sequential loop.

Data. Every distinct split (by object identity) is concatenated once into a
pool on device, uint8 (P, H, W, 3); members index it with their own offset.
Members that share a split (sources on one fold) share its memory.

Exactness. The program is the same computation, vmapped: XLA batches the
members' convolutions into grouped convolutions and may reorder reductions, so
results agree with the sequential runs to float rounding, not bit for bit
(``tests/test_ensemble.py`` measures it). Early-stopping decisions could in
principle flip on a near-tie of validation loss or accuracy; the test checks
that they do not on its runs.

Checkpoints. After every epoch the stacked state, the stacked best weights and
per-member progress (early stopping, stopped flag, history) are saved in one
orbax checkpoint through ``fit.RunCheckpointer``; re-running the same ensemble
(same members in the same order) resumes where it stopped, bit for bit, and a
kill loses at most the epoch in flight of every member.

Modes. ``vectorize=True`` vmaps the members as described; ``False`` runs them one
after another inside the same jitted step (``jax.lax.map``), each exactly the
sequential step, a stopped member skipped. Which is faster depends on the platform
(``vectorize_by_default``).

Members must share the architecture (one ``nnx.GraphDef``: e.g. the same head
dropout) and the stage list; ``group_key`` helps partition a grid.
"""

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxtransfer import fit, sharding, train


@dataclasses.dataclass
class Member:
    """One run of an ensemble.

    Attributes:
        name: Unique within the ensemble; keys its progress in checkpoints.
        model: The run's starting model, trained in place (as ``fit.run_stages``).
        data: Splits by name: at least ``train`` and ``val``.
        rng: The run's key, as it would be passed to ``fit.run_stages``.
    """

    name: str
    model: nnx.Module
    data: dict[str, fit.Split]
    rng: jax.Array


@dataclasses.dataclass
class Pool:
    """Every member's split of one name, concatenated once on device.

    Attributes:
        images: uint8 (P, H, W, 3), the distinct splits one after the other.
        labels: int32 (P,).
        offsets: (M,) where member m's split starts in the pool.
        sizes: (M,) number of examples of member m's split.
    """

    images: jax.Array
    labels: jax.Array
    offsets: np.ndarray
    sizes: np.ndarray


def make_pool(splits: Sequence[fit.Split]) -> Pool:
    """Concatenates the distinct ``splits`` (by identity) into one ``Pool``."""
    distinct, offsets, start = {}, [], 0
    for split in splits:
        if id(split) not in distinct:
            distinct[id(split)] = (split, start)
            start += len(split)
        offsets.append(distinct[id(split)][1])
    parts = [split for split, _ in distinct.values()]
    if len(parts) == 1:
        images, labels = parts[0].images, parts[0].labels
    else:
        images = jnp.concatenate([jnp.asarray(p.images) for p in parts])
        labels = jnp.concatenate([jnp.asarray(p.labels) for p in parts])
    return Pool(
        images,
        labels,
        np.asarray(offsets, np.int64),
        np.asarray([len(s) for s in splits], np.int64),
    )


def stack(trees: Sequence):
    """Stacks pytrees of equal structure along a new leading member axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, member: int):
    """Member ``member``'s slice of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[member], tree)


def _select(mask: jax.Array, new, old):
    """``new`` where ``mask`` (M,) is set, else ``old``, leaf by leaf."""

    def where(n, o):
        return jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(where, new, old)


_select_jit = jax.jit(_select)


def ensemble_train_step(
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    indices: jax.Array,
    rngs: jax.Array,
    active: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: train.StepConfig,
    vectorize: bool = True,
) -> tuple[train.TrainState, dict[str, jax.Array]]:
    """``train.train_step`` of every member at once, masked by ``active``.

    Args:
        state: Stacked ``TrainState``, every leaf (M, ...).
        images: The train pool, uint8 (P, H, W, 3), shared by all members.
        labels: int32 (P,).
        indices: int (M, b), each member's batch as pool indices.
        rngs: (M,) keys, each member's epoch key.
        active: bool (M,); an inactive member's state comes back unchanged and
            its metric sums are zero.
        graphdef: The members' common graph definition.
        num_classes: Outputs of the head.
        config: The stage's static step settings.
        vectorize: ``jax.vmap`` over the members (one batched program; float
            rounding differs from the sequential step) or ``jax.lax.map`` (one
            member after the other inside the program, each exactly the
            sequential step; inactive members are skipped by ``lax.cond``).

    Returns:
        The new stacked state and metric sums, each (M,).
    """

    def member(state, indices, rng, active):
        def step(state):
            return train.train_step(
                state,
                images,
                labels,
                indices,
                rng,
                graphdef=graphdef,
                num_classes=num_classes,
                config=config,
            )

        if not vectorize:  # one member at a time: an inactive one costs nothing
            skip = jax.eval_shape(step, state)[1]
            return jax.lax.cond(
                active,
                step,
                lambda state: (state, jax.tree.map(jnp.zeros_like, skip)),
                state,
            )
        new_state, sums = step(state)
        new_state = jax.tree.map(
            lambda new, old: jnp.where(active, new, old), new_state, state
        )
        sums = {k: jnp.where(active, v, jnp.zeros_like(v)) for k, v in sums.items()}
        return new_state, sums

    return _over_members(member, vectorize)(state, indices, rngs, active)


def vectorize_by_default() -> bool:
    """Whether an ensemble is faster vmapped than ``lax.map``-ped on this platform.

    Measured with ResNet50 (benchmarks/RESULTS.md): on an H200 ``lax.map`` ran 5
    members 2.3x faster than vmap (whose convolutions become grouped ones) in 40%
    less memory; on a 2-core CPU vmap was faster (XLA:CPU runs loop bodies slowly).
    TPUs are unmeasured and take ``lax.map`` with the GPUs.
    """
    return jax.default_backend() == "cpu"


def _over_members(fn: Callable, vectorize: bool) -> Callable:
    """``fn`` over the leading member axis of its arguments: vmap or lax.map."""
    if vectorize:
        return jax.vmap(fn)
    return lambda *args: jax.lax.map(lambda xs: fn(*xs), args)


def ensemble_eval_step(
    state: train.TrainState,
    images: jax.Array,
    labels: jax.Array,
    indices: jax.Array,
    mask: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: train.StepConfig,
    vectorize: bool = True,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """``train.eval_step`` of every member: sums (M,), probabilities (M, b, C).

    ``indices`` (M, b) are pool indices and ``mask`` (M, b) marks real examples.
    """

    def member(state, indices, mask):
        return train.eval_step(
            state,
            images,
            labels,
            indices,
            mask,
            graphdef=graphdef,
            num_classes=num_classes,
            config=config,
        )

    return _over_members(member, vectorize)(state, indices, mask)


@functools.lru_cache(maxsize=32)
def make_ensemble_steps(
    graphdef: nnx.GraphDef,
    num_classes: int,
    config: train.StepConfig,
    vectorize: bool = True,
):
    """The jitted ``(train_step, eval_step)`` of an ensemble stage (cached)."""
    static = dict(
        graphdef=graphdef, num_classes=num_classes, config=config, vectorize=vectorize
    )
    train_ = jax.jit(functools.partial(ensemble_train_step, **static), donate_argnums=0)
    eval_ = jax.jit(functools.partial(ensemble_eval_step, **static))
    return train_, eval_


def evaluate(
    step: Callable, state: train.TrainState, pool: Pool, batch_size: int
) -> list[dict[str, float]]:
    """Every member's loss and accuracy over its split, as ``train.evaluate``.

    Member m's j-th batch holds the same examples at the same positions as in
    ``train.padded_batches``; batches past the end of its split are fully masked
    and add exact zeros to its sums.
    """
    sums = []
    for start in range(0, int(pool.sizes.max()), batch_size):
        local = np.arange(start, start + batch_size)  # (b,)
        mask = local[None, :] < pool.sizes[:, None]  # (M, b)
        indices = pool.offsets[:, None] + np.where(mask, local[None, :], 0)
        batch_sums, _ = step(state, pool.images, pool.labels, indices, mask)
        sums.append(batch_sums)
    sums = jax.device_get(sums)
    results = []
    for m in range(len(pool.sizes)):
        total = {k: sum(s[k][m] for s in sums) for k in sums[0]}
        results.append(
            {
                "loss": float(total["loss"] / total["count"]),
                "accuracy": float(total["correct"] / total["count"]),
            }
        )
    return results


def _epoch_calls(
    batches: list[list[np.ndarray] | None], offsets: np.ndarray, num_members: int
):
    """The vmapped calls of one epoch: ``(indices (M, b), active (M,))`` each.

    ``batches[m]`` is member m's list of index batches, or None if it is not
    training. Step k groups the members by the size of their k-th batch.
    """
    num_steps = max((len(b) for b in batches if b is not None), default=0)
    for k in range(num_steps):
        sizes = {}
        for m, member_batches in enumerate(batches):
            if member_batches is not None and k < len(member_batches):
                sizes.setdefault(len(member_batches[k]), []).append(m)
        for size in sorted(sizes, reverse=True):
            indices = np.zeros((num_members, size), np.int64)  # masked: any index
            active = np.zeros(num_members, bool)
            for m in sizes[size]:
                indices[m] = offsets[m] + batches[m][k]
                active[m] = True
            yield indices, active


def _weights(state: train.TrainState):
    return (state.trainable, state.frozen, state.batch_stats)


def group_key(model: nnx.Module, stages: Sequence[fit.Stage]) -> Hashable:
    """Runs with equal keys can share an ensemble (same program, same stages)."""
    graphdef, _ = nnx.split(model)
    return graphdef, tuple(stages)


def run_members(
    members: Sequence[Member],
    stages: list[fit.Stage],
    *,
    num_classes: int,
    step_config: train.StepConfig,
    batch_size: int,
    eval_batch_size: int,
    checkpointer: fit.RunCheckpointer,
    log: Callable[[str, dict], None] = lambda name, record: None,
    vectorize: bool | None = None,
    mesh: Mesh | None = None,
) -> dict[str, list[dict]]:
    """Trains every member's model through ``stages`` in place, as one ensemble.

    The ensemble counterpart of ``fit.run_stages`` (same arguments per member):
    each member ends with the weights, and returns the history, of
    ``fit.run_stages`` on its model, data and key. Resumes from
    ``checkpointer`` if it holds this ensemble's progress.

    Args:
        members: The runs; distinct names, one common architecture.
        stages: The stages every member goes through.
        num_classes: Outputs of the head.
        step_config: Static step settings (learning rate and BatchNorm mode are
            set per stage).
        batch_size: Training batch size B (ceil(N_m/B) steps per epoch).
        eval_batch_size: Validation batch size.
        checkpointer: Where the ensemble's per-epoch progress goes.
        log: Called with ``(member name, record)`` after each member's epoch.
        vectorize: vmap the members or ``lax.map`` them (exact, see
            ``ensemble_train_step``); None picks the platform's faster mode
            (``vectorize_by_default``).
        mesh: As in ``fit.run_stages``: the stacked state is replicated over its
            devices and every member's batch is split over them (the members'
            data must already be replicated there).

    Returns:
        Each member's per-epoch history (all stages), by name.

    Raises:
        ValueError: Members with duplicate names, differing architectures, or a
            checkpoint of a different ensemble.
        fit.NonFiniteLoss: A member's training loss became NaN or inf; the last
            good checkpoint (previous epoch) is kept.
    """
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be distinct: {names}")
    graphdefs = {nnx.split(m.model)[0] for m in members}
    if len(graphdefs) != 1:
        raise ValueError(
            "members must share one architecture (nnx.GraphDef), e.g. the same "
            "head dropout; partition them with ensemble.group_key"
        )
    num_members = len(members)
    if vectorize is None:
        vectorize = vectorize_by_default()
    logging.info(
        "ensemble of %d members, %s", num_members, "vmapped" if vectorize else "lax.map"
    )
    step_config, sync_every_step = fit.for_mesh(step_config, mesh)
    pools = {s: make_pool([m.data[s] for m in members]) for s in ("train", "val")}
    saved = checkpointer.progress()
    if saved is not None and [p["name"] for p in saved["members"]] != names:
        raise ValueError(
            f"checkpoint holds members {[p['name'] for p in saved['members']]}, "
            f"not {names}"
        )
    start_stage = saved["stage"] if saved else 0
    histories = [p["history"] for p in saved["members"]] if saved else None
    histories = histories or [[] for _ in members]
    for index in range(start_stage, len(stages)):
        stage = stages[index]
        stage_config = dataclasses.replace(
            step_config, learning_rate=stage.learning_rate, bn_train=stage.bn_train
        )
        trainable = train.head_only if stage.head_only else nnx.Param
        created = [
            train.create_state(m.model, stage_config.optimizer, trainable)
            for m in members
        ]
        graphdef = created[0][0]
        state = stack([s for _, s in created])
        del created
        if mesh is not None:
            state = sharding.put_replicated(state, mesh)
        best = train.copy_weights(state)
        stoppers = [train.EarlyStopping(stage.mode, stage.patience) for _ in members]
        stopped = [False] * num_members
        start_epoch = 0
        if saved and saved["stage"] == index:
            state, best = checkpointer.restore(state, _weights(best))
            best = state.replace(
                trainable=best[0], frozen=best[1], batch_stats=best[2], opt_state=None
            )
            stoppers = [
                train.EarlyStopping(**p["early_stopping"]) for p in saved["members"]
            ]
            stopped = [p["stopped"] for p in saved["members"]]
            start_epoch = stage.num_epochs if saved["stage_done"] else saved["epoch"]
            logging.info(
                "resuming ensemble stage %s at epoch %d", stage.name, start_epoch
            )
        # Committed where the data is, fresh or restored alike: mixing committed
        # (restored) and uncommitted leaves would compile the steps again.
        if mesh is None:  # with a mesh, put_replicated committed it above
            state = jax.device_put(state, pools["train"].images.sharding)
        train_step, eval_step = make_ensemble_steps(
            graphdef, num_classes, stage_config, vectorize
        )
        stage_rngs = [jax.random.fold_in(m.rng, index) for m in members]
        for epoch in range(start_epoch, stage.num_epochs):
            batches, step_rngs = [], []
            for m in range(num_members):
                shuffle_rng, step_rng = jax.random.split(
                    jax.random.fold_in(stage_rngs[m], epoch)
                )
                step_rngs.append(step_rng)
                batches.append(
                    None
                    if stopped[m]
                    else train.epoch_batches(
                        shuffle_rng, int(pools["train"].sizes[m]), batch_size
                    )
                )
            step_rngs = jnp.stack(step_rngs)  # (M,) keys
            start = time.perf_counter()
            sums = []
            for indices, active in _epoch_calls(
                batches, pools["train"].offsets, num_members
            ):
                state, step_sums = train_step(
                    state,
                    pools["train"].images,
                    pools["train"].labels,
                    indices,
                    step_rngs,
                    active,
                )
                if sync_every_step:
                    jax.block_until_ready(state)
                sums.append(step_sums)
            sums = jax.device_get(sums)  # one transfer per epoch
            seconds = time.perf_counter() - start
            training = [m for m in range(num_members) if not stopped[m]]
            totals = {
                m: {k: sum(s[k][m] for s in sums) for k in ("loss", "correct", "count")}
                for m in training
            }
            bad = [
                names[m]
                for m in training
                if not np.isfinite(totals[m]["loss"] / totals[m]["count"])
            ]
            if bad:
                raise fit.NonFiniteLoss(
                    f"ensemble members {bad}: non-finite training loss in stage "
                    f"{stage.name}, epoch {epoch + 1}; the last good checkpoint "
                    f"(epoch {epoch}) is kept"
                )
            val = evaluate(eval_step, state, pools["val"], eval_batch_size)
            improved = np.zeros(num_members, bool)
            for m in training:
                improved[m], stop = stoppers[m].update(val[m][stage.monitor], epoch)
                stopped[m] = stop
                record = {
                    "stage": stage.name,
                    "epoch": epoch + 1,
                    "train/loss": float(totals[m]["loss"] / totals[m]["count"]),
                    "train/accuracy": float(totals[m]["correct"] / totals[m]["count"]),
                    "val/loss": val[m]["loss"],
                    "val/accuracy": val[m]["accuracy"],
                    # The member's images over the whole ensemble's epoch time.
                    "timing/images_per_s": float(pools["train"].sizes[m]) / seconds,
                    "timing/ensemble_images_per_s": float(
                        sum(pools["train"].sizes[i] for i in training)
                    )
                    / seconds,
                }
                histories[m].append(record)
                log(names[m], record)
            if stage.keep_best and improved.any():
                best = _select_jit(
                    jnp.asarray(improved), _weights(state), _weights(best)
                )
                best = state.replace(
                    trainable=best[0],
                    frozen=best[1],
                    batch_stats=best[2],
                    opt_state=None,
                )
            done = all(stopped) or epoch + 1 == stage.num_epochs
            checkpointer.save(
                {
                    "stage": index,
                    "epoch": epoch + 1,
                    "stage_done": done,
                    "members": [
                        {
                            "name": names[m],
                            "early_stopping": dataclasses.asdict(stoppers[m]),
                            "stopped": stopped[m],
                            "history": histories[m],
                        }
                        for m in range(num_members)
                    ],
                },
                state,
                _weights(best),
            )
            if done:
                break
        final = best if stage.keep_best else state
        for m, member in enumerate(members):
            nnx.update(member.model, *unstack(_weights(final), m))
        del state, best, final
    return dict(zip(names, histories, strict=True))
