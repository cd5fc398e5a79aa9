"""Migration both ways with zfs-autobackup 3.3 itself (installed in the guest), on real ZFS.

Existing 3.3 backups continue incrementally under this tool with the same command line,
and this tool's thinning destroys exactly what 3.3 would; 3.3 continues this tool's
backups too; a hand-made target continues from its common snapshot; two backup names on
the same datasets never touch each other's snapshots or holds.
"""

from __future__ import annotations

import re

import pytest

from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs

SCHEDULES = ["--keep-source=2,1d3d", "--keep-target=3,1d1w"]


def day(n: int, hour: int = 12) -> str:
    return f"2026-01-{n:02d} {hour:02d}:00:00"


def snapname(n: int, name: str = "mig", hour: int = 12) -> str:
    return f"{name}-202601{n:02d}{hour:02d}0000"


def _destroyed(output: str) -> set[str]:
    return set(re.findall(r"\] (\S+@\S+): Destroying", output))


def test_v33_backups_continue_and_thin_as_v33_would(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/data && zfs set autobackup:mig=true {s}/data")
    for n in range(1, 6):
        zfs_bed.write(f"{s}/data", f"f{n}", 16)
        run = zfs_bed.tool_v33("mig", d, "--verbose", *SCHEDULES, now=day(n))
        assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.holds(f"{d}/{s}/data@{snapname(5)}") == ["zfs_autobackup:mig"]

    # what would 3.3 do next? (its --test prints the same "Destroying" lines)
    zfs_bed.write(f"{s}/data", "f6", 16)
    expected = zfs_bed.tool_v33("mig", d, "--verbose", "--test", *SCHEDULES, now=day(6))
    assert expected.returncode == 0, expected.stdout + expected.stderr
    would_destroy = _destroyed(expected.stdout)
    assert would_destroy  # the scenario does thin something

    # this tool, the same command line
    run = zfs_bed.tool("mig", d, "--verbose", *SCHEDULES, now=day(6))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving full" not in run.stdout
    assert f"{d}/{s}/data@{snapname(6)}: receiving incremental" in run.stdout
    assert _destroyed(run.stdout) == would_destroy
    assert zfs_bed.holds(f"{d}/{s}/data@{snapname(6)}") == ["zfs_autobackup:mig"]
    assert zfs_bed.holds(f"{s}/data@{snapname(5)}") == []  # 3.3's hold released by us
    # compare snapshots: 3.3 leaves received filesystems mounted, and reading files through
    # that mount would update atime, which changes the target
    assert zfs_bed.checksum(f"{d}/{s}/data@{snapname(6)}") == zfs_bed.checksum(
        f"{s}/data@{snapname(6)}"
    )

    # and back: 3.3 continues what this tool made, and releases this tool's hold
    zfs_bed.write(f"{s}/data", "f7", 16)
    run = zfs_bed.tool_v33("mig", d, "--verbose", *SCHEDULES, now=day(7))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving full" not in run.stdout
    assert zfs_bed.holds(f"{s}/data@{snapname(6)}") == []
    assert zfs_bed.holds(f"{d}/{s}/data@{snapname(7)}") == ["zfs_autobackup:mig"]
    assert zfs_bed.checksum(f"{d}/{s}/data@{snapname(7)}") == zfs_bed.checksum(
        f"{s}/data@{snapname(7)}"
    )


def test_hand_made_target_continues_from_its_common_snapshot(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/web && zfs set autobackup:mig=true {s}/web && zfs create {d}/{s} && "
        f"zfs snapshot {s}/web@manual-1 && zfs send {s}/web@manual-1 | zfs recv -u {d}/{s}/web"
    )
    zfs_bed.write(f"{s}/web", "new", 64)
    run = zfs_bed.tool("mig", d, "--other-snapshots", "--verbose", now=day(1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving full" not in run.stdout
    assert f"{d}/{s}/web@{snapname(1)}: receiving incremental" in run.stdout
    assert zfs_bed.snapshots(f"{d}/{s}/web") == ["manual-1", snapname(1)]
    assert zfs_bed.checksum(f"{d}/{s}/web") == zfs_bed.checksum(f"{s}/web")


def test_two_backup_names_never_touch_each_other(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/shared && zfs set autobackup:offsite=true {s}/shared && "
        f"zfs set autobackup:local=true {s}/shared && zfs create {d}/off && zfs create {d}/loc"
    )
    for n in range(1, 4):
        zfs_bed.write(f"{s}/shared", f"f{n}", 8)
        for name, target in (("offsite", f"{d}/off"), ("local", f"{d}/loc")):
            # both targets are on this machine: each backup must not select the other's
            # received copies (--exclude-received, as with zfs-autobackup 3.3)
            run = zfs_bed.tool(
                name, target, "--keep-source=0", "--keep-target=0", "--exclude-received",
                now=day(n, 10 + len(name)),
            )  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
    # --keep-source=0: no source snapshot left, each backup's chain kept by its own
    # bookmark (another backup name's bookmark is never touched)
    snaps = [snapname(3, "offsite", 17), snapname(3, "local", 15)]
    assert zfs_bed.snapshots(f"{s}/shared") == []
    tags = [zfs_bed.prop(f"{d}/off", "guid"), zfs_bed.prop(f"{d}/loc", "guid")]
    assert zfs_bed.bookmarks(f"{s}/shared") == [f"{n}__{t}" for n, t in zip(snaps, tags)]
    assert zfs_bed.snapshots(f"{d}/off/{s}/shared") == [snaps[0]]
    assert zfs_bed.snapshots(f"{d}/loc/{s}/shared") == [snaps[1]]
