"""Runs the processes of one multi-process job on localhost and checks them all."""

import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_together(commands: list[list[str]], timeout: float = 600, **popen) -> list[str]:
    """Starts every command at once, waits for all, returns their outputs.

    Fails with every process's output tail when any exits non-zero: when one
    process dies, the others end at jax.distributed's shutdown barrier, so the
    cause is in the output of the one that died, not of the first in the list.
    """
    running = [
        subprocess.Popen(
            c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
        )
        for c in commands
    ]
    outputs = []
    for process in running:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in running:
                p.kill()
            out, _ = process.communicate()
        outputs.append(out)
    failed = [
        f"--- process {i} exited {p.returncode}:\n{out[-3000:]}"
        for i, (p, out) in enumerate(zip(running, outputs))
        if p.returncode != 0
    ]
    assert not failed, "\n".join(failed)
    return outputs
