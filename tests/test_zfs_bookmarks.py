"""Bookmarks on real OpenZFS (issue #18): the incremental chain survives the loss of every
source snapshot. (The same rules against the fake zfs: tests/test_bookmarks.py.)
"""

from __future__ import annotations

import shlex

import pytest

from tests.test_zfs_core import _seed_tree, snapname, stamp
from tests.zfsvm.bed import POOL_DIR, Pools, ZfsBed

pytestmark = pytest.mark.zfs


def _sends(log: str) -> list[list[str]]:
    """The `zfs send` argv of each send the --debug log shows."""
    sends = []
    for line in log.splitlines():
        if " CMD > " in line and "zfs send" in line and " -n " not in line:
            command = line.split(" CMD > ", 1)[1].split(" | ")[0]
            sends.append(shlex.split(command))
    return sends


def _base(argv: list[str]) -> str:
    """The incremental base of a `zfs send` (`-i`/`-I`), "" for a full one."""
    for flag in ("-i", "-I"):
        if flag in argv:
            return f"{flag} {argv[argv.index(flag) + 1]}"
    return ""


def _one(zfs_bed: ZfsBed, name: str, backup: str, *, create: str = "") -> str:
    zfs_bed.run(f"zfs create {create} {name} && zfs set autobackup:{backup}=true {name}")
    zfs_bed.write(name, "f", 64)
    return name


