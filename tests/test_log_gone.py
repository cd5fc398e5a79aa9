"""A log reader that goes away (`| head`, a closed terminal, a dead `tee`) never stops
the work: the run stops writing to that stream, finishes, and keeps its exit code."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from executors.cli import main
from executors.console import Console
from executors.options import RunOptions
from tests import fakecli
from tests.fakezfs import FakeRunner, FakeZfs

REPO = Path(__file__).resolve().parents[1]


class Vanishing(io.StringIO):
    """A stream whose reader goes away after `writes` writes (EPIPE from then on)."""

    def __init__(self, writes: Optional[int]) -> None:
        super().__init__()
        self.left = writes

    def _check(self) -> None:
        if self.left is not None and self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")

    def write(self, text: str) -> int:
        self._check()
        if self.left is not None:
            self.left -= 1
        return super().write(text)

    def flush(self) -> None:
        self._check()


def _run(
    args: list[str], *, out: Optional[int] = None, err: Optional[int] = None
) -> tuple[int, FakeZfs, FakeRunner]:
    zfs, runner = fakecli.world()

    def console(options: RunOptions) -> Console:
        return Console(
            verbose=options.verbose, debug=options.debug, color=False,
            out=Vanishing(out), err=Vanishing(err),
        )  # fmt: skip

    return main(args, fakecli.deps(runner, console)), zfs, runner


MODES = [
    ["-v", "--debug", "bak", "dst"],
    ["-v", "bak", "dst"],
    ["apply", "--auto-approve", "-v", "bak", "dst"],
]


@pytest.mark.parametrize("args", MODES, ids=[" ".join(m) for m in MODES])
@pytest.mark.parametrize("writes", [0, 1, 5, 20, 44])
@pytest.mark.parametrize("stream", ["out", "err", "both"])
def test_a_log_reader_that_goes_away_never_stops_the_work(
    args: list[str], writes: int, stream: str
) -> None:
    healthy, zfs, _ = _run(args)
    assert healthy == 0 and fakecli.arrived(zfs)
    gone = {"out": writes if stream != "err" else None, "err": writes if stream != "out" else None}
    rc, zfs, runner = _run(args, **gone)
    assert rc == healthy
    assert fakecli.arrived(zfs), runner.history


def test_a_failing_run_keeps_its_exit_code_when_nobody_reads_its_log() -> None:
    zfs, runner = fakecli.world()
    zfs.datasets["src/data/a"].local_props["autobackup:bak"] = "false"
    runner.refusals = ["cannot receive: out of space"]  # the first send fails
    healthy = main(["-v", "bak", "dst"], fakecli.deps(runner))
    assert healthy == 4

    zfs, runner = fakecli.world()
    zfs.datasets["src/data/a"].local_props["autobackup:bak"] = "false"
    runner.refusals = ["cannot receive: out of space"]

    def console(options: RunOptions) -> Console:
        return Console(verbose=True, out=Vanishing(3), err=Vanishing(0))

    assert main(["-v", "bak", "dst"], fakecli.deps(runner, console)) == healthy


def _read_one_line_then_close(args: list[str]) -> tuple[int, str, str]:
    """Run the tool as a real process whose stdout is a pipe closed after its first line
    (as `| head -1` does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": "/nonexistent"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakecli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), first, err


@pytest.mark.parametrize(
    "args",
    [["-v", "--debug", "bak", "dst"], ["apply", "--auto-approve", "-v", "--debug", "bak", "dst"]],
)
def test_a_real_process_whose_stdout_closes_finishes_without_a_traceback(
    args: list[str],
) -> None:
    code, first, err = _read_one_line_then_close(args)
    assert first.strip()
    assert "Traceback" not in err and "Exception ignored" not in err and "Broken" not in err, err
    assert code == 0, err


def test_a_real_process_whose_stdout_closes_keeps_the_exit_code_of_a_failure() -> None:
    code, first, err = _read_one_line_then_close(["-v", "--debug", "nothing", "dst"])
    assert first.strip()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code == 255 and "No source filesystems selected" in err, err
