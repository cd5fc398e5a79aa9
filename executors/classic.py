"""The classic invocation: plan + apply in one go, with zfs-autobackup v3's log.

    zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]

prints the settings summary, `#### Selecting`, `#### Snapshotting`, `#### Sending and
thinning` (or `#### Thinning source`), and returns the number of failed datasets.
`--test` runs the same through a runner that refuses writes. The work is the session
pipeline's (executors.session) and the executor's; this module only prints.
"""

from __future__ import annotations

from typing import Optional

import attrs

from executors.console import Console
from executors.execute import DEFAULTS, Executor, Settings
from executors.monitor import Reporting
from executors.runner import Runner
from executors.session import Prepared, no_selection, nothing_to_select, prepare
from planner import compile as compiler
from planner.actions import SOURCE, TARGET, CreateSnapshots
from planner.compile import Step
from planner.plan import SKIPPED, SNAPSHOT_NOTE
from reconcile.desire import Desired
from reconcile.errors import EXIT_FATAL
from reconcile.job import Job


def settings_summary(job: Job, console: Console) -> None:
    console.title("Settings summary")
    for side, host, schedule in (
        (SOURCE, job.remote.source, job.thinning.keep_source),
        (TARGET, job.remote.target, job.thinning.keep_target),
    ):
        label = side.label
        if side == TARGET and job.remote.target_path is None:
            break
        if host.ssh_config:
            console.verbose(f"{label} Using custom SSH config: {host.ssh_config}")
        console.verbose(
            f"{label} Datasets on: {host.ssh}" if host.ssh else f"{label} Datasets are local"
        )
        if side == SOURCE and job.transfer.read_only_source:
            console.verbose(
                f"{label} Read-only (--read-only-source): no snapshots, holds, bookmarks or "
                "thinning here; sends the snapshots the source's own schedule takes"
            )
        elif schedule:
            for line in schedule.describe():
                console.verbose(f"{label} {line}")
        else:
            console.verbose(f"{label} Keep all snapshots (--no-thinning).")
        if side == SOURCE:
            prop = job.naming.property_name
            if job.remote.target_path is None:
                console.verbose(
                    f"{label} Selects all datasets that have property '{prop}=true' "
                    f"(or childs of datasets that have '{prop}=child')"
                )
            else:
                console.verbose(
                    f"{label} Send all datasets that have '{prop}=true' or '{prop}=child'"
                )
        else:
            console.verbose(f"{label} Receive datasets under: {job.remote.target_path}")
    if job.remote.exclude_paths:
        console.verbose(
            "NOTE: Source and target are on the same host, excluding target-path from selection."
        )
    if job.auto_exclude_received:
        console.verbose(
            "NOTE: Source and target are on the same host, adding --exclude-received to "
            "commandline. (use --include-received to overrule)"
        )


def compile_options(settings: Settings) -> compiler.Options:
    return compiler.Options(
        parallel=settings.parallel, progress=settings.progress or settings.send_sizes
    )


def prepare_run(job: Job, runner: Runner, now: float, settings: Settings) -> Prepared:
    """Observe, plan and compile for a run from the command line: as its settings say
    (both hosts at once, the listing cache)."""
    options = compile_options(settings)
    together, store = settings.observe_together, settings.store
    return prepare(job, runner, now, options, together=together, store=store)


def print_selection(desired: Desired, console: Console) -> None:
    """The `#### Selecting` section."""
    console.title("Selecting")
    for choice in desired.choices:
        line = f"{SOURCE.label} {choice.dataset}: {choice.message}"
        if choice.quiet:
            console.debug(line)
        else:
            console.verbose(line)


def run_classic(
    job: Job,
    args_test: bool,
    console: Console,
    runner: Runner,
    now: float,
    *,
    settings: Settings = DEFAULTS,
    reporting: Optional[Reporting] = None,
) -> int:
    if args_test:
        console.warning("TEST MODE - SIMULATING WITHOUT MAKING ANY CHANGES")
    settings_summary(job, console)
    settings = attrs.evolve(settings, progress=settings.progress and not args_test)
    prepared = prepare_run(job, runner, now, settings)
    desired, plan = prepared.desired, prepared.plan
    print_selection(desired, console)
    if nothing_to_select(desired):
        console.error(no_selection(job).message)
        return EXIT_FATAL

    if job.selection.snapshot:
        console.title("Snapshotting")
        for note in plan.notes:
            if note.kind == SNAPSHOT_NOTE:
                console.verbose(f"{SOURCE.label} {note.dataset}: {note.text}")
        if not any(isinstance(a, CreateSnapshots) for a in plan.actions):
            console.verbose(f"{SOURCE.label} No changes anywhere: not creating snapshots.")

    second = "Sending and thinning" if job.remote.target_path else "Thinning source"
    state = {"titled": False}

    def open_second() -> None:
        """The second section: its title, then what the plan found (problems, notes)."""
        state["titled"] = True
        console.title(second)
        for problem in plan.problems:
            console.error(f"{problem.side.label} {problem.dataset}: FAILED: {problem.message}")
        for note in plan.notes:
            label = note.side.label
            if note.kind == SKIPPED:
                console.debug(f"{label} {note.dataset}: {note.text}")
            elif note.kind != SNAPSHOT_NOTE:
                console.verbose(f"{label} {note.dataset}: {note.text}")

    def before(step: Step) -> None:
        if not state["titled"] and not step.snapshotting:
            open_second()

    outcome = Executor(job, runner, console, settings).execute(
        prepared.compiled,
        failed=[p.unit for p in plan.problems],
        stop_on_error=settings.debug,
        before=before,
    )
    if settings.store is not None and not args_test:
        settings.store.reread(runner)
    if not state["titled"]:
        open_second()
    failed = len(outcome.failed)
    if failed:
        console.error(f"{failed} dataset(s) failed!")
    elif args_test:
        console.title("All tests successful.")
    else:
        console.title("All operations completed successfully")
        if not job.remote.target_path:
            console.verbose("(No target_path specified, only operated as snapshot tool.)")
    if args_test:
        console.verbose("")
        console.warning("TEST MODE - DID NOT MAKE ANY CHANGES!")
    code = min(failed, EXIT_FATAL - 1)
    if reporting is not None and not args_test:
        code = reporting.finish(console, job, prepared, outcome, code)
    return code
