"""The training engine: runs as members of one jitted step, over a device mesh.

A run is one (source, freeze, fold) of the grid, or the demo's pre-training; a run
trained alone is an ensemble of one. ``train`` takes runs that share an
architecture and a list of ``Stage`` s and trains them stage by stage
(docs/training.md#stages):

* **Slots.** The stacked train state has a leading axis of member slots, split
  over the mesh's ``members`` axis (``training.mesh``): slot ``j`` lives on the
  ``j // K``-th group of devices, K slots per group. A member's batch is split
  over the ``data`` axis of its group. The step is a ``shard_map`` over
  ``members``, so no collective crosses member slots.
* **Waves.** Runs waiting for a stage fill free slots in turn, devices first. A
  run that stops early frees its slot, which the next waiting run takes at the
  next epoch boundary; each member keeps its own epoch count, keys, early
  stopping and best weights. A stage ends when no run waits for it.
* **Member modes.** The K slots of a device group run one after another in
  separate calls (``loop``: CPUs, where XLA runs loop bodies slowly), one after
  another inside one program (``map``: ``lax.map``, accelerators), or batched
  (``vmap``). A stopped member's step is skipped (``lax.cond``) or masked.
* **Exactness.** Each member sees what its run alone would: the batch shapes of
  Keras's epochs (step k groups members by the size of their k-th batch, others
  masked), its keys ``fold_in(fold_in(run.rng, stage), epoch)``, its own
  BatchNorm statistics. ``loop`` and ``map`` compute each member with the
  single-run program; ``vmap`` batches convolutions and differs by float rounding.
* **One evaluation path.** Validation after every epoch and the test split at a
  run's end go through the same masked, padded eval step; its probabilities are
  what the analysis reads.
* **Checkpoints.** Each run checkpoints into its own directory
  (``training.checkpoint``), from a background thread, at most every
  ``Settings.checkpoint_every_s`` and at the end of each stage but its last; a
  run resumes in whatever slot it gets, exactly where its checkpoint stopped.
* **Cohorts.** The mesh and every stage's slots are sized for the runs first
  started together (``cohort``), not for those still training: a run resumed
  after the others finished computes with the programs it started in, so its
  results are bit for bit those of an uninterrupted run.
"""

import contextlib
import copy
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec
from tqdm import tqdm

from jaxtransfer.training import mesh as mesh_lib
from jaxtransfer.training import steps
from jaxtransfer.training.checkpoint import BackgroundSaves, RunCheckpointer

