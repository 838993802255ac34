"""The loop worker in a process of its own, beside the review app (``labelloop serve``).

A separate process, not a thread: a retrain's Python-level work (building suggestions for
thousands of items) would otherwise hold the interpreter lock while reviewers wait for the
app. The child is ``labelloop worker`` itself; on Linux it is told to stop when its parent
dies (``PR_SET_PDEATHSIG``), so a killed ``serve`` leaves no orphan behind, and it runs at a
lower CPU priority (nice 10): on a busy machine the reviewers' requests come first and the
retrain takes what is left.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

WORKER_NICENESS = 10


def _child_setup() -> None:  # runs in the child between fork and exec
    os.nice(WORKER_NICENESS)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:  # not Linux: the parent's finally block stops it instead
        pass


def start_worker_process(project_folder: Path, name: str | None = None) -> subprocess.Popen:
    """Start ``labelloop worker -p FOLDER`` as a child process."""
    cmd = [sys.executable, "-m", "labelloop.cli.main", "worker", "-p", str(project_folder)]
    if name:
        cmd += ["--name", name]
    preexec = _child_setup if sys.platform.startswith("linux") else None
    return subprocess.Popen(cmd, preexec_fn=preexec)  # noqa: PLW1509 - only sets a signal


def stop_worker_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (the worker finishes its step), then SIGKILL if it does not stop in time:
    whatever it was doing stays due in the store and is done by the next worker."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
