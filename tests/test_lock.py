"""One run per backup: a second run refuses, and a crashed run never blocks the next."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from executors.lock import AlreadyRunning, backup_lock, lock_path
from tests.builders import job

HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from executors.lock import backup_lock
from tests.builders import job
with backup_lock(job("locktest-{suffix}")):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_run_refuses_and_a_killed_run_releases_the_lock() -> None:
    import pathlib

    repo = str(pathlib.Path(__file__).resolve().parents[1])
    suffix = str(time.time_ns())
    j = job(f"locktest-{suffix}")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=repo, suffix=suffix)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(AlreadyRunning, match=rf"still running \(pid {holder.pid}\)"),
            backup_lock(j),
        ):
            pass
        # another backup name, or the same name to another target, is not blocked
        with backup_lock(job(f"locktest-{suffix}", target_path="elsewhere")):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with backup_lock(j):
            pass
    finally:
        holder.kill()
        lock_path(j).unlink(missing_ok=True)
