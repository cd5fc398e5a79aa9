"""`zfs-autobackup apply [options] BACKUP-NAME [TARGET-PATH]`: plan, confirm, execute;
and `zfs-autobackup apply FILE`: execute a saved plan, a backup's or a restore's
(docs/plan-apply.md)."""

from __future__ import annotations

import argparse
from typing import Any

from executors import workflow
from executors.lock import backup_lock
from executors.options import add_parallel, add_reporting
from executors.subcommands import Run, Subcommand
from reconcile.errors import UsageError


def _output(g: Any) -> None:
    g.add_argument("--auto-approve", action="store_true", help="apply without asking")
    add_reporting(g)


def _run(run: Run) -> int:
    job = run.job()
    with backup_lock(job):
        return workflow.run_apply(
            job,
            run.console,
            run.runner,
            run.now,
            auto_approve=run.args.auto_approve,
            settings=run.settings_for(job),
            reporting=run.reporting,
        )


APPLY = Subcommand(
    run=_run,
    output=_output,
    epilog="When a dataset fails, the others go on; the exit code is the number of failed "
    "datasets (1 also for an error, or an apply that was not confirmed).",
)


def _file_arguments(p: argparse.ArgumentParser) -> None:
    """How a saved plan is applied: the run options that a file leaves open."""
    p.add_argument("--auto-approve", action="store_true", help="(a saved plan needs no approval)")
    add_parallel(p)
    add_reporting(p)
    p.add_argument("--verbose", "-v", action="store_true", help="verbose output")
    p.add_argument(
        "--debug", action="store_true", help="show every command; stop at the first failure"
    )
    p.add_argument("--debug-output", action="store_true", help="show commands with their output")


def _run_file(run: Run) -> int:
    path = run.args.plan_file
    saved = workflow.load_plan(path)
    with backup_lock(saved.job):
        if saved.restore is None:
            return workflow.run_apply_file(
                path, saved, run.console, run.runner, run.settings, reporting=run.reporting
            )
        from executors import restore

        if run.reporting is not None:
            raise UsageError(
                f"{path} is a restore's plan: --on-failure, --on-success "
                "and --prometheus-file report backups (apply it without them)"
            )
        return restore.apply_file(path, saved, run.console, run.runner, run.settings)


APPLY_FILE = Subcommand(run=_run_file, arguments=_file_arguments)