MEMBER_MODES = ("loop", "map", "vmap")
MONITORS = ("loss", "accuracy")  # what a stage's early stopping can watch


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run (docs/training.md#stages)."""

    name: str  # 'head', 'finetune', 'pretrain'
    learning_rate: float
    num_epochs: int
    monitor: str  # one of MONITORS (on the validation split)
    patience: int
    head_only: bool  # train the head alone, backbone frozen
    bn_train: bool  # BatchNorm on batch statistics while training
    keep_best: bool  # end on the best-monitored weights (Keras ModelCheckpoint)

    @property
    def mode(self) -> str:
        return "min" if self.monitor == "loss" else "max"


@dataclasses.dataclass
class Split:
    """A split: uint8 images (N, H, W, 3) and int labels (N,), host or device."""

    images: np.ndarray | jax.Array
    labels: np.ndarray | jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass
class Run:
    """One run to train.

    Attributes:
        name: Unique among the runs trained together; names its records.
        model: The starting model; it ends holding the run's final weights.
        data: Splits by name: ``train`` and ``val``; ``test`` is tested at the end.
        rng: The run's key.
        checkpoint_dir: Where its checkpoints go; None trains without them.
    """

    name: str
    model: nnx.Module
    data: dict[str, Split]
    rng: jax.Array
    checkpoint_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the loop runs; none of it changes a run's numbers beyond rounding."""

    batch_size: int
    eval_batch_size: int
    member_mode: str = "auto"  # 'auto' picks the platform's: loop (CPU) or map
    members: int | None = None  # devices along the members axis; None: factorize
    slots_per_device: int | None = None  # None: the whole cohort in one wave
    checkpoint_every_s: float = 60.0
    progress: bool = True
    # (labels, probs) -> the validation AUC of an epoch: logged as val/auc and
    # shown in the progress bar. None: loss and accuracy only.
    val_auc: Callable[[np.ndarray, np.ndarray], float] | None = None


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


class Callbacks:
    """What the caller hears from the loop (process 0 decides what to write)."""

    def epoch(self, run: Run, record: dict) -> None:
        """After each of a run's epochs."""

    def resumed(self, run: Run, history: list[dict]) -> None:
        """A run was restored from its checkpoint with this history."""

    def failed(self, run: Run, history: list[dict], failure: dict) -> None:
        """A run's training loss became NaN or inf; it trains no further.

        ``failure`` says where (stage, epoch, loss); ``history`` holds its good
        epochs, and its checkpoint the last good save. The other runs go on.
        """

    def finished(self, run: Run, history: list[dict], test: dict | None, probs) -> None:
        """A run ended its last stage; ``run.model`` holds its final weights.

        ``test`` (loss, accuracy) and ``probs`` (N, C) are its test split's, or
        None without one.
        """


@dataclasses.dataclass
class Timings:
    """Where the loop's wall-clock time went, in seconds."""

    compile: float = 0.0
    train: float = 0.0
    eval: float = 0.0
    checkpoint: float = 0.0
    input: float = 0.0
    idle: float = 0.0  # the rest of ``train``: host bookkeeping between calls
    train_images: int = 0
    train_calls: int = 0

    @contextlib.contextmanager
    def measure(self, field: str):
        """Times the block into ``field``, less the blocks nested in it and the
        compilation inside it, which goes to ``compile``."""
        stack = self.__dict__.setdefault("_open", [])
        stack.append([0.0, 0.0])  # time and compilation of nested blocks
        compiled, start = _compile_seconds(), time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            compile_time = min(_compile_seconds() - compiled, spent)
            nested, nested_compile = stack.pop()
            own_compile = compile_time - nested_compile
            self.compile += own_compile
            setattr(self, field, getattr(self, field) + spent - nested - own_compile)
            if stack:
                stack[-1][0] += spent
                stack[-1][1] += compile_time

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """One line: each part's seconds, and checkpoints' share of epoch time."""
        epochs = self.train + self.eval + self.checkpoint + self.input
        share = self.checkpoint / epochs if epochs else 0.0
        return (
            f"compile {self.compile:.1f} s, train {self.train:.1f} s, eval "
            f"{self.eval:.1f} s, checkpoint {self.checkpoint:.1f} s "
            f"({share:.1%} of epoch time), input {self.input:.1f} s, other "
            f"{self.idle:.1f} s"
        )


_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_total = [0.0]


def _on_event(name: str, seconds: float, **_) -> None:
    if name in _COMPILE_EVENTS:
        _compile_total[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


def _compile_seconds() -> float:
    return _compile_total[0]


def default_member_mode(mesh: Mesh) -> str:
    """The platform's faster way to run a device's slots (benchmarks/RESULTS.md):
    one call each on CPUs, ``lax.map`` in one program on accelerators."""
    return "loop" if mesh.devices.flat[0].platform == "cpu" else "map"


# --- programs -------------------------------------------------------------------


def _row(tree, row):
    return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, row, 0, False), tree)


def _set_row(tree, row, new):
    return jax.tree.map(
        lambda x, n: jax.lax.dynamic_update_index_in_dim(x, n, row, 0), tree, new
    )


