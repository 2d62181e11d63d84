"""One job per workdir: an exclusive lock that names its holder.

Two jobs writing one workdir would train the same runs twice and race on their
checkpoints. The lock is ``flock`` on ``<workdir>/.lock``: the kernel drops it
when its process ends in any way (SIGKILL included), so a lock left by a dead job
is simply taken over. The file records who holds it (process id, host, command,
start time), which is what a refused job reports.
"""

import contextlib
import datetime
import fcntl
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

FILENAME = ".lock"


class WorkdirBusy(RuntimeError):
    """Another live job holds the workdir."""


def _holder() -> str:
    started = datetime.datetime.now().isoformat(timespec="seconds")
    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    return (
        f"process {os.getpid()} on {socket.gethostname()}, since {started}: {command}"
    )


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its lock; the file as it is now."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            raise WorkdirBusy(
                f"{path.parent} is in use by another job "
                f"({holder or 'a process that has not written its name yet'}); one "
                "job per workdir: wait for it to end, or stop it and re-run to resume"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we opened it: try the new one


@contextlib.contextmanager
def hold(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds ``workdir`` for this process while the block runs.

    A workdir this call creates and nothing else writes is removed again.

    Raises:
        WorkdirBusy: a live process holds it; the message names that process.
    """
    workdir = Path(workdir)
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / FILENAME
    fd = _acquire(path)
    try:
        left = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if left:
            logging.warning("taking over %s, left by a job that ended: %s", path, left)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder() + "\n").encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: see _acquire
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                workdir.rmdir()  # only if the job wrote nothing there
