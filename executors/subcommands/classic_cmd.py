"""`zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]`: plan and apply in one run, with
zfs-autobackup v3's log (executors.classic)."""

from __future__ import annotations

import contextlib
from typing import Any

from executors.classic import run_classic
from executors.lock import backup_lock
from executors.options import add_reporting
from executors.subcommands import Run, Subcommand


def _output(g: Any) -> None:
    g.add_argument(
        "--test",
        "--dry-run",
        "-n",
        action="store_true",
        help="show what would be done; change nothing",
    )
    add_reporting(g)


def _run(run: Run) -> int:
    job = run.job()
    test = run.options.test
    with contextlib.nullcontext() if test else backup_lock(job):
        return run_classic(
            job, test, run.console, run.runner, run.now, settings=run.settings_for(job),
            reporting=run.reporting,
        )  # fmt: skip


CLASSIC = Subcommand(run=_run, output=_output)
