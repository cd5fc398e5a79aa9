"""Transfer progress without touching the data: bytes done, estimated total, rate, ETA.

The total comes from `zfs send -P`, which prints `size<TAB>N` on stderr before the
stream (`-v` is not used: on OpenZFS 2.x it adds about a second to every send). The
bytes done are read once a second from /proc/PID/io of a local process: what `zfs recv`
read (`rchar`) when it runs here, else what the last stage here handed to ssh (`wchar`:
`zfs send`, or the buffer/compressor after it; with --compress that count is of
compressed bytes). (Not an ssh process: with connection multiplexing the ssh client hands its pipe
to the master, and counts nothing.) With pull+push neither runs here: only the elapsed
time and the total are shown.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Callable, Optional

from reconcile import zfs_text


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _io_count(pid: int, field: str) -> Optional[int]:
    """`wchar` or `rchar` of a process, from /proc/PID/io."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value)
    return None


def describe(done: Optional[int], total: Optional[int], elapsed: float) -> str:
    """`45% 12.3 MiB/s 123.4 MiB of 270.0 MiB, ETA 0:00:12` (the line shown)."""
    if done is None:
        size = f", {_human(total)} in all" if total else ""
        return f"{_eta(elapsed)} elapsed{size}"
    rate = done / elapsed if elapsed > 0 else 0.0
    moved = _human(done)
    if not total:
        return f"{moved} at {_human(rate)}/s"
    percent = min(100, int(done * 100 / total))
    eta = f", ETA {_eta((total - done) / rate)}" if rate > 0 and done < total else ""
    return f"{percent}% {_human(rate)}/s {moved} of {_human(total)}{eta}"


class Progress:
    """A PipelineWatch that shows one updating line per transfer."""

    def __init__(
        self,
        title: str,
        show: Callable[[str, bool], None],
        *,
        count: Optional[tuple[int, str]] = None,
        interval: float = 1.0,
    ) -> None:
        """`count`: (index of the process in the pipeline, "wchar" or "rchar"), or None."""
        self.title = title
        self.show = show
        self.count = count
        self.interval = interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def started(self, pids: Sequence[int], stderr: Sequence[IO[bytes]]) -> None:
        counted = None
        if self.count is not None:
            index, field = self.count
            counted = (pids[index], field)
        first_err = stderr[0].fileno() if stderr else None
        self._thread = threading.Thread(
            target=self._loop, args=(counted, first_err, time.monotonic()), daemon=True
        )
        self._thread.start()

    @staticmethod
    def _total(fd: Optional[int]) -> Optional[int]:
        if fd is None:
            return None
        try:
            # pread: the file offset is shared with the writing process and must not move
            head = os.pread(fd, 4096, 0)
        except OSError:
            return None
        return zfs_text.parse_send_size(head.decode(errors="replace"))

    def _loop(self, counted: Optional[tuple[int, str]], err: Optional[int], start: float) -> None:
        total = None
        while not self._stop.wait(self.interval):
            total = total or self._total(err)
            done = _io_count(*counted) if counted else None
            text = describe(done, total, time.monotonic() - start)
            self.show(f"{self.title}: {text}", False)

    def finished(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.show("", True)


class Board:
    """One progress display for transfers that run at the same time (--parallel).

    Each transfer gets a channel (the `show` of its Progress). On a terminal the board
    shows one line with every running transfer; elsewhere each update is its own line.
    """

    def __init__(self, show: Callable[[str, bool], None], *, combine: bool) -> None:
        self.show = show
        self.combine = combine
        self._lock = threading.Lock()
        self._lines: dict[int, str] = {}
        self._next = 0

    def channel(self) -> Callable[[str, bool], None]:
        with self._lock:
            key = self._next
            self._next += 1

        def show(text: str, done: bool) -> None:
            with self._lock:
                if done:
                    self._lines.pop(key, None)
                else:
                    self._lines[key] = text
                if not self.combine:
                    if not done:
                        self.show(text, False)
                elif self._lines:
                    self.show(self._render(), False)
                else:
                    self.show("", True)

        return show

    def _render(self) -> str:
        lines = list(self._lines.values())
        if len(lines) == 1:
            return lines[0]
        return f"{len(lines)} transfers: " + " | ".join(lines)
