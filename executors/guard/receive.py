"""The remote guard's receive: `zfs recv` starts only after the stream's first substream
was judged, and gets the stream through the guard without a copy per byte.

Contract: `run(stages, receive, environ)` runs `filters... | zfs recv ...` (stages as
executors.guard.rules allowed them) with the guard between the last filter (or its own
stdin) and `zfs recv`: executors.guard.stream reads the records it must judge (the
BEGIN records, and each record's header inside a package), and the payloads pass from
pipe to pipe by `splice(2)` (a read/write loop where the kernel or Python has none).
Returns the first non-zero exit code of zfs recv and then the filters, EXIT_REFUSED
after one line on stderr (and `log`) when the stream is refused (a stream refused
before its first substream never reaches zfs), or 1 after one line when it ended before
zfs recv started. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

from executors.guard import stream as guard_stream
from executors.guard.words import Argv, Refused
from reconcile.guard_protocol import EXIT_REFUSED

#: bytes moved per splice (the pipe to zfs recv is grown to this where the kernel lets it)
CHUNK = 1 << 20
#: fcntl's F_SETPIPE_SZ (Linux; Python 3.10+ names it)
_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class _Pipe:
    """guard_stream.StreamIO between a descriptor and the stdin of zfs recv."""

    def __init__(self, source: int, start: Callable[[int], None]) -> None:
        self.source = source
        self._start = start
        with contextlib.suppress(OSError):  # (a bigger pipe in: fewer splices per block)
            fcntl.fcntl(source, _SETPIPE_SZ, CHUNK)
        self.sink: Optional[int] = None
        self.splice = hasattr(os, "splice")
        self.closed = False  # zfs recv stopped reading

    def read(self, size: int) -> bytes:
        data = os.read(self.source, size)
        if len(data) == size or not data:  # (a record header: one read, nearly always)
            return data
        parts = [data]
        size -= len(data)
        while size > 0:
            data = os.read(self.source, size)
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def start(self) -> None:
        read_end, self.sink = os.pipe()
        with contextlib.suppress(OSError):  # (the default size works, with more calls)
            fcntl.fcntl(self.sink, _SETPIPE_SZ, CHUNK)
        try:
            self._start(read_end)
        finally:
            os.close(read_end)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.sink is not None
        try:
            written = os.write(self.sink, data)
        except BrokenPipeError:
            self.closed = True
            return
        if written == len(data):  # (a record header: one write, nearly always)
            return
        view = memoryview(data)[written:]
        while view and not self.closed:
            assert self.sink is not None
            try:
                view = view[os.write(self.sink, view) :]
            except BrokenPipeError:
                self.closed = True

    def forward(self, size: int) -> int:
        moved = 0
        if 0 < size <= CHUNK and self.splice and not self.closed:
            # (a record's payload: one splice, nearly always; the loop decides the rest)
            assert self.sink is not None
            with contextlib.suppress(OSError):
                moved = os.splice(self.source, self.sink, size)
            if moved == size:
                return moved
        while (size < 0 or moved < size) and not self.closed:
            want = CHUNK if size < 0 else min(CHUNK, size - moved)
            count = self._move(want)
            if count == 0:
                break
            moved += count
        return moved

    def _move(self, size: int) -> int:
        assert self.sink is not None
        try:
            if self.splice:
                try:
                    return os.splice(self.source, self.sink, size)
                except OSError as exc:
                    if isinstance(exc, BrokenPipeError):
                        raise
                    self.splice = False  # (a descriptor splice does not take)
            data = os.read(self.source, size)
            self.write(data)
            return len(data)
        except BrokenPipeError:
            self.closed = True
            return 0

    def done(self) -> bool:
        return self.closed

    def close(self) -> None:
        if self.sink is not None:
            os.close(self.sink)
            self.sink = None


def _spawn(
    argv: Argv, program: str, env: Mapping[str, str], stdin: Optional[int], stdout: Optional[int]
) -> subprocess.Popen[bytes]:
    env = dict(env)
    return subprocess.Popen(list(argv), executable=program, env=env, stdin=stdin, stdout=stdout)


def run(
    stages: Sequence[Argv],
    programs: Sequence[str],
    receive: guard_stream.Receive,
    environ: Mapping[str, str],
    refused: Callable[[Refused], None],
) -> int:
    """The module's contract (`programs`: each stage's resolved path)."""
    filters: list[subprocess.Popen[bytes]] = []
    previous: Optional[int] = None
    for argv, program in zip(stages[:-1], programs[:-1]):
        proc = _spawn(argv, program, environ, stdin=previous, stdout=subprocess.PIPE)
        if previous is not None:
            os.close(previous)
        assert proc.stdout is not None
        previous = os.dup(proc.stdout.fileno())
        proc.stdout.close()
        filters.append(proc)
    source = sys.stdin.fileno() if previous is None else previous
    recv: list[subprocess.Popen[bytes]] = []

    def start(read_end: int) -> None:
        recv.append(_spawn(stages[-1], programs[-1], environ, stdin=read_end, stdout=None))

    pipe = _Pipe(source, start)
    code = 0
    try:
        guard_stream.walk(pipe, receive)
    except Refused as exc:
        refused(exc)
        code = EXIT_REFUSED
    except (guard_stream.Incomplete, OSError) as exc:
        # (the sender failed or the connection broke: not a refusal, nothing to log)
        print(f"zfs-autobackup-guard: {exc}", file=sys.stderr)
        code = 1
    finally:
        pipe.close()
        if previous is not None:
            os.close(previous)
    if code and not recv:
        for proc in filters:
            proc.kill()
    # (zfs recv's own code first: a filter dies of SIGPIPE when zfs recv stopped)
    return code or first_failure([proc.wait() for proc in [*recv, *filters]])


def first_failure(codes: Sequence[int]) -> int:
    """The first exit code that is not 0 (128+N for signal N, as a shell), or 0."""
    failed = [c if c > 0 else 128 - c for c in codes if c != 0]
    return failed[0] if failed else 0
