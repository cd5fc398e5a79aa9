"""plan / apply / show: the review workflow Terraform users know.

    zfs-autobackup plan  [options] BACKUP-NAME [TARGET-PATH] [--out FILE] [--json]
                         [--detailed-exitcode] [--estimate]
    zfs-autobackup apply [options] BACKUP-NAME [TARGET-PATH] [--auto-approve]
    zfs-autobackup apply FILE
    zfs-autobackup show  FILE [--json]

`plan` observes and prints the plan as tables (`--commands`: and the exact commands it
will run); it runs only read-only commands (its runner refuses anything else). `apply
FILE` checks the file's signature, observes again, refuses when anything the plan
assumed drifted or when the plan and commands this job makes now differ from the saved
ones, and otherwise runs exactly the saved commands.
"""

from __future__ import annotations

import shlex
import socket
from typing import Optional

from executors.classic import prepare_run, print_selection
from executors.console import Console
from executors.execute import DEFAULTS, Executor, Settings
from executors.modes import EXIT_ERROR
from executors.monitor import Reporting
from executors.plankey import key_path, load_key, signing_key
from executors.regular import (
    MIB,
    Unreadable,
    read_regular,
    size_words,
    writable_path,
    write_atomically,
)
from executors.runner import Runner, display_line
from executors.session import Prepared, no_selection, nothing_to_select, prepare
from planner import compile as compiler
from planner.actions import Send
from planner.describe import one_line
from planner.drift import Assumptions, assumptions, drift
from planner.plan import Plan
from planner.planfile import PlanFileError, SavedPlan, dumps, loads
from planner.show import differences_table, drift_table, render, summary
from reconcile import __version__, zfs_text
from reconcile.errors import UsageError, quoted
from reconcile.job import Job
from reconcile.model import Side

EXIT_OK, EXIT_CHANGES = 0, 2
#: the largest plan file read (a plan for thousands of datasets is a few MiB)
MAX_PLAN_FILE = 64 * MIB
#: a plan file is for its maker (it names every dataset and the commands)
PLAN_FILE_MODE = 0o600


def _hosts(job: Job) -> dict[str, str]:
    target = job.remote.target.describe() + (
        f": {job.remote.target_path}" if job.remote.target_path else ""
    )
    return {"source": job.remote.source.describe(), "target": target}


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover


def estimate_sizes(prepared: Prepared, job: Job, runner: Runner) -> dict[int, str]:
    """The send of each existing snapshot as a dry run (its own argv with `-n -P`, one
    command each: opt-in); action index -> size."""
    sizes: dict[int, str] = {}
    for step in prepared.compiled.steps:
        if step.kind != "send":
            continue
        index = step.actions[0]
        action = prepared.plan.actions[index]
        assert isinstance(action, Send)
        if action.guid is None:
            # made by this run: what was written since the newest snapshot is a good guess
            written = prepared.source.datasets[action.source_dataset].written
            sizes[index] = f"~{_human(written)}"
            continue
        argv = compiler.estimate_argv(step.commands[0].argv)
        out = runner.run(job.remote.source, argv, label=Side.SOURCE.label, check=False)
        size = zfs_text.parse_send_size(out.stdout + "\n" + out.stderr)
        sizes[index] = _human(size) if size is not None else "?"
    return sizes


def command_lines(job: Job, compiled: compiler.Compiled) -> list[str]:
    """The commands of a compiled plan in the order they run, as --debug shows them and a
    user can paste them; what runs only if a step fails is indented under it."""
    hosts = {"source": job.remote.source, "target": job.remote.target}
    lines = []
    for step in compiled.steps:
        lines.append(display_line([(hosts[c.side], c.argv) for c in step.commands]))
        lines += [
            "    if refused: " + display_line([(hosts[c.side], c.argv) for c in alt.commands])
            for alt in step.fallback
        ]
    return lines


def saved_plan(job: Job, prepared: Prepared, now: float) -> SavedPlan:
    return SavedPlan(
        job=job,
        plan=prepared.plan,
        compiled=prepared.compiled,
        assumptions=assumptions(prepared.desired, prepared.source, prepared.target),
        now=now,
        made_on=socket.gethostname(),
        tool_version=__version__,
    )


def check_out(out: Optional[str]) -> None:
    """--out FILE: refused before anything is read when it can't be written."""
    if out is not None:
        why = writable_path(out)
        if why is not None:
            raise UsageError(f"Invalid --out {quoted(out)}: {why} (name the plan file to write)")


