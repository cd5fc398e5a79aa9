"""The classic zfs-autobackup console: titles, [Source]/[Target] lines, errors, debug.

verbose lines and titles go to stdout only with --verbose; notes (warnings) always go to
stdout and errors always to stderr, as in zfs-autobackup 3.3; debug lines (every
command, exactly as run) with --debug. Colour only on a tty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from typing import TextIO

_RED, _YELLOW, _BOLD, _DIM, _RESET = "\033[31;1m", "\033[33m", "\033[1m", "\033[2m", "\033[0m"


class Console:
    def __init__(
        self,
        *,
        verbose: bool = False,
        debug: bool = False,
        color: bool | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        answers: TextIO | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        #: where the answer to a question comes from (apply's approval)
        self.answers = answers or sys.stdin
        self.show_verbose = verbose or debug
        self.show_debug = debug
        if color is None:
            color = self.out.isatty() and "NO_COLOR" not in os.environ
        self.color = color
        #: parallel transfers print from several threads
        self._lock = threading.RLock()
        #: the progress line on the terminal now (redrawn after other lines)
        self._progress_line = ""
        #: streams whose reader went away (id of the stream)
        self._gone: set[int] = set()

    def write(self, stream: TextIO, text: str) -> None:
        """Write and flush `text` as it is, unless the stream's reader is gone."""
        with self._lock:
            if id(stream) in self._gone:
                return
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # EPIPE, EIO (hung-up tty), a closed file
                self._lost(stream)

    def _lost(self, stream: TextIO) -> None:
        self._gone.add(id(stream))
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # not a file (a test's stream, a closed one)
            return
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)

    def ask(self, prompt: str) -> str | None:
        """A line typed in answer to `prompt` (None: end of input, as after Ctrl-D)."""
        self.write(self.out, prompt)
        line = self.answers.readline()
        return line.rstrip("\n") if line else None

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def _print(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self._progress_line:
                self.write(self.err, "\r\033[K")
            self.write(stream, text + "\n")
            if self._progress_line:
                self.write(self.err, self._progress_line)

    def title(self, text: str) -> None:
        if self.show_verbose:
            self._print(self.out, self._paint(_BOLD, f"#### {text}"))

    def verbose(self, text: str) -> None:
        if self.show_verbose:
            self._print(self.out, text)

    def info(self, text: str) -> None:
        """Always shown (final results that cron users want to see only when asked)."""
        self._print(self.out, text)

    def warning(self, text: str) -> None:
        self._print(self.out, self._paint(_YELLOW, f"  NOTE: {text}"))

    def error(self, text: str) -> None:
        self._print(self.err, self._paint(_RED, f"! {text}"))

    def debug(self, text: str) -> None:
        if self.show_debug:
            self._print(self.out, self._paint(_DIM, f"# {text}"))

    def progress(self, text: str, done: bool) -> None:
        """One updating line on a terminal; plain lines otherwise (--progress in cron)."""
        if self.err.isatty():
            # one line that fits: a wrapped line cannot be redrawn in place
            width = shutil.get_terminal_size().columns - 1
            with self._lock:
                self._progress_line = "" if done else text[:width]
                self.write(self.err, "\r\033[K" + self._progress_line)
        elif not done:
            self._print(self.err, text)

    def command(self, label: str, text: str) -> None:
        """Listener for the runner: every command line (and output with --debug-output)."""
        self.debug(f"{label} {text}" if label else text)
