"""Status: is every backup current? One row per dataset, a state, and four formats. Pure.

From what observation read and what desire decided (with no new snapshot), for each
selected source dataset (and each target dataset whose source is missing):

- the newest source snapshot of this backup, and the newest common snapshot (the
  recovery point), with their times: from the snapshot name for this backup's
  snapshots (as thinning reads them), from zfs' creation time for others;
- how many source snapshots the target schedule wants that are not on the target yet;
- a pending resume token, bytes written on the target since its newest snapshot (the
  next receive fails without --rollback), the snapshot counts on each side.

States, as the Nagios plugin guidelines number them:

    OK (0)        the recovery point is younger than --warn
    WARNING (1)   older than --warn; the target was written to; a resume token waits;
                  the newest snapshot is dated in the future
    CRITICAL (2)  older than --crit; no common snapshot (or one of the same name with
                  another guid); the target dataset is missing
    UNKNOWN (3)   a host could not be read (the whole report)

Snapshot-only mode (no TARGET-PATH) rates the newest snapshot of each dataset instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Optional

import attrs
from tabulate import tabulate

from reconcile.desire import Desired, PairDesire
from reconcile.job import Job
from reconcile.model import Dataset, Snapshot
from reconcile.schedule import age_words
from reconcile.verify import verify_tag

#: docs/status-format.md
FORMAT_VERSION = 1
DEFAULT_WARN = 25 * 3600
DEFAULT_CRIT = 49 * 3600


class State(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@attrs.frozen
class Point:
    """A snapshot and its time (seconds since the epoch)."""

    name: str
    time: float


@attrs.frozen
class Row:
    dataset: str
    #: "" in snapshot-only mode
    target: str
    state: State
    #: why it is not OK ("recovery point 30h ago", "target written to", ...)
    reasons: tuple[str, ...]
    newest_source: Optional[Point]
    newest_common: Optional[Point]
    behind: int
    resume_pending: bool
    target_written: int
    source_snapshots: int
    target_snapshots: int
    #: a target dataset whose source is gone or no longer selected
    missing_source: bool = False
    #: its last full verification (`verify`), as recorded on the copy; read only with
    #: --verify-max-age
    verified: Optional[Point] = None


@attrs.frozen
class Report:
    backup: str
    source: str
    target: str
    now: float
    warn: float
    crit: float
    rows: tuple[Row, ...] = ()
    #: UNKNOWN: why the hosts could not be read
    error: Optional[str] = None

    @property
    def state(self) -> State:
        if self.error is not None:
            return State.UNKNOWN
        return max((r.state for r in self.rows), default=State.OK)

    def count(self, state: State) -> int:
        return sum(1 for r in self.rows if r.state == state)

    def worst(self) -> Optional[Row]:
        """The row with the oldest recovery point (or newest snapshot, snapshot-only)."""
        aged = [r for r in self.rows if _point(r) is not None]
        if not aged:
            return None
        return min(aged, key=lambda r: _point(r).time)  # type: ignore[union-attr]


def _point(row: Row) -> Optional[Point]:
    return row.newest_common if row.target else row.newest_source


def _time(job: Job, snap: Snapshot) -> float:
    stamp = job.naming.timestamp(snap.name)
    return stamp if stamp is not None else float(snap.creation)


def _newest_ours(job: Job, ds: Dataset) -> Optional[Point]:
    ours = [s for s in ds.snapshots if job.naming.is_ours(s.name)]
    if not ours:
        return None
    return Point(ours[-1].name, _time(job, ours[-1]))


def _rate(age: Optional[float], what: str, warn: float, crit: float) -> tuple[State, list[str]]:
    if age is None:
        return State.CRITICAL, [f"no {what}"]
    if age < 0:
        return State.WARNING, [f"{what} dated in the future ({age_words(age)})"]
    if age > crit:
        return State.CRITICAL, [f"{what} {age_words(age)} ago"]
    if age > warn:
        return State.WARNING, [f"{what} {age_words(age)} ago"]
    return State.OK, []


@attrs.frozen
class _Seen:
    """One pair's facts, as observed or as a run left them."""

    newest: Optional[Point]
    common: Optional[Point]
    written: int
    resume: bool
    behind: int
    source_count: int
    target_count: int


