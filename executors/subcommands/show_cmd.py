"""`zfs-autobackup show FILE`: print a saved plan (docs/plan-apply.md)."""

from __future__ import annotations

import argparse

from executors import workflow
from executors.subcommands import Run, Subcommand


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the plan file's JSON")


def _run(run: Run) -> int:
    return workflow.run_show(run.args.plan_file, run.console, run.args.json)


SHOW_FILE = Subcommand(run=_run, arguments=_arguments)
