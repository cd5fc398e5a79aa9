"""One run per backup at a time: a lock per backup name, source, target and target path.

The lock is an flock(2) on a file on the machine that runs the tool (in /run/lock, or
the temporary folder). The kernel releases it when the process ends, however it ends,
so a crashed run never blocks the next. A second run of the same backup refuses at once.
Runs that change nothing (`plan`, `--test`) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reconcile.errors import ReconcileError
from reconcile.job import Job


class AlreadyRunning(ReconcileError):
    pass


def _folder() -> Path:
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return run_lock
    return Path(tempfile.gettempdir())


def lock_path(job: Job) -> Path:
    key = "\0".join(
        [
            job.naming.backup_name,
            job.source.describe(),
            job.target.describe(),
            job.target_path or "",
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _folder() / f"zfs-autobackup-{job.naming.backup_name}-{digest}.lock"


@contextlib.contextmanager
def backup_lock(job: Job) -> Iterator[None]:
    path = lock_path(job)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise AlreadyRunning(
                f"Another run of backup '{job.naming.backup_name}' to "
                f"'{job.target_path or '(snapshots only)'}' is still running (pid {holder}); "
                f"not starting a second one (lock: {path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