def _over_slots(member, mode: str, args, active, row, skipped):
    """``member`` over a device's K slots (leading axis of ``args``).

    ``skipped(args)`` is an inactive member's output. Returns outputs with the
    leading K axis; in ``loop`` mode only slot ``row`` is computed, the others
    come back as ``skipped``.
    """

    def guarded(one, is_active):
        return jax.lax.cond(is_active, member, skipped, one)

    if mode == "loop":
        one = _row(args, row)
        out = guarded(one, active[row])
        return _set_row(jax.vmap(skipped)(args), row, out)
    if mode == "map":
        return jax.lax.map(lambda xs: guarded(xs[0], xs[1]), (args, active))

    def masked(one, is_active):
        out, skip = member(one), skipped(one)
        return jax.tree.map(lambda a, b: jnp.where(is_active, a, b), out, skip)

    return jax.vmap(masked)(args, active)


@functools.lru_cache(maxsize=32)
def programs(graphdef, num_classes: int, config: steps.StepConfig, mesh, mode: str):
    """The jitted ``(train, evaluate)`` over member slots of a stage (cached).

    ``train(state, images, labels, indices, keys, active, row)`` and
    ``evaluate(weights, images, labels, indices, mask, row)`` take slot-stacked
    state and (slots, b) pool indices; their sums and probabilities come back
    replicated, so every process reads them.
    """
    data_parallel = mesh.shape[steps.DATA_AXIS] > 1
    static = dict(
        graphdef=graphdef,
        num_classes=num_classes,
        config=config,
        data_parallel=data_parallel,
    )
    members, everyone = PartitionSpec(mesh_lib.MEMBERS_AXIS), PartitionSpec()

    def train_local(state, images, labels, indices, keys, active, row):
        def member(args):
            state, indices, key = args
            rng = jax.random.wrap_key_data(key)
            return steps.train_step(state, images, labels, indices, rng, **static)

        def skipped(args):
            out_shape = jax.eval_shape(member, args)[1]
            return args[0], jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), out_shape
            )

        return _over_slots(member, mode, (state, indices, keys), active, row, skipped)

    def eval_local(weights, images, labels, indices, mask, row):
        def member(args):
            weights, indices, mask = args
            return steps.eval_step(weights, images, labels, indices, mask, **static)

        def skipped(args):
            shapes = jax.eval_shape(member, args)
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        active = mask.any(axis=1)
        return _over_slots(member, mode, (weights, indices, mask), active, row, skipped)

    def shard(fn, in_specs, out_specs):
        return jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=in_specs,
            out_specs=out_specs,
            axis_names={mesh_lib.MEMBERS_AXIS},
            check_vma=False,  # skipped members return unvarying zeros
        )

    sharded_train = shard(
        train_local,
        (members, everyone, everyone, members, members, members, everyone),
        (members, members),
    )
    sharded_eval = shard(
        eval_local,
        (members, everyone, everyone, members, members, everyone),
        (members, members),
    )
    replicated = mesh_lib.replicated(mesh)

    def train(*args):
        state, sums = sharded_train(*args)
        return state, jax.lax.with_sharding_constraint(sums, replicated)

    def evaluate(*args):
        return jax.lax.with_sharding_constraint(sharded_eval(*args), replicated)

    return jax.jit(train, donate_argnums=0), jax.jit(evaluate)


@functools.lru_cache(maxsize=8)
def _slot_ops(mesh: Mesh):
    """Jitted slot operations: put a member in, take one out, select per slot."""
    by_member, replicated = mesh_lib.by_member(mesh), mesh_lib.replicated(mesh)

    def put(stacked, member, slot):
        return jax.tree.map(
            lambda s, m: jax.lax.dynamic_update_index_in_dim(s, m, slot, 0),
            stacked,
            member,
        )

    def take(stacked, slot):
        return _row(stacked, slot)

    def select(mask, new, old):
        return jax.tree.map(
            lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
            new,
            old,
        )

    return (
        jax.jit(put, donate_argnums=0, out_shardings=by_member),
        jax.jit(take, out_shardings=replicated),
        jax.jit(select, donate_argnums=2, out_shardings=by_member),
    )


def _zeros(like, slots: int, mesh: Mesh):
    """A slot-stacked tree of zeros shaped like ``like``, split over members."""
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    return jax.jit(
        lambda: jax.tree.map(lambda s: jnp.zeros((slots, *s.shape), s.dtype), shapes),
        out_shardings=mesh_lib.by_member(mesh),
    )()


