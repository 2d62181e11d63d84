"""The engine over devices and processes: same training, no member crosses devices.

Each set-up runs in its own process (the device count is fixed when jax starts):
two runs on 1 device; on 4 devices all data parallel; on 2 processes x 2 devices
as 2 member slots x 2-way data parallel (each member on one process's devices).
And the compiled step's collectives on 4 virtual devices, read from its program
text.
(Commands killed with SIGKILL and re-run: benchmarks/faults.py and its test.)
"""

import json
import sys
from pathlib import Path

import jax
import multiprocess
import numpy as np
import pytest
from flax import nnx

from jaxtransfer.models import pretrained
from jaxtransfer.training import mesh as mesh_lib

SCRIPT = Path(__file__).with_name("engine_run.py")
# Loss and accuracy of differently partitioned programs: the largest reduction is
# BatchNorm's over 16 x 16 x 16 positions, summed in another order.
RTOL = 16 * 16 * 16 * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A compilation cache shared by the module's runs of the same programs."""
    return str(tmp_path_factory.mktemp("compilation_cache"))


def _command(output, cache):
    return [sys.executable, str(SCRIPT), str(output), "--compilation_cache", cache]


def _run(output, cache, *extra, processes=1):
    port = multiprocess.free_port() if processes > 1 else None
    commands = [
        [*_command(output, cache), *extra]
        + (
            [
                "--process",
                str(i),
                "--processes",
                str(processes),
                "--coordinator",
                f"localhost:{port}",
            ]
            if processes > 1
            else []
        )  # fmt: skip
        for i in range(processes)
    ]
    multiprocess.run_together(commands)
    return json.loads(Path(output).read_text())


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, cache):
    return _run(tmp_path_factory.mktemp("one") / "result.json", cache)


def _assert_same_training(actual, expected, exact=False):
    for name, run in expected["runs"].items():
        got = actual["runs"][name]
        assert [(r["stage"], r["epoch"]) for r in got["history"]] == [
            (r["stage"], r["epoch"]) for r in run["history"]
        ]
        for a, e in zip(got["history"], run["history"]):
            for key in ("train/loss", "val/loss", "train/accuracy", "val/accuracy"):
                if exact:
                    assert a[key] == e[key]
                else:
                    np.testing.assert_allclose(a[key], e[key], rtol=RTOL)
        if exact:
            assert got["checksum"] == run["checksum"]
        else:
            np.testing.assert_allclose(got["checksum"], run["checksum"], rtol=RTOL)


def test_pure_data_parallel_matches_one_device(one_device, cache, tmp_path):
    four = _run(tmp_path / "result.json", cache, "--devices", "4", "--members", "1")
    assert four["mesh"] == {"members": 1, "data": 4}
    _assert_same_training(four, one_device)


def _saved_checksum(output):
    """Weight checksum of the model a run saved beside its result."""
    model, _ = pretrained.load(f"{output}.model")
    weights = jax.tree.leaves(nnx.state(model, nnx.Param))
    return float(sum(np.abs(np.asarray(w, np.float64)).sum() for w in weights))


def test_two_processes_match_one(one_device, cache, tmp_path):
    output = tmp_path / "result.json"
    two = _run(output, cache, "--devices", "2", processes=2)
    assert two["devices"] == 4 and two["mesh"] == {"members": 2, "data": 2}
    _assert_same_training(two, one_device)
    # Both processes saved run "a"; exactly its trained weights landed, once.
    assert _saved_checksum(output) == two["runs"]["a"]["checksum"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "result.json",
        "result.json.ckpt",
        "result.json.model",
    ]


@pytest.fixture(scope="module")
def collectives(tmp_path_factory, cache):
    """The 4-slot train step's collectives on 4 devices, per mesh layout."""
    output = tmp_path_factory.mktemp("collectives") / "result.json"
    found = _run(output, cache, "--devices", "4", "--collectives", "4,2,1")
    return {int(members): result for members, result in found.items()}


def test_no_parameter_sized_collective_crosses_members(collectives):
    for members in (4, 2):
        result = collectives[members]
        crossing = [c for c in result["collectives"] if c["crosses_members"]]
        # The only traffic between member slots: the step's metric sums (a few
        # floats per slot), gathered for the host; nothing parameter-sized.
        assert all(c["bytes"] < 1024 for c in crossing), crossing
        assert sum(c["bytes"] for c in crossing) < result["param_bytes"] / 100
    # 2 x 2: each member's gradients are reduced, within its own two devices.
    within = [c for c in collectives[2]["collectives"] if not c["crosses_members"]]
    assert sum(c["bytes"] for c in within) >= collectives[2]["param_bytes"]


def test_members_move_under_one_percent_of_the_replicated_layouts_bytes(collectives):
    def total(result):
        return sum(c["bytes"] for c in result["collectives"])

    replicated = total(collectives[1])  # every member's gradients all-reduced
    assert replicated >= collectives[1]["param_bytes"]
    assert total(collectives[4]) < replicated / 100


def test_factorization_puts_members_on_devices_first():
    assert mesh_lib.factorize(25, 8) == 8  # waves of 8 slots
    assert mesh_lib.factorize(1, 8) == 1  # pure data parallel
    assert mesh_lib.factorize(3, 8) == 2  # 2 slots, each over 4 devices
    assert mesh_lib.factorize(3, 8, members=4) == 4
    with pytest.raises(ValueError, match="config.mesh.members=3: expected a divisor"):
        mesh_lib.factorize(3, 8, members=3)


def test_collectives_are_read_from_program_text():
    text = "\n".join(
        [
            "  %a = f32[128]{0} all-reduce(%x), channel_id=1, "
            "replica_groups=[2,2]<=[4], use_global_device_ids=true",
            "  %b = (f32[8,4]{1,0}, bf16[2]{0}) all-reduce(%y, %z), "
            "replica_groups={{0,2},{1,3}}, to_apply=%add",
            "  %c = f32[16]{0} all-gather(%w), replica_groups=[2,2]<=[2,2]T(1,0)",
        ]
    )
    found = mesh_lib.collectives(text)
    assert [(c.op, c.bytes) for c in found] == [
        ("all-reduce", 512),
        ("all-reduce", 8 * 4 * 4 + 2 * 2),
        ("all-gather", 64),
    ]
    assert found[0].groups == ((0, 1), (2, 3))
    assert found[1].groups == ((0, 2), (1, 3))
    assert found[2].groups == ((0, 2), (1, 3))
    mesh = type("Mesh", (), {"shape": {"members": 2, "data": 2}})()
    assert [mesh_lib.crosses_members(c, mesh) for c in found] == [False, True, True]
