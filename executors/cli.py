"""`zfs-autobackup`: the classic invocation, observe -> desire -> plan -> execute.

    zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]

prints the classic log (settings summary, Selecting, Snapshotting, Sending and
thinning) and returns the number of failed datasets (255 for usage and fatal errors).
`--test` computes the same plan and shows it through a runner that refuses writes.
This is the only module that turns errors into exit codes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from executors.console import Console
from executors.execute import Executor
from executors.options import build_parser, job_from_args
from executors.runner import LocalRunner, ReadOnlyRunner, Runner, SshSettings
from planner import invariants
from planner.actions import Action, CreateSnapshots
from planner.plan import Plan, build_plan
from reconcile import __version__
from reconcile import graph as snapgraph
from reconcile.desire import Desired, desire
from reconcile.errors import EXIT_FATAL, ReconcileError
from reconcile.job import Job
from reconcile.model import HostState
from reconcile.observe import observe_source, observe_target, resume_info


@attrs.frozen
class Observed:
    source: HostState
    target: Optional[HostState]
    desired: Desired
    plan: Plan


def settings_summary(job: Job, console: Console) -> None:
    console.title("Settings summary")
    for label, host, schedule in (
        ("[Source]", job.source, job.keep_source),
        ("[Target]", job.target, job.keep_target),
    ):
        if label == "[Target]" and job.target_path is None:
            break
        if host.ssh_config:
            console.verbose(f"{label} Using custom SSH config: {host.ssh_config}")
        console.verbose(
            f"{label} Datasets on: {host.ssh}" if host.ssh else f"{label} Datasets are local"
        )
        for line in schedule.describe() if schedule else ["Keep all snapshots (--no-thinning)."]:
            console.verbose(f"{label} {line}")
        if label == "[Source]":
            prop = job.naming.property_name
            if job.target_path is None:
                console.verbose(
                    f"[Source] Selects all datasets that have property '{prop}=true' "
                    f"(or childs of datasets that have '{prop}=child')"
                )
            else:
                console.verbose(
                    f"[Source] Send all datasets that have '{prop}=true' or '{prop}=child'"
                )
        else:
            console.verbose(f"[Target] Receive datasets under: {job.target_path}")


def observe_and_plan(job: Job, runner: Runner, console: Console, now: float) -> Observed:
    """Read both hosts, compute the desired state and the checked plan. Changes nothing."""
    source = observe_source(runner, job.source, job.naming.property_name)
    target = observe_target(runner, job.target, job.target_path) if job.target_path else None
    resume = resume_info(runner, job.source, target) if target is not None else {}
    graph = snapgraph.build(source, target)
    desired = desire(job, source, target, graph, now, resume)
    plan = build_plan(job, desired, source, target)
    invariants.check(plan, job, desired)
    return Observed(source, target, desired, plan)


def print_selection(desired: Desired, console: Console) -> int:
    """The `#### Selecting` section; returns the number of invalid property values."""
    console.title("Selecting")
    invalid = 0
    for choice in desired.choices:
        line = f"[Source] {choice.dataset}: {choice.message}"
        if choice.invalid:
            console.error(line)
            invalid += 1
        elif choice.quiet:
            console.debug(line)
        else:
            console.verbose(line)
    return invalid


def run_classic(job: Job, args_test: bool, console: Console, runner: Runner, now: float) -> int:
    if args_test:
        console.warning("TEST MODE - SIMULATING WITHOUT MAKING ANY CHANGES")
    settings_summary(job, console)
    observed = observe_and_plan(job, runner, console, now)
    desired, plan = observed.desired, observed.plan
    invalid = print_selection(desired, console)
    if not desired.selected:
        console.error(
            f"No source filesystems selected, please do a 'zfs set "
            f"{job.naming.property_name}=true' on the source datasets you want to select."
        )
        return EXIT_FATAL

    if job.snapshot:
        console.title("Snapshotting")
        for note in plan.notes:
            if not note.text.startswith("skipped:"):
                console.verbose(f"[Source] {note.dataset}: {note.text}")
        if not any(isinstance(a, CreateSnapshots) for a in plan.actions):
            console.verbose("[Source] No changes anywhere: not creating snapshots.")

    second = "Sending and thinning" if job.target_path else "Thinning source"
    state = {"titled": False}

    def before(action: Action) -> None:
        if not state["titled"] and not isinstance(action, CreateSnapshots):
            state["titled"] = True
            console.title(second)

    for problem in plan.problems:
        label = "[Target]" if problem.side == "target" else "[Source]"
        console.error(f"{label} {problem.dataset}: FAILED: {problem.message}")
    for note in plan.notes:
        if note.text.startswith("skipped:"):
            console.debug(f"[Source] {note.dataset}: {note.text}")
    outcome = Executor(job, runner, console).execute(
        plan, stop_on_error=console.show_debug, before_first=before
    )
    if not state["titled"]:
        console.title(second)
    failed = len(outcome.failed) + invalid
    if failed:
        console.error(f"{failed} dataset(s) failed!")
    elif args_test:
        console.title("All tests successful.")
    else:
        console.title("All operations completed successfully")
        if not job.target_path:
            console.verbose("(No target_path specified, only operated as snapshot tool.)")
    if args_test:
        console.verbose("")
        console.warning("TEST MODE - DID NOT MAKE ANY CHANGES!")
    return min(failed, EXIT_FATAL - 1)


def main(argv: Optional[Sequence[str]] = None, *, clock: Callable[[], float] = time.time) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    control_dir = tempfile.mkdtemp(prefix="zfs-autobackup-ssh-")
    try:
        args = build_parser().parse_args(args_list)
        console = Console(verbose=args.verbose, debug=args.debug or args.debug_output)
        if args.raw:
            console.warning(
                "The --raw option isn't needed anymore "
                "(encrypted datasets are sent raw automatically)."
            )
        if args.progress:
            console.warning("--progress is not implemented yet: transfers run without it.")
        if args.resume:
            console.warning("The --resume option isn't needed anymore (it's autodetected now).")
        job = job_from_args(args)
        console.verbose(
            f"zfs-autobackup v{__version__} (zfs-reconcile, compatible with zfs-autobackup v3)"
        )
        local = LocalRunner(
            console.command, ssh=SshSettings(control_dir=control_dir), show_output=args.debug_output
        )
        runner: Runner = ReadOnlyRunner(local, console.command) if args.test else local
        return run_classic(job, args.test, console, runner, clock())
    except ReconcileError as exc:
        console.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console.error("Aborted")
        return EXIT_FATAL
    finally:
        _close_ssh_masters(control_dir)


def _close_ssh_masters(control_dir: str) -> None:
    """Stop the multiplexed ssh connections this run opened, then drop their folder."""
    import subprocess
    from pathlib import Path

    for socket in Path(control_dir).iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "unused"],
            capture_output=True,
            check=False,
            timeout=10,
        )
    shutil.rmtree(control_dir, ignore_errors=True)