# --- data -----------------------------------------------------------------------


@dataclasses.dataclass
class Pool:
    """Every run's split of one name on device, each distinct split once."""

    images: jax.Array  # uint8 (P, H, W, 3), replicated over the mesh
    labels: jax.Array  # int32 (P,)
    where: dict[str, tuple[int, int]]  # run name -> (offset, size)


def make_pool(runs: Sequence[Run], split: str, mesh: Mesh) -> Pool | None:
    """Concatenates the runs' ``split`` s (shared ones once) onto every device."""
    if not all(split in run.data for run in runs):
        return None
    distinct, where, start = {}, {}, 0
    for run in runs:
        data = run.data[split]
        if id(data) not in distinct:
            distinct[id(data)] = (data, start)
            start += len(data)
        where[run.name] = (distinct[id(data)][1], len(data))
    parts = [data for data, _ in distinct.values()]
    images = np.concatenate([np.asarray(p.images) for p in parts])
    labels = np.concatenate([np.asarray(p.labels, np.int32) for p in parts])
    images, labels = mesh_lib.put_replicated((images, labels), mesh)
    return Pool(images, labels, where)


# --- the loop -------------------------------------------------------------------


@dataclasses.dataclass
class _Member:
    """A run in a slot: its progress through the current stage."""

    run: Run
    epoch: int  # epochs done in this stage
    stopper: EarlyStopping
    history: list[dict]
    checkpointer: RunCheckpointer | None
    best_auc: float = -math.inf  # this stage's best val/auc (progress bar)


