"""Monitoring: `zfs-autobackup status`, and runs that report themselves.

`status` observes like a run (read-only, the same constant-cost commands, over ssh
where the job says), and prints planner.status's report in a format; its exit code is
the report's state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: a host could not be read,
the backup name selects no dataset, or the --prometheus-file could not be written).

A run with `--prometheus-file PATH` writes, atomically at its end (a temporary file in
the same folder, then a rename: node_exporter's textfile collector never reads half a
file), the run's metrics and the status gauges of every dataset as the run left it;
`--on-failure CMD` / `--on-success CMD` run CMD (split with shell rules, never through
a shell) with the run's outcome in the environment and a JSON summary in a file. A hook
that fails or hangs is reported and never changes the run's exit code.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

import attrs

from executors.console import Console
from executors.execute import Outcome
from executors.listing_store import Store
from executors.regular import writable_path, write_atomically
from executors.runner import Runner
from executors.session import (
    Prepared,
    no_selection,
    nothing_to_select,
    observe_and_desire,
)
from planner import status as report_of
from planner import verify as verify_commands
from planner.actions import CreateSnapshots, Destroy, Send
from reconcile import verify
from reconcile.errors import ReconcileError, UsageError, quoted
from reconcile.job import Job
from reconcile.model import Side

FORMATS = ("table", "json", "nagios", "prometheus")
#: seconds a hook may take before it is stopped
HOOK_TIMEOUT = 300


def check_prometheus_file(path: Optional[str]) -> None:
    """Refuse, before anything runs, a --prometheus-file that can't be written."""
    if path is None:
        return
    why = writable_path(path)
    if why is not None:
        raise UsageError(
            f"Invalid --prometheus-file {quoted(path)}: {why} (name a file in a writable folder)"
        )


def cant_write(path: str, exc: OSError) -> str:
    """The one line for a --prometheus-file that could not be written at the end."""
    return f"Can't write --prometheus-file {quoted(path)}: {exc.strerror or exc}"


def status_report(
    job: Job,
    runner: Runner,
    now: float,
    *,
    warn: float,
    crit: float,
    together: bool = True,
    verify_max_age: Optional[float] = None,
    store: Optional[Store] = None,
) -> report_of.Report:
    """Observe and rate; a host that cannot be read makes the report UNKNOWN.
    `verify_max_age`: also read each copy's last verification (one more command).
    `store`: the listing cache (status changes nothing: it keeps all it read)."""
    try:
        quiet = attrs.evolve(job, selection=attrs.evolve(job.selection, snapshot=False))
        desired = observe_and_desire(quiet, runner, now, together=together, store=store).desired
        if store is not None:
            store.save()
        if nothing_to_select(desired):  # a typo in the name is not "all is well"
            raise no_selection(job)
        verified = None
        if verify_max_age is not None:
            verified = _verifications(job, runner)
    except ReconcileError as exc:
        return report_of.unknown(job, now, str(exc), warn=warn, crit=crit)
    return report_of.build_report(job, desired, now, warn=warn, crit=crit, verified=verified,
                                  verify_max_age=verify_max_age)  # fmt: skip


def _verifications(job: Job, runner: Runner) -> dict[str, report_of.Point]:
    """Each copy's record of its last full verification (planner.verify)."""
    assert job.remote.target_path is not None
    prop = verify.record_property(job.naming.property_name)
    command = verify_commands.read_records(job.remote.target_path, prop)
    out = runner.run(job.remote.target, command.argv, label=Side.TARGET.label).stdout
    found = {}
    for line in out.splitlines():
        name, _, value = line.partition("\t")
        record = verify.parse_record(value)
        if record is not None:
            found[name] = report_of.Point(record[1], record[0])
    return found


def render(report: report_of.Report, fmt: str) -> str:
    if fmt == "json":
        return report_of.to_json(report)
    if fmt == "nagios":
        return report_of.render_nagios(report)
    if fmt == "prometheus":
        return report_of.render_prometheus(report)
    return report_of.render_table(report) + "\n"


def run_status(
    job: Job,
    console: Console,
    runner: Runner,
    now: float,
    *,
    warn: float,
    crit: float,
    fmt: str,
    prometheus_file: Optional[str],
    together: bool = True,
    verify_max_age: Optional[float] = None,
    store: Optional[Store] = None,
) -> int:
    report = status_report(job, runner, now, warn=warn, crit=crit, together=together,
                           verify_max_age=verify_max_age, store=store)  # fmt: skip
    console.write(console.out, render(report, fmt))
    if prometheus_file:
        try:
            write_atomically(prometheus_file, report_of.render_prometheus(report))
        except OSError as exc:
            console.error(cant_write(prometheus_file, exc))
            return int(report_of.State.UNKNOWN)
    return int(report.state)


# --- runs that report themselves -----------------------------------------------------


@attrs.frozen
class RunRecord:
    """What a run did, for its metrics file and its hooks."""

    backup: str
    started: float
    ended: float
    exit_code: int
    datasets_ok: int
    failed: tuple[str, ...]
    snapshots_created: int
    snapshots_sent: int
    snapshots_destroyed: int
    bytes_sent: int

    def summary(self) -> dict[str, object]:
        return {
            "format": "zfs-reconcile-run",
            "version": 1,
            **attrs.asdict(self),
            "failed": list(self.failed),
        }


