"""The plan signing key (#31): made atomically, and refused when it can't be a real key.

A key file left empty by a failed write would sign every later plan with b"": anyone
could forge a plan. So a failed write leaves no key file at all, and a key that is empty,
too short or unreadable stops the run with one line that says how to make a new one.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executors import plankey
from planner.planfile import PlanFileError

REMEDY = "remove it; the next `plan --out` makes a new one"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "conf" / "plan.key"
    monkeypatch.setenv("ZFS_AUTOBACKUP_PLAN_KEY", str(path))
    return path


def _one_line(info: pytest.ExceptionInfo[PlanFileError]) -> str:
    text = str(info.value)
    assert "\n" not in text
    return text


def test_a_new_key_is_made_once_with_mode_0600(key_file: Path) -> None:
    assert plankey.load_key(create=False) is None
    key = plankey.signing_key()
    assert len(key) >= plankey.MIN_KEY_BYTES
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert plankey.signing_key() == key == plankey.load_key(create=False)
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["plan.key"]  # no temp left


def test_a_failed_write_leaves_no_key_file(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(PlanFileError) as info:
        plankey.signing_key()
    monkeypatch.undo()
    text = _one_line(info)
    assert str(key_file) in text and "No space left on device" in text
    assert not key_file.exists()
    assert list(key_file.parent.iterdir()) == []  # the temporary file is gone too
    # and the next run (disk no longer full) makes a good key
    assert len(plankey.signing_key()) >= plankey.MIN_KEY_BYTES


# a child whose every write to a regular file fails (EFBIG), as on a full disk: the fault
# is the kernel's, so it hits whatever way the key is written
_FULL_DISK_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
from executors import plankey
from planner.planfile import PlanFileError
try:
    plankey.signing_key()
except PlanFileError as exc:
    sys.exit(str(exc))
"""


def test_a_key_that_could_not_be_written_is_not_left_behind(key_file: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr
    assert not key_file.exists()
    assert list(key_file.parent.iterdir()) == []
    assert len(plankey.signing_key()) >= plankey.MIN_KEY_BYTES


def test_a_key_made_concurrently_wins(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run links its key in between our write and our link: both use its key."""
    theirs = b"f" * 64
    real_link = os.link

    def racing_link(src: str, dst: str) -> None:
        Path(dst).write_bytes(theirs + b"\n")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    assert plankey.signing_key() == theirs
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["plan.key"]


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n", b"0123456789abcdef\n", b"x" * 31])
def test_an_empty_or_short_key_is_refused(key_file: Path, content: bytes) -> None:
    key_file.parent.mkdir()
    key_file.write_bytes(content)
    for create in (True, False):
        with pytest.raises(PlanFileError) as info:
            plankey.load_key(create=create)
        text = _one_line(info)
        assert str(key_file) in text and "too short" in text and REMEDY in text
    assert key_file.read_bytes() == content  # never replaced behind the user's back


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode 000 file")
def test_an_unreadable_key_is_refused(key_file: Path) -> None:
    key_file.parent.mkdir()
    key_file.write_bytes(b"a" * 64)
    key_file.chmod(0)
    try:
        for create in (True, False):
            with pytest.raises(PlanFileError) as info:
                plankey.load_key(create=create)
            text = _one_line(info)
            assert str(key_file) in text and "Permission denied" in text and REMEDY in text
    finally:
        key_file.chmod(0o600)


def test_a_key_path_that_is_a_directory_is_refused(key_file: Path) -> None:
    key_file.mkdir(parents=True)
    with pytest.raises(PlanFileError) as info:
        plankey.load_key(create=True)
    text = _one_line(info)
    assert str(key_file) in text and "it is a folder, not a regular file" in text and REMEDY in text
