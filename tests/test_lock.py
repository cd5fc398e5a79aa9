"""One run per backup: a second run refuses, a crashed run never blocks the next, and\nevery user who may run the job can take the lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executors import lock
from executors.lock import AlreadyRunning, LockUnavailable, backup_lock, lock_path
from reconcile.errors import ReconcileError
from reconcile.job import Job
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


# --- several users (#31) ------------------------------------------------------------------
# A run as root leaves a root-owned lock file; a delegated user who takes the job over
# must be able to lock it too (flock works on a file opened read-only).

NOBODY = 65534
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="switches to another user")
ROOT_GROUPS = os.getgroups()
NOT_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file")


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sticky world-writable folder like /run/lock, that every user can enter."""
    path = Path(tempfile.mkdtemp(prefix="zfs-reconcile-lock-"))
    path.chmod(0o1777)
    monkeypatch.setattr(lock, "_folder", lambda: path)
    yield path
    monkeypatch.undo()  # (a test's os.open stand-in, which rmtree would use)
    shutil.rmtree(path)


@contextlib.contextmanager
def as_user(uid: int) -> Iterator[None]:
    """Run the block with another user's file system rights (root only; restored after,
    also when nested)."""
    euid, egid, groups = os.geteuid(), os.getegid(), os.getgroups()
    os.seteuid(0)  # (allowed: the saved uid is root's)
    os.setgroups(ROOT_GROUPS if uid == 0 else [])
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setgroups(groups)
        os.setegid(egid)
        os.seteuid(euid)


@contextlib.contextmanager
def held_elsewhere(path: Path) -> Iterator[None]:
    """Another run holding the lock (its own open file description)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _refuse(monkeypatch: pytest.MonkeyPatch, refused: Callable[[int], bool]) -> None:
    real_open = os.open

    def fake_open(path: str, flags: int, mode: int = 0o777) -> int:
        if refused(flags):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", fake_open)


def _one_line(info: pytest.ExceptionInfo[ReconcileError]) -> str:
    assert "\n" not in str(info.value)
    return str(info.value)


@ROOT_ONLY
def test_a_root_owned_lock_file_is_taken_over_by_a_delegated_user(folder: Path) -> None:
    j = job("multiuser")
    with backup_lock(j):  # root's run leaves a root-owned 0644 file
        pass
    path = lock_path(j)
    assert path.stat().st_uid == 0 and path.stat().st_mode & 0o777 == 0o644
    busy = pytest.raises(AlreadyRunning, match=r"still running \(pid unknown\)")
    with as_user(NOBODY):
        # read-only (nobody can't write root's file), and root is kept out meanwhile
        with backup_lock(j), as_user(0), busy, backup_lock(j):
            pass
        with backup_lock(j):  # and again
            pass
    with backup_lock(j):
        pass


def _left_behind(mode: int) -> Job:
    """A job whose lock file an earlier run (as this user) left, then made `mode`."""
    j = job("multiuser")
    with backup_lock(j):
        pass
    lock_path(j).chmod(mode)
    return j


@ROOT_ONLY
def test_an_unreadable_lock_file_is_one_line_naming_its_owner(folder: Path) -> None:
    j = _left_behind(0)
    with as_user(NOBODY), pytest.raises(LockUnavailable) as info, backup_lock(j):
        pass
    assert _one_line(info) == (
        f"Can't open the lock file {lock_path(j)} (owned by root) as nobody: Permission "
        "denied; remove it (as root or root) or chmod it 644; the next run makes a new one"
    )


@ROOT_ONLY
def test_a_folder_the_user_cant_write_is_one_line_naming_its_owner(folder: Path) -> None:
    folder.chmod(0o755)
    j = job("multiuser")
    with as_user(NOBODY), pytest.raises(LockUnavailable) as info, backup_lock(j):
        pass
    assert _one_line(info) == (
        f"Can't open or make the lock file {lock_path(j)} as nobody: Permission denied; "
        f"let nobody write to {folder} (owned by root), or run as root"
    )


@NOT_ROOT
def test_a_lock_file_not_writable_for_this_user_is_locked_read_only(folder: Path) -> None:
    j = _left_behind(0o444)
    with backup_lock(j), pytest.raises(AlreadyRunning, match=r"pid unknown"), backup_lock(j):
        pass


@NOT_ROOT
def test_a_mode_000_lock_file_is_one_line_naming_its_owner(folder: Path) -> None:
    j = _left_behind(0)
    refused = pytest.raises(LockUnavailable, match=r"owned by .* Permission denied; remove it")
    with refused as info, backup_lock(j):
        pass
    assert str(lock_path(j)) in _one_line(info)


def test_protected_regular_refusing_o_creat_on_another_users_file(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fs.protected_regular: in a sticky world-writable folder an O_CREAT open of another
    user's existing file is EACCES, even for root and a writable mode: open it without."""
    j = job("multiuser")
    with backup_lock(j):
        pass
    _refuse(monkeypatch, lambda flags: bool(flags & os.O_CREAT))
    with backup_lock(j):
        assert lock_path(j).read_text() == f"{os.getpid()}\n"
        with pytest.raises(AlreadyRunning, match=rf"\(pid {os.getpid()}\)"), backup_lock(j):
            pass


def test_a_lock_file_only_readable_is_locked_and_its_pid_left_alone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = job("multiuser")
    with backup_lock(j):
        pass
    path = lock_path(j)
    path.write_text("999999999\n")  # a pid that no process has
    _refuse(monkeypatch, lambda flags: flags & os.O_ACCMODE != os.O_RDONLY)
    with backup_lock(j):
        with pytest.raises(AlreadyRunning, match=r"\(pid unknown\)"), backup_lock(j):
            pass
        monkeypatch.undo()
        with pytest.raises(BlockingIOError), held_elsewhere(path):
            pass  # (the lock is really held)
    assert path.read_text() == "999999999\n"


def test_no_open_at_all_is_one_line_naming_the_file_and_its_owner(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = job("multiuser")
    with backup_lock(j):
        pass
    _refuse(monkeypatch, lambda flags: True)
    with pytest.raises(LockUnavailable) as info, backup_lock(j):
        pass
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert _one_line(info) == (
        f"Can't open the lock file {lock_path(j)} (owned by {me}) as {me}: Permission "
        f"denied; remove it (as {me} or root) or chmod it 644; the next run makes a new one"
    )


def test_the_lock_file_is_0644_whatever_the_umask(folder: Path) -> None:
    j = job("multiuser")
    old = os.umask(0o077)
    try:
        with backup_lock(j):
            pass
    finally:
        os.umask(old)
    assert lock_path(j).stat().st_mode & 0o777 == 0o644


def test_a_symbolic_link_in_place_of_the_lock_file_is_refused(folder: Path, tmp_path: Path) -> None:
    j = job("multiuser")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path(j).symlink_to(victim)
    refused = pytest.raises(LockUnavailable, match="it is a symbolic link: remove it")
    with refused as info, backup_lock(j):
        pass
    _one_line(info)
    assert victim.read_text() == "precious\n"


def test_the_pid_is_cleared_when_the_run_ends(folder: Path) -> None:
    j = job("multiuser")
    with backup_lock(j):
        assert lock_path(j).read_text() == f"{os.getpid()}\n"
        with pytest.raises(AlreadyRunning, match=rf"\(pid {os.getpid()}\)"), backup_lock(j):
            pass
    assert lock_path(j).read_text() == ""
