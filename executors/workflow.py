"""plan / apply / show: the review workflow Terraform users know.

    zfs-autobackup plan  [options] BACKUP-NAME [TARGET-PATH] [--out FILE] [--json]
                         [--detailed-exitcode] [--estimate]
    zfs-autobackup apply [options] BACKUP-NAME [TARGET-PATH] [--auto-approve]
    zfs-autobackup apply FILE
    zfs-autobackup show  FILE [--json]

`plan` observes and prints the plan as tables; it runs only read-only commands (its
runner refuses anything else). `apply FILE` observes again, refuses when anything the
plan assumed drifted, and otherwise executes exactly the saved plan.
"""

from __future__ import annotations

import shlex
import socket
import sys
from typing import Optional

from tabulate import tabulate

from executors.classic import (
    Observed,
    no_selection_message,
    nothing_to_select,
    observe_and_plan,
    observe_together,
    print_selection,
)
from executors.console import Console
from executors.execute import DEFAULTS, Executor, Settings
from executors.plankey import key_path, load_key, signing_key
from executors.runner import Runner
from planner.actions import Send
from planner.cover import present_sides
from planner.drift import assumptions, drift
from planner.plan import Plan
from planner.planfile import PlanFileError, SavedPlan, dumps, loads
from planner.show import describe_action, render, summary
from reconcile import __version__, zfs_text
from reconcile.errors import UsageError
from reconcile.job import Job

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _hosts(job: Job) -> dict[str, str]:
    target = job.target.describe() + (f": {job.target_path}" if job.target_path else "")
    return {"source": job.source.describe(), "target": target}


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover


def estimate_sizes(observed: Observed, job: Job, runner: Runner) -> dict[int, str]:
    """`zfs send -nP` per send of an existing snapshot (one command each: opt-in)."""
    sizes: dict[int, str] = {}
    for index, action in enumerate(observed.plan.actions):
        if not isinstance(action, Send):
            continue
        if action.guid is None:
            # made by this run: what was written since the newest snapshot is a good guess
            written = observed.source.datasets[action.source_dataset].written
            sizes[index] = f"~{_human(written)}"
            continue
        argv = ["zfs", "send", "-nP"]
        if action.raw:
            argv.append("-w")
        if action.resume_token:
            argv += ["-t", action.resume_token]
        else:
            if action.base:
                argv += ["-i", f"@{action.base}"]
            argv.append(f"{action.source_dataset}@{action.snapshot}")
        out = runner.run(job.source, argv, label="[Source]", check=False)
        size = zfs_text.parse_send_size(out.stdout + "\n" + out.stderr)
        sizes[index] = _human(size) if size is not None else "?"
    return sizes


def saved_plan(job: Job, observed: Observed, now: float) -> SavedPlan:
    return SavedPlan(
        job=job,
        plan=observed.plan,
        assumptions=assumptions(observed.desired, observed.source, observed.target),
        now=now,
        made_on=socket.gethostname(),
        tool_version=__version__,
    )


def run_plan(
    job: Job,
    console: Console,
    runner: Runner,
    now: float,
    *,
    out: Optional[str],
    as_json: bool,
    detailed: bool,
    estimate: bool,
) -> int:
    observed = observe_and_plan(job, runner, now, together=not console.show_debug)
    print_selection(observed.desired, console)
    if nothing_to_select(observed.desired):
        raise UsageError(no_selection_message(job))
    saved = saved_plan(job, observed, now)
    if out:
        try:
            with open(out, "w", encoding="utf-8") as handle:  # noqa: PTH123
                handle.write(dumps(saved, signing_key()))
        except OSError as exc:
            raise UsageError(f"Can't write the plan to '{out}': {exc.strerror}") from None
    if as_json:
        sys.stdout.write(dumps(saved, signing_key()))
    else:
        sizes = estimate_sizes(observed, job, runner) if estimate else None
        console.info(render(observed.plan, _hosts(job), sizes))
        if out:
            console.info(f'Saved the plan to {out}: run "zfs-autobackup apply {out}" to apply it.')
    if observed.plan.problems:
        return EXIT_ERROR
    if detailed:
        return EXIT_OK if observed.plan.empty else EXIT_CHANGES
    return EXIT_OK


