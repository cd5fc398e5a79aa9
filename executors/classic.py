"""The classic invocation: plan + apply in one go, with zfs-autobackup v3's log.

    zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]

prints the settings summary, `#### Selecting`, `#### Snapshotting`, `#### Sending and
thinning` (or `#### Thinning source`), and returns the number of failed datasets.
`--test` runs the same through a runner that refuses writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import attrs

from executors.console import Console
from executors.execute import DEFAULTS, Executor, Settings
from executors.runner import Runner
from planner import invariants
from planner.actions import TARGET, Action, CreateSnapshots, Send
from planner.cover import present_sides
from planner.plan import SKIPPED, SNAPSHOT_NOTE, Plan, build_plan
from reconcile import graph as snapgraph
from reconcile.desire import Desired, desire
from reconcile.errors import EXIT_FATAL, SelectionError
from reconcile.job import Job
from reconcile.model import HostState
from reconcile.observe import observe_source, observe_target, pool_features, resume_info


@attrs.frozen
class Observed:
    source: HostState
    target: Optional[HostState]
    desired: Desired
    plan: Plan

    @property
    def features(self) -> dict[str, Mapping[str, frozenset[str]]]:
        """Per side, each pool's features as observed."""
        sides = {"source": self.source.features}
        if self.target is not None:
            sides["target"] = self.target.features
        return sides


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
    if job.exclude_paths:
        console.verbose(
            "NOTE: Source and target are on the same host, excluding target-path from selection."
        )
    if job.auto_exclude_received:
        console.verbose(
            "NOTE: Source and target are on the same host, adding --exclude-received to "
            "commandline. (use --include-received to overrule)"
        )


def observe_hosts(
    job: Job, runner: Runner, *, together: bool = False
) -> tuple[HostState, Optional[HostState]]:
    """Read the source and the target; `together`: both at once (they are read-only, and
    the target's listing is the longest part of most runs), unless they are the same
    remote host (whose first ssh connection both would race to set up)."""

    def source() -> HostState:
        return observe_source(
            runner,
            job.source,
            job.naming.property_name,
            exclude_paths=job.exclude_paths,
            exclude_received=job.excludes_received,
        )

    def target() -> Optional[HostState]:
        if not job.target_path:
            return None
        return observe_target(runner, job.target, job.target_path)

    same_remote = job.source.ssh is not None and job.source == job.target
    if not together or not job.target_path or same_remote:
        return source(), target()
    with ThreadPoolExecutor(2, "observe") as pool:
        theirs = pool.submit(target)
        return source(), theirs.result()


def observe_together(settings: Settings, console: Console) -> bool:
    """Observe source and target at once: unless --parallel 1 or --debug (one thing at a
    time, in order)."""
    return settings.parallel > 1 and not console.show_debug


def observe_and_plan(
    job: Job,
    runner: Runner,
    now: float,
    *,
    together: bool = False,
    snapshot_name: Optional[str] = None,
) -> Observed:
    """Read both hosts, compute the desired state and the checked plan. Changes nothing.
    `snapshot_name`: the new snapshot's name when it was fixed before (a saved plan)."""
    source, target = observe_hosts(job, runner, together=together)
    resume = resume_info(runner, job.source, target) if target is not None else {}
    graph = snapgraph.build(source, target)
    desired = desire(job, source, target, graph, now, resume, snapshot_name=snapshot_name)
    check_selection(desired)
    plan = build_plan(job, desired, source, target)
    invariants.check(plan, job, desired)
    sends = [a for a in plan.actions if isinstance(a, Send)]
    if sends:  # what shapes the sends: only read when there are any
        pools = [a.source_dataset.split("/")[0] for a in sends]
        source = pool_features(runner, source, pools, "[Source]")
        if target is not None:
            pools = [a.target_dataset.split("/")[0] for a in sends]
            target = pool_features(runner, target, pools, "[Target]")
    return Observed(source, target, desired, plan)


def check_selection(desired: Desired) -> None:
    """An invalid selection value stops the run before anything changes (as 3.3: one
    bad value, also inherited, would otherwise turn a backup into a missing dataset)."""
    invalid = [c for c in desired.choices if c.invalid]
    if invalid:
        raise SelectionError(
            "; ".join(f"{c.dataset}: {c.reason}" for c in invalid)
            + ". Nothing was changed: fix the value (zfs set / zfs inherit) and run again."
        )


def nothing_to_select(desired: Desired) -> bool:
    """As 3.3: "No source filesystems selected" only when no dataset has the property
    at all; when every dataset is excluded (--exclude-unchanged, false, ...) the run
    simply has nothing to do."""
    return not desired.selected and all(c.unset for c in desired.choices)


def no_selection_message(job: Job) -> str:
    return (
        f"No source filesystems selected, please do a 'zfs set "
        f"{job.naming.property_name}=true' on the source datasets you want to select."
    )


def print_selection(desired: Desired, console: Console) -> None:
    """The `#### Selecting` section."""
    console.title("Selecting")
    for choice in desired.choices:
        line = f"[Source] {choice.dataset}: {choice.message}"
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
) -> int:
    if args_test:
        console.warning("TEST MODE - SIMULATING WITHOUT MAKING ANY CHANGES")
    settings_summary(job, console)
    observed = observe_and_plan(job, runner, now, together=observe_together(settings, console))
    desired, plan = observed.desired, observed.plan
    print_selection(desired, console)
    if nothing_to_select(desired):
        console.error(no_selection_message(job))
        return EXIT_FATAL

    if job.snapshot:
        console.title("Snapshotting")
        for note in plan.notes:
            if note.kind == SNAPSHOT_NOTE:
                console.verbose(f"[Source] {note.dataset}: {note.text}")
        if not any(isinstance(a, CreateSnapshots) for a in plan.actions):
            console.verbose("[Source] No changes anywhere: not creating snapshots.")

    second = "Sending and thinning" if job.target_path else "Thinning source"
    state = {"titled": False}

    def open_second() -> None:
        """The second section: its title, then what the plan found (problems, notes)."""
        state["titled"] = True
        console.title(second)
        for problem in plan.problems:
            label = "[Target]" if problem.side == TARGET else "[Source]"
            console.error(f"{label} {problem.dataset}: FAILED: {problem.message}")
        for note in plan.notes:
            label = "[Target]" if note.side == TARGET else "[Source]"
            if note.kind == SKIPPED:
                console.debug(f"{label} {note.dataset}: {note.text}")
            elif note.kind != SNAPSHOT_NOTE:
                console.verbose(f"{label} {note.dataset}: {note.text}")

    def before(action: Action) -> None:
        if not state["titled"] and not isinstance(action, CreateSnapshots):
            open_second()

    outcome = Executor(
        job,
        runner,
        console,
        attrs.evolve(settings, progress=settings.progress and not args_test),
        present_sides(plan, job, observed.source, observed.target),
        observed.features,
    ).execute(plan, stop_on_error=console.show_debug, before_first=before)
    if not state["titled"]:
        open_second()
    failed = len(outcome.failed)
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
