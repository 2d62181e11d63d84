"""Fault injection: every command killed at seeded random points, then re-run.

For each command, an uninterrupted run on fresh inputs gives the reference
outputs and its wall time T. Each trial starts the same command on fresh inputs,
sends SIGKILL at a point drawn uniformly in (0, 0.9 T), runs the same command again
to its end, and checks that

- the re-run exits with status 0;
- no partial or temporary file is left (``.partial``, ``tmp``, ``incomplete``,
  a lock);
- the final outputs are byte-identical to the reference's.

The commands, on the synthetic breast target at 32 px with the tiny model:

  prepare    python -m jaxtransfer.data.prepare (the prepared splits' arrays)
  keras_h5   python -m converters.keras_h5 --overwrite, a Keras-written full-model
             ResNet50 file (every array and the metadata of the checkpoint)
  grid       python -m jaxtransfer.main, the stand-in sources pre-trained
             inside it (AUC.csv)
  analyze    python -m jaxtransfer.analyze on the finished grid (analysis/*.csv)
  pool       python -m jaxtransfer.pool over the analysed grid (*.csv)

Prints one JSON row per command on stdout and a table on stderr (the figures of
docs/reliability.md#killed-anywhere):

  python benchmarks/faults.py                      # 10 kills per command
  python benchmarks/faults.py --kills 1 --commands prepare,pool
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMANDS = ("prepare", "keras_h5", "grid", "analyze", "pool")
# Kill points are drawn over this share of the reference's wall time, so that a
# trial running a little faster than the reference is still killed.
KILL_WINDOW = 0.9
LEFTOVER = re.compile(r"\.partial|tmp|incomplete|^\.lock$", re.IGNORECASE)
CONFIG = """
from configs import demo


def get_config(arg=None):
    config = demo.get_config(arg)
    config.data.manual_dir = {raw!r}
    config.data.data_dir = {data!r}
    config.init.ImageNet = {sources!r} + "/ImageNet"
    config.init.RadImageNet = {sources!r} + "/RadImageNet"
    config.init.synthetic_epochs = 1
    config.data.synthetic_options.counts = dict(benign=20, malignant=16, normal=8)
    config.grid.sources = ("ImageNet", "RadImageNet")
    config.grid.freeze = (False,)
    config.grid.folds = (1,)
    config.train.num_epochs = 2
    config.train.checkpoint_every_s = 0.0  # a save after every epoch to resume from
    config.analysis.enabled = {analysis}
    return config
"""


def _digest_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _digest_arrays(arrays) -> str:
    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        if array.dtype == object:  # strings: their text, not their addresses
            array = array.astype(str)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class Case:
    """A command on its inputs: ``prepare`` makes fresh inputs in a directory,
    ``command`` runs on them, ``outputs`` digests what it wrote."""

    def __init__(self, shared: Path):
        self.shared = shared  # inputs made once for every trial

    def prepare(self, trial: Path) -> None:
        trial.mkdir(parents=True)

    def command(self, trial: Path) -> list[str]:
        raise NotImplementedError

    def outputs(self, trial: Path) -> str:
        raise NotImplementedError

    def written(self, trial: Path) -> Path:
        """Where the command writes (searched for leftovers)."""
        return trial


def _synthetic_raw(path: Path, images: int) -> None:
    """The breast download with ``images`` images (5:4:2, benign:malignant:normal)."""
    from jaxtransfer.data import synthetic

    counts = {"benign": 5, "malignant": 4, "normal": 2}
    counts = {k: max(5, round(images * v / 11)) for k, v in counts.items()}
    synthetic.write_target("breast", path, image_size=64, counts=counts)


class Prepare(Case):
    def command(self, trial):
        return [
            "-m", "jaxtransfer.data.prepare", "--dataset", "breast",
            "--manual_dir", str(self.shared / "raw"), "--data_dir", str(trial / "data"),
            "--size", "32", "--no_progress",
        ]  # fmt: skip

    def outputs(self, trial):
        from jaxtransfer.data import builders, loader

        directory = builders.prepared_dir(trial / "data", "breast", 32)
        arrays = []
        for split in builders.stored_split_names():
            part = loader.load_split(directory, split)
            arrays += [part.images, part.labels, part.paths]
        return _digest_arrays(arrays)


class KerasH5(Case):
    def command(self, trial):
        return [
            "-m", "converters.keras_h5", "--input", str(self.shared / "resnet50.h5"),
            "--output", str(trial / "checkpoint"), "--overwrite",
        ]  # fmt: skip

    def outputs(self, trial):
        import jax
        from flax import nnx

        from jaxtransfer.models import pretrained

        model, metadata = pretrained.load(trial / "checkpoint")
        leaves = jax.tree.leaves(nnx.state(model))
        return _digest_arrays(leaves) + json.dumps(metadata, sort_keys=True)


class Grid(Case):
    def prepare(self, trial):
        super().prepare(trial)
        (trial / "config.py").write_text(
            CONFIG.format(
                raw=str(trial / "raw"),
                data=str(trial / "data"),
                sources=str(trial / "sources"),
                analysis=False,
            )
        )

    def command(self, trial):
        return [
            "-m", "jaxtransfer.main", f"--config={trial / 'config.py'}",
            f"--workdir={trial / 'run'}",
        ]  # fmt: skip

    def outputs(self, trial):
        """AUC.csv, and each run's log holding each epoch once."""
        logs = sorted((trial / "run").glob("*/fold*/log.jsonl"))
        lines = [len(log.read_text().splitlines()) for log in logs]
        return _digest_files([trial / "run" / "AUC.csv"]) + f" epochs {lines}"


