"""`zfs-autobackup`: the entry point. Parses the command line, runs a mode, exits.

    zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]         classic: plan + apply, v3 log
    zfs-autobackup plan  [options] BACKUP-NAME [TARGET-PATH]   show the plan, change nothing
    zfs-autobackup apply [options] BACKUP-NAME [TARGET-PATH]   plan, confirm, execute
    zfs-autobackup apply FILE                                  execute a saved plan
    zfs-autobackup show  FILE                                  print a saved plan

This is the only module that turns errors into exit codes: 255 for usage and fatal
errors in the classic mode (as v3), the number of failed datasets otherwise; `plan` and
`apply` exit 1 on errors (and `plan --detailed-exitcode` 2 when there are changes).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

from executors.classic import run_classic
from executors.console import Console
from executors.lock import backup_lock
from executors.options import build_parser, job_from_args, run_settings
from executors.runner import LocalRunner, ReadOnlyRunner, Runner, SshSettings
from reconcile import __version__
from reconcile.errors import EXIT_FATAL, ReconcileError

SUBCOMMANDS = ("plan", "apply", "show")
#: plan/apply/show exit codes (Terraform's): 1 = error
EXIT_ERROR = 1


def _console(args_list: Sequence[str]) -> Console:
    verbose = "--verbose" in args_list or "-v" in args_list
    return Console(verbose=verbose, debug="--debug" in args_list or "--debug-output" in args_list)


def _runner(console: Console, control_dir: str, show_output: bool, read_only: bool) -> Runner:
    local = LocalRunner(
        console.command, ssh=SshSettings(control_dir=control_dir), show_output=show_output
    )
    return ReadOnlyRunner(local, console.command) if read_only else local


def _run(args_list: list[str], console: Console, control_dir: str, now: float) -> int:
    mode = args_list[0] if args_list and args_list[0] in SUBCOMMANDS else "classic"
    rest = args_list[1:] if mode != "classic" else args_list
    if mode != "classic":
        # tabulate and cattrs are only needed here: the classic run starts faster without
        from executors import workflow

    if mode == "show" or (mode == "apply" and len(rest) >= 1 and Path(rest[0]).is_file()):
        parser = build_parser(mode=f"{mode}-file")
        args = parser.parse_args(rest)
        if mode == "show":
            return workflow.run_show(args.plan_file, console, args.json)
        runner = _runner(console, control_dir, args.debug_output, read_only=False)
        with backup_lock(workflow.load_plan(args.plan_file).job):
            return workflow.run_apply_file(args.plan_file, console, runner, run_settings(args))

    args = build_parser(mode=mode).parse_args(rest)
    # as zfs-autobackup 3.3 says it (on stdout)
    if args.resume:
        console.warning("The --resume option isn't needed anymore (it's autodetected now)")
    if args.raw:
        console.warning(
            "The --raw option isn't needed anymore (it's autodetected now). "
            "Also see --encrypt and --decrypt."
        )
    if args.ignore_replicated:
        console.warning("--ignore-replicated has been renamed, using --exclude-unchanged")
    job = job_from_args(args)
    console.verbose(
        f"zfs-autobackup v{__version__} (zfs-reconcile, compatible with zfs-autobackup v3)"
    )
    if mode == "plan":
        runner = _runner(console, control_dir, args.debug_output, read_only=True)
        return workflow.run_plan(
            job,
            console,
            runner,
            now,
            out=args.out,
            as_json=args.json,
            detailed=args.detailed_exitcode,
            estimate=args.estimate,
        )
    runner = _runner(
        console, control_dir, args.debug_output, read_only=getattr(args, "test", False)
    )
    if mode == "apply":
        with backup_lock(job):
            return workflow.run_apply(
                job,
                console,
                runner,
                now,
                auto_approve=args.auto_approve,
                settings=run_settings(args),
            )
    with contextlib.nullcontext() if args.test else backup_lock(job):
        return run_classic(job, args.test, console, runner, now, settings=run_settings(args))


def main(argv: Optional[Sequence[str]] = None, *, clock: Callable[[], float] = time.time) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    console = _console(args_list)
    classic = not (args_list and args_list[0] in SUBCOMMANDS)
    control_dir = tempfile.mkdtemp(prefix="zfs-autobackup-ssh-")
    try:
        return _run(args_list, console, control_dir, clock())
    except ReconcileError as exc:
        console.error(str(exc))
        return exc.exit_code if classic else EXIT_ERROR
    except KeyboardInterrupt:
        console.error("Aborted")
        return EXIT_FATAL if classic else EXIT_ERROR
    finally:
        _close_ssh_masters(control_dir)


def _close_ssh_masters(control_dir: str) -> None:
    """Stop the multiplexed ssh connections this run opened, then drop their folder."""
    for control in Path(control_dir).iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "unused"],
            capture_output=True,
            check=False,
            timeout=10,
        )
    shutil.rmtree(control_dir, ignore_errors=True)