def _row(pair: PairDesire, seen: _Seen, now: float, warn: float, crit: float) -> Row:
    """Rate one pair."""
    tds = pair.target
    reasons: list[str]
    if tds is None and seen.common is None:
        state, reasons = State.CRITICAL, ["target dataset missing"]
    elif seen.common is None:
        assert tds is not None
        same_name = {s.name for s in tds.snapshots} & {s.name for s in pair.source.snapshots}
        state = State.CRITICAL
        reasons = ["common snapshot has another guid"] if same_name else ["no common snapshot"]
    else:
        state, reasons = _rate(now - seen.common.time, "recovery point", warn, crit)
    future = seen.newest is not None and seen.newest.time > now
    for flag, why in (
        (future, f"newest snapshot dated in the future ({age_words(now - seen.newest.time)})"
         if seen.newest else ""),
        (seen.written > 0, f"target written to ({seen.written} bytes)"),
        (seen.resume, "resume token pending"),
        (bool(pair.problem) and seen.common is not None, f"can't be sent: {pair.problem}"),
    ):  # fmt: skip
        if flag:
            state = max(state, State.WARNING)
            reasons.append(why)
    return Row(
        pair.name, pair.target_name, state, tuple(reasons), seen.newest, seen.common,
        seen.behind, seen.resume, seen.written, seen.source_count, seen.target_count,
    )  # fmt: skip


def _verification(
    job: Job,
    pair: PairDesire,
    row: Row,
    now: float,
    verified: Optional[dict[str, Point]],
    max_age: Optional[float],
) -> Row:
    """A verification's holds left on the pair's snapshots (one running now, or killed:
    said, the state unchanged); with --verify-max-age, the age of the last one."""
    tag = verify_tag(job.naming.hold_tag)
    held = [s.full_name for ds in (pair.source, pair.target) if ds is not None
            for s in ds.snapshots if tag in s.holds]  # fmt: skip
    reasons, state = list(row.reasons), row.state
    if held:
        reasons.append(f"held by verify (running, or left behind): {', '.join(held)}")
    point = (verified or {}).get(pair.target_name)
    if max_age is not None:
        if point is None:
            state = max(state, State.WARNING)
            reasons.append("never verified")
        elif now - point.time > max_age:
            state = max(state, State.WARNING)
            reasons.append(f"last verified {age_words(now - point.time)} ago")
    return attrs.evolve(row, state=state, reasons=tuple(reasons), verified=point)


def _observed(job: Job, pair: PairDesire) -> _Seen:
    ds, tds = pair.source, pair.target
    common = None
    if pair.common and tds is not None:
        # (the target's side: on the source it may be a bookmark, its snapshot gone)
        snap = tds.snapshot(pair.common[1])
        assert snap is not None
        common = Point(snap.name, _time(job, snap))
    return _Seen(
        newest=_newest_ours(job, ds),
        common=common,
        written=tds.written if tds is not None else 0,
        resume=bool(tds is not None and tds.resume_token),
        behind=len(pair.sends),
        source_count=len(ds.snapshots),
        target_count=len(tds.snapshots) if tds is not None else 0,
    )


def _after(job: Job, pair: PairDesire, seen: _Seen) -> _Seen:
    """What a run that did not fail on this pair left: its new snapshot taken, its sends
    received (the newest of them common, nothing written, no resume token left)."""
    newest = seen.newest
    if pair.new_snapshot:
        stamp = job.naming.timestamp(pair.new_snapshot)
        newest = Point(pair.new_snapshot, stamp if stamp is not None else 0.0)
    common = seen.common
    if pair.sends:
        last = pair.sends[-1].snapshot
        stamp = job.naming.timestamp(last)
        snap = pair.source.snapshot(last)
        when = stamp if stamp is not None else float(snap.creation if snap else 0)
        common = Point(last, when)
    return _Seen(
        newest=newest,
        common=common,
        written=0 if pair.sends or pair.rollback_to else seen.written,
        resume=seen.resume and not pair.sends and not pair.abort_resume,
        behind=0,
        source_count=seen.source_count + (1 if pair.new_snapshot else 0),
        target_count=seen.target_count + len(pair.sends),
    )


def _snapshot_only_row(job: Job, pair: PairDesire, newest: Optional[Point], now: float,
                       warn: float, crit: float) -> Row:  # fmt: skip
    age = now - newest.time if newest else None
    state, reasons = _rate(age, "newest snapshot", warn, crit)
    count = len(pair.source.snapshots)
    return Row(pair.name, "", state, tuple(reasons), newest, None, 0, False, 0, count, 0)