# (CI keeps a chain on bookmarks alone with --keep-source=0 in test_zfs_targets' two
# targets, over four days; this one with --slow, to keep CI under an hour)
@pytest.mark.slow
def test_keep_source_0_over_three_runs_of_the_seed_layout(zfs_bed: ZfsBed, pools: Pools) -> None:
    """--keep-source=0: no source snapshot stays between runs, yet every run after the
    first is incremental, from the bookmark (the target keeps its older snapshots with
    their guids), and each dataset has exactly one bookmark, named as 4.0rc2 names it."""
    s, d = pools.src, pools.dst
    _seed_tree(zfs_bed, pools)
    target = f"{d}/backup/server1"
    tag = zfs_bed.prop(target, "guid")
    selected = [s, f"{s}/ROOT", f"{s}/ROOT/server1-1", f"{s}/data", f"{s}/data/vm-100-disk-0"]
    history: dict[str, list[str]] = {ds: [] for ds in selected}
    for run_no in (1, 2, 3):
        zfs_bed.write(f"{s}/data", f"blob{run_no}", 64)
        run = zfs_bed.tool(
            "offsite1", target, "--keep-source=0", "--allow-empty", "--verbose", "--debug",
            now=stamp(1, run_no),
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        snap = snapname("offsite1", 1, run_no)
        sends = _sends(run.stdout)
        # (for the record, shown with -s: the source after the run, and each send's kind)
        listing = zfs_bed.run(f"zfs list -H -o name -t all -r {s}").stdout
        print(f"run {run_no}: source after the run:\n{listing}sends:")
        for argv in sends:
            print(f"  {argv[-1]}: {_base(argv) or 'full'}")
        assert len(sends) == len(selected), sends
        for argv in sends:
            if run_no == 1:
                assert _base(argv) == "", argv
            else:
                dataset = argv[-1].split("@")[0]
                previous = snapname("offsite1", 1, run_no - 1)
                assert _base(argv) == f"-i {dataset}#{previous}__{tag}", argv
        if run_no > 1:
            assert "receiving full" not in run.stdout
            assert run.stdout.count("receiving incremental (from bookmark)") == len(selected)
        assert zfs_bed.run(f"zfs list -H -t snapshot -r {s}").stdout == ""
        for ds in selected:
            assert zfs_bed.bookmarks(ds) == [f"{snap}__{tag}"], ds
            guids = zfs_bed.guids(f"{target}/{ds}")
            # incremental receives: the older snapshots stay, with the same guids
            assert guids[:-1] == history[ds], ds
            assert zfs_bed.prop(f"{ds}#{snap}__{tag}", "guid") == guids[-1]
            history[ds] = guids
    assert zfs_bed.checksum(f"{target}/{s}/data") == zfs_bed.checksum(f"{s}/data")
    # converged: nothing to do, and only reads: per host a zfs list (the source's with
    # its bookmarks) and the source's zfs get; a zfs holds only on the target, the source
    # having no snapshot left to ask about (5 commands without bookmarks)
    run = zfs_bed.tool("offsite1", target, "--keep-source=0", "--no-snapshot", "--debug",
                       now=stamp(1, 5))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    commands = [line.split(" CMD > ")[1] for line in run.stdout.splitlines() if " CMD > " in line]
    assert len(commands) == 4, commands
    assert all(c.startswith(("zfs list ", "zfs get ", "zfs holds ")) for c in commands)


def test_snapshots_destroyed_behind_its_back_are_bridged_and_foreign_bookmarks_stay(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """With --no-holds (as under Proxmox HA) someone destroys every source snapshot
    between runs: the next run sends incrementally from the bookmark. Someone else's
    bookmark is never destroyed."""
    s, d = pools.src, pools.dst
    src = _one(zfs_bed, f"{s}/vm", "bm")
    for hour in (1, 2):
        run = zfs_bed.tool("bm", d, "--no-holds", "--allow-empty", now=stamp(1, hour))
        assert run.returncode == 0, run.stdout + run.stderr
    zfs_bed.sh("zfs", "bookmark", f"{src}@{snapname('bm', 1, 1)}", f"{src}#someone-elses")
    zfs_bed.run(f"zfs list -H -o name -t snapshot {src} | xargs -n1 zfs destroy")
    assert zfs_bed.snapshots(src) == []
    before = zfs_bed.guids(f"{d}/{src}")
    zfs_bed.write(src, "g", 64)
    run = zfs_bed.tool("bm", d, "--no-holds", "--verbose", now=stamp(1, 3))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving incremental (from bookmark)" in run.stdout
    assert zfs_bed.guids(f"{d}/{src}")[:2] == before
    assert zfs_bed.snapshots(f"{d}/{src}")[-1] == snapname("bm", 1, 3)
    tag = zfs_bed.prop(d, "guid")
    assert zfs_bed.bookmarks(src) == ["someone-elses", f"{snapname('bm', 1, 3)}__{tag}"]
    assert zfs_bed.checksum(f"{d}/{src}") == zfs_bed.checksum(src)


@pytest.mark.slow  # (CI: test_zfs_targets' first test proves a bookmark per target and the
# orphan's end on real ZFS; the texts are unit-tested, tests/test_bookmarks.py)
def test_two_targets_of_one_source_each_keep_exactly_one_bookmark(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    src = _one(zfs_bed, f"{s}/home", "two")
    zfs_bed.run(f"zfs create {d}/t1 && zfs create {d}/t2")
    tags = {t: zfs_bed.prop(f"{d}/{t}", "guid") for t in ("t1", "t2")}
    hour = 0
    for _ in range(2):
        for t in ("t1", "t2"):
            hour += 1
            # (both targets on this host: neither backup selects the other's copies)
            run = zfs_bed.tool("two", f"{d}/{t}", "--allow-empty", "--exclude-received",
                               now=stamp(1, hour))  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
    names = zfs_bed.bookmarks(src)
    assert sorted(n.rpartition("__")[2] for n in names) == sorted(tags.values()), names
    assert f"{snapname('two', 1, 3)}__{tags['t1']}" in names
    assert f"{snapname('two', 1, 4)}__{tags['t2']}" in names
    # no source snapshot is held (the bookmarks keep the chains); the targets' are
    assert zfs_bed.all_holds(src) == ""
    assert zfs_bed.holds(f"{d}/t1/{src}@{snapname('two', 1, 3)}") == ["zfs_autobackup:two"]
    # t2 is decommissioned: its bookmark is listed, and kept until it is an orphan past
    # --destroy-orphan-bookmarks
    zfs_bed.sh("zfs", "release", "zfs_autobackup:two", f"{d}/t2/{src}@{snapname('two', 1, 4)}")
    zfs_bed.run(f"zfs destroy -rf {d}/t2")
    orphan = f"{snapname('two', 1, 4)}__{tags['t2']}"
    flags = ("--allow-empty", "--exclude-received", "--verbose")
    plan = zfs_bed.tool("plan", "two", f"{d}/t1", "--exclude-received", now=stamp(1, 5))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Bookmarks of other targets:" in plan.stdout and f"#...__{tags['t2']}" in plan.stdout
    days = ("--destroy-orphan-bookmarks", "2d")
    run = zfs_bed.tool("two", f"{d}/t1", *flags, *days, now=stamp(2, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert orphan in zfs_bed.bookmarks(src)
    run = zfs_bed.tool("two", f"{d}/t1", *flags, *days, now=stamp(4, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"orphan: no target of this run has tag {tags['t2']}" in run.stdout
    assert zfs_bed.bookmarks(src) == [f"{snapname('two', 4, 1)}__{tags['t1']}"]
    assert zfs_bed.checksum(f"{d}/t1/{src}") == zfs_bed.checksum(src)


def test_a_chain_resting_on_someone_elses_bookmark_gets_its_own_copy(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """Our bookmark and the common snapshot are gone, another tool's bookmark of it is
    left: a run with nothing to send copies it (`zfs bookmark DS#THEIRS DS#OURS`), so
    the chain survives that tool pruning its own."""
    s, d = pools.src, pools.dst
    src = _one(zfs_bed, f"{s}/ct", "cp")
    run = zfs_bed.tool("cp", d, "--no-holds", now=stamp(1, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    (ours,) = zfs_bed.bookmarks(src)
    snap = snapname("cp", 1, 1)
    zfs_bed.sh("zfs", "bookmark", f"{src}@{snap}", f"{src}#syncoid_marker")
    zfs_bed.sh("zfs", "destroy", f"{src}#{ours}")
    zfs_bed.sh("zfs", "destroy", f"{src}@{snap}")
    run = zfs_bed.tool("cp", d, "--no-holds", "--no-snapshot", "--verbose", "--debug",
                       now=stamp(1, 2))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    copy = ["zfs", "bookmark", f"{src}#syncoid_marker", f"{src}#{ours}"]
    assert shlex.join(copy) in run.stdout
    assert zfs_bed.bookmarks(src) == sorted(["syncoid_marker", ours])
    assert zfs_bed.prop(f"{src}#{ours}", "guid") == zfs_bed.prop(f"{d}/{src}@{snap}", "guid")
    zfs_bed.sh("zfs", "destroy", f"{src}#syncoid_marker")
    zfs_bed.write(src, "g", 64)
    run = zfs_bed.tool("cp", d, "--no-holds", "--verbose", "--debug", now=stamp(1, 3))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [_base(a) for a in _sends(run.stdout)] == [f"-i {src}#{ours}"]
    assert zfs_bed.snapshots(f"{d}/{src}") == [snap, snapname("cp", 1, 3)]
    assert zfs_bed.checksum(f"{d}/{src}") == zfs_bed.checksum(src)


def test_an_encrypted_dataset_is_sent_raw_from_its_bookmark(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run("echo 'correct horse battery' > /root/zfs.key")
    enc = "-o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file:///root/zfs.key"
    src = _one(zfs_bed, f"{s}/secret", "enc", create=enc)
    for hour in (1, 2, 3):
        zfs_bed.write(src, f"g{hour}", 32)
        run = zfs_bed.tool("enc", d, "--keep-source=0", "--allow-empty", "--debug",
                           now=stamp(1, hour))  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        (send,) = _sends(run.stdout)
        assert "-w" in send
        if hour > 1:
            assert _base(send).startswith(f"-i {src}#{snapname('enc', 1, hour - 1)}__"), send
    target = f"{d}/{src}"
    assert zfs_bed.snapshots(src) == []
    assert zfs_bed.snapshots(target) == [snapname("enc", 1, h) for h in (1, 2, 3)]
    assert zfs_bed.prop(target, "keystatus") == "unavailable"
    zfs_bed.sh("zfs", "load-key", "-L", "file:///root/zfs.key", target)
    assert zfs_bed.checksum(target) == zfs_bed.checksum(src)


def test_a_pool_without_bookmarks_runs_as_no_bookmarks_and_the_plan_says_why(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """A pool created with `-d` and only the features replication needs (OpenZFS 2.3's
    `-o feature@bookmarks=disabled` is re-enabled by the features that depend on it)."""
    d = pools.dst
    pool = f"old{pools.src}"
    img = f"{POOL_DIR}/{pool}.img"
    features = "-o feature@extensible_dataset=enabled -o feature@large_blocks=enabled"
    zfs_bed.run(
        f"truncate -s 256M {img} && zpool create -f -o cachefile=none -m /mnt/{pool} -d "
        f"{features} -o feature@embedded_data=enabled {pool} {img}"
    )
    try:
        state = zfs_bed.run(f"zpool get -H -o value feature@bookmarks {pool}").stdout
        assert state.strip() == "disabled"
        src = _one(zfs_bed, f"{pool}/data", "old")
        for hour in (1, 2):
            run = zfs_bed.tool("old", d, "--allow-empty", "--verbose", now=stamp(1, hour))
            assert run.returncode == 0, run.stdout + run.stderr
            assert run.stdout.count("lacks feature@bookmarks") == 1, run.stdout
        assert zfs_bed.bookmarks(src) == []
        assert zfs_bed.holds(f"{src}@{snapname('old', 1, 2)}") == ["zfs_autobackup:old"]
        plan = zfs_bed.tool("plan", "old", d, "--allow-empty", now=stamp(1, 3))
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "Without bookmarks:" in plan.stdout and pool in plan.stdout
        assert "bookmark" not in plan.stdout.split("Without bookmarks:")[0]
    finally:
        zfs_bed.run(f"zpool destroy -f {pool}; rm -f {img}", check=False)


def test_a_run_killed_between_receive_and_bookmark_converges(zfs_bed: ZfsBed, pools: Pools) -> None:
    """The tool is killed (SIGKILL) as it is about to bookmark what it just sent: the
    next run bookmarks it, destroys the superseded bookmark and thins, sending nothing."""
    s, d = pools.src, pools.dst
    src = _one(zfs_bed, f"{s}/db", "kill")
    tag = zfs_bed.prop(d, "guid")
    keep0 = ("--keep-source=0", "--allow-empty")
    assert zfs_bed.tool("kill", d, *keep0, now=stamp(1, 1)).returncode == 0
    killer = (
        '#!/bin/sh\n[ "$1" = bookmark ] && { kill -9 $PPID; exit 1; }\nexec /usr/sbin/zfs "$@"\n'
    )
    zfs_bed.run("mkdir -p /tmp/killer && cat > /tmp/killer/zfs && chmod +x /tmp/killer/zfs",
                input=killer)  # fmt: skip
    zfs_bed.write(src, "g", 64)
    argv = ["faketime", "-f", stamp(1, 2), "zfs-autobackup", "kill", d, *keep0]
    killed = zfs_bed.run(f"PATH=/tmp/killer:$PATH {shlex.join(argv)}", check=False)
    assert killed.returncode != 0
    first, second = snapname("kill", 1, 1), snapname("kill", 1, 2)
    assert zfs_bed.snapshots(f"{d}/{src}") == [first, second]  # received ...
    assert zfs_bed.bookmarks(src) == [f"{first}__{tag}"]  # ... but not bookmarked
    assert zfs_bed.snapshots(src) == [second]
    run = zfs_bed.tool("kill", d, "--keep-source=0", "--no-snapshot", "--verbose",
                       now=stamp(1, 3))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving" not in run.stdout
    assert zfs_bed.bookmarks(src) == [f"{second}__{tag}"]
    assert zfs_bed.snapshots(src) == []
    zfs_bed.write(src, "h", 64)
    run = zfs_bed.tool("kill", d, *keep0, "--verbose", now=stamp(1, 4))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving incremental (from bookmark)" in run.stdout
    assert zfs_bed.checksum(f"{d}/{src}") == zfs_bed.checksum(src)


def test_bookmarks_made_by_zfs_autobackup_4_0rc2_are_used_and_replaced(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """Migrating from 4.0rc2: its bookmark (same name format) is the base of our first
    send once its snapshots are gone, and is then superseded by ours."""
    s, d = pools.src, pools.dst
    src = _one(zfs_bed, f"{s}/app", "za4")
    for hour in (1, 2):
        run = zfs_bed.tool_peer("4.0rc2", "za4", d, "--allow-empty", now=stamp(1, hour))
        assert run.returncode == 0, run.stdout + run.stderr
    tag = zfs_bed.prop(d, "guid")
    theirs = zfs_bed.bookmarks(src)
    assert theirs == [f"{snapname('za4', 1, 2)}__{tag}"], theirs
    zfs_bed.run(f"zfs list -H -o name -t snapshot {src} | xargs -n1 zfs destroy")
    zfs_bed.write(src, "g", 64)
    run = zfs_bed.tool("za4", d, "--verbose", now=stamp(1, 3))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving incremental (from bookmark)" in run.stdout
    assert zfs_bed.bookmarks(src) == [f"{snapname('za4', 1, 3)}__{tag}"]
    assert zfs_bed.snapshots(f"{d}/{src}") == [snapname("za4", 1, h) for h in (1, 2, 3)]
    assert zfs_bed.checksum(f"{d}/{src}") == zfs_bed.checksum(src)
