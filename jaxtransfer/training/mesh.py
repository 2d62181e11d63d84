"""The two-axis device mesh, ``members`` x ``data``, and what crosses it.

Runs of the grid are independent, so they go on different devices first: the
``members`` axis holds member slots, and each member's batch is split over the
``data`` axis (docs/training.md#devices). A member's weights, optimizer state,
BatchNorm statistics and gradients live on its own ``data`` group of devices; the
only collectives a train step needs are within that group.
``collectives`` reads them back from a compiled program's text, so tests and
benchmarks count what really crosses devices.
"""

import dataclasses
import math
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtransfer.training.steps import DATA_AXIS

MEMBERS_AXIS = "members"


def factorize(num_members: int, num_devices: int, members: int | None = None) -> int:
    """How many devices the ``members`` axis spans (the rest split each batch).

    The largest divisor of ``num_devices`` not above ``num_members``: 25 members on
    8 devices take 8 member slots per wave, one member on 8 devices is pure data
    parallel. ``members`` overrides (it must divide ``num_devices``).
    """
    if members is not None:
        if members < 1 or num_devices % members:
            raise ValueError(
                f"config.mesh.members={members}: expected a divisor of the "
                f"{num_devices} devices"
            )
        return members
    return max(d for d in range(1, num_devices + 1)
               if num_devices % d == 0 and d <= max(num_members, 1))  # fmt: skip


def make_mesh(num_members: int, members: int | None = None, devices=None) -> Mesh:
    """A ``members`` x ``data`` mesh over ``devices`` (default: every process's)."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    along_members = factorize(num_members, devices.size, members)
    return Mesh(
        devices.reshape(along_members, devices.size // along_members),
        (MEMBERS_AXIS, DATA_AXIS),
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def by_member(mesh: Mesh) -> NamedSharding:
    """Leading (member slot) axis split over the ``members`` axis."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS))


def put_replicated(tree, mesh: Mesh):
    """Host arrays (identical on every process) onto every device of ``mesh``.

    Each process feeds only its own devices.
    """
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
        tree,
    )


def block_each_step(mesh: Mesh) -> bool:
    """Whether the loop waits for each step before queuing the next: on CPUs.

    A queued CPU step slowed the running one, and with more virtual CPU devices
    than cores jaxlib 0.10 can deadlock with several sharded steps in flight
    (benchmarks/RESULTS.md). Accelerators run queued steps back to back.
    """
    return mesh.devices.flat[0].platform == "cpu"


# --- what crosses devices ------------------------------------------------------

_COLLECTIVE = re.compile(
    r"= (?P<shape>\(.*?\)|\S+) (?P<op>all-reduce|all-gather|reduce-scatter|"
    r"all-to-all|collective-permute)(?:-start)?\("
)
_GROUPS = re.compile(
    r"replica_groups=(\{[{}0-9, ]*\}|\[[0-9,]+\]<=\[[0-9,]+\](?:T\([0-9,]+\))?)"
)
_PAIRS = re.compile(r"source_target_pairs=(\{[{}0-9, ]*\})")
_ARRAY = re.compile(r"(pred|[sufbc]\d+|bf16)\[([0-9,]*)\]")
_BYTES = {"pred": 1, "bf16": 2}


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective of a compiled program."""

    op: str
    bytes: int  # of its result
    groups: tuple[tuple[int, ...], ...]  # device ids that communicate, per group


def _array_bytes(shape: str) -> int:
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        size = _BYTES.get(dtype) or int(dtype[1:]) // 8
        total += size * math.prod(int(d) for d in dims.split(",") if d)
    return total


def _parse_groups(text: str) -> tuple[tuple[int, ...], ...]:
    if text.startswith("{"):
        return tuple(
            tuple(int(i) for i in group.split(",") if i.strip())
            for group in re.findall(r"\{([0-9, ]*)\}", text[1:-1])
        )
    # iota form: [G,N]<=[dims] or [G,N]<=[dims]T(perm)
    shape, rest = text.split("<=")
    dims = rest.split("T(")[0]
    ids = np.arange(math.prod(int(d) for d in dims.strip("[]").split(",")))
    ids = ids.reshape([int(d) for d in dims.strip("[]").split(",")])
    if "T(" in rest:
        ids = ids.transpose(
            [int(p) for p in rest.split("T(")[1].rstrip(")").split(",")]
        )
    groups = ids.reshape([int(d) for d in shape.strip("[]").split(",")])
    return tuple(tuple(int(i) for i in g) for g in groups.reshape(groups.shape[0], -1))


def collectives(hlo_text: str) -> list[Collective]:
    """Every collective in a compiled program's text (``compiled.as_text()``)."""
    found = []
    for line in hlo_text.splitlines():
        match = _COLLECTIVE.search(line)
        if not match:
            continue
        groups = _GROUPS.search(line) or _PAIRS.search(line)
        found.append(
            Collective(
                match["op"],
                _array_bytes(match["shape"]),
                _parse_groups(groups.group(1)) if groups else (),
            )
        )
    return found


def crosses_members(collective: Collective, mesh: Mesh) -> bool:
    """Whether ``collective`` joins devices of different member slots.

    Device ids in a compiled program are positions in the mesh's device order.
    """
    slot_of = np.repeat(np.arange(mesh.shape[MEMBERS_AXIS]), mesh.shape[DATA_AXIS])
    if not collective.groups:  # no groups: every device together
        return mesh.shape[MEMBERS_AXIS] > 1
    return any(len({int(slot_of[i]) for i in group}) > 1 for group in collective.groups)
