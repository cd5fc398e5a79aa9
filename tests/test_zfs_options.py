"""zfs-autobackup v3.3 options, each proven on real OpenZFS (local mode in the guest)."""

from __future__ import annotations

import pytest

from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs


def stamp(hour: int, day: int = 1) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(hour: int, day: int = 1, name: str = "opt") -> str:
    return f"{name}-202601{day:02d}{hour:02d}0000"


def _tree(zfs_bed: ZfsBed, pools: Pools, *names: str, prop: str = "autobackup:opt") -> None:
    s = pools.src
    zfs_bed.run(
        " && ".join(
            [f"zfs create -p {s}/{n}" for n in names] + [f"zfs set {prop}=true {s}/{names[0]}"]
        )
    )


def test_snapshot_options(zfs_bed: ZfsBed, pools: Pools) -> None:
    """--set-snapshot-properties, --pre/--post-snapshot-cmd (post also after a failure),
    --min-change, --allow-empty, --no-snapshot."""
    s = pools.src
    _tree(zfs_bed, pools, "app")
    zfs_bed.run("rm -f /tmp/pre /tmp/post")
    run = zfs_bed.tool(
        "opt", "--verbose", "--set-snapshot-properties", "com.example:note=nightly",
        "--pre-snapshot-cmd", "touch /tmp/pre", "--post-snapshot-cmd", "sh -c 'echo done > /tmp/post'",
        now=stamp(1),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[Source] Running pre-snapshot-cmd" in run.stdout
    assert zfs_bed.prop(f"{s}/app@{snapname(1)}", "com.example:note") == "nightly"
    assert zfs_bed.run("cat /tmp/post && test -e /tmp/pre").stdout.strip() == "done"

    # a failing pre command: no snapshot, the post command still runs, the dataset failed
    zfs_bed.run("rm -f /tmp/post")
    run = zfs_bed.tool("opt", "--allow-empty", "--pre-snapshot-cmd", "false",
                       "--post-snapshot-cmd", "touch /tmp/post", now=stamp(2))  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pre-snapshot-cmd failed" in run.stderr
    assert zfs_bed.snapshots(f"{s}/app") == [snapname(1)]
    zfs_bed.sh("test", "-e", "/tmp/post")

    # --min-change: 10 KiB written is below 100000 bytes; --allow-empty ignores it
    zfs_bed.write(f"{s}/app", "small", 10)
    run = zfs_bed.tool("opt", "--verbose", "--min-change", "100000", now=stamp(3))
    assert f"[Source] {s}/app: No changes since {snapname(1)}" in run.stdout
    assert zfs_bed.tool("opt", "--no-snapshot", now=stamp(4)).returncode == 0
    assert (
        zfs_bed.tool("opt", "--allow-empty", "--min-change", "100000", now=stamp(5)).returncode == 0
    )
    assert zfs_bed.snapshots(f"{s}/app") == [snapname(1), snapname(5)]


def test_sending_options(zfs_bed: ZfsBed, pools: Pools) -> None:
    """--other-snapshots, --no-holds, --exclude-snapshot-pattern, --no-thinning, --no-send,
    --strip-path (as 3.3: --no-bookmarks; with bookmarks the common snapshot may be
    thinned on the source, tests/test_zfs_bookmarks.py)."""
    s, d = pools.src, pools.dst
    _tree(zfs_bed, pools, "srv/db")
    zfs_bed.tool("opt", "--allow-empty", now=stamp(1))
    zfs_bed.sh("zfs", "snapshot", f"{s}/srv/db@manual")
    zfs_bed.tool("opt", "--allow-empty", now=stamp(2))
    zfs_bed.tool("opt", "--allow-empty", now=stamp(3))
    run = zfs_bed.tool(
        "opt", d, "--no-snapshot", "--other-snapshots", "--no-holds", "--no-bookmarks",
        "--strip-path", "1",
        "--exclude-snapshot-pattern", f"@{snapname(2)}$", "--verbose", now=stamp(4),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    target = f"{d}/srv/db"  # --strip-path 1 dropped the pool name
    assert zfs_bed.snapshots(target) == [snapname(1), "manual", snapname(3)]
    assert zfs_bed.holds(f"{target}@{snapname(3)}") == []
    assert zfs_bed.holds(f"{s}/srv/db@{snapname(3)}") == []

    # --no-send: only thinning; --no-thinning: keep-0 schedules destroy nothing
    run = zfs_bed.tool("opt", d, "--allow-empty", "--no-send", "--no-bookmarks", "--strip-path", "1",
                       "--no-thinning", "--keep-source=0", "--keep-target=0", now=stamp(5))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.snapshots(target) == [snapname(1), "manual", snapname(3)]
    assert zfs_bed.snapshots(f"{s}/srv/db") == [
        snapname(1),
        "manual",
        snapname(2),
        snapname(3),
        snapname(5),
    ]
    run = zfs_bed.tool("opt", d, "--no-snapshot", "--no-send", "--no-bookmarks", "--strip-path", "1",
                       "--keep-source=0", "--keep-target=0", now=stamp(6))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    # thinning without sending: the newest common snapshot (3) stays on both sides, and the
    # source keeps 5 (the target still needs it); "manual" is not ours and never thinned
    assert zfs_bed.snapshots(target) == ["manual", snapname(3)]
    assert zfs_bed.snapshots(f"{s}/srv/db") == ["manual", snapname(3), snapname(5)]


def _touch(zfs_bed: ZfsBed, dataset: str, name: str) -> str:
    """A shell line that writes a file into a target filesystem (mounting it if needed)."""
    return (
        f'{{ [ "$(zfs get -H -o value mounted {dataset})" = yes ] || zfs mount {dataset}; }} && '
        f'touch "$(zfs get -H -o value mountpoint {dataset})/{name}" && '
        f"zpool sync {dataset.split('/', maxsplit=1)[0]}"
    )


def test_target_conflicts_need_their_flag(zfs_bed: ZfsBed, pools: Pools) -> None:
    """Incompatible snapshots, a changed target, a target without snapshots: each stops
    only its dataset, names the flag, and the flag fixes it. Failures are counted.
    As 3.3: another tool's snapshot right after the common one with nothing written in
    it is compatible; --destroy-incompatible does not imply --rollback; --rollback acts
    only right before a transfer."""
    s, d = pools.src, pools.dst
    _tree(zfs_bed, pools, "top", "top/inc", "top/mod", "top/ok")
    assert zfs_bed.tool("opt", d, "--allow-empty", now=stamp(1)).returncode == 0
    t = f"{d}/{s}/top"
    zfs_bed.run(
        f"zfs set readonly=off {t}/inc && {_touch(zfs_bed, f'{t}/inc', 'x')} && "
        f"zfs snapshot {t}/inc@stray && zfs set readonly=off {t}/mod && "
        f"{_touch(zfs_bed, f'{t}/mod', 'changed')} && zfs snapshot {t}/ok@hourly-1"
    )
    run = zfs_bed.tool("opt", d, "--allow-empty", now=stamp(2))
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        "Incompatible snapshots on the target (newer than the common snapshot): stray" in run.stderr
    )
    assert "--destroy-incompatible" in run.stderr
    assert "was changed since its newest snapshot" in run.stderr and "--rollback" in run.stderr
    assert "! 2 dataset(s) failed!" in run.stderr
    # the others went on; another tool's snapshot with nothing written in it stays
    assert zfs_bed.snapshots(f"{t}/ok") == [snapname(1), "hourly-1", snapname(2)]
    assert zfs_bed.snapshots(f"{t}/inc") == [snapname(1), "stray"]

    # --destroy-incompatible fixes inc (destroy, roll back, send), but mod is still changed
    run = zfs_bed.tool("opt", d, "--no-snapshot", "--destroy-incompatible", now=stamp(3))
    assert run.returncode == 1, run.stdout + run.stderr
    assert zfs_bed.snapshots(f"{t}/inc") == [snapname(1), snapname(2)]
    assert zfs_bed.snapshots(f"{t}/mod") == [snapname(1)]
    run = zfs_bed.tool("opt", d, "--no-snapshot", "--rollback", now=stamp(4))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.snapshots(f"{t}/mod") == [snapname(1), snapname(2)]
    # rolled back: the live target is exactly its newest snapshot, the change is gone
    # (no `ls` there: reading a mounted directory updates atime, which is a change)
    assert zfs_bed.prop(f"{t}/mod", "written") == "0"
    assert zfs_bed.checksum(f"{t}/mod@{snapname(2)}") == zfs_bed.checksum(
        f"{s}/top/mod@{snapname(2)}"
    )
    # as 3.3: --rollback only right before a transfer: with nothing to send, the change
    # stays; the next run that sends discards it
    zfs_bed.run(_touch(zfs_bed, f"{t}/mod", "again"))
    written = zfs_bed.prop(f"{t}/mod", "written")
    assert written != "0"
    run = zfs_bed.tool("opt", d, "--no-snapshot", "--rollback", now=stamp(3, day=2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{t}/mod", "written") == written
    run = zfs_bed.tool("opt", d, "--allow-empty", "--rollback", now=stamp(4, day=2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{t}/mod", "written") == "0"
    assert zfs_bed.snapshots(f"{t}/mod")[-1] == snapname(4, day=2)

    # a target dataset that exists without snapshots is only overwritten with --force
    # (not mounted: a mount would put its directory into top, a change of top)
    zfs_bed.run(f"zfs create {s}/top/new && zfs create -o canmount=noauto {d}/{s}/top/new")
    run = zfs_bed.tool("opt", d, "--allow-empty", now=stamp(5, day=2))
    assert run.returncode == 1 and "exists but has no snapshots" in run.stderr
    assert zfs_bed.snapshots(f"{d}/{s}/top/new") == []
    run = zfs_bed.tool("opt", d, "--no-snapshot", "--force", "--debug", now=stamp(6, day=2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert " -F " in next(
        line for line in run.stdout.splitlines() if "zfs recv" in line and "top/new" in line
    )
    assert zfs_bed.snapshots(f"{d}/{s}/top/new") == [snapname(5, day=2)]


def test_ignore_transfer_errors_and_guid_check(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _tree(zfs_bed, pools, "x")
    # the receive gets all data but the pipeline exits non-zero
    failing = ["--recv-pipe", "sh -c 'cat; exit 3'"]
    run = zfs_bed.tool("opt", d, *failing, now=stamp(1))
    assert run.returncode == 1, run.stdout + run.stderr
    run = zfs_bed.tool(
        "opt", d, "--allow-empty", *failing, "--ignore-transfer-errors", now=stamp(2)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ignoring transfer errors, the snapshot arrived" in run.stdout
    assert zfs_bed.prop(f"{d}/{s}/x@{snapname(2)}", "guid") == zfs_bed.prop(
        f"{s}/x@{snapname(2)}", "guid"
    )

    # same name, another snapshot: by guid there is no common snapshot; --no-guid-check
    # matches by name (as v3.3)
    zfs_bed.run(
        f"zfs release -r zfs_autobackup:opt {d}/{s}/x@{snapname(2)} && zfs destroy -r {d}/{s}/x && "
        f"zfs create {d}/{s}/x && zfs snapshot {d}/{s}/x@{snapname(2)}"
    )
    plan = zfs_bed.tool("plan", "opt", d, "--no-snapshot", now=stamp(3))
    assert plan.returncode == 1 and "Can't find a common snapshot" in plan.stdout
    plan = zfs_bed.tool("plan", "opt", d, "--no-guid-check", "--allow-empty", now=stamp(3))
    assert f"@{snapname(3)} from @{snapname(2)}" in plan.stdout, plan.stdout


def test_formats_and_utc(zfs_bed: ZfsBed, pools: Pools) -> None:
    """--property-format, --snapshot-format, --hold-format, --utc (guest clock in JST)."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/f && zfs set backup:nightly=true {s}/f")
    formats = ["--property-format", "backup:{}", "--snapshot-format", "{}_%Y-%m-%d_%H.%M",
               "--hold-format", "keep_{}"]  # fmt: skip
    jst = "env TZ=JST-9 "
    zfs_bed.run(jst + f"faketime -f '2026-01-01 12:00:00' zfs-autobackup nightly {d} " + " ".join(
        f"'{a}'" for a in formats))  # fmt: skip
    zfs_bed.run(jst + f"faketime -f '2026-01-01 13:00:00' zfs-autobackup nightly {d} --utc --allow-empty " + " ".join(
        f"'{a}'" for a in formats))  # fmt: skip
    # local time (JST) without --utc, UTC (9 hours earlier) with it
    assert zfs_bed.snapshots(f"{s}/f") == ["nightly_2026-01-01_12.00", "nightly_2026-01-01_04.00"]
    assert zfs_bed.holds(f"{d}/{s}/f@nightly_2026-01-01_04.00") == ["keep_nightly"]
    assert zfs_bed.prop(f"{d}/{s}/f", "backup:nightly") == "true"


def test_selection_options(zfs_bed: ZfsBed, pools: Pools) -> None:
    """`parent`, --exclude-unchanged / --ignore-replicated."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create -p {s}/vm/a && zfs create {s}/vm/b && zfs create {s}/host && "
        f"zfs set autobackup:opt=parent {s}/host && zfs create {s}/host/tmp && "
        f"zfs set autobackup:opt=true {s}/vm"
    )
    zfs_bed.tool("opt", "--allow-empty", now=stamp(1))
    zfs_bed.write(f"{s}/vm/a", "f", 64)
    zfs_bed.write(f"{s}/host", "f", 64)
    run = zfs_bed.tool("opt", d, "--ignore-replicated", "--verbose", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"[Source] {s}/vm/a: Selected (inherited selection)" in run.stdout
    assert f"[Source] {s}/vm: Excluded (by --exclude-unchanged)" in run.stdout
    assert f"[Source] {s}/vm/b: Excluded (by --exclude-unchanged)" in run.stdout
    assert f"[Source] {s}/host: Selected (direct selection)" in run.stdout
    assert f"[Source] {s}/host/tmp: Ignored (only parent)" in run.stdout
    assert zfs_bed.names(d) == [
        d, f"{d}/{s}", f"{d}/{s}/host", f"{d}/{s}/host@{snapname(1)}", f"{d}/{s}/host@{snapname(2)}",
        f"{d}/{s}/vm", f"{d}/{s}/vm/a", f"{d}/{s}/vm/a@{snapname(1)}", f"{d}/{s}/vm/a@{snapname(2)}",
    ]  # fmt: skip


def test_destroy_missing(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _tree(zfs_bed, pools, "all", "all/gone", "all/kept", "all/parent/child")
    assert zfs_bed.tool("opt", d, "--allow-empty", now=stamp(1)).returncode == 0
    zfs_bed.run(
        f"zfs set autobackup:opt=false {s}/all/gone && zfs set autobackup:opt=false {s}/all/parent"
    )
    zfs_bed.sh("zfs", "snapshot", f"{d}/{s}/all/kept@user")
    zfs_bed.sh("zfs", "set", "autobackup:opt=false", f"{s}/all/kept")
    run = zfs_bed.tool(
        "opt", d, "--allow-empty", "--destroy-missing", "30d", "--verbose", now=stamp(1, 10)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"[Target] {d}/{s}/all/gone: Destroy missing: Waiting for deadline." in run.stdout
    # (a target's note, labelled so, after the "Sending and thinning" title)
    assert f"[Source] {d}/{s}/all/gone" not in run.stdout
    assert run.stdout.index("#### Sending and thinning") < run.stdout.index("Waiting for deadline")
    run = zfs_bed.tool(
        "opt", d, "--allow-empty", "--destroy-missing", "30d", "--verbose", now=stamp(1, 31)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    names = zfs_bed.names(d)
    assert f"{d}/{s}/all/gone" not in names
    assert f"{d}/{s}/all/kept" in names  # still has a snapshot that is not ours
    assert (
        f"[Target] {d}/{s}/all/kept: Destroy missing: Still in use by other snapshots."
        in run.stdout
    )
    assert f"{d}/{s}/all/parent/child" not in names  # a leaf goes first ...
    assert f"{d}/{s}/all/parent" in names  # ... its parent had a child when observed
    assert f"[Target] {d}/{s}/all/parent: Destroy missing: Still has children here." in run.stdout
    # as 3.3 (which mounts received filesystems): destroying the mounted all/gone made zfs
    # remove its mountpoint directory from all, a change the next receive into all refuses
    # (readonly=on on the target prevents it; --rollback discards it)
    run = zfs_bed.tool("opt", d, "--allow-empty", "--destroy-missing", "30d", now=stamp(2, 31))
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"Target dataset {d}/{s}/all was changed since its newest snapshot" in run.stderr
    assert f"{d}/{s}/all/parent" not in zfs_bed.names(d)
    run = zfs_bed.tool(
        "opt", d, "--allow-empty", "--destroy-missing", "30d", "--rollback", now=stamp(3, 31)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{d}/{s}/all/parent" not in zfs_bed.names(d)


def test_debug_output_and_version(zfs_bed: ZfsBed, pools: Pools) -> None:
    d = pools.dst
    _tree(zfs_bed, pools, "v")
    run = zfs_bed.tool("opt", d, "--debug-output", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "STDOUT > " in run.stdout and "EXIT > 0" in run.stdout
    version = zfs_bed.tool("--version")
    assert version.returncode == 0 and version.stdout.startswith("zfs-autobackup v")
