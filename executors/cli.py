"""`zfs-autobackup`: the entry point. Parses the command line, runs a mode, exits.

The modes (subcommands) and their command lines are declared in executors.modes. This
is the only module that turns errors into exit codes: 255 for usage and fatal errors in
the classic mode (as v3), the number of failed datasets otherwise; `plan` and `apply`
exit 1 on errors (and `plan --detailed-exitcode` 2 when there are changes), `status` 3
(UNKNOWN).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from executors import monitor
from executors.classic import run_classic
from executors.console import Console
from executors.lock import backup_lock
from executors.modes import Mode, mode_of
from executors.options import (
    RunOptions,
    build_parser,
    job_from_args,
    restore_request,
    run_options,
    verify_request,
)
from executors.runner import LocalRunner, ReadOnlyRunner, Runner, SshSettings, close_masters
from reconcile import __version__, formats
from reconcile.errors import ReconcileError, UsageError
from reconcile.never import assert_never


def make_console(options: RunOptions) -> Console:
    return Console(verbose=options.verbose, debug=options.debug)


def make_runner(options: RunOptions, console: Console, control_dir: str) -> Runner:
    local = LocalRunner(
        console.command,
        ssh=SshSettings(control_dir=control_dir),
        show_output=options.debug_output,
    )
    if not options.read_only:
        return local
    if options.mode.about.temporary:
        from planner.verify import is_temporary

        return ReadOnlyRunner(local, console.command, allow=is_temporary)
    return ReadOnlyRunner(local, console.command)


@attrs.frozen
class Deps:
    """What a run takes from the world, made once in main (tests pass their own)."""

    clock: Callable[[], float] = time.time
    console: Callable[[RunOptions], Console] = make_console
    #: (options, console, folder for the ssh control sockets) -> runner
    runner: Callable[[RunOptions, Console, str], Runner] = make_runner


def _run(mode: Mode, rest: list[str], deps: Deps, control_dir: str, now: float) -> int:
    args = build_parser(mode=mode).parse_args(rest)
    options = run_options(mode, args)
    console = deps.console(options)
    if mode is not Mode.CLASSIC:
        # tabulate and cattrs are only needed here: the classic run starts faster without
        from executors import workflow
    if mode is Mode.SHOW_FILE:
        return workflow.run_show(args.plan_file, console, args.json)
    monitor.check_prometheus_file(getattr(args, "prometheus_file", None))
    runner = deps.runner(options, console, control_dir)
    reporting = _reporting(args, deps, now)
    settings = options.settings
    if reporting is not None and reporting.prometheus_file:
        settings = attrs.evolve(settings, send_sizes=True)
    if mode is Mode.APPLY_FILE:
        saved = workflow.load_plan(args.plan_file)
        with backup_lock(saved.job):
            if saved.restore is not None:
                from executors import restore

                if reporting is not None:
                    raise UsageError(
                        f"{args.plan_file} is a restore's plan: --on-failure, --on-success "
                        "and --prometheus-file report backups (apply it without them)"
                    )
                return restore.apply_file(args.plan_file, saved, console, runner, settings)
            return workflow.run_apply_file(
                args.plan_file, saved, console, runner, settings, reporting=reporting
            )

    # as zfs-autobackup 3.3 says it (on stdout)
    if args.resume:
        console.warning("The --resume option isn't needed anymore (it's autodetected now)")
    if args.raw and not mode.restores:
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
    if mode is Mode.STATUS:
        if args.verify_max_age is not None and not job.target_path:
            raise UsageError("--verify-max-age needs TARGET-PATH: the records are on the copies")
        return monitor.run_status(
            job,
            console,
            runner,
            now,
            warn=args.warn,
            crit=args.crit,
            fmt=args.format,
            prometheus_file=args.prometheus_file,
            together=options.settings.observe_together,
            verify_max_age=args.verify_max_age,
        )
    if mode is Mode.PLAN:
        return workflow.run_plan(
            job,
            console,
            runner,
            now,
            out=args.out,
            as_json=args.json,
            detailed=args.detailed_exitcode,
            estimate=args.estimate,
            commands=args.commands,
            settings=options.settings,
        )
    if mode is Mode.APPLY:
        with backup_lock(job):
            return workflow.run_apply(
                job,
                console,
                runner,
                now,
                auto_approve=args.auto_approve,
                settings=settings,
                reporting=reporting,
            )
    if mode is Mode.RESTORE or mode is Mode.PLAN_RESTORE:
        from executors import restore

        request = restore_request(args)
        if mode is Mode.RESTORE and args.list:
            return restore.list_restore_points(job, request, console, runner, as_json=args.json)
        if mode is Mode.RESTORE:
            return restore.run_restore(job, request, console, runner, now,
                                       execute=not options.test, settings=settings)  # fmt: skip
        return restore.run_restore(job, request, console, runner, now, execute=False,
                                   commands=args.commands, settings=settings, out=args.out,
                                   as_json=args.json)  # fmt: skip
    if mode is Mode.VERIFY:
        from executors import verify

        together = options.settings.observe_together
        return verify.run_verify(job, verify_request(args), console, runner, now, as_json=args.json,
                                 together=together, progress=options.progress)  # fmt: skip
    if mode is Mode.CLASSIC:
        with contextlib.nullcontext() if options.test else backup_lock(job):
            return run_classic(
                job, options.test, console, runner, now, settings=settings, reporting=reporting
            )
    return assert_never(mode)


def _reporting(args: argparse.Namespace, deps: Deps, now: float) -> Optional[monitor.Reporting]:
    """--prometheus-file, --on-failure, --on-success (None: none of them)."""
    hooks = {
        option: _hook(option, getattr(args, option.lstrip("-").replace("-", "_"), None))
        for option in ("--on-failure", "--on-success")
    }
    path = getattr(args, "prometheus_file", None)
    if not path and not any(hooks.values()):
        return None
    return monitor.Reporting(
        clock=deps.clock,
        started=now,
        prometheus_file=path,
        on_failure=hooks["--on-failure"],
        on_success=hooks["--on-success"],
        warn=args.warn,
        crit=args.crit,
    )


def _hook(option: str, text: Optional[str]) -> tuple[str, ...]:
    return () if text is None else formats.split_command(option, text)


def main(argv: Optional[Sequence[str]] = None, deps: Deps = Deps()) -> int:
    mode, rest = mode_of(list(sys.argv[1:] if argv is None else argv))
    control_dir = tempfile.mkdtemp(prefix="zfs-autobackup-ssh-")
    try:
        return _run(mode, rest, deps, control_dir, deps.clock())
    except ReconcileError as exc:
        # (before the command line is parsed there is no run option yet: errors always show)
        Console().error(str(exc))
        # (the classic mode exits with the error's own code, as v3)
        return exc.exit_code if mode is Mode.CLASSIC else mode.error_exit
    except KeyboardInterrupt:
        Console().error("Aborted")
        return mode.error_exit
    finally:
        close_masters(control_dir)
        shutil.rmtree(control_dir, ignore_errors=True)
