"""`zfs-autobackup restore` and `plan restore`: get a dataset back from the backup, as a
plan that is shown before anything changes.

    zfs-autobackup [plan] restore [job options] BACKUP-NAME TARGET-PATH DATASET
                   [--snapshot NAME|TIME] [--to NEW] [--recursive] [--force] [--test]
    zfs-autobackup plan restore ... [--commands] [--json] [--out FILE]
    zfs-autobackup apply FILE
    zfs-autobackup restore [job options] BACKUP-NAME TARGET-PATH DATASET --list [--json]

The job options are the backup's own (paste its command line after `restore`). Reads:
the copy's tree on the target, the destination's on the source host, the selection
values the copy received; decides (reconcile.restore), plans (planner.restore),
compiles the commands, and runs them under the backup's lock, so that a backup run
waits for the restore (and the other way round). A saved restore plan (`plan restore
--out FILE`) is applied as a backup's is: signed, made here, nothing it assumed drifted
(the copy's snapshots and holds, the destination's snapshots and the bytes written on
it), and the same plan and commands made again now.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Optional

import attrs

from executors.console import Console
from executors.execute import DEFAULTS, Executor, Settings
from executors.lock import backup_lock
from executors.modes import EXIT_ERROR
from executors.plankey import signing_key
from executors.runner import Runner
from executors.workflow import (
    check_made_here,
    check_out,
    print_commands,
    refuse_stale,
    write_plan,
)
from planner import compile as compiler
from planner.actions import Restore
from planner.compile import Facts
from planner.drift import Assumptions, tree_assumptions
from planner.plan import Plan
from planner.planfile import SavedPlan, dumps
from planner.restore import build_restore_plan
from planner.show import render, restore_points_table
from reconcile import __version__
from reconcile.errors import UsageError
from reconcile.job import Job, Snapshotting
from reconcile.model import HostState, Side
from reconcile.observe import (
    exists,
    key_locations,
    local_values,
    observe_tree,
    pool_features,
    received_values,
    snapshot_sizes,
)
from reconcile.restore import RestoreRequest, copy_root, desire_restore, no_copy

EXIT_OK = 0


def _hosts(job: Job) -> dict[str, str]:
    return {"source": job.remote.source.describe(), "target": job.remote.target.describe()}


@attrs.frozen
class Prepared:
    plan: Plan
    compiled: compiler.Compiled
    #: what it rests on (a saved plan is refused when it drifted)
    assumptions: Assumptions


def plan_restore(
    job: Job,
    request: RestoreRequest,
    runner: Runner,
    options: compiler.Options,
) -> Prepared:
    """Observe both hosts, decide, plan and compile (reads only)."""
    root = copy_root(job, request)
    copies = observe_tree(runner, job.remote.target, root, Side.TARGET.label)
    if copies is None:
        raise no_copy(request, root)
    received = received_values(runner, job.remote.target, root, job.naming.property_name,
                               Side.TARGET.label)  # fmt: skip
    here = observe_tree(
        runner, job.remote.source, request.destination, Side.SOURCE.label, bookmarks=True
    )
    if here is None and "/" in request.destination:
        parent = request.destination.rsplit("/", 1)[0]
        # (one name: not the parent's whole tree, which may be the pool's)
        if not exists(runner, job.remote.source, parent, Side.SOURCE.label):
            raise UsageError(
                f"Can't restore to {request.destination}: its parent {parent} does not exist "
                "on the source host (create it, or choose another place with --to)"
            )
    keys: dict[str, str] = {}
    local: dict[str, dict[str, Optional[str]]] = {}
    if any(ds.encryption != "off" for ds in copies):
        # (the copies sent raw are encryption roots, with a keylocation: the plan says
        # where each key is loaded from; a raw restore sends the copy's properties (-p),
        # and what the target set over the received values is put back or left out)
        keys = key_locations(runner, job.remote.target, root, Side.TARGET.label)
        local = local_values(runner, job.remote.target, root, Side.TARGET.label)
    desires = desire_restore(job, request, copies, here, received, keys, local)
    plan = build_restore_plan(job, desires)
    restores = [a for a in plan.actions if isinstance(a, Restore)]
    facts = Facts()
    if restores:
        pools = [a.copy.split("/")[0] for a in restores]
        target = pool_features(runner, copies, pools, Side.TARGET.label)
        pools = [a.dataset.split("/")[0] for a in restores]
        source = pool_features(runner, HostState(job.remote.source), pools, Side.SOURCE.label)
        facts = Facts({Side.SOURCE: source.features, Side.TARGET: target.features})
    compiled = compiler.compile_plan(plan, job.transfer_recipe, Snapshotting(), facts, options)
    # (what it restores from and into: a child a restore without --recursive leaves
    # alone may change; a plan does not rest on it)
    touched = {d.copy.name for d in desires} | {d.destination for d in desires}
    return Prepared(plan, compiled, tree_assumptions(copies, here, touched))


def _options(settings: Settings) -> compiler.Options:
    return compiler.Options(parallel=settings.parallel, progress=settings.progress)


def run_restore(
    job: Job,
    request: RestoreRequest,
    console: Console,
    runner: Runner,
    now: float,
    *,
    execute: bool,
    commands: bool = False,
    settings: Settings = DEFAULTS,
    out: Optional[str] = None,
    as_json: bool = False,
) -> int:
    """Show the restore's plan (`out`: save it; `as_json`: print it as a plan file);
    `execute`: then carry it out (under the backup's lock)."""
    check_out(out)
    with backup_lock(job) if execute else contextlib.nullcontext():
        prepared = plan_restore(job, request, runner, _options(settings))
        plan = prepared.plan
        saved = SavedPlan(job, plan, prepared.compiled, prepared.assumptions, now,
                          socket.gethostname(), __version__, restore=request)  # fmt: skip
        write_plan(out, saved)
        if as_json:
            console.write(console.out, dumps(saved, signing_key()))
        else:
            console.info(render(plan, _hosts(job)))
            if commands or (execute and settings.debug):
                print_commands(console, job, prepared.compiled)
            if out is not None:
                console.info(
                    f'Saved the plan to {out}: run "zfs-autobackup apply {out}" to apply it.'
                )
        if not execute or plan.empty:
            return EXIT_ERROR if plan.problems else EXIT_OK
        return _execute(job, plan, prepared.compiled, runner, console, settings)


def apply_file(
    path: str, saved: SavedPlan, console: Console, runner: Runner, settings: Settings = DEFAULTS
) -> int:
    """`apply FILE` of a restore's plan (the caller holds the backup's lock)."""
    assert saved.restore is not None
    check_made_here(path, saved)
    fresh = plan_restore(saved.job, saved.restore, runner, saved.compiled.options)
    refuse_stale(path, saved, fresh.assumptions, fresh.plan, fresh.compiled, console)
    console.info(render(saved.plan, _hosts(saved.job)))
    return _execute(saved.job, saved.plan, saved.compiled, runner, console, settings)


def _execute(
    job: Job,
    plan: Plan,
    compiled: compiler.Compiled,
    runner: Runner,
    console: Console,
    settings: Settings,
) -> int:
    outcome = Executor(job, runner, console, settings).execute(
        compiled, failed=[p.unit for p in plan.problems], stop_on_error=settings.debug
    )
    failed = len(outcome.failed)
    if failed:
        console.error(f"{failed} dataset(s) failed!")
    console.info(
        f"Restore complete: {outcome.executed} actions done, {outcome.skipped} skipped, "
        f"{failed} dataset(s) failed."
    )
    return min(failed, 254)


def list_restore_points(
    job: Job, request: RestoreRequest, console: Console, runner: Runner, *, as_json: bool
) -> int:
    """The copy's snapshots (and with --recursive its children's): name, time, size."""
    root = copy_root(job, request)
    found = snapshot_sizes(runner, job.remote.target, root, request.recursive, Side.TARGET.label)
    if found is None:
        raise no_copy(request, root)
    rows = []
    for name, creation, referenced in found:
        copy, snapshot = name.split("@", 1)
        rows.append({
            "dataset": request.dataset + copy[len(root):],
            "snapshot": snapshot,
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(creation)),
            "referenced": referenced,
        })  # fmt: skip
    if as_json:
        console.write(console.out, json.dumps(rows, indent=2) + "\n")
    else:
        console.info(restore_points_table(rows))
    return EXIT_OK