class Analyze(Case):
    """On a copy of the finished grid, without its analysis."""

    def prepare(self, trial):
        shutil.copytree(self.shared / "grid", trial)
        shutil.rmtree(trial / "run" / "analysis", ignore_errors=True)

    def command(self, trial):
        return ["-m", "jaxtransfer.analyze", "--workdir", str(trial / "run")]

    def outputs(self, trial):
        return _digest_files((trial / "run" / "analysis").glob("*.csv"))

    def written(self, trial):
        return trial / "run"


class Pool(Case):
    """Over the analysed grid (read only): the analyze case's reference when it
    ran, else one made for it."""

    def __init__(self, shared: Path):
        super().__init__(shared)
        self.analysed = shared / "analysed"

    def command(self, trial):
        return [
            "-m", "jaxtransfer.pool", "--workdir", str(trial / "pooled"),
            str(self.analysed / "run"),
        ]  # fmt: skip

    def outputs(self, trial):
        return _digest_files((trial / "pooled").glob("*.csv"))


CASES = {
    "prepare": Prepare,
    "keras_h5": KerasH5,
    "grid": Grid,
    "analyze": Analyze,
    "pool": Pool,
}


def _timed(
    args: list[str], timeout: float
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = _run(args, timeout)
    return result, time.perf_counter() - start


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def _leftovers(directory: Path) -> list[str]:
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if LEFTOVER.search(p.name) and ".jax_cache" not in p.parts
    )


def _shared_inputs(
    root: Path, commands, images: int, timeout: float, full_disk: bool
) -> None:
    """What the trials read: the raw download, a Keras file, a finished grid (whose
    compiled programs the grid's runs then find in the cache)."""
    _synthetic_raw(root / "raw", images)
    if "keras_h5" in commands:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        model = keras.applications.ResNet50(
            weights=None, include_top=False, input_shape=(32, 32, 3)
        )
        model.save(root / "resnet50.h5")  # Keras's full-model HDF5
    if full_disk or {"grid", "analyze", "pool"} & set(commands):
        grid = Grid(root)
        grid.prepare(root / "grid")
        result = _run(grid.command(root / "grid"), timeout)
        if result.returncode:
            sys.exit(f"the grid for analyze/pool failed:\n{result.stderr[-3000:]}")
    if "pool" in commands and "analyze" not in commands:
        shutil.copytree(root / "grid", root / "analysed")
        analyze = Analyze(root)
        result = _run(analyze.command(root / "analysed"), timeout)
        if result.returncode:
            sys.exit(f"the analysis for pool failed:\n{result.stderr[-3000:]}")


