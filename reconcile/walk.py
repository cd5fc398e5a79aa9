"""The program `verify` runs next to the data, on each host: it walks a snapshot's tree (or
reads a volume's snapshot device) and prints one line per path with what is compared,
so that only digests cross the wire, never file contents.

    python3 -c WALK_SOURCE [--sample N --slice K] [--budget SECONDS] ROOT
    python3 -c WALK_SOURCE --device [--sample ...] [--budget ...] [--wait SECONDS] DEVICE

Standard library only, any python3 from 3.7 (the host needs nothing else); it reads,
never writes. Each line is a JSON array:

    [path, kind, mode, uid, gid, size, mtime_ns, link, xattrs, digest, error]

- `path`: relative to ROOT ("." is ROOT itself); depth first, each directory's entries
  in byte order, so both sides print the same paths in the same order. The walk moves
  from directory to directory (fchdir) and opens only names: no path is too long;
- `kind`: f file, d directory, l symlink, c/b device, p fifo, s socket; `size` is None
  for a directory (its size on ZFS is its count of entries, compared by the paths);
- `link`: a symlink's target, a device's numbers; a file with other hard links:
  "=PATH", the first of them walked;
- `xattrs`: SHA-256 of the sorted names and values (None: not supported here);
- `digest`: of a file's contents, in 1 MiB chunks: the SHA-256 of the chunks'
  SHA-256s. A chunk that lies in a hole (SEEK_DATA/SEEK_HOLE) is known to be zeros and
  is not read, yet hashes as zeros do: the digest is the same however the zeros are
  stored (a hole on one side, written zeros on the other). With --sample N --slice K,
  only the chunks whose (path, index) hash is K modulo N: both sides pick the same
  chunks, and slices 0 to N-1 cover every chunk once;
- `error`: a path that could not be read (an I/O error, a read shorter than the size:
  a finding, never a match).

When nobody reads its output any more (verify stopped, or its ssh channel closed), it
exits at once with code 3, before the next path or chunk.

The last line is {"end": {...}}: what was read and skipped, and with --budget the path
where the time ran out, unread ("stopped": the walk order key, a list of path parts;
the budget is looked at before each path and each chunk).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import stat
import sys
import time
from typing import IO, Any, Optional

CHUNK = 1 << 20
#: the exit code when the output's reader is gone (its parent died, its pipe closed)
ORPHANED = 3
_ZERO: dict[int, bytes] = {}  # length -> sha256 of that many zeros


def _zero_digest(length: int) -> bytes:
    digest = _ZERO.get(length)
    if digest is None:
        digest = _ZERO[length] = hashlib.sha256(bytes(length)).digest()
    return digest


class Late(Exception):
    """--budget ran out."""


class Walk:
    def __init__(self, buckets: int, slice_: int, deadline: Optional[float]) -> None:
        self.buckets = buckets
        self.slice = slice_ % max(buckets, 1)
        self.deadline = deadline
        self.read = 0
        self.skipped = 0
        self.files = 0
        self.buffer = bytearray(CHUNK)
        #: (device, inode) -> the first path of a file with hard links
        self.links: dict[tuple[int, int], str] = {}
        # (whoever reads the output is gone: verify stopped, its ssh channel closed)
        self.parent = os.getppid()
        self.output = select.poll()
        self.output.register(sys.stdout.fileno(), 0)

    def sampled(self, path: str, index: int) -> bool:
        if self.buckets <= 1:
            return True
        key = f"{path}\0{index}"
        hashed = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(hashed[:8], "big") % self.buckets == self.slice

    def chunk(self, fd: int, offset: int, length: int) -> bytes:
        view = memoryview(self.buffer)[:length]
        done = 0
        while done < length:
            data = os.pread(fd, length - done, offset + done)
            if not data:
                break
            view[done : done + len(data)] = data
            done += len(data)
        self.read += done
        if done < length:
            raise OSError(errno.EIO, f"read {done} of {length} bytes at {offset}: short")
        return hashlib.sha256(view[:done]).digest()

    def contents(self, fd: int, size: int, path: str, holes: bool = True) -> str:
        """The digest of a file's (or device's) contents, without reading its holes."""
        whole = hashlib.sha256()
        chunks = (size + CHUNK - 1) // CHUNK
        index = 0
        while index < chunks:
            start = index * CHUNK
            data = start
            if holes:
                try:
                    data = os.lseek(fd, start, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        holes = False  # (no hole support here: read everything)
                    else:
                        data = size
            # the chunks wholly before the next data are zeros
            while index < chunks and min((index + 1) * CHUNK, size) <= data:
                length = min(CHUNK, size - index * CHUNK)
                if self.sampled(path, index):
                    whole.update(_zero_digest(length))
                self.skipped += length
                index += 1
            if index >= chunks:
                break
            end = size
            if holes:
                try:
                    end = os.lseek(fd, max(data, index * CHUNK), os.SEEK_HOLE)
                except OSError:
                    end = size
            last = min(chunks - 1, (max(end, index * CHUNK + 1) - 1) // CHUNK)
            while index <= last:
                start = index * CHUNK
                length = min(CHUNK, size - start)
                if self.late():
                    raise Late()
                if self.sampled(path, index):
                    whole.update(self.chunk(fd, start, length))
                index += 1
        return whole.hexdigest()

    def late(self) -> bool:
        """The budget ran out; and (looked at here, before each path and each chunk)
        exit at once, code 3, when nobody reads the output any more."""
        if os.getppid() != self.parent or any(
            event & (select.POLLERR | select.POLLHUP) for _fd, event in self.output.poll(0)
        ):
            os._exit(ORPHANED)
        return self.deadline is not None and time.time() >= self.deadline


def _xattrs(path: str) -> Optional[str]:
    if not hasattr(os, "listxattr"):
        return None
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        digest = hashlib.sha256()
        for name in names:
            value = os.getxattr(path, name, follow_symlinks=False)
            digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(str(len(value)).encode() + b"\0" + value)
        return digest.hexdigest()
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
            return None
        raise


_KINDS = (
    (stat.S_ISREG, "f"),
    (stat.S_ISDIR, "d"),
    (stat.S_ISLNK, "l"),
    (stat.S_ISCHR, "c"),
    (stat.S_ISBLK, "b"),
    (stat.S_ISFIFO, "p"),
    (stat.S_ISSOCK, "s"),
)


def _kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "?"


def _emit(out: IO[str], record: Any) -> None:
    out.write(json.dumps(record) + "\n")


def _error(exc: OSError) -> str:
    return "{}: {}".format(errno.errorcode.get(exc.errno or 0, "E?"), exc.strerror)


def _entry(walk: Walk, full: str, rel: str) -> tuple[list[Any], str]:
    """The record of one path, a name in the current directory (and its error, if it
    could not be read). Raises Late when the budget ran out in its contents."""
    st = os.lstat(full)
    kind = _kind(st.st_mode)
    record: list[Any] = [
        rel,
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        None if kind == "d" else st.st_size,
        st.st_mtime_ns,
        None,
        None,
        None,
        None,
    ]
    try:
        record[8] = _xattrs(full)
        if kind == "l":
            record[7] = os.readlink(full)
        elif kind in "cb":
            record[7] = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
        elif kind == "f":
            if st.st_nlink > 1:
                first = walk.links.setdefault((st.st_dev, st.st_ino), rel)
                record[7] = None if first == rel else "=" + first
            walk.files += 1
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                record[9] = walk.contents(fd, st.st_size, rel)
            finally:
                os.close(fd)
    except OSError as exc:
        record[10] = _error(exc)
    return record, kind


def walk_tree(walk: Walk, root: str, out: IO[str]) -> Optional[list[str]]:
    """Depth first, entries in byte order, from directory to directory (only names are
    opened: no path is too long); returns the key where the budget ran out."""
    os.chdir(root)
    # ("visit", name, path, key) or ("up", ...): back to the parent directory
    stack: list[tuple[str, str, str, list[str]]] = [("visit", ".", ".", [])]
    while stack:
        what, name, rel, key = stack.pop()
        if what == "up":
            os.chdir("..")
            continue
        try:
            if walk.late():
                raise Late()
            record, kind = _entry(walk, name, rel)
        except Late:
            return key
        except OSError as exc:
            _emit(out, [rel, "?", None, None, None, None, None, None, None, None, _error(exc)])
            continue
        if kind != "d":
            _emit(out, record)
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
            try:
                names = sorted(os.listdir(fd), key=os.fsencode)
                os.fchdir(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            record[10] = _error(exc)
            _emit(out, record)
            continue
        _emit(out, record)
        if rel != ".":
            stack.append(("up", "", "", []))
        for child in reversed(names):
            path = child if rel == "." else rel + "/" + child
            stack.append(("visit", child, path, [*key, child]))
    return None


def main(argv: list[str]) -> int:
    buckets, slice_, device = 1, 0, False
    budget: Optional[float] = None
    args = list(argv)
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--sample":
            buckets = int(args.pop(0))
        elif option == "--slice":
            slice_ = int(args.pop(0))
        elif option == "--budget":
            budget = float(args.pop(0))
        elif option == "--device":
            device = True
        elif option == "--wait":
            # (a volume's snapshot device appears when udev has made it)
            waited = time.time() + float(args.pop(0))
            while args and not os.path.exists(args[-1]) and time.time() < waited:
                time.sleep(0.1)
        else:
            sys.stderr.write(f"walk: unknown option {option}\n")
            return 2
    if len(args) != 1:
        sys.stderr.write("walk: one ROOT or DEVICE\n")
        return 2
    walk = Walk(buckets, slice_, None if budget is None else time.time() + budget)
    out = sys.stdout
    stopped: Optional[list[str]] = None
    if device:
        fd = os.open(args[0], os.O_RDONLY)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            record: list[Any] = [".", "v", None, None, None, size, None, None, None, None, None]
            try:
                record[9] = walk.contents(fd, size, ".", holes=False)
                _emit(out, record)
            except Late:
                stopped = []
            except OSError as exc:
                record[10] = _error(exc)
                _emit(out, record)
        finally:
            os.close(fd)
    else:
        stopped = walk_tree(walk, args[0], out)
    end = {"files": walk.files, "read": walk.read, "skipped": walk.skipped,
           "stopped": stopped, "sample": buckets}  # fmt: skip
    _emit(out, {"end": end})
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
