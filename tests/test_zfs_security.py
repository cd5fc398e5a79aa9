"""No shell injection on any host: hostile strings arrive literally, through ssh too.

ZFS itself refuses `;`, `$`, quotes, backticks and newlines in dataset and snapshot
names (OpenZFS 2.3 in the guest: `invalid character`), so the hostile strings go where
users can put them: property values, hold tags, and pipe commands.
"""

from __future__ import annotations

import pytest

from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import LOCAL

pytestmark = pytest.mark.zfs

EVIL = "$(touch /tmp/pwned1);`touch /tmp/pwned2`;'\"; touch /tmp/pwned3 #"


def test_zfs_refuses_hostile_names(zfs_bed: ZfsBed, pools: Pools) -> None:
    for name in ("a;b", "a$(x)", "a`x`", "a'b", 'a"b', "a\nb"):
        out = zfs_bed.guest.run_argv(["zfs", "create", f"{pools.src}/{name}"], check=False)
        assert out.returncode != 0 and "invalid character" in out.stderr, (name, out.stderr)


def test_hostile_values_arrive_literally_over_ssh(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"rm -f /tmp/pwned*; zfs create {s}/v && zfs set autobackup:sec=true {s}/v")
    run = zfs_bed.tool(
        "--ssh-source", LOCAL, "--ssh-target", LOCAL, "sec", d, "--exclude-received",
        "--set-properties", f"com.example:note={EVIL}",
        "--set-snapshot-properties", f"com.example:snap={EVIL}",
        "--hold-format", "{}" + EVIL, "--no-bookmarks",  # (a source hold, as 3.3)
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    snap = zfs_bed.snapshots(f"{s}/v")[-1]
    assert zfs_bed.prop(f"{d}/{s}/v", "com.example:note") == EVIL
    assert zfs_bed.prop(f"{s}/v@{snap}", "com.example:snap") == EVIL
    assert zfs_bed.holds(f"{s}/v@{snap}") == ["sec" + EVIL]
    assert zfs_bed.run("ls /tmp/pwned* 2>/dev/null | wc -l").stdout.strip() == "0"


def test_pipe_commands_are_split_never_run_by_a_shell(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"rm -f /tmp/pwned*; zfs create {s}/p && zfs set autobackup:sec=true {s}/p")
    # shell rules split "cat; touch x" into the words "cat;", "touch", "x": no program
    # called "cat;" exists, and that is all that happens
    run = zfs_bed.tool(
        "--ssh-source",
        LOCAL,
        "sec",
        d,
        "--exclude-received",
        "--send-pipe",
        "cat; touch /tmp/pwned4",
    )
    assert run.returncode == 255 and "cat; not installed on the source" in run.stderr, run.stderr
    # "$(touch x)" is two words given to cat as file names: the transfer fails, nothing runs
    run = zfs_bed.tool(
        "--ssh-source",
        LOCAL,
        "sec",
        d,
        "--exclude-received",
        "--recv-pipe",
        "cat $(touch /tmp/pwned5)",
        "--debug",
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "| cat '$(touch' '/tmp/pwned5)' |" in run.stdout
    assert zfs_bed.run("ls /tmp/pwned* 2>/dev/null | wc -l").stdout.strip() == "0"
