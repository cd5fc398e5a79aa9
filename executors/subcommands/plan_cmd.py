"""`zfs-autobackup plan [options] BACKUP-NAME [TARGET-PATH]`: show the plan, change
nothing; save it with --out (docs/plan-apply.md)."""

from __future__ import annotations

from typing import Any

from executors import workflow
from executors.options import add_reporting
from executors.subcommands import Run, Subcommand


def _output(g: Any) -> None:
    g.add_argument(
        "--out", metavar="FILE", help="save the plan, to apply it later with: apply FILE"
    )
    g.add_argument(
        "--json", action="store_true", help="print the plan as JSON (docs/plan-format.md)"
    )
    g.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to do, 2 when there are changes, 1 on errors",
    )
    g.add_argument(
        "--estimate",
        action="store_true",
        help="estimate the size of each send (its zfs send with -n -P, one each)",
    )
    g.add_argument(
        "--commands",
        action="store_true",
        help="also print the exact commands, in the order apply runs them",
    )
    add_reporting(g)


def _run(run: Run) -> int:
    args = run.args
    job = run.job()
    return workflow.run_plan(
        job,
        run.console,
        run.runner,
        run.now,
        out=args.out,
        as_json=args.json,
        detailed=args.detailed_exitcode,
        estimate=args.estimate,
        commands=args.commands,
        settings=run.settings_for(job, run.options.settings),
    )


PLAN = Subcommand(
    run=_run,
    output=_output,
    epilog="Exit code: 0 a plan without problems, 1 a problem in the plan or an error; "
    "with --detailed-exitcode 2 when the plan has changes.",
)
