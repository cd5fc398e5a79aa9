"""The reconciler core on real OpenZFS: the seed's walkthrough, in local mode.

The tool runs inside the guest (as a user would on a server with a backup pool); the
clock is frozen per run with faketime, so time moves forward without sleeping.
Assertions are on real outcomes: `zfs list` of both pools, guids, holds, file data.
"""

from __future__ import annotations

import pytest

from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs

DAY = "2026-01-{:02d} 12:00:00"


def stamp(day: int, hour: int = 12) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(backup: str, day: int, hour: int = 12) -> str:
    return f"{backup}-202601{day:02d}{hour:02d}0000"


def test_snapshot_only_mode_selects_snapshots_atomically_and_thins(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """The seed's snapshot-tool example: true/child/false selection, one snapshot per
    pool, then the default schedule thins the source as time passes."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/fs1 && zfs create {s}/fs1/sub && zfs create {d}/fs2 && "
        f"zfs create {d}/fs2/sub && zfs create {s}/other && "
        f"zfs set autobackup:test=true {s}/fs1 && zfs set autobackup:test=child {d}/fs2"
    )
    run = zfs_bed.tool("test", "--verbose", now=stamp(1, 0))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert f"[Source] {s}/fs1: Selected (direct selection)" in out
    assert f"[Source] {s}/fs1/sub: Selected (inherited selection)" in out
    assert f"[Source] {d}/fs2: Ignored (only childs)" in out
    assert f"[Source] {d}/fs2/sub: Selected (inherited selection)" in out
    assert f"{s}/other" not in out
    first = "test-20260101000000"
    # one zfs snapshot per pool: all datasets of a pool in one atomic command
    assert f"[Source] Creating snapshots {first} in pool {s}" in out
    assert f"[Source] Creating snapshots {first} in pool {d}" in out
    assert "(No target_path specified, only operated as snapshot tool.)" in out
    assert zfs_bed.names(s) == [
        s, f"{s}/fs1", f"{s}/fs1@{first}", f"{s}/fs1/sub", f"{s}/fs1/sub@{first}", f"{s}/other",
    ]  # fmt: skip
    assert zfs_bed.prop(f"{s}/fs1@{first}", "createtxg") == zfs_bed.prop(
        f"{s}/fs1/sub@{first}", "createtxg"
    )

    # the hourly runs' snapshots of 01:00-10:00 (made here, per pool: fewer tool runs),
    # then the 11:00 run: the last 10 are kept, and the first of the day (1d1w block);
    # the 01:00 snapshot shares its day with 00:00 and is destroyed
    zfs_bed.run(
        " && ".join(
            f"zfs snapshot {s}/fs1@{name} {s}/fs1/sub@{name} && zfs snapshot {d}/fs2/sub@{name}"
            for name in (snapname("test", 1, hour) for hour in range(1, 11))
        )
    )
    run = zfs_bed.tool("test", "--allow-empty", now=stamp(1, 11))
    assert run.returncode == 0, run.stderr
    expected = [snapname("test", 1, 0)] + [snapname("test", 1, h) for h in range(2, 12)]
    for ds in (f"{s}/fs1", f"{s}/fs1/sub", f"{d}/fs2/sub"):
        assert zfs_bed.snapshots(ds) == expected
    assert zfs_bed.snapshots(f"{s}/other") == []
    assert zfs_bed.snapshots(f"{d}/fs2") == []


def _seed_tree(zfs_bed: ZfsBed, pools: Pools) -> None:
    """The seed's server1: a pool root with ROOT, data (with a volume) and swap (false)."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/ROOT && zfs create {s}/ROOT/server1-1 && zfs create {s}/data && "
        f"zfs create -V 4M {s}/data/vm-100-disk-0 && zfs create {s}/swap && "
        f"zfs set autobackup:offsite1=true {s} && zfs set autobackup:offsite1=false {s}/swap && "
        f"zfs create -p {d}/backup/server1"
    )
    zfs_bed.write(f"{s}/ROOT/server1-1", "etc-hosts", 32)
    zfs_bed.write(f"{s}/data", "blob", 256)
    zfs_bed.run(
        f"dd if=/dev/urandom of=/dev/zvol/{s}/data/vm-100-disk-0 bs=64k count=8 status=none "
        f"&& zpool sync {s}"
    )