def _previous_success(path: str, backup: str) -> Optional[float]:
    """The last success time a previous metrics file recorded (None: none)."""
    name = "zfs_autobackup_run_last_success_timestamp_seconds"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") and f'backup="{backup}"' in line:
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def write_run_metrics(path: str, record: RunRecord, report: report_of.Report) -> None:
    success = record.ended if record.exit_code == 0 else _previous_success(path, record.backup)
    run = "zfs_autobackup_run_"
    extra: list[tuple[str, str, float]] = [
        (run + "start_timestamp_seconds", "When the last run started.", record.started),
        (run + "end_timestamp_seconds", "When the last run ended.", record.ended),
        (run + "duration_seconds", "How long the last run took.", record.ended - record.started),
        (run + "exit_code", "The last run's exit code.", record.exit_code),
        (run + "datasets_ok", "Datasets the last run backed up.", record.datasets_ok),
        (run + "datasets_failed", "Datasets the last run failed on.", len(record.failed)),
        (run + "snapshots_created", "Snapshots the last run took.", record.snapshots_created),
        (run + "snapshots_sent", "Snapshots the last run sent.", record.snapshots_sent),
        (run + "snapshots_destroyed", "Snapshots it destroyed.", record.snapshots_destroyed),
        (run + "sent_bytes", "Bytes it sent (zfs send's estimates).", record.bytes_sent),
    ]
    if success is not None:
        extra.append(
            ("zfs_autobackup_run_last_success_timestamp_seconds",
             "When a run last ended without failures.", success)
        )  # fmt: skip
    write_atomically(path, report_of.render_prometheus(report, extra))


def run_hook(console: Console, option: str, argv: Sequence[str], record: RunRecord) -> None:
    """Run a hook with the outcome in its environment; report, never raise."""
    with tempfile.NamedTemporaryFile(
        "w", prefix="zfs-autobackup-run-", suffix=".json", delete=False
    ) as handle:
        json.dump(record.summary(), handle, indent=1)
        summary = handle.name
    env = {
        **os.environ,
        "ZFS_AUTOBACKUP_BACKUP": record.backup,
        "ZFS_AUTOBACKUP_EXIT_CODE": str(record.exit_code),
        "ZFS_AUTOBACKUP_FAILED": str(len(record.failed)),
        "ZFS_AUTOBACKUP_FAILED_DATASETS": "\n".join(record.failed),
        "ZFS_AUTOBACKUP_SUMMARY": summary,
    }
    console.debug(f"{option} CMD > {shlex.join(argv)}")
    try:
        proc = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=HOOK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        console.error(f"{option} did not end within {HOOK_TIMEOUT} s and was stopped")
        return
    except OSError as exc:
        console.error(f"{option} could not run: {exc.strerror}")
        return
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        console.error(
            f"{option} failed (exit code {proc.returncode})" + (f": {detail[-1]}" if detail else "")
        )


@attrs.frozen
class Reporting:
    """How a run reports itself (--prometheus-file, --on-failure, --on-success)."""

    clock: Callable[[], float]
    started: float
    prometheus_file: Optional[str] = None
    on_failure: tuple[str, ...] = ()
    on_success: tuple[str, ...] = ()
    warn: float = report_of.DEFAULT_WARN
    crit: float = report_of.DEFAULT_CRIT

    def finish(
        self, console: Console, job: Job, prepared: Prepared, outcome: Outcome, exit_code: int
    ) -> int:
        """After the run: the metrics file, then the hook; the run's exit code, one more
        when the metrics file could not be written (a hook never changes it)."""
        if not (self.prometheus_file or self.on_failure or self.on_success):
            return exit_code
        record = _record(job, prepared, outcome, exit_code, self.started, self.clock())
        if self.prometheus_file:
            report = report_of.after_run(
                job, prepared.desired, record.ended, set(outcome.failed),
                warn=self.warn, crit=self.crit,
            )  # fmt: skip
            try:
                write_run_metrics(self.prometheus_file, record, report)
            except OSError as exc:
                console.error(cant_write(self.prometheus_file, exc))
                exit_code = min(exit_code + 1, 254)
                record = attrs.evolve(record, exit_code=exit_code)
        hook, option = (
            (self.on_failure, "--on-failure") if exit_code else (self.on_success, "--on-success")
        )
        if hook:
            run_hook(console, option, hook, record)
        return exit_code


def _record(
    job: Job, prepared: Prepared, outcome: Outcome, exit_code: int, started: float, ended: float
) -> RunRecord:
    failed = set(outcome.failed)
    plan = prepared.plan

    def counted(action: object) -> bool:
        return getattr(action, "unit", None) not in failed

    created = sum(
        1
        for a in plan.actions
        if isinstance(a, CreateSnapshots)
        for ds in a.datasets
        if ds not in failed
    )
    sent = sum(len(a.snapshots) for a in plan.actions if isinstance(a, Send) and counted(a))
    destroyed = sum(len(a.snapshots) for a in plan.actions if isinstance(a, Destroy) and counted(a))
    return RunRecord(
        backup=job.naming.backup_name,
        started=started,
        ended=ended,
        exit_code=exit_code,
        datasets_ok=len([n for n in prepared.desired.selected if n not in failed]),
        failed=tuple(outcome.failed),
        snapshots_created=created,
        snapshots_sent=sent,
        snapshots_destroyed=destroyed,
        bytes_sent=outcome.sent_bytes,
    )
