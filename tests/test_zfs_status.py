"""Status and monitoring on real OpenZFS: is every backup current, in every format."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import LOCAL

pytestmark = pytest.mark.zfs
FORMATS = ("table", "json", "nagios", "prometheus")


def stamp(day: int, hour: int = 12) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _status(
    zfs_bed: ZfsBed, d: str, when: str, formats: tuple[str, ...] = FORMATS
) -> dict[str, tuple[int, str]]:
    """Exit code and output of `status` in each of `formats` (every one by default)."""
    found = {}
    for fmt in formats:
        run = zfs_bed.tool("status", "mon", d, "--format", fmt, now=when)
        assert not run.stderr.strip() or fmt == "table", run.stderr
        found[fmt] = (run.returncode, run.stdout)
    return found


def test_status_ages_into_warning_and_critical(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create -p {s}/app/db && zfs set autobackup:mon=true {s}/app")
    assert zfs_bed.tool("mon", d, now=stamp(1)).returncode == 0
    fresh = _status(zfs_bed, d, stamp(1, 13))
    assert {code for code, _ in fresh.values()} == {0}
    assert fresh["nagios"][1].startswith("ZFS-AUTOBACKUP MON OK - 0 of 2 datasets behind")
    data = json.loads(fresh["json"][1])
    assert [r["state"] for r in data["datasets"]] == ["OK", "OK"]
    families = _families(fresh["prometheus"][1])
    common = families["zfs_autobackup_newest_common_snapshot_timestamp_seconds"]
    assert len(common.samples) == 2  # type: ignore[attr-defined]

    # (the exit code is the report's state whatever the format, as every format showed
    # above; test_status ages the report through each state: two formats suffice here)
    later = _status(zfs_bed, d, stamp(2, 14), ("nagios", "table"))  # 26 hours on
    assert {code for code, _ in later.values()} == {1}
    assert "WARNING: " in later["nagios"][1] and "recovery point 1d 2h ago" in later["table"][1]
    much_later = _status(zfs_bed, d, stamp(3, 14), ("nagios", "prometheus"))  # 50 hours on
    assert {code for code, _ in much_later.values()} == {2}
    assert much_later["nagios"][1].startswith(
        "ZFS-AUTOBACKUP MON CRITICAL - 2 of 2 datasets behind"
    )


def test_written_target_resume_token_and_lost_common_snapshot(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/a && zfs create {s}/b && zfs create {s}/c && "
        f"zfs set autobackup:mon=true {s}/a && zfs set autobackup:mon=true {s}/b && "
        f"zfs set autobackup:mon=true {s}/c"
    )
    assert zfs_bed.tool("mon", d, now=stamp(1)).returncode == 0
    # a: written into the target; b: an interrupted transfer; c: its common snapshot gone
    zfs_bed.run(
        f'[ "$(zfs get -H -o value mounted {d}/{s}/a)" = yes ] || zfs mount {d}/{s}/a; '
        f"touch $(zfs get -H -o value mountpoint {d}/{s}/a)/x && zpool sync {d}"
    )
    zfs_bed.write(f"{s}/b", "big", 3 * 1024)
    run = zfs_bed.tool("mon", d, "--send-pipe", "head -c 1000000", now=stamp(1, 13))
    assert run.returncode >= 1
    snap = "mon-20260101120000"
    # (with bookmarks the source holds nothing: the snapshot and its bookmark both go)
    tag = zfs_bed.prop(d, "guid")
    zfs_bed.run(f"zfs destroy {s}/c@{snap} && zfs destroy '{s}/c#{snap}__{tag}'")
    run = zfs_bed.tool("status", "mon", d, "--format", "json", now=stamp(1, 14))
    code, text = run.returncode, run.stdout
    rows = {r["dataset"]: r for r in json.loads(text)["datasets"]}
    assert code == 2
    assert rows[f"{s}/a"]["state"] == "WARNING" and rows[f"{s}/a"]["target_written_bytes"] > 0
    assert rows[f"{s}/b"]["resume_pending"] and rows[f"{s}/b"]["state"] == "WARNING"
    assert rows[f"{s}/b"]["snapshots_behind"] == 1
    assert rows[f"{s}/c"]["state"] == "CRITICAL" and rows[f"{s}/c"]["reasons"] == [
        "no common snapshot"
    ]


def test_status_over_ssh_and_an_unreadable_host(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/r && zfs set autobackup:mon=true {s}/r")
    assert (
        zfs_bed.tool("--ssh-source", LOCAL, "mon", d, "--exclude-received", now=stamp(1)).returncode
        == 0
    )
    run = zfs_bed.tool(
        "status",
        "--ssh-source",
        LOCAL,
        "mon",
        d,
        "--exclude-received",
        "--format",
        "nagios",
        "--debug",
        now=stamp(1, 13),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "CMD > ssh " in run.stdout and "0 of 1 datasets behind" in run.stdout
    run = zfs_bed.tool(
        "status",
        "--ssh-source",
        "nobody@127.0.0.9",
        "mon",
        d,
        "--format",
        "nagios",
        now=stamp(1, 13),
    )
    assert run.returncode == 3 and run.stdout.startswith(
        "ZFS-AUTOBACKUP MON UNKNOWN - ssh to nobody@127.0.0.9 failed"
    )


def test_runs_report_themselves(zfs_bed: ZfsBed, pools: Pools) -> None:
    """--prometheus-file after each run (atomically: a reader never sees half a file),
    the last success kept after a failed run; --on-failure gets the outcome."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/m && zfs set autobackup:mon=true {s}/m && mkdir -p /var/tmp/prom")
    prom = "/var/tmp/prom/zfs.prom"
    run = zfs_bed.tool("mon", d, "--prometheus-file", prom, now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    families = _families(zfs_bed.run(f"cat {prom}").stdout)
    assert families["zfs_autobackup_run_exit_code"].samples[0].value == 0  # type: ignore[attr-defined]
    assert families["zfs_autobackup_run_snapshots_sent"].samples[0].value == 1  # type: ignore[attr-defined]
    assert families["zfs_autobackup_run_sent_bytes"].samples[0].value > 0  # type: ignore[attr-defined]
    success = families["zfs_autobackup_run_last_success_timestamp_seconds"].samples[0].value  # type: ignore[attr-defined]
    state = families["zfs_autobackup_state"].samples[0]  # type: ignore[attr-defined]
    assert state.value == 0 and state.labels["dataset"] == f"{s}/m"

    # a failing run: the hook sees it, the metrics keep the last success
    zfs_bed.run(
        f'[ "$(zfs get -H -o value mounted {d}/{s}/m)" = yes ] || zfs mount {d}/{s}/m; '
        f"touch $(zfs get -H -o value mountpoint {d}/{s}/m)/x && zpool sync {d}"
    )
    zfs_bed.write(f"{s}/m", "f", 16)
    hook = "sh -c 'env | grep ^ZFS_AUTOBACKUP_ > /var/tmp/prom/hook.env; cat \"$ZFS_AUTOBACKUP_SUMMARY\" > /var/tmp/prom/hook.json'"
    run = zfs_bed.tool("mon", d, "--prometheus-file", prom, "--on-failure", hook, now=stamp(2))
    assert run.returncode == 1, run.stdout + run.stderr
    env = dict(
        line.split("=", 1) for line in zfs_bed.run("cat /var/tmp/prom/hook.env").stdout.splitlines()
    )
    assert (
        env["ZFS_AUTOBACKUP_EXIT_CODE"] == "1" and env["ZFS_AUTOBACKUP_FAILED_DATASETS"] == f"{s}/m"
    )
    assert json.loads(zfs_bed.run("cat /var/tmp/prom/hook.json").stdout)["failed"] == [f"{s}/m"]
    families = _families(zfs_bed.run(f"cat {prom}").stdout)
    assert families["zfs_autobackup_run_last_success_timestamp_seconds"].samples[0].value == success  # type: ignore[attr-defined]
    assert families["zfs_autobackup_run_datasets_failed"].samples[0].value == 1  # type: ignore[attr-defined]

    # a reader never sees part of a file while status writes it again and again (each
    # whole file status writes ends with the backup's state; the run's own file does not:
    # status writes it once before the reader starts)
    status = f"zfs-autobackup status mon {d} --format nagios --prometheus-file {prom} >/dev/null"
    zfs_bed.run(f"{status} || true")
    reader = (
        f"ok=0; bad=0; for i in $(seq 300); do "
        f"tail -n 1 {prom} | grep -q '^zfs_autobackup_backup_state' && ok=$((ok+1)) || bad=$((bad+1)); "
        f"done; echo $ok $bad"
    )
    writer = f"for i in 1 2 3 4 5 6; do {status}; done"
    out = zfs_bed.run(f"({writer}) & {reader}; wait").stdout.split()
    assert out[1] == "0" and int(out[0]) == 300