def test_seed_walkthrough_full_then_incremental_with_holds(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _seed_tree(zfs_bed, pools)
    target = f"{d}/backup/server1"

    run = zfs_bed.tool("offsite1", target, "--verbose", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    first = snapname("offsite1", 1)
    out = run.stdout
    assert f"[Source] {s}/swap: Ignored (disabled)" in out
    assert f"[Source] {s}/ROOT: Selected (inherited selection)" in out
    assert f"[Target] {target}/{s}/ROOT/server1-1@{first}: receiving full" in out
    assert "#### All operations completed successfully" in out
    selected = [s, f"{s}/ROOT", f"{s}/ROOT/server1-1", f"{s}/data", f"{s}/data/vm-100-disk-0"]
    assert zfs_bed.names(target) == [target] + [
        name for ds in selected for name in (f"{target}/{ds}", f"{target}/{ds}@{first}")
    ]
    tag = zfs_bed.prop(target, "guid")
    for ds in selected:
        assert zfs_bed.prop(f"{target}/{ds}@{first}", "guid") == zfs_bed.prop(
            f"{ds}@{first}", "guid"
        )
        # the source keeps the chain with a bookmark (no hold); the target holds
        assert zfs_bed.holds(f"{ds}@{first}") == []
        assert zfs_bed.bookmarks(ds) == [f"{first}__{tag}"]
        assert zfs_bed.holds(f"{target}/{ds}@{first}") == ["zfs_autobackup:offsite1"]
    assert zfs_bed.prop(f"{target}/{s}/data/vm-100-disk-0", "type") == "volume"
    assert zfs_bed.checksum(f"{target}/{s}/data") == zfs_bed.checksum(f"{s}/data")

    # change one dataset: only it gets a new snapshot, sent incrementally; holds and the bookmark move
    zfs_bed.write(f"{s}/data", "blob2", 64)
    run = zfs_bed.tool("offsite1", target, "--verbose", now=stamp(1, 13))
    assert run.returncode == 0, run.stdout + run.stderr
    second = snapname("offsite1", 1, 13)
    assert f"[Source] {s}/ROOT: No changes since {first}" in run.stdout
    assert f"[Target] {target}/{s}/data@{second}: receiving incremental" in run.stdout
    assert "receiving full" not in run.stdout
    assert zfs_bed.snapshots(f"{target}/{s}/data") == [first, second]
    assert zfs_bed.snapshots(f"{target}/{s}/ROOT") == [first]
    assert zfs_bed.bookmarks(f"{s}/data") == [f"{second}__{tag}"]
    assert zfs_bed.bookmarks(f"{s}/ROOT") == [f"{first}__{tag}"]
    assert zfs_bed.holds(f"{target}/{s}/data@{second}") == ["zfs_autobackup:offsite1"]
    assert zfs_bed.holds(f"{target}/{s}/data@{first}") == []
    assert zfs_bed.checksum(f"{target}/{s}/data") == zfs_bed.checksum(f"{s}/data")

    # converged: a run without snapshot has nothing to do, and only reads (without the
    # listing cache, 4 commands: per host a zfs list, the source's zfs get, the target's
    # zfs holds; the source's snapshots have no holds to read, its bookmarks come in its
    # zfs list; with the cache, also each host's pool guids, and the snapshots of what it
    # does not serve)
    before = zfs_bed.names(s, d)
    for cache, most in ((["--no-cache"], 4), ([], 8)):
        run = zfs_bed.tool("offsite1", target, "--no-snapshot", "--debug", *cache, now=stamp(1, 14))
        assert run.returncode == 0, run.stdout + run.stderr
        commands = [line for line in run.stdout.splitlines() if " CMD > " in line]
        # (exactly 4 without the cache; with it, what it serves depends on the clock)
        assert len(commands) == most if cache else len(commands) <= most, commands
        reads = (" zfs list ", " zfs get ", " zfs holds ", " zpool get ")
        assert all(any(r in c for r in reads) for c in commands), commands
    assert zfs_bed.names(s, d) == before


def test_thinning_as_days_pass_on_both_sides(zfs_bed: ZfsBed, pools: Pools) -> None:
    """Daily runs for 10 days: source keeps 2 + every day for 3 days, target every day
    for a week (age == ttl is still kept). Days 1-5 are snapshots made here (fewer tool
    runs): the day 6 run sends them all, and thins from there on."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/home && zfs set autobackup:daily=true {s}/home")
    zfs_bed.run(
        " && ".join(f"zfs snapshot {s}/home@{snapname('daily', day)}" for day in range(1, 6))
    )
    for day in range(6, 11):
        run = zfs_bed.tool(
            "daily", d, "--allow-empty", "--keep-source=2,1d3d", "--keep-target=1d1w",
            now=stamp(day),
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.snapshots(f"{s}/home") == [snapname("daily", day) for day in range(7, 11)]
    assert zfs_bed.snapshots(f"{d}/{s}/home") == [snapname("daily", day) for day in range(3, 11)]
    newest = snapname("daily", 10)
    assert zfs_bed.bookmarks(f"{s}/home") == [f"{newest}__{zfs_bed.prop(d, 'guid')}"]
    assert zfs_bed.holds(f"{d}/{s}/home@{newest}") == ["zfs_autobackup:daily"]
    assert zfs_bed.holds(f"{d}/{s}/home@{snapname('daily', 9)}") == []


def test_far_behind_target_gets_only_what_its_schedule_keeps(zfs_bed: ZfsBed, pools: Pools) -> None:
    """Snapshot-only runs for days, then one backup: intermediate snapshots the target
    schedule would drop are never sent (zfs send -i skips them)."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/db && zfs set autobackup:nightly=true {s}/db")
    assert zfs_bed.tool("nightly", "--allow-empty", now=stamp(2, 0)).returncode == 0
    # (the next five hourly runs' snapshots, made here: fewer tool runs)
    zfs_bed.run(
        " && ".join(f"zfs snapshot {s}/db@{snapname('nightly', 2, h)}" for h in range(1, 6))
    )
    run = zfs_bed.tool(
        "nightly", d, "--no-snapshot", "--keep-target=1,1d1w", "--verbose", now=stamp(2, 6)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # the target keeps the first of the day (1d1w block) and the newest (keep 1)
    assert zfs_bed.snapshots(f"{d}/{s}/db") == [
        snapname("nightly", 2, 0),
        snapname("nightly", 2, 5),
    ]
    assert run.stdout.count("receiving") == 2
    assert zfs_bed.snapshots(f"{s}/db") == [snapname("nightly", 2, h) for h in range(6)]


def test_test_mode_changes_nothing(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _seed_tree(zfs_bed, pools)
    zfs_bed.tool("offsite1", f"{d}/backup/server1", now=stamp(1))
    zfs_bed.write(f"{s}/data", "more", 16)
    state = zfs_bed.run(f"zfs list -H -p -o name,guid,written,userrefs -t all -r {s} {d}").stdout
    run = zfs_bed.tool(
        "offsite1", f"{d}/backup/server1", "--test", "--verbose", "--debug", "--keep-source=0",
        "--keep-target=0", now=stamp(3),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Would execute > zfs snapshot" in run.stdout, run.stdout
    assert "Would execute > zfs destroy" in run.stdout
    assert "Would execute > zfs send" in run.stdout
    assert "TEST MODE - DID NOT MAKE ANY CHANGES!" in run.stdout
    assert (
        zfs_bed.run(f"zfs list -H -p -o name,guid,written,userrefs -t all -r {s} {d}").stdout
        == state
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchbackup", "{d}"], "No source filesystems selected, please do a 'zfs set autobackup:nosuchbackup=true'"),
        (["offsite1", "{d}/nonexistent"], "Target path '{d}/nonexistent' does not exist. Please create this dataset first."),
        # (option values are refused before zfs is asked anything: the unit and fuzz tests
        # check every one; --slow checks these two here as well)
        pytest.param(["offsite1", "{d}", "--keep-source=1x1w"], "Invalid time unit 'x' in schedule rule '1x1w'", marks=pytest.mark.slow),
        pytest.param(["offsite1", "{d}", "--min-change=-5"], "invalid value '-5' for --min-change", marks=pytest.mark.slow),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line_and_changes_nothing(
    zfs_bed: ZfsBed, pools: Pools, args: list[str], message: str
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/x && zfs set autobackup:offsite1=true {s}/x")
    before = zfs_bed.names(s, d)
    run = zfs_bed.tool(*[a.format(d=d) for a in args], now=stamp(1))
    assert run.returncode == 255
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert errors == [f"! {message.format(d=d)}"] or (
        len(errors) == 1 and message.format(d=d) in errors[0]
    ), run.stderr
    assert "Traceback" not in run.stderr
    assert zfs_bed.names(s, d) == before


def test_the_backups_on_the_same_host_are_not_read_as_sources(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """The received copies carry the selection property (source `received`); as the
    target path they are excluded, so the source observation does not list them.
    (And the first run holds each side's tree with one `zfs hold -r`.)"""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/data && zfs create {s}/data/a && zfs create {d}/backup && "
        f"zfs set autobackup:same=true {s}/data"
    )
    first = zfs_bed.tool("same", f"{d}/backup", "--debug", "--no-bookmarks", now=stamp(1))
    assert first.returncode == 0, first.stdout + first.stderr
    assert zfs_bed.prop(f"{d}/backup/{s}/data/a", "autobackup:same") == "true"
    # the tree's holds: one recursive command per side, holding every dataset's snapshot
    snap = snapname("same", 1)
    holds = [
        line.split(" CMD > ")[1] for line in first.stdout.splitlines() if "CMD > zfs hold " in line
    ]
    assert sorted(holds) == [
        f"zfs hold -r zfs_autobackup:same {d}/backup/{s}/data@{snap}",
        f"zfs hold -r zfs_autobackup:same {s}/data@{snap}",
    ]
    for name in (f"{s}/data", f"{s}/data/a", f"{d}/backup/{s}/data", f"{d}/backup/{s}/data/a"):
        assert zfs_bed.holds(f"{name}@{snap}") == ["zfs_autobackup:same"], name
    # (without the listing cache: one listing per host, whatever the cache would serve)
    run = zfs_bed.tool(
        "same", f"{d}/backup", "--debug", "--no-snapshot", "--no-cache", now=stamp(1, 13)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lists = [line for line in run.stdout.splitlines() if " CMD > zfs list " in line]
    assert len(lists) == 2, lists  # source, target
    assert lists[0].startswith("# [Source]") and lists[0].endswith(f" -r {s}/data"), lists[0]
    assert lists[1].endswith(f" -r {d}/backup"), lists[1]
    assert f"[Source] {d}/backup/{s}/data/a: Ignored (path in exclude list)" in run.stdout
    assert "zfs send" not in run.stdout


def test_observation_cost_does_not_grow_with_datasets(zfs_bed: ZfsBed, pools: Pools) -> None:
    """10 datasets and 40 datasets (each with snapshots) are observed with the same
    number of zfs commands (bench/ measures thousands: here it is the count)."""
    s, d = pools.src, pools.dst
    counts = {}
    for n in (10, 40):
        root = f"{s}/n{n}"
        zfs_bed.run(
            f"zfs create {root} && for i in $(seq {n}); do zfs create {root}/ds$i; done && "
            f"zfs set autobackup:scale{n}=true {root} && zfs snapshot -r {root}@scale{n}-20260101000000 && "
            f"zfs snapshot -r {root}@other && zfs hold keep {root}/ds1@other"
        )
        run = zfs_bed.tool(f"scale{n}", d, "--test", "--debug", "--no-snapshot", now=stamp(1))
        assert run.returncode == 0, run.stdout + run.stderr
        reads = [line for line in run.stdout.splitlines() if " CMD > " in line]
        counts[n] = len(reads)
        assert run.stdout.count("Would execute > zfs send") == n + 1
    assert counts[10] == counts[40]
    # get + list + holds (source), list (target), zpool probe x2; with the listing cache
    # (a job's first run: everything in the one listing) each host's pool guids too
    assert counts[10] <= 8
