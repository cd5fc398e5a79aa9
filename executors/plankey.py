"""The key that signs saved plans, so that `apply FILE` runs only plans this tool made.

A plan file carries the job (with --pre-snapshot-cmd and every thinning option) and the
time it was made for: an unkeyed checksum could be recomputed by anyone who edits the
file. Plans are signed with HMAC-SHA256 under a random key that only this user on this
machine can read (`~/.config/zfs-reconcile/plan.key`, mode 0600, made by the first
`plan --out`/`--json`; ZFS_AUTOBACKUP_PLAN_KEY names another file). `apply FILE` refuses
a file whose signature does not match, and then still makes the plan again from the
saved job and the state it observes, and refuses unless the two are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from planner.planfile import PlanFileError


def key_path() -> Path:
    override = os.environ.get("ZFS_AUTOBACKUP_PLAN_KEY")
    if override:
        return Path(override)
    return Path.home() / ".config" / "zfs-reconcile" / "plan.key"


def load_key(*, create: bool) -> Optional[bytes]:
    """The signing key; made first when `create` (None: there is none yet)."""
    path = key_path()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise PlanFileError(f"Can't read the plan signing key {path}: {exc.strerror}") from None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex() + "\n")
    except FileExistsError:
        pass  # another run made it just now
    except OSError as exc:
        raise PlanFileError(f"Can't make the plan signing key {path}: {exc.strerror}") from None
    return path.read_bytes().strip()


def signing_key() -> bytes:
    """The key to sign a plan with (made first if there is none yet)."""
    key = load_key(create=True)
    if key is None:  # pragma: no cover - load_key(create=True) always makes one
        raise PlanFileError(f"Can't make the plan signing key {key_path()}")
    return key
