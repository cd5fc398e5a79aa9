"""The key that signs saved plans, so that `apply FILE` runs only plans this tool made.

A plan file carries the job (with --pre-snapshot-cmd and every thinning option) and the
time it was made for: an unkeyed checksum could be recomputed by anyone who edits the
file. Plans are signed with HMAC-SHA256 under a random key that only this user on this
machine can read (`~/.config/zfs-reconcile/plan.key`, mode 0600, made by the first
`plan --out`/`--json`; ZFS_AUTOBACKUP_PLAN_KEY names another file). `apply FILE` refuses
a file whose signature does not match, and then still makes the plan again from the
saved job and the state it observes, and refuses unless the two are the same.

The key file appears whole or not at all (#31): a file left empty by a failed write would
sign every later plan with an empty key, which anyone can forge. It is written to a
temporary file in the same directory, synced, then hard-linked into place; a link never
replaces a file, so when two runs make a key at once the first one's wins and both use it.
A key shorter than MIN_KEY_BYTES, one that can't be read, anything but a regular file
of at most 4 KiB, or an empty or relative HOME (without ZFS_AUTOBACKUP_PLAN_KEY), stops
the run with one line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Optional

from executors.regular import KIB, Unreadable, read_regular
from planner.planfile import PlanFileError

#: the shortest key accepted (after stripping white space); a new key has 64 hex digits
MIN_KEY_BYTES = 32
#: the longest key file read (a key is a line of hex digits; /dev/zero is not read to the end)
MAX_KEY_BYTES = 4 * KIB

_REMEDY = "remove it; the next `plan --out` makes a new one"


def key_path() -> Path:
    override = os.environ.get("ZFS_AUTOBACKUP_PLAN_KEY")
    if override:
        return Path(override)
    home = os.environ.get("HOME")
    if home is not None and not Path(home).is_absolute():
        # (HOME='' would put the key in /.config, a relative HOME under the current folder)
        raise PlanFileError(
            f"HOME is '{home}', not an absolute path: set HOME to your home folder, or name "
            "the plan signing key file with ZFS_AUTOBACKUP_PLAN_KEY"
        )
    return Path.home() / ".config" / "zfs-reconcile" / "plan.key"


def load_key(*, create: bool) -> Optional[bytes]:
    """The signing key; made first when `create` (None: there is none yet)."""
    path = key_path()
    key = _read(path)
    if key is not None or not create:
        return key
    _make(path)
    key = _read(path)
    if key is None:  # removed again between our link and this read
        raise PlanFileError(f"The plan signing key {path} vanished just after it was made")
    return key


def signing_key() -> bytes:
    """The key to sign a plan with (made first if there is none yet)."""
    key = load_key(create=True)
    if key is None:  # pragma: no cover - load_key(create=True) always makes one
        raise PlanFileError(f"Can't make the plan signing key {key_path()}")
    return key


def _read(path: Path) -> Optional[bytes]:
    if not path.exists() and not path.is_symlink():
        return None
    try:
        key = read_regular(path, MAX_KEY_BYTES).strip()
    except Unreadable as exc:
        raise PlanFileError(f"Can't read the plan signing key {path} ({exc}): {_REMEDY}") from None
    if len(key) < MIN_KEY_BYTES:
        raise PlanFileError(
            f"The plan signing key {path} is too short ({len(key)} bytes, at least "
            f"{MIN_KEY_BYTES} needed): {_REMEDY}"
        )
    return key


def _make(path: Path) -> None:
    """Put a new random key at `path`, unless another run put one there first."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    except OSError as exc:
        raise PlanFileError(f"Can't make the plan signing key {path}: {exc.strerror}") from None
    try:
        try:
            _write_all(fd, (os.urandom(MIN_KEY_BYTES).hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another run's key came first: use it
            os.link(temp, path)
    except OSError as exc:
        raise PlanFileError(f"Can't make the plan signing key {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            Path(temp).unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
