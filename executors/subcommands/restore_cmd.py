"""`zfs-autobackup restore [options] BACKUP-NAME TARGET-PATH DATASET`: get a dataset back
from its backup (or `--list` its restore points); and `zfs-autobackup plan restore ...`:
show that plan, or save it with --out (docs/restore.md)."""

from __future__ import annotations

import argparse

from executors import restore
from executors.options import check_dataset
from executors.subcommands import Run, Subcommand, target_path
from reconcile.restore import RestoreRequest


def _arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """TARGET-PATH DATASET, and the options both restore modes take."""
    target_path(p)
    p.add_argument(
        "dataset",
        metavar="DATASET",
        help="the dataset to restore, as named on the source host",
    )
    g = p.add_argument_group("Restore (docs/restore.md)")
    g.add_argument(
        "--snapshot",
        dest="restore_snapshot",
        metavar="NAME|TIME",
        help="the snapshot to restore: its name, or a time ('2020-02-18 17:00': the newest "
        "at or before it); default: the newest",
    )
    g.add_argument(
        "--to", metavar="NEW", help="restore beside the original, as NEW on the source host"
    )
    g.add_argument(
        "--recursive", action="store_true", help="also the children of DATASET the backup has"
    )
    return g


def request(args: argparse.Namespace) -> RestoreRequest:
    """What a restore's command line asks (names checked as zfs checks them)."""
    check_dataset("DATASET", args.dataset)
    if args.to is not None:
        check_dataset("--to", args.to)
    return RestoreRequest(
        dataset=args.dataset,
        snapshot=args.restore_snapshot,
        to=args.to,
        recursive=args.recursive,
        force=args.force,
        raw=args.raw,
    )


def _restore_arguments(p: argparse.ArgumentParser) -> None:
    g = _arguments(p)
    g.add_argument(
        "--test", "--dry-run", "-n", action="store_true", help="show the plan; change nothing"
    )
    g.add_argument(
        "--list",
        action="store_true",
        help="list the restore points (snapshots) of DATASET, change nothing",
    )
    g.add_argument("--json", action="store_true", help="--list: as JSON")


def _restore(run: Run) -> int:
    job = run.job()
    if run.args.list:
        return restore.list_restore_points(
            job, request(run.args), run.console, run.runner, as_json=run.args.json
        )
    return restore.run_restore(job, request(run.args), run.console, run.runner, run.now,
                               execute=not run.options.test, settings=run.settings)  # fmt: skip


RESTORE = Subcommand(
    run=_restore,
    arguments=_restore_arguments,
    epilog="Exit code: 0 restored (or nothing to do), else the number of datasets that "
    "failed, or 1 for a refusal or an error (docs/restore.md).",
)


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    g = _arguments(p)
    g.add_argument(
        "--commands", action="store_true", help="also print the exact commands, in order"
    )
    g.add_argument(
        "--out", metavar="FILE", help="save the plan, to apply it later with: apply FILE"
    )
    g.add_argument(
        "--json", action="store_true", help="print the plan as JSON (docs/plan-format.md)"
    )


def _plan(run: Run) -> int:
    args = run.args
    job = run.job()
    return restore.run_restore(job, request(args), run.console, run.runner, run.now,
                               execute=False, commands=args.commands, settings=run.settings,
                               out=args.out, as_json=args.json)  # fmt: skip


PLAN_RESTORE = Subcommand(
    run=_plan,
    arguments=_plan_arguments,
    epilog="Exit code: 0 a plan without refusals, 1 a refusal or an error (docs/restore.md).",
)
