"""The command line (executors.cli.main) over a small fake zfs world, in-process or as a
real process (`python -m tests.fakecli ARGS...`: for tests of what a real process does
with its standard streams, on a machine without zfs).

The world: src with children, `autobackup:bak=true` on src, an empty pool dst.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Callable, Optional

from executors.cli import Deps, main, make_console
from executors.console import Console
from executors.options import RunOptions
from executors.runner import Runner
from tests.fakezfs import FakeRunner, FakeZfs

START = 1_767_225_600  # 2026-01-01 00:00 UTC
SOURCES = ("src", "src/data", "src/data/a", "src/data/b", "src/other")
#: write commands: their history lines start with these (after "zfs ")
WRITES = ("snapshot", "destroy", "recv", "receive", "hold", "release", "rollback", "create",
          "set", "inherit", "bookmark", "rename", "promote", "clone")  # fmt: skip


def world() -> tuple[FakeZfs, FakeRunner]:
    zfs = FakeZfs()
    for name in (*SOURCES, "dst"):
        zfs.create(name)
        zfs.write(name)
    zfs.datasets["src"].local_props["autobackup:bak"] = "true"
    zfs.now = START
    # (a host the world does not know, as a plan file may name: a host with no pools)
    hosts: defaultdict[Optional[str], FakeZfs] = defaultdict(FakeZfs, {None: zfs})
    return zfs, FakeRunner(hosts)


def arrived(zfs: FakeZfs) -> bool:
    """Every selected dataset is on the target with a snapshot."""
    return all(
        f"dst/{name}" in zfs.datasets and zfs.datasets[f"dst/{name}"].snaps for name in SOURCES
    )


def writes(runner: FakeRunner) -> list[str]:
    """The commands in the runner's history that change something."""
    return [
        line
        for line in runner.history
        if any(f"zfs {verb} " in line for verb in WRITES)  # (not "zfs holds", a read)
    ]


def deps(
    runner: FakeRunner,
    console: Callable[[RunOptions], Console] = make_console,
    now: float = START + 3600,
) -> Deps:
    def make_runner(options: RunOptions, console: Console, control_dir: str) -> Runner:
        return runner

    return Deps(clock=lambda: now, console=console, runner=make_runner)


def run(args: Sequence[str], runner: Optional[FakeRunner] = None) -> int:
    return main(list(args), deps(runner or world()[1]))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