class _Engine:
    """The state of one ``train`` call."""

    def __init__(self, runs, stages, num_classes, step_config, settings, mesh,
                 callbacks, timings, cohort):  # fmt: skip
        self.runs, self.stages, self.cohort = list(runs), list(stages), cohort
        self.num_classes, self.step_config = num_classes, step_config
        self.settings, self.mesh = settings, mesh
        self.callbacks, self.timings = callbacks, timings
        mode = settings.member_mode
        self.mode = default_member_mode(mesh) if mode == "auto" else mode
        if self.mode not in MEMBER_MODES:
            raise ValueError(
                f"config.mesh.member_mode={mode!r}: expected 'auto' or one of "
                f"{MEMBER_MODES}"
            )
        self.groups = mesh.shape[mesh_lib.MEMBERS_AXIS]
        self.block = mesh_lib.block_each_step(mesh)
        self.show = settings.progress and jax.process_index() == 0
        # A mesh of one process's devices (pre-training on process 0) needs no
        # agreement with the others.
        self.spans_processes = len({d.process_index for d in mesh.devices.flat}) > 1
        with timings.measure("input"):
            self.pools = {s: make_pool(runs, s, mesh) for s in ("train", "val", "test")}
        self.histories = {run.name: [] for run in runs}
        self.failures: dict[str, dict] = {}
        self.saved = {}
        for run in runs:
            if run.checkpoint_dir is not None:
                progress = RunCheckpointer(run.checkpoint_dir, run.name)
                self.saved[run.name] = progress.progress()
                progress.close()
            if self.saved.get(run.name):
                self.histories[run.name] = self.saved[run.name]["history"]
                callbacks.resumed(run, self.histories[run.name])
        self.last_save = time.monotonic()
        self.saves = BackgroundSaves(threaded=not self.spans_processes)
        self.checkpointers: dict[str, RunCheckpointer] = {}

    def close(self) -> None:
        """Lands every save started (also after an error) and closes the runs'."""
        with self.timings.measure("checkpoint"):
            try:
                self.saves.close()
            finally:
                for checkpointer in self.checkpointers.values():
                    checkpointer.close()
                self.checkpointers.clear()

    # -- one stage ---------------------------------------------------------------

    def stage(self, index: int) -> None:
        stage = self.stages[index]
        waiting = [
            run for run in self.runs
            if (self.saved.get(run.name) or {"stage": 0})["stage"] <= index
            and run.name not in self.failures
        ]  # fmt: skip
        if not waiting:
            return
        config = dataclasses.replace(
            self.step_config,
            learning_rate=stage.learning_rate,
            bn_train=stage.bn_train,
        )
        trainable = steps.head_only if stage.head_only else nnx.Param
        per_group = math.ceil(self.cohort / self.groups)
        if self.settings.slots_per_device:
            per_group = min(per_group, self.settings.slots_per_device)
        slots = per_group * self.groups
        # Devices first: slot j is local row j % K of device group j // K.
        order = [
            g * per_group + r for r in range(per_group) for g in range(self.groups)
        ]
        graphdef, like = steps.create_state(
            waiting[0].model, config.optimizer, trainable
        )
        state = _zeros(like, slots, self.mesh)
        best = _zeros(like.weights, slots, self.mesh)
        del like
        train_step, eval_step = programs(
            graphdef, self.num_classes, config, self.mesh, self.mode
        )
        put, take, select = _slot_ops(self.mesh)
        members: list[_Member | None] = [None] * slots
        bar = tqdm(
            desc=f"{stage.name}: {len(waiting)} runs in {slots} slots",
            unit="step",
            disable=not self.show,
            leave=False,
        )
        queue = list(waiting)
        while queue or any(members):
            for slot in order:  # free slots take the next waiting runs
                while members[slot] is None and queue:
                    run = queue.pop(0)
                    with self.timings.measure("input"):  # a run onto its slot
                        entered = self._enter(run, index, config, trainable)
                        if entered is None:
                            continue  # its stage was done already
                        member, member_state, member_best = entered
                        state = put(state, member_state, slot)
                        best = put(best, member_best, slot)
                    members[slot] = member
            if not any(members):
                break
            state, best, finished, failed = self._epoch(
                index, members, state, best, train_step, eval_step, select, bar
            )
            for slot, failure in failed.items():
                self._fail(members[slot], failure)
                members[slot] = None
            self._checkpoint(index, members, finished, state, best, take)
            if finished:
                self._finish(index, members, finished, state, best, eval_step, take)
                for slot in finished:
                    members[slot] = None
        bar.close()

    def _enter(self, run: Run, index: int, config, trainable):
        """A waiting run's member, state and best weights (restored if saved)."""
        stage = self.stages[index]
        _, member_state = steps.create_state(run.model, config.optimizer, trainable)
        member_state = mesh_lib.put_replicated(member_state, self.mesh)
        member_best = member_state.weights
        saved = self.saved.get(run.name)
        checkpointer = None
        if run.checkpoint_dir is not None:  # one per run, kept across its stages
            if run.name not in self.checkpointers:
                self.checkpointers[run.name] = RunCheckpointer(
                    run.checkpoint_dir, run.name
                )
            checkpointer = self.checkpointers[run.name]
        member = _Member(
            run, 0, EarlyStopping(stage.mode, stage.patience),
            self.histories[run.name], checkpointer,
        )  # fmt: skip
        if saved and saved["stage"] == index:
            with self.timings.measure("checkpoint"):
                member_state, member_best = checkpointer.restore(
                    member_state, member_best
                )
            member.stopper = EarlyStopping(**saved["early_stopping"])
            member.epoch = saved["epoch"]
            logging.info(
                "resuming %s %s at epoch %d", run.name, stage.name, member.epoch
            )
            if saved.get("stage_done"):  # its stage ended before a restart
                final = member_best if stage.keep_best else member_state.weights
                nnx.update(run.model, *final)
                return None
        return member, member_state, member_best

    def _fail(self, member: _Member, failure: dict) -> None:
        """Takes a diverged run off its slot; its last good save stays."""
        run = member.run
        logging.warning(
            "%s diverged: training loss %s in stage %s, epoch %d; it is marked "
            "failed and the other runs go on",
            run.name, failure["train/loss"], failure["stage"], failure["epoch"],
        )  # fmt: skip
        self.failures[run.name] = failure
        self._land_saves(run)
        self.callbacks.failed(run, member.history, failure)

    def _land_saves(self, run: Run) -> None:
        """Closes a run leaving the engine: its saves land before the caller
        writes its results (which may delete them) or marks it failed."""
        if run.name in self.checkpointers:
            with self.timings.measure("checkpoint"):
                self.saves.submit(self.checkpointers.pop(run.name).close)
                self.saves.wait()

    def _epoch(self, index, members, state, best, train_step, eval_step, select, bar):
        """One epoch of every member.

        Returns the new state and best weights, the slots whose stage ended and
        the slots whose loss was not finite (with where it happened).
        """
        stage = self.stages[index]
        slots, rows = len(members), len(members) // self.groups
        batches, keys = [None] * slots, np.zeros((slots, 2), np.uint32)
        offsets = np.zeros(slots, np.int64)
        with self.timings.measure("input"):
            for slot, member in enumerate(members):
                if member is None:
                    continue
                rng = jax.random.fold_in(
                    jax.random.fold_in(member.run.rng, index), member.epoch
                )
                shuffle_rng, step_rng = jax.random.split(rng)
                keys[slot] = np.asarray(jax.random.key_data(step_rng))
                offsets[slot] = self.pools["train"].where[member.run.name][0]
                size = self.pools["train"].where[member.run.name][1]
                batches[slot] = steps.epoch_batches(
                    shuffle_rng, size, self.settings.batch_size
                )
            keys = mesh_lib.put_replicated(keys, self.mesh)
        pool = self.pools["train"]
        start, sums = time.perf_counter(), []
        with self.timings.measure("train"):
            for indices, active in _epoch_calls(batches, offsets):
                for row, row_active in self._rows(active, rows):
                    with self.timings.measure("input"):
                        args = mesh_lib.put_replicated((indices, row_active), self.mesh)
                    state, step_sums = train_step(
                        state, pool.images, pool.labels, args[0], keys, args[1], row
                    )
                    if self.block:
                        jax.block_until_ready(state)
                    sums.append(step_sums)
                    self.timings.train_calls += 1
                    bar.update()
            sums = jax.device_get(sums)  # one transfer per epoch
        seconds = time.perf_counter() - start
        val = self.evaluate(eval_step, state.weights, "val", members)
        improved = np.zeros(slots, bool)
        finished, failed = [], {}
        images = 0
        for slot, member in enumerate(members):
            if member is None:
                continue
            total = {
                k: sum(s[k][slot] for s in sums) for k in ("loss", "correct", "count")
            }
            images += int(total["count"])
            loss = total["loss"] / total["count"]
            if not np.isfinite(loss):
                failed[slot] = {
                    "stage": stage.name,
                    "epoch": member.epoch + 1,
                    "train/loss": float(loss),
                }
                continue
            improved[slot], stop = member.stopper.update(
                val[slot][0][stage.monitor], member.epoch
            )
            member.epoch += 1
            record = {
                "stage": stage.name,
                "epoch": member.epoch,
                "train/loss": float(loss),
                "train/accuracy": float(total["correct"] / total["count"]),
                "val/loss": val[slot][0]["loss"],
                "val/accuracy": val[slot][0]["accuracy"],
                "timing/images_per_s": float(total["count"]) / seconds,
            }
            if self.settings.val_auc is not None:
                labels = np.asarray(member.run.data["val"].labels)
                record["val/auc"] = float(self.settings.val_auc(labels, val[slot][1]))
                member.best_auc = max(member.best_auc, record["val/auc"])
            member.history.append(record)
            self.callbacks.epoch(member.run, record)
            if stop or member.epoch == stage.num_epochs:
                finished.append(slot)
        self.timings.train_images += images
        if stage.keep_best and improved.any():
            improved = mesh_lib.put_replicated(improved, self.mesh)
            best = select(improved, state.weights, best)
        training = sum(m is not None for m in members) - len(failed)
        bar.set_postfix(
            epoch="/".join(sorted({str(m.epoch) for m in members if m})),
            training=training,
            images_per_s=f"{images / seconds:.0f}",
            **self._best_val(members, stage),
        )
        return state, best, finished, failed

    def _best_val(self, members, stage) -> dict[str, str]:
        """The best validation AUC of the members training, else the monitor."""
        if self.settings.val_auc is not None:
            best = max((m.best_auc for m in members if m), default=-math.inf)
            return {"best_val_auc": f"{best:.3f}" if best > -math.inf else "n/a"}
        values = [m.stopper.best for m in members if m and m.stopper.best is not None]
        best = (min if stage.mode == "min" else max)(values, default=float("nan"))
        return {f"best_val_{stage.monitor}": f"{best:.3f}"}

    def _rows(self, active: np.ndarray, rows: int):
        """The calls that cover ``active`` slots: each row in ``loop`` mode."""
        if self.mode != "loop":
            yield 0, active
            return
        for row in range(rows):
            in_row = active & (np.arange(active.size) % rows == row)
            if in_row.any():
                yield row, in_row

    def evaluate(self, eval_step, weights, split: str, members) -> list:
        """Each slot's ``(metrics, probabilities)`` on its run's ``split``.

        Slot j's b-th batch holds the same examples at the same positions as a
        single run's padded batches would; past its end it is masked.
        """
        slots, rows = len(members), len(members) // self.groups
        pool = self.pools[split]
        offsets, sizes = np.zeros(slots, np.int64), np.zeros(slots, np.int64)
        for slot, member in enumerate(members):
            if member is not None:
                offsets[slot], sizes[slot] = pool.where[member.run.name]
        batch_size = self.settings.eval_batch_size
        outputs = []
        with self.timings.measure("eval"):
            for start in range(0, int(sizes.max()), batch_size):
                local = np.arange(start, start + batch_size)
                mask = local[None, :] < sizes[:, None]
                indices = offsets[:, None] + np.where(mask, local[None, :], 0)
                for row, active in self._rows(mask.any(axis=1), rows):
                    args = mesh_lib.put_replicated(
                        (indices, mask & active[:, None]), self.mesh
                    )
                    out = eval_step(weights, pool.images, pool.labels, *args, row)
                    if self.block:
                        jax.block_until_ready(out)
                    outputs.append((active, out))
            outputs = jax.device_get(outputs)
        results = [None] * slots
        for slot in range(slots):
            if not sizes[slot]:
                continue
            parts = [out for active, out in outputs if active[slot]]
            total = {k: sum(s[k][slot] for s, _ in parts) for k in parts[0][0]}
            probs = np.concatenate([p[slot] for _, p in parts])[: sizes[slot]]
            results[slot] = (
                {
                    "loss": float(total["loss"] / total["count"]),
                    "accuracy": float(total["correct"] / total["count"]),
                },
                probs,
            )
        return results

    def _checkpoint(self, index, members, finished, state, best, take):
        """Stage ends always; the others at most every ``checkpoint_every_s``.

        A run's last stage end is not saved: its results are written next, and a
        run killed before that resumes from its previous save, exactly.
        """
        due = time.monotonic() - self.last_save >= self.settings.checkpoint_every_s
        if self.spans_processes:  # every process saves together, or none does
            due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
        stage, last = self.stages[index], index + 1 == len(self.stages)
        with self.timings.measure("checkpoint"):
            for slot, member in enumerate(members):
                if member is None or member.checkpointer is None:
                    continue
                done = slot in finished
                if not (due or done) or (done and last):
                    continue
                progress = {
                    "stage": index,
                    "epoch": member.epoch,
                    "stage_done": done,
                    "early_stopping": dataclasses.asdict(member.stopper),
                    "history": copy.deepcopy(member.history),  # as of now
                    "stage_name": stage.name,
                }
                self.saves.submit(
                    member.checkpointer.save,
                    progress,
                    take(state, slot),
                    take(best, slot),
                )
            if due:
                self.last_save = time.monotonic()

    def _finish(self, index, members, finished, state, best, eval_step, take):
        """Writes the ending members' final weights; tests them after the last stage."""
        stage = self.stages[index]
        final = best if stage.keep_best else state.weights
        last = index + 1 == len(self.stages)
        tested = [None] * len(members)
        if last and self.pools["test"] is not None:
            ending = [m if s in finished else None for s, m in enumerate(members)]
            tested = self.evaluate(eval_step, final, "test", ending)
        for slot in finished:
            member = members[slot]
            nnx.update(member.run.model, *take(final, slot))
            if last:
                self._land_saves(member.run)
                test, probs = tested[slot] or (None, None)
                self.callbacks.finished(member.run, member.history, test, probs)


