"""One run per backup at a time: a lock per backup name, source, target and target path.

The lock is an flock(2) on a file on the machine that runs the tool (in /run/lock, or
the temporary folder). The kernel releases it when the process ends, however it ends,
so a crashed run never blocks the next. A second run of the same backup refuses at once.
Runs that change nothing (`plan`, `--test`) take no lock.

Every user who may run the job must be able to take the same lock (#31: root ran it
first, then a delegated user took it over and got a traceback). flock works on a file
opened read-only, so the file is opened, in this order:
- read-write, made if missing (the holder writes its pid into it for the busy message);
- read-write without O_CREAT: in a sticky world-writable folder (/run/lock, /tmp) with
  fs.protected_regular >= 1 (systemd's default), an O_CREAT open of an existing file that
  belongs to another user is refused with EACCES even when its mode allows writing, for
  root too;
- read-only: the file belongs to another user and is not writable (a root-owned 0644
  file); the lock is taken all the same, and the pid can't be written ("pid unknown").
The file is made mode 0644 whatever the umask (a umask of 077 would make it 0600, which
no other user can open at all). Being able to read it is all a user needs to hold the
lock; that adds nothing to what any user can do in /run/lock anyway (make the file
first and hold it). A symbolic link or anything but a regular file is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from reconcile.errors import ReconcileError
from reconcile.job import Job

#: the lock file's mode: every user who may run the job can open it to lock it
MODE = 0o644
_READABLE = 0o444
#: no symbolic link followed; a FIFO planted in its place can't block the open
_SAFE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class AlreadyRunning(ReconcileError):
    pass


class LockUnavailable(ReconcileError):
    """The lock file can't be opened at all by this user (mode 000, a folder it can't
    enter, a symbolic link planted in its place)."""


def _folder() -> Path:
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return run_lock
    return Path(tempfile.gettempdir())


def job_digest(job: Job) -> str:
    """A short name for the job: its backup name, source, target and target path (what
    makes two runs the same job: the lock's and the listing cache's file names)."""
    key = "\0".join(
        [
            job.naming.backup_name,
            job.remote.source.describe(),
            job.remote.target.describe(),
            job.remote.target_path or "",
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def lock_path(job: Job) -> Path:
    return _folder() / f"zfs-autobackup-{job.naming.backup_name}-{job_digest(job)}.lock"


@contextlib.contextmanager
def backup_lock(job: Job) -> Iterator[None]:
    path = lock_path(job)
    fd, writable = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"Another run of backup '{job.naming.backup_name}' to "
                f"'{job.remote.target_path or '(snapshots only)'}' is still running "
                f"(pid {_holder(fd)}); not starting a second one (lock: {path})"
            ) from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if writable:  # a pid left behind would be named by a later busy message
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # (releases the lock)


def _open(path: Path) -> tuple[int, bool]:
    """A descriptor of the lock file, and whether it is open for writing."""
    attempts = (
        (os.O_RDWR | os.O_CREAT, True),
        (os.O_RDWR, True),  # protected_regular refused O_CREAT on another user's file
        (os.O_RDONLY, False),  # not writable for this user: flock works read-only too
    )
    error: Optional[OSError] = None
    for flags, writable in attempts:
        try:
            fd = os.open(path, flags | _SAFE, MODE)
        except (PermissionError, FileNotFoundError) as exc:
            error = error or exc
            continue
        except OSError as exc:  # ELOOP: a symbolic link in its place
            raise _unavailable(path, exc) from None
        try:
            _check(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return fd, writable
    assert error is not None
    raise _unavailable(path, error) from None


def _check(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise LockUnavailable(
            f"The lock file {path} is not a regular file (owned by {_user(info.st_uid)}): "
            "remove it; the next run makes a new one"
        )
    if info.st_uid == os.geteuid() and info.st_mode & _READABLE != _READABLE:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) | _READABLE)  # made under a strict umask


def _unavailable(path: Path, exc: OSError) -> LockUnavailable:
    me = _user(os.geteuid())
    try:
        info = path.lstat()
    except OSError:  # not there (or its folder can't be entered): the folder is the problem
        folder = _owner(path.parent)
        return LockUnavailable(
            f"Can't open or make the lock file {path} as {me}: {exc.strerror}; "
            f"let {me} write to {path.parent} (owned by {folder}), or run as {folder}"
        )
    owner = _user(info.st_uid)
    if stat.S_ISDIR(info.st_mode):  # (open() says EISDIR: no chmod makes it a lock file)
        return LockUnavailable(
            f"The lock file {path} is not a regular file (a folder, owned by {owner}): "
            "remove it; the next run makes a new one"
        )
    fix = (
        "it is a symbolic link: remove it; the next run makes the lock file"
        if stat.S_ISLNK(info.st_mode)
        else f"remove it (as {owner} or root) or chmod it {MODE:o}; the next run makes a new one"
    )
    return LockUnavailable(
        f"Can't open the lock file {path} (owned by {owner}) as {me}: {exc.strerror}; {fix}"
    )


def _owner(path: Path) -> str:
    try:
        return _user(path.stat().st_uid)
    except OSError:
        return "unknown"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _holder(fd: int) -> str:
    """The pid written by the run that holds the lock, if it could write one and lives."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    if not text.isdigit() or int(text) <= 0:
        return "unknown"
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return "unknown"  # a crashed run's, left while a read-only run holds the lock
    except OSError:
        pass  # it lives, as another user
    return text
