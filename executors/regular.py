"""Reading and writing the files a user names (plan files, the plan key, --ssh-config,
--prometheus-file), safely.

Reading: only a regular file, and at most a bound (#32: /dev/zero was read until memory
ran out, a FIFO blocked forever). The file is opened without blocking (a FIFO can't
hold the open), then checked on the open descriptor, then read up to the bound.

Writing: whole or not at all. The text goes to a temporary file in the same folder,
is synced, and then renamed over the path: a reader (node_exporter, `apply`) sees the
old file or the new one, and a write that fails leaves the old file untouched.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

KIB, MIB = 1024, 1024 * 1024


class Unreadable(Exception):
    """Why a file can't be read (one phrase: "it is a FIFO, not a regular file")."""


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def size_words(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"


def read_regular(path: str | Path, limit: int) -> bytes:
    """The content of the regular file `path`, of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"it is larger than {size_words(limit)}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MIB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # (it grew while we read)
            raise Unreadable(f"it is larger than {size_words(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


#: a file name's longest, in bytes (Linux's NAME_MAX)
NAME_MAX = 255
#: what write_atomically's temporary name adds to the file's name ("." before, "." and
#: mkstemp's 8 random characters after)
TEMP_EXTRA = 10


def writable_path(path: str) -> str | None:
    """Why `path` can't be written as a file later (None: it can): checked before a run,
    so a run does not do all its work and then fail to report it."""
    if not path:
        return "it is empty"
    if "\0" in path:
        return "it has a NUL character"
    target = Path(path)
    # (written through a temporary file beside it, whose name is longer by TEMP_EXTRA)
    if len(target.name.encode(errors="surrogateescape")) + TEMP_EXTRA > NAME_MAX:
        return f"its file name is longer than {NAME_MAX - TEMP_EXTRA} bytes"
    try:
        if target.is_dir():
            return "it is a folder"
        folder = target.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return f"its folder {folder} does not exist or is not writable"
    except OSError as exc:  # (a path too long, a loop of links)
        return exc.strerror or str(exc)
    return None


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` whole or not at all; the old file stays on failure."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # noqa: PTH101
        os.replace(temporary, target)  # noqa: PTH105
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
