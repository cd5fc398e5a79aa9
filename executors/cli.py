"""`zfs-autobackup`: the entry point. Parses the command line, runs a mode, exits.

The modes (subcommands) are registered in executors.modes; each one's command line and
run function are in its module of executors.subcommands. This is the only module that
turns errors into exit codes: 255 for usage and fatal errors in the classic mode (as
v3), the number of failed datasets otherwise; `plan` and `apply` exit 1 on errors (and
`plan --detailed-exitcode` 2 when there are changes), `status` 3 (UNKNOWN).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from executors import monitor
from executors.console import Console
from executors.modes import Mode, mode_of
from executors.options import RunOptions, build_parser, run_options
from executors.runner import LocalRunner, ReadOnlyRunner, Runner, SshSettings, close_masters
from executors.subcommands import Run
from reconcile import formats
from reconcile.errors import ReconcileError


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
    # (a read-only mode that makes temporary changes lets through exactly those)
    return ReadOnlyRunner(local, console.command, allow=options.mode.command.allow)


@attrs.frozen
class Deps:
    """What a run takes from the world, made once in main (tests pass their own)."""

    clock: Callable[[], float] = time.time
    console: Callable[[RunOptions], Console] = make_console
    #: (options, console, folder for the ssh control sockets) -> runner
    runner: Callable[[RunOptions, Console, str], Runner] = make_runner


def _run(mode: Mode, rest: list[str], deps: Deps, control_dir: str, now: float) -> int:
    """Parse the mode's command line, make what its run takes, run it."""
    args = build_parser(mode=mode).parse_args(rest)
    options = run_options(mode, args)
    console = deps.console(options)
    monitor.check_prometheus_file(getattr(args, "prometheus_file", None))
    runner = deps.runner(options, console, control_dir)
    reporting = _reporting(args, deps, now)
    settings = options.settings
    if reporting is not None and reporting.prometheus_file:
        settings = attrs.evolve(settings, send_sizes=True)
    run = Run(args, options, console, runner, now, reporting, settings)
    return mode.command.run(run)


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
        return exc.exit_code if mode.about.own_error_codes else mode.error_exit
    except KeyboardInterrupt:
        Console().error("Aborted")
        return mode.error_exit
    finally:
        close_masters(control_dir)
        shutil.rmtree(control_dir, ignore_errors=True)