def build_report(
    job: Job,
    desired: Desired,
    now: float,
    *,
    warn: float = DEFAULT_WARN,
    crit: float = DEFAULT_CRIT,
    done: Optional[set[str]] = None,
    verified: Optional[dict[str, Point]] = None,
    verify_max_age: Optional[float] = None,
) -> Report:
    """The report of what was observed; `done`: the datasets a run just backed up
    without failing (rated as the run left them). `verified`: each copy's last full
    verification (read with `verify_max_age`: WARNING when it is older, or none)."""
    rows = []
    for pair in desired.pairs:
        seen = _observed(job, pair)
        if done is not None and pair.name in done and not pair.problem:
            seen = _after(job, pair, seen)
        if job.remote.target_path is None:
            rows.append(_snapshot_only_row(job, pair, seen.newest, now, warn, crit))
        else:
            row = _row(pair, seen, now, warn, crit)
            row = _verification(job, pair, row, now, verified, verify_max_age)
            rows.append(row)
    for missing in desired.missing:
        tds = missing.target
        ours = _newest_ours(job, tds)
        if ours is None:
            # not a backup: a parent the tool created (canmount=off), another dataset
            continue
        rows.append(
            Row(tds.name, tds.name, State.OK, ("missing on the source",), None, ours, 0,
                bool(tds.resume_token), tds.written, 0, len(tds.snapshots), missing_source=True)
        )  # fmt: skip
    return _report(job, now, warn, crit, rows=tuple(rows))


def after_run(
    job: Job, desired: Desired, now: float, failed: set[str], *, warn: float, crit: float
) -> Report:
    done = {p.name for p in desired.pairs if p.name not in failed}
    return build_report(job, desired, now, warn=warn, crit=crit, done=done)


def unknown(job: Job, now: float, error: str, *, warn: float, crit: float) -> Report:
    return _report(job, now, warn, crit, error=error)


def _report(
    job: Job,
    now: float,
    warn: float,
    crit: float,
    *,
    rows: tuple[Row, ...] = (),
    error: Optional[str] = None,
) -> Report:
    """A report's header: the backup, its hosts and target path, the time and thresholds."""
    remote = job.remote
    target = remote.target.describe() + (f": {remote.target_path}" if remote.target_path else "")
    return Report(
        job.naming.backup_name, remote.source.describe(), target, now, warn, crit, rows, error
    )


# --- formats ------------------------------------------------------------------------


def _at(report: Report, point: Optional[Point]) -> str:
    if point is None:
        return "-"
    return f"{point.name} ({age_words(report.now - point.time)})"


def summary_line(report: Report) -> str:
    if report.error is not None:
        return f"UNKNOWN: {report.error}"
    total = len(report.rows)
    bad = total - report.count(State.OK)
    text = f"{report.state.name}: {total} dataset(s), {bad} not OK"
    worst = report.worst()
    point = _point(worst) if worst else None
    if worst is not None and point is not None:
        text += f"; worst {worst.dataset} {age_words(report.now - point.time)} ago"
    return text + "."


def render_table(report: Report) -> str:
    if report.error is not None:
        return summary_line(report)
    snapshot_only = not any(r.target for r in report.rows)
    if snapshot_only:
        headers = ["dataset", "state", "newest snapshot", "snapshots", "why"]
        rows = [
            [r.dataset, r.state.name, _at(report, r.newest_source), r.source_snapshots,
             "; ".join(r.reasons)]
            for r in report.rows
        ]  # fmt: skip
    else:
        headers = ["dataset", "target", "state", "newest source snapshot", "recovery point",
                   "behind", "resume", "target written", "snapshots", "why"]  # fmt: skip
        rows = [
            [r.dataset, r.target, r.state.name, _at(report, r.newest_source),
             _at(report, r.newest_common), r.behind, "pending" if r.resume_pending else "",
             r.target_written or "", f"{r.source_snapshots}/{r.target_snapshots}",
             "; ".join(r.reasons)]
            for r in report.rows
        ]  # fmt: skip
    title = f"Backup {report.backup}: {report.source} -> {report.target or '(snapshots only)'}"
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    return f"{title}\n{table}\n\n{summary_line(report)}"


def _point_json(point: Optional[Point]) -> Optional[dict[str, Any]]:
    return None if point is None else {"snapshot": point.name, "time": point.time}


