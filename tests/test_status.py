"""Status, pure: states, the four formats, the run metrics (and the real ones on real
ZFS: tests/test_zfs_status.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from executors import monitor
from planner import status
from tests.builders import dataset, job, run_desire, state

HOUR = 3600.0
SNAP1 = "bak-20260101120000"


def _ts(name: str) -> float:
    stamp = job().naming.timestamp(name)
    assert stamp is not None
    return stamp


def _report(target_datasets, now_hours: float = 1, **kwargs: object) -> status.Report:  # type: ignore[no-untyped-def]
    j = job(snapshot=False, **kwargs)  # type: ignore[arg-type]
    source = state(
        [
            dataset("p/a", (SNAP1,), selection=("true", "local")),
            dataset("p/b", (SNAP1,), selection=("true", "local")),
        ]
    )
    target = state([dataset("backup"), *target_datasets])
    now = _ts(SNAP1) + now_hours * HOUR
    desired = run_desire(j, source, target, now)
    return status.build_report(j, desired, now)


def _both() -> list:  # type: ignore[type-arg]
    return [
        dataset("backup/p/a", (SNAP1,), lineage="p/a"),
        dataset("backup/p/b", (SNAP1,), lineage="p/b"),
    ]


def test_states_as_the_recovery_point_ages() -> None:
    assert _report(_both(), 1).state == status.State.OK
    report = _report(_both(), 30)
    assert report.state == status.State.WARNING
    assert report.rows[0].reasons == ("recovery point 1d 6h ago",)
    assert _report(_both(), 50).state == status.State.CRITICAL


def test_only_backups_missing_on_the_source_get_a_row() -> None:
    """A target dataset of ours whose source is gone has a row; the parent the tool made
    for it (canmount=off, no snapshots) and a dataset without our snapshots have none."""
    gone = dataset("backup/p/gone", (SNAP1,), lineage="p/gone")
    report = _report([dataset("backup/p"), *_both(), gone, dataset("backup/p/x", ("hourly",))])
    assert [(r.dataset, r.missing_source) for r in report.rows] == [
        ("p/a", False), ("p/b", False), ("backup/p/gone", True),
    ]  # fmt: skip


def test_what_else_makes_a_dataset_warning_or_critical() -> None:
    written = dataset("backup/p/a", (SNAP1,), lineage="p/a", written=512)
    report = _report([written, dataset("backup/p/b", (SNAP1,), lineage="p/b", token="1-x")])
    assert [r.state for r in report.rows] == [status.State.WARNING, status.State.WARNING]
    assert report.rows[0].reasons == ("target written to (512 bytes)",)
    assert report.rows[1].reasons == ("resume token pending",)
    # the same name with another guid: no common snapshot; a missing target dataset
    other = dataset("backup/p/a", (SNAP1,), lineage="someone else")
    report = _report([other])
    assert report.rows[0].reasons == ("common snapshot has another guid",)
    assert report.rows[1].reasons == ("target dataset missing",)
    assert report.state == status.State.CRITICAL
    # dated in the future
    assert "dated in the future" in _report(_both(), -2).rows[0].reasons[0]


def test_formats() -> None:
    report = _report([dataset("backup/p/a", (SNAP1,), lineage="p/a")], 30)
    table = status.render_table(report)
    assert (
        "p/a" in table
        and "1d 6h" in table
        and table.endswith("CRITICAL: 2 dataset(s), 2 not OK; worst p/a 1d 6h ago.")
    )
    nagios = status.render_nagios(report).splitlines()
    assert nagios[0] == (
        "ZFS-AUTOBACKUP BAK CRITICAL - 2 of 2 datasets behind; worst p/a 1d 6h ago | "
        "worst_age=108000s;90000;176400;0; datasets=2;;;0; warning=1;;;0; critical=1;;;0;"
    )
    assert nagios[1:] == [
        "WARNING: p/a: recovery point 1d 6h ago",
        "CRITICAL: p/b: target dataset missing",
    ]
    data = json.loads(status.to_json(report))
    assert data["format"] == "zfs-reconcile-status" and data["version"] == 1
    assert (
        data["exit_code"] == 2
        and data["datasets"][0]["newest_common_snapshot"]["snapshot"] == SNAP1
    )
    families = {f.name: f for f in text_string_to_metric_families(status.render_prometheus(report))}
    common = families["zfs_autobackup_newest_common_snapshot_timestamp_seconds"]
    assert [(s.labels["dataset"], s.value) for s in common.samples] == [("p/a", _ts(SNAP1))]
    assert {s.labels["dataset"]: s.value for s in families["zfs_autobackup_state"].samples} == {
        "p/a": 1.0,
        "p/b": 2.0,
    }


def test_an_unreadable_host_is_unknown() -> None:
    j = job()
    report = status.unknown(j, 0.0, "ssh to backup1 failed: timeout", warn=1, crit=2)
    assert report.state == status.State.UNKNOWN
    assert (
        status.render_nagios(report)
        == "ZFS-AUTOBACKUP BAK UNKNOWN - ssh to backup1 failed: timeout\n"
    )


def test_snapshot_only_mode_rates_the_newest_snapshot() -> None:
    j = job(target_path=None, snapshot=False)
    source = state([dataset("p/a", (SNAP1,), selection=("true", "local"))])
    desired = run_desire(j, source, None, _ts(SNAP1) + 26 * HOUR)
    report = status.build_report(j, desired, _ts(SNAP1) + 26 * HOUR)
    assert report.rows[0].state == status.State.WARNING
    assert report.rows[0].reasons == ("newest snapshot 1d 2h ago",)


def test_metrics_file_is_written_atomically_and_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "zfs.prom"
    report = _report(_both(), 1)
    ok = monitor.RunRecord("bak", 100.0, 160.0, 0, 2, (), 2, 2, 1, 4096)
    monitor.write_run_metrics(str(path), ok, report)
    failed = monitor.RunRecord("bak", 200.0, 230.0, 1, 1, ("p/b",), 1, 1, 0, 0)
    monitor.write_run_metrics(str(path), failed, report)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["zfs_autobackup_run_last_success_timestamp_seconds"].samples[0].value == 160.0
    assert families["zfs_autobackup_run_datasets_failed"].samples[0].value == 1.0
    assert families["zfs_autobackup_run_duration_seconds"].samples[0].value == 30.0
    assert [p.name for p in tmp_path.iterdir()] == ["zfs.prom"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_hooks_get_the_outcome_and_never_change_it(tmp_path: Path) -> None:
    import io

    from executors.console import Console

    out = tmp_path / "env"
    record = monitor.RunRecord("bak", 1.0, 2.0, 2, 0, ("p/a", "p/b"), 0, 0, 0, 0)
    console = Console(out=io.StringIO(), err=io.StringIO(), color=False)
    script = f'env | grep ^ZFS_AUTOBACKUP_ | sort > {out}; cp "$ZFS_AUTOBACKUP_SUMMARY" {out}.json'
    monitor.run_hook(console, "--on-failure", ["sh", "-c", script], record)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["ZFS_AUTOBACKUP_BACKUP"] == "bak" and env["ZFS_AUTOBACKUP_EXIT_CODE"] == "2"
    assert env["ZFS_AUTOBACKUP_FAILED"] == "2"
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["failed"] == ["p/a", "p/b"] and summary["exit_code"] == 2
    monitor.run_hook(console, "--on-failure", ["sh", "-c", "echo nope >&2; exit 7"], record)
    assert "--on-failure failed (exit code 7): nope" in console.err.getvalue()  # type: ignore[attr-defined]


def test_an_unwritable_metrics_folder_is_refused_before_anything(tmp_path: Path) -> None:
    from reconcile.errors import UsageError

    with pytest.raises(UsageError, match="does not exist or is not writable"):
        monitor.check_prometheus_file(str(tmp_path / "missing" / "x.prom"))
    monitor.check_prometheus_file(str(tmp_path / "x.prom"))
    assert list(tmp_path.iterdir()) == []