def write_plan(out: Optional[str], saved: SavedPlan) -> None:
    """Sign and write a plan file (--out), whole or not at all, after all that can fail
    (the key): a failure leaves the previous plan file as it was."""
    if out is None:
        return
    text = dumps(saved, signing_key())
    try:
        write_atomically(out, text, mode=PLAN_FILE_MODE)
    except OSError as exc:
        raise UsageError(f"Can't write the plan to '{out}': {exc.strerror}") from None


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
    commands: bool = False,
    settings: Settings = DEFAULTS,
) -> int:
    check_out(out)
    prepared = prepare_run(job, runner, now, settings)
    observed = prepared
    print_selection(observed.desired, console)
    if nothing_to_select(observed.desired):
        raise no_selection(job)
    saved = saved_plan(job, observed, now)
    write_plan(out, saved)
    if as_json:
        console.write(console.out, dumps(saved, signing_key()))
    else:
        sizes = estimate_sizes(observed, job, runner) if estimate else None
        console.info(render(observed.plan, _hosts(job), sizes))
        if commands:
            print_commands(console, job, observed.compiled)
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
    if not console.answers.isatty():
        raise UsageError(
            "apply needs --auto-approve when it is not run from a terminal "
            "(or apply a saved plan: zfs-autobackup plan ... --out FILE; zfs-autobackup apply FILE)"
        )
    console.info("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = console.ask("  Enter a value: ")
    if answer is None:
        raise UsageError(
            "Apply cancelled: the input ended (Ctrl-D) at the approval prompt, which counts as "
            "'no'; nothing was applied (answer 'yes' to apply, or use --auto-approve)"
        )
    return answer.strip() == "yes"


def print_commands(console: Console, job: Job, compiled: compiler.Compiled) -> None:
    console.info("")
    console.info("Commands, in the order they run:")
    for line in command_lines(job, compiled):
        console.info(f"  {line}")


def _execute(
    job: Job,
    prepared: Prepared,
    compiled: compiler.Compiled,
    runner: Runner,
    console: Console,
    settings: Settings,
    reporting: Optional[Reporting] = None,
) -> int:
    """Run compiled steps (made from the state just observed)."""
    outcome = Executor(job, runner, console, settings).execute(
        compiled, failed=[p.unit for p in prepared.plan.problems], stop_on_error=settings.debug
    )
    if settings.store is not None:
        settings.store.reread(runner)
    failed = len(outcome.failed)
    if failed:
        console.error(f"{failed} dataset(s) failed!")
    console.info(
        f"Apply complete: {outcome.executed} actions done, {outcome.skipped} skipped, "
        f"{failed} dataset(s) failed."
    )
    code = min(failed, 254)
    if reporting is not None:
        code = reporting.finish(console, job, prepared, outcome, code)
    return code


def run_apply(
    job: Job,
    console: Console,
    runner: Runner,
    now: float,
    *,
    auto_approve: bool,
    settings: Settings = DEFAULTS,
    reporting: Optional[Reporting] = None,
) -> int:
    prepared = prepare_run(job, runner, now, settings)
    print_selection(prepared.desired, console)
    if nothing_to_select(prepared.desired):
        raise no_selection(job)
    console.info(render(prepared.plan, _hosts(job)))
    if prepared.plan.empty and not prepared.plan.problems:
        return EXIT_OK
    if not _confirm(console, auto_approve):
        console.info("Apply cancelled.")
        return EXIT_ERROR
    return _execute(job, prepared, prepared.compiled, runner, console, settings, reporting)


def read_plan_text(path: str) -> str:
    """A plan file's text: a regular file of at most MAX_PLAN_FILE bytes, UTF-8."""
    try:
        data = read_regular(path, MAX_PLAN_FILE)
    except Unreadable as exc:
        raise PlanFileError(
            f"Can't read plan file '{path}': {exc} (a plan file is a regular file of at "
            f"most {size_words(MAX_PLAN_FILE)}, made by plan --out)"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(
            f"plan file '{path}' is not a zfs-reconcile plan file (not UTF-8 text at byte "
            f"{exc.start})"
        ) from None


def load_plan(path: str, *, verify: bool = True) -> SavedPlan:
    """Read a plan file; `verify`: refuse it unless this user's key signed it (show
    reads unsigned plans too, and says so)."""
    key = load_key(create=False)
    if verify and key is None:
        raise PlanFileError(
            f"{path} can't be verified: there is no plan signing key here "
            f"({key_path()}); apply a plan where it was made, or make a new plan here"
        )
    return loads(read_plan_text(path), f"plan file '{path}'", key)


def run_apply_file(
    path: str,
    saved: SavedPlan,
    console: Console,
    runner: Runner,
    settings: Settings = DEFAULTS,
    *,
    reporting: Optional[Reporting] = None,
) -> int:
    check_made_here(path, saved)
    job = saved.job
    # the plan is made and compiled again from the saved job and what is there now, at
    # the saved time (so with the saved snapshot name) and with the saved compile options:
    # it is applied only if it is the same plan, action for action and command for command
    observed = prepare(
        job,
        runner,
        saved.now,
        saved.compiled.options,
        together=settings.observe_together,
        snapshot_name=saved.plan.snapshot_name,
    )
    fresh = assumptions(observed.desired, observed.source, observed.target)
    refuse_stale(path, saved, fresh, observed.plan, observed.compiled, console)
    console.verbose(summary(saved.plan))
    # (the saved commands: they are the fresh ones, just compared)
    return _execute(job, observed, saved.compiled, runner, console, settings, reporting)


def check_made_here(path: str, saved: SavedPlan) -> None:
    here = socket.gethostname()
    if saved.made_on != here:
        raise PlanFileError(
            f"{path} was made on host '{saved.made_on}', not here ('{here}'): "
            "apply it where it was made, or make a new plan here"
        )


def refuse_stale(
    path: str,
    saved: SavedPlan,
    fresh: Assumptions,
    plan: Plan,
    compiled: compiler.Compiled,
    console: Console,
) -> None:
    """Refuse a saved plan (PlanFileError) when what it assumed drifted, or when the plan
    and commands the job makes now (`plan`, `compiled`) are not the saved ones."""
    changes = drift(saved.assumptions, fresh)
    if changes:
        console.info(drift_table(changes))
        raise PlanFileError(
            f"Plan refused: {len(changes)} change(s) since {path} was made; nothing was "
            "applied. Make a new plan."
        )
    differences = plan_differences(saved.plan, plan)
    differences += command_differences(saved.job, saved.compiled, compiled)
    if differences:
        console.info(differences_table(differences))
        raise PlanFileError(
            f"Plan refused: {path} is not the plan this job makes now ({len(differences)} "
            "action(s) or command(s) differ); nothing was applied. Make a new plan."
        )


def command_differences(
    job: Job, saved: compiler.Compiled, fresh: compiler.Compiled
) -> list[list[str]]:
    """Rows (position, saved command, fresh command) where two compiled plans differ."""
    if saved == fresh:
        return []
    old, new = command_lines(job, saved), command_lines(job, fresh)
    rows = [
        [f"cmd {i + 1}", old[i] if i < len(old) else "-", new[i] if i < len(new) else "-"]
        for i in range(max(len(old), len(new)))
        if i >= len(old) or i >= len(new) or old[i] != new[i]
    ]
    return rows or [["", "steps differ (dependencies or grouping)", ""]]


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
                    one_line(old) if old else "-",
                    one_line(new) if new else "-",
                ]
            )
    if (saved.problems, saved.snapshot_name) != (fresh.problems, fresh.snapshot_name):
        rows.append(["", "problems / snapshot name differ", ""])
    return rows


def run_show(path: str, console: Console, as_json: bool) -> int:
    saved = load_plan(path, verify=False)
    if as_json:
        console.write(console.out, read_plan_text(path))
        return EXIT_OK
    if load_key(create=False) is None:
        console.warning(f"no plan signing key here ({key_path()}): {path} is shown unverified")
    job = saved.job
    what = f"Plan for backup '{job.naming.backup_name}'"
    if saved.restore is not None:
        request = saved.restore
        beside = f" as {request.to}" if request.to else ""
        what = (
            f"A plan to restore {request.dataset}{beside}, from backup '{job.naming.backup_name}'"
        )
    console.info(f"{what}, made on {saved.made_on} by zfs-autobackup v{saved.tool_version}:")
    # the job's own commands: shown also among the commands below (a restore takes no
    # snapshot, and runs none of them)
    for when, cmds in (
        ("before", job.snapshotting.pre_cmds),
        ("after", job.snapshotting.post_cmds),
    ):
        for argv in cmds if saved.restore is None else ():
            console.info(f"Runs on the source {when} snapshotting: {shlex.join(argv)}")
    console.info(render(saved.plan, _hosts(job)))
    print_commands(console, job, saved.compiled)
    return EXIT_OK