def kill_anywhere(name: str, case: Case, scratch: Path, kills: int, seed: int,
                  timeout: float) -> dict:  # fmt: skip
    """The reference run, then ``kills`` trials of kill and re-run.

    Kill points are drawn over the reference's wall time, which runs with the
    compilation cache as warm as the trials'.
    """
    reference = scratch / f"{name}-reference"
    case.prepare(reference)
    result, wall = _timed(case.command(reference), timeout)
    if result.returncode:
        sys.exit(f"{name}: the uninterrupted run failed:\n{result.stderr[-3000:]}")
    expected = case.outputs(reference)
    rng = random.Random(f"{seed}-{name}")
    row = {
        "fault": "kill", "command": name, "reference_s": round(wall, 1), "tried": 0,
        "killed": 0,
        "resumed": 0, "identical": 0, "leftovers": 0, "kill_points_s": [],
        "failures": [],
    }  # fmt: skip
    for k in range(kills):
        trial = scratch / f"{name}-{k}"
        case.prepare(trial)
        point = rng.uniform(0, KILL_WINDOW * wall)
        process = subprocess.Popen(
            [sys.executable, *case.command(trial)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            process.wait(timeout=point)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            row["killed"] += 1
        row["tried"] += 1
        row["kill_points_s"].append(round(point, 2))
        again = _run(case.command(trial), timeout)
        if again.returncode:
            row["failures"].append(f"trial {k}: re-run failed: {again.stderr[-500:]}")
            continue
        row["resumed"] += 1
        left = _leftovers(case.written(trial))
        if left:
            row["leftovers"] += 1
            row["failures"].append(f"trial {k}: left {left[:5]}")
        got = case.outputs(trial)
        if got == expected:
            row["identical"] += 1
        else:
            row["failures"].append(
                f"trial {k}: outputs differ from the reference: {got} != {expected}"
            )
        shutil.rmtree(trial, ignore_errors=True)
    return row


# -- a full disk -------------------------------------------------------------------


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mounts a tmpfs of ``size`` at ``path``; why it cannot, or None."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode:
        return f"cannot mount a tmpfs (needs root): {result.stderr.strip()}"
    return None


def _fill(directory: Path, leave: int) -> Path:
    """A file that leaves ``leave`` bytes free on ``directory``'s filesystem."""
    stat = os.statvfs(directory)
    filler = directory / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize - leave)
    return filler


def _clean_error(result: subprocess.CompletedProcess, mount: Path) -> bool:
    """Exit 1, one error naming the full disk and a path on it, no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return (
        result.returncode == 1
        and len(errors) == 1
        and "No space left on device" in errors[0]
        and str(mount) in errors[0]
        and "Traceback" not in result.stderr
    )


def _tree_digest(directory: Path) -> str:
    return _digest_files(p for p in directory.rglob("*") if p.is_file())


def disk_full(name: str, scratch: Path, timeout: float) -> dict:
    """A command that runs out of space on a tmpfs after a finished part.

    prepare: size 32 finished, then size 48 on a nearly full disk. grid: the
    finished grid's workdir without its RadImageNet run, which the grid then
    trains again on a nearly full disk. Each must stop with a clean error, leave
    the finished part byte for byte, and finish once the space is freed.
    """
    mount = scratch / f"full-{name}"
    row = {"fault": "disk_full", "command": name}
    reason = _mount_tmpfs(mount, "256m")
    if reason:
        return {**row, "skipped": reason}
    try:
        if name == "prepare":
            first = Prepare(scratch / "shared").command(mount)
            second = [*first[:-2], "48", "--no_progress"]
            finished = mount / "data" / "breast" / "size32"
            result = _run(first, timeout)
            if result.returncode:
                sys.exit(f"prepare before the full disk failed:\n{result.stderr}")
        else:
            grid = scratch / "shared" / "grid"
            shutil.copytree(grid / "run", mount / "run")
            shutil.rmtree(mount / "run" / "RadImageNet-freezeFalse")
            for result_file in ("AUC.csv", "summary.json"):
                (mount / "run" / result_file).unlink()
            second = [
                "-m", "jaxtransfer.main", f"--config={grid / 'config.py'}",
                f"--workdir={mount / 'run'}",
            ]  # fmt: skip
            finished = mount / "run" / "ImageNet-freezeFalse"
        before = _tree_digest(finished)
        filler = _fill(mount, leave=64 * 1024)
        full = _run(second, timeout)
        intact = _tree_digest(finished) == before
        filler.unlink()
        again = _run(second, timeout)
        return {
            **row, "cases": 1, "clean_errors": int(_clean_error(full, mount)),
            "finished_intact": int(intact), "resumed": int(again.returncode == 0),
            "error": next(
                (
                    x.replace(str(scratch), "<scratch>")  # no machine path in rows
                    for x in full.stderr.splitlines()
                    if x.startswith("error:")
                ),
                None,
            ),
        }  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# -- bad input -----------------------------------------------------------------------


def bad_inputs(scratch: Path, timeout: float) -> dict:
    """The suite's bad-input tests (marked ``bad_input``): kinds and clear errors."""
    report = scratch / "bad_inputs.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "bad_input", "-q", "-p",
         "no:cacheprovider", f"--junitxml={report}"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    cases = ElementTree.parse(report).getroot().iter("testcase")
    outcomes = [
        "passed" if not list(case) else case[0].tag for case in cases
    ]  # a child element is a failure, an error or a skip
    return {
        "fault": "bad_input",
        "kinds": len(outcomes),
        "clear_errors": outcomes.count("passed"),
        "other": sorted(set(outcomes) - {"passed"}),
    }


def _figures(rows: list[dict]) -> str:
    """The figures of docs/reliability.md, from the rows."""
    kills = [r for r in rows if r["fault"] == "kill"]
    full = [r for r in rows if r["fault"] == "disk_full" and "skipped" not in r]
    lines = []
    if kills:
        lines += [
            f"{'killed anywhere':<18} {'tried':>6} {'mid-run':>8} {'resumed':>8} "
            f"{'identical':>10} {'leftovers':>10}"
        ]
        lines += [
            f"{r['command']:<18} {r['tried']:>6} {r['killed']:>8} {r['resumed']:>8} "
            f"{r['identical']:>10} {r['leftovers']:>10}"
            for r in kills
        ]
        total = {k: sum(r[k] for r in kills) for k in ("tried", "resumed", "identical")}
        lines.append(
            f"kills tried / resumed / identical: {total['tried']} / "
            f"{total['resumed']} / {total['identical']}"
        )
    if full:
        total = {
            k: sum(r[k] for r in full) for k in ("cases", "clean_errors", "resumed")
        }
        lines.append(
            f"disk-full cases / clean errors / resumed: {total['cases']} / "
            f"{total['clean_errors']} / {total['resumed']}"
        )
    lines += [
        f"disk full, {r['command']}: skipped, {r['skipped']}"
        for r in rows
        if r["fault"] == "disk_full" and "skipped" in r
    ]
    for r in rows:
        if r["fault"] == "bad_input":
            lines.append(
                f"bad-input kinds / clear errors: {r['kinds']} / {r['clear_errors']}"
            )
    lost = sum(r["cases"] - r["finished_intact"] for r in full) + sum(
        r["tried"] - r["identical"] for r in kills
    )
    lines.append(f"files lost: {lost}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="trials per command")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--images", type=int, default=400, help="images of the download to prepare"
    )
    parser.add_argument("--timeout", type=float, default=900, help="per command run")
    parser.add_argument(
        "--disk_full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also prepare and the grid on a full tmpfs (needs root to mount)",
    )
    parser.add_argument(
        "--bad_inputs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the suite's bad-input tests and count them",
    )
    parser.add_argument("--scratch", default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    unknown = set(args.commands.split(",")) - set(COMMANDS)
    if unknown:
        parser.error(f"--commands: unknown {sorted(unknown)}; known {COMMANDS}")
    commands = [c for c in COMMANDS if c in args.commands.split(",")]  # in order
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="jaxtransfer_faults_"))
    # One compilation cache for every run: a re-run compiles nothing new, as a
    # re-run in a workdir does with its own cache.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(scratch / "jax_cache"))
    try:
        _shared_inputs(
            scratch / "shared", commands, args.images, args.timeout, args.disk_full
        )
        rows = []
        for name in commands:
            case = CASES[name](scratch / "shared")
            if name == "pool" and "analyze" in commands:
                case.analysed = scratch / "analyze-reference"
            row = kill_anywhere(
                name, case, scratch, args.kills, args.seed, args.timeout
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
        for name in ("prepare", "grid") if args.disk_full else ():
            row = disk_full(name, scratch, args.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.bad_inputs:
            rows.append(bad_inputs(scratch, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(_figures(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