def _epoch_calls(batches: list, offsets: np.ndarray):
    """The train calls of one epoch: ``(indices (slots, b), active (slots,))``.

    ``batches[j]`` is slot j's list of index batches, or None if it is empty.
    Step k groups the slots by the size of their k-th batch, so every member
    sees exactly the batch shapes of its run alone.
    """
    slots = len(batches)
    steps_ = max((len(b) for b in batches if b is not None), default=0)
    for k in range(steps_):
        sizes = {}
        for slot, member_batches in enumerate(batches):
            if member_batches is not None and k < len(member_batches):
                sizes.setdefault(len(member_batches[k]), []).append(slot)
        for size in sorted(sizes, reverse=True):
            indices = np.zeros((slots, size), np.int32)  # masked slots: any index
            active = np.zeros(slots, bool)
            for slot in sizes[size]:
                indices[slot] = offsets[slot] + batches[slot][k]
                active[slot] = True
            yield indices, active


def train(
    runs: Sequence[Run],
    stages: Sequence[Stage],
    *,
    num_classes: int,
    step_config: steps.StepConfig,
    settings: Settings,
    mesh: Mesh | None = None,
    callbacks: Callbacks | None = None,
    timings: Timings | None = None,
    cohort: int | None = None,
) -> dict[str, list[dict]]:
    """Trains every run through ``stages``; each run's model ends trained.

    Args:
        runs: Distinct names, one architecture (``nnx.GraphDef``).
        stages: What every run goes through.
        num_classes: Outputs of the head.
        step_config: The steps' math (learning rate and BatchNorm mode per stage).
        settings: Batch sizes and how the loop runs.
        mesh: A ``members`` x ``data`` mesh; default ``training.mesh.make_mesh``
            for ``cohort`` members.
        callbacks: Epoch records, resumption and finished runs.
        timings: Filled with where the time went.
        cohort: How many runs first started together with these, the finished
            ones included (default ``len(runs)``): the mesh and the stages' slots
            are sized for them, so a resumed run is bit for bit as it would
            have been.

    Returns:
        Each run's per-epoch history (all stages), by name. A run whose training
        loss became NaN or inf stops there (``Callbacks.failed``); the others go on.

    Raises:
        ValueError: Duplicate names, differing architectures or a cohort smaller
            than the runs.
    """
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be distinct: {names}")
    cohort = len(runs) if cohort is None else cohort
    if cohort < len(runs):
        raise ValueError(f"cohort={cohort}: expected at least the {len(runs)} runs")
    if len({nnx.graphdef(run.model) for run in runs}) > 1:
        raise ValueError(
            "runs trained together must share one architecture (nnx.GraphDef), "
            "e.g. the same head dropout"
        )
    if mesh is None:
        mesh = mesh_lib.make_mesh(cohort, settings.members)
    timings = timings or Timings()
    with timings.measure("idle"), jax.set_mesh(mesh):  # parts nested are their own
        engine = _Engine(
            runs, stages, num_classes, step_config, settings, mesh,
            callbacks or Callbacks(), timings, cohort,
        )  # fmt: skip
        try:
            for index in range(len(stages)):
                engine.stage(index)
        finally:
            engine.close()
    return engine.histories