def to_json(report: Report) -> str:
    data = {
        "format": "zfs-reconcile-status",
        "version": FORMAT_VERSION,
        "backup": report.backup,
        "source": report.source,
        "target": report.target,
        "now": report.now,
        "warn_seconds": report.warn,
        "crit_seconds": report.crit,
        "state": report.state.name,
        "exit_code": int(report.state),
        "error": report.error,
        "summary": summary_line(report),
        "datasets": [
            {
                "dataset": r.dataset,
                "target": r.target or None,
                "state": r.state.name,
                "reasons": list(r.reasons),
                "newest_source_snapshot": _point_json(r.newest_source),
                "newest_common_snapshot": _point_json(r.newest_common),
                "snapshots_behind": r.behind,
                "resume_pending": r.resume_pending,
                "target_written_bytes": r.target_written,
                "source_snapshots": r.source_snapshots,
                "target_snapshots": r.target_snapshots,
                "missing_source": r.missing_source,
                "verified": _point_json(r.verified),
            }
            for r in report.rows
        ],
    }
    return json.dumps(data, indent=1) + "\n"


def render_nagios(report: Report) -> str:
    """One status line with performance data, then one line per dataset that is not OK
    (Nagios plugin guidelines; Icinga and Zabbix read the same)."""
    head = f"ZFS-AUTOBACKUP {report.backup.upper()} {report.state.name}"
    if report.error is not None:
        return f"{head} - {report.error}\n"
    total = len(report.rows)
    behind = total - report.count(State.OK)
    worst = report.worst()
    point = _point(worst) if worst else None
    text = f"{head} - {behind} of {total} datasets behind"
    worst_age = 0
    if worst is not None and point is not None:
        worst_age = math.floor(report.now - point.time)
        text += f"; worst {worst.dataset} {age_words(worst_age)} ago"
    perf = (
        f"worst_age={worst_age}s;{int(report.warn)};{int(report.crit)};0; "
        f"datasets={total};;;0; warning={report.count(State.WARNING)};;;0; "
        f"critical={report.count(State.CRITICAL)};;;0;"
    )
    lines = [f"{text} | {perf}"]
    lines += [
        f"{r.state.name}: {r.dataset}: {'; '.join(r.reasons)}"
        for r in report.rows
        if r.state != State.OK
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS: Sequence[tuple[str, str]] = (
    ("zfs_autobackup_newest_source_snapshot_timestamp_seconds",
     "Time of the newest snapshot of this backup on the source."),
    ("zfs_autobackup_newest_common_snapshot_timestamp_seconds",
     "Time of the newest snapshot on both sides (the recovery point)."),
    ("zfs_autobackup_snapshots_behind", "Source snapshots the target wants but has not yet."),
    ("zfs_autobackup_resume_pending", "1 when an interrupted receive waits to be resumed."),
    ("zfs_autobackup_target_written_bytes",
     "Bytes written on the target since its newest snapshot."),
    ("zfs_autobackup_source_snapshots", "Snapshots of the dataset on the source."),
    ("zfs_autobackup_target_snapshots", "Snapshots of the dataset on the target."),
    ("zfs_autobackup_state", "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
)  # fmt: skip


def render_prometheus(report: Report, extra: Sequence[tuple[str, str, float]] = ()) -> str:
    """The text exposition format: gauges per dataset (timestamps, not ages), and
    `extra` (name, help, value) gauges of the run, labelled with the backup."""
    base = ",".join(
        f'{key}="{_label(value)}"'
        for key, value in (("backup", report.backup), ("source", report.source),
                           ("target", report.target))
    )  # fmt: skip
    values: dict[str, list[str]] = {name: [] for name, _ in METRICS}
    value: float
    for r in report.rows:
        labels = f'{base},dataset="{_label(r.dataset)}"'
        points = {
            "zfs_autobackup_newest_source_snapshot_timestamp_seconds": r.newest_source,
            "zfs_autobackup_newest_common_snapshot_timestamp_seconds": r.newest_common,
        }
        for name, point in points.items():
            if point is not None:
                values[name].append(f"{name}{{{labels}}} {point.time:.0f}")
        for name, value in (
            ("zfs_autobackup_snapshots_behind", r.behind),
            ("zfs_autobackup_resume_pending", int(r.resume_pending)),
            ("zfs_autobackup_target_written_bytes", r.target_written),
            ("zfs_autobackup_source_snapshots", r.source_snapshots),
            ("zfs_autobackup_target_snapshots", r.target_snapshots),
            ("zfs_autobackup_state", int(r.state)),
        ):
            values[name].append(f"{name}{{{labels}}} {value}")
    lines = []
    for name, help_text in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *values[name]]
    overall = "zfs_autobackup_backup_state"
    lines += [
        f"# HELP {overall} The worst state of the backup's datasets (3: a host unreadable).",
        f"# TYPE {overall} gauge",
        f"{overall}{{{base}}} {int(report.state)}",
    ]
    for name, help_text, value in extra:
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} gauge",
            f"{name}{{{base}}} {value:g}",
        ]
    return "\n".join(lines) + "\n"
