"""`zfs-autobackup verify [options] BACKUP-NAME TARGET-PATH`: compare the data of the
backup's snapshots with the source's, both ways (docs/verify.md). Read-only towards the
datasets: its runner lets through only the temporary changes planner.verify declares
(holds, read-only mounts, snapdev), each undone."""

from __future__ import annotations

import argparse

from executors import verify
from executors.options import duration_type
from executors.subcommands import Run, Subcommand, target_path
from planner.verify import is_temporary
from reconcile import zfs_names
from reconcile.errors import UsageError, quoted
from reconcile.verify import MIN_SAMPLE, VerifyRequest


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not MIN_SAMPLE <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid value {quoted(text)} for --sample: a fraction from {MIN_SAMPLE} to 1 "
            "(0.1: a tenth of each file's chunks) is allowed"
        )
    return value


def _arguments(p: argparse.ArgumentParser) -> None:
    target_path(p)
    g = p.add_argument_group("Verify (docs/verify.md)")
    which = g.add_mutually_exclusive_group()
    which.add_argument(
        "--snapshot",
        dest="verify_snapshot",
        metavar="NAME",
        help="compare this snapshot (both sides must have it); default: the newest common one",
    )
    which.add_argument(
        "--all-common", action="store_true", help="compare every snapshot both sides have"
    )
    g.add_argument(
        "--sample",
        metavar="FRACTION",
        type=_fraction,
        help="read only this fraction of each file's 1 MiB chunks (the same on both sides; "
        "the slice moves on each day, so that daily runs cover everything)",
    )
    g.add_argument(
        "--budget",
        metavar="DURATION",
        type=duration_type("--budget"),
        help="stop cleanly when DURATION (e.g. 30m, 2h) has passed since the comparing "
        "began, and say what was covered",
    )
    g.add_argument("--json", action="store_true", help="the results as JSON")


def request(args: argparse.Namespace) -> VerifyRequest:
    """What a verify's command line asks (a --snapshot name checked as zfs checks it)."""
    name = args.verify_snapshot
    problem = None if name is None else zfs_names.component_problem(name)
    if problem is not None:
        raise UsageError(f"Invalid --snapshot {quoted(name)}: {problem}")
    # (a fraction over a half is every chunk: a full verification; --debug: one by one)
    sample = args.sample if args.sample is not None and round(1 / args.sample) > 1 else None
    debug = args.debug or args.debug_output
    return VerifyRequest(
        snapshot=args.verify_snapshot,
        all_common=args.all_common,
        sample=sample,
        budget=args.budget,
        parallel=1 if debug else args.parallel,
    )


def _run(run: Run) -> int:
    job = run.job()
    return verify.run_verify(job, request(run.args), run.console, run.runner, run.now,
                             as_json=run.args.json, together=run.options.settings.observe_together,
                             progress=run.options.progress)  # fmt: skip


VERIFY = Subcommand(
    run=_run,
    arguments=_arguments,
    epilog="Exit code: 0 every dataset verified, 1 a difference, 3 could not verify "
    "(docs/verify.md).",
    allow=is_temporary,
)