def _confirm(console: Console, auto_approve: bool) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "apply needs --auto-approve when it is not run from a terminal "
            "(or apply a saved plan: zfs-autobackup plan ... --out FILE; zfs-autobackup apply FILE)"
        )
    console.info("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = input("  Enter a value: ").strip()
    return answer == "yes"


def _execute(
    job: Job,
    observed: Observed,
    runner: Runner,
    console: Console,
    settings: Settings,
) -> int:
    """Run a plan made from the state just observed."""
    present = present_sides(observed.plan, job, observed.source, observed.target)
    outcome = Executor(job, runner, console, settings, present, observed.features).execute(
        observed.plan, stop_on_error=console.show_debug
    )
    failed = len(outcome.failed)
    if failed:
        console.error(f"{failed} dataset(s) failed!")
    console.info(
        f"Apply complete: {outcome.executed} actions done, {outcome.skipped} skipped, "
        f"{failed} dataset(s) failed."
    )
    return min(failed, 254)


def run_apply(
    job: Job,
    console: Console,
    runner: Runner,
    now: float,
    *,
    auto_approve: bool,
    settings: Settings = DEFAULTS,
) -> int:
    observed = observe_and_plan(job, runner, now, together=observe_together(settings, console))
    print_selection(observed.desired, console)
    if nothing_to_select(observed.desired):
        raise UsageError(no_selection_message(job))
    console.info(render(observed.plan, _hosts(job)))
    if observed.plan.empty and not observed.plan.problems:
        return EXIT_OK
    if not _confirm(console, auto_approve):
        console.info("Apply cancelled.")
        return EXIT_ERROR
    return _execute(job, observed, runner, console, settings)


def load_plan(path: str, *, verify: bool = True) -> SavedPlan:
    """Read a plan file; `verify`: refuse it unless this user's key signed it (show
    reads unsigned plans too, and says so)."""
    key = load_key(create=False)
    if verify and key is None:
        raise PlanFileError(
            f"{path} can't be verified: there is no plan signing key here "
            f"({key_path()}); apply a plan where it was made, or make a new plan here"
        )
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            text = handle.read()
    except OSError as exc:
        raise PlanFileError(f"Can't read plan file '{path}': {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PlanFileError(f"{path} is not a zfs-reconcile plan file") from None
    return loads(text, path, key)


def run_apply_file(
    path: str, console: Console, runner: Runner, settings: Settings = DEFAULTS
) -> int:
    saved = load_plan(path)
    here = socket.gethostname()
    if saved.made_on != here:
        raise PlanFileError(
            f"{path} was made on host '{saved.made_on}', not here ('{here}'): "
            "apply it where it was made, or make a new plan here"
        )
    job = saved.job
    # the plan is made again from the saved job and what is there now, at the saved time
    # (so with the saved snapshot name): it is applied only if it is the same plan,
    # action for action; a file edited to do anything else (and re-checksummed) is refused
    observed = observe_and_plan(
        job,
        runner,
        saved.now,
        together=observe_together(settings, console),
        snapshot_name=saved.plan.snapshot_name,
    )
    changes = drift(
        saved.assumptions, assumptions(observed.desired, observed.source, observed.target)
    )
    if changes:
        rows = [[c.side, c.dataset, c.change] for c in changes]
        console.info(tabulate(rows, headers=["side", "dataset", "changed since the plan"]))
        raise PlanFileError(
            f"Plan refused: {len(changes)} change(s) since {path} was made; nothing was "
            "applied. Make a new plan."
        )
    differences = plan_differences(saved.plan, observed.plan)
    if differences:
        console.info(
            tabulate(
                differences, headers=["#", "in the plan file", "planned now"], disable_numparse=True
            )
        )
        raise PlanFileError(
            f"Plan refused: {path} is not the plan this job makes now ({len(differences)} "
            "action(s) differ); nothing was applied. Make a new plan."
        )
    console.verbose(summary(observed.plan))
    return _execute(job, observed, runner, console, settings)


def plan_differences(saved: Plan, fresh: Plan) -> list[list[str]]:
    """Rows (position, saved action, fresh action) where two plans differ."""
    rows: list[list[str]] = []
    for i in range(max(len(saved.actions), len(fresh.actions))):
        old = saved.actions[i] if i < len(saved.actions) else None
        new = fresh.actions[i] if i < len(fresh.actions) else None
        old_needs = saved.depends[i] if i < len(saved.depends) else None
        new_needs = fresh.depends[i] if i < len(fresh.depends) else None
        if old != new or old_needs != new_needs:
            rows.append(
                [
                    str(i + 1),
                    describe_action(old) if old else "-",
                    describe_action(new) if new else "-",
                ]
            )
    if (saved.problems, saved.snapshot_name) != (fresh.problems, fresh.snapshot_name):
        rows.append(["", "problems / snapshot name differ", ""])
    return rows


def run_show(path: str, console: Console, as_json: bool) -> int:
    saved = load_plan(path, verify=False)
    if as_json:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            sys.stdout.write(handle.read())
        return EXIT_OK
    if load_key(create=False) is None:
        console.warning(f"no plan signing key here ({key_path()}): {path} is shown unverified")
    job = saved.job
    console.info(
        f"Plan for backup '{job.naming.backup_name}', made on {saved.made_on} "
        f"by zfs-autobackup v{saved.tool_version}:"
    )
    # the job's own commands run as they are: show them (apply checks only the actions)
    for when, cmds in (("before", job.pre_snapshot_cmds), ("after", job.post_snapshot_cmds)):
        for argv in cmds:
            console.info(f"Runs on the source {when} snapshotting: {shlex.join(argv)}")
    console.info(render(saved.plan, _hosts(job)))
    return EXIT_OK
