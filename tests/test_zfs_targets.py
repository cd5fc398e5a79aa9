"""Every target gets every backup, on real OpenZFS (issue #31): several targets of one
backup name, a target that is away for a week, an orphaned target, --no-bookmarks after
bookmark-only runs, and two targets on the sources' own host. (The same rules against
the fake zfs: tests/test_bookmarks.py and the stateful test.)
"""

from __future__ import annotations

import subprocess

import pytest

from tests.test_zfs_bookmarks import _base, _sends
from tests.test_zfs_core import snapname, stamp
from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs


def _ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _ours(zfs_bed: ZfsBed, dataset: str, backup: str = "bak") -> list[str]:
    return [s for s in zfs_bed.snapshots(dataset) if s.startswith(f"{backup}-")]


def _guid_of(zfs_bed: ZfsBed, snapshot: str) -> str:
    return zfs_bed.prop(snapshot, "guid")


def test_two_targets_one_keeps_nothing_one_away_for_a_week_and_an_orphan(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """A runs with --keep-source=0, B a minute later with --no-snapshot: for four days
    both get every backup (B got none: A destroyed each snapshot once A's bookmark
    existed). Then B is away for a week of A's runs with --keep-source=2 (three daily runs
    stand for it: fewer tool runs), and comes back incrementally from its bookmark (its old snapshot keeps its guid, the data equals the
    source's). Then B is away for good: once its bookmark goes as an orphan, nothing is
    kept for it any more."""
    s, d = pools.src, pools.dst
    src = f"{s}/data"
    zfs_bed.run(
        f"zfs create {src} && zfs set autobackup:bak=true {src} && "
        f"zfs create {d}/A && zfs create {d}/B"
    )
    zfs_bed.write(src, "day0", 64)
    tag_b = zfs_bed.prop(f"{d}/B", "guid")
    _ok(zfs_bed.tool("bak", f"{d}/B", "--verbose", now=stamp(1, 11)))  # B's first backup
    for day in range(1, 5):
        zfs_bed.write(src, f"day{day}", 64)
        log_a = _ok(zfs_bed.tool("bak", f"{d}/A", "--keep-source=0", "-v", now=stamp(day, 12)))
        taken = snapname("bak", day, 12)
        assert _ours(zfs_bed, src) == [taken], log_a  # kept: B lacks it
        if day == 1:  # (the plan says why; the same every day)
            plan = zfs_bed.tool(
                "plan", "bak", f"{d}/A", "--keep-source=0", "--no-snapshot", now=stamp(day, 12)
            ).stdout
            assert f"kept: target {tag_b} has not received it" in plan, plan
        log_b = _ok(zfs_bed.tool("bak", f"{d}/B", "--no-snapshot", "--debug", now=stamp(day, 13)))
        (send,) = _sends(log_b)
        assert _base(send).startswith(f"-i {src}#"), send  # from B's bookmark
        print(f"day {day}:")
        for target in ("A", "B"):
            print(f"  {d}/{target}/{src}: {' '.join(_ours(zfs_bed, f'{d}/{target}/{src}'))}")
            assert taken in _ours(zfs_bed, f"{d}/{target}/{src}"), (day, target)
            assert _guid_of(zfs_bed, f"{d}/{target}/{src}@{taken}") == _guid_of(
                zfs_bed, f"{src}@{taken}"
            )
    days = [snapname("bak", day, 12) for day in range(1, 5)]
    for target in ("A", "B"):
        assert _ours(zfs_bed, f"{d}/{target}/{src}") == [snapname("bak", 1, 11), *days]

    # B away for a week (three daily runs to A with --keep-source=2)
    old = f"{d}/B/{src}@{days[-1]}"
    old_guid = _guid_of(zfs_bed, old)
    for day in range(5, 8):
        zfs_bed.write(src, f"day{day}", 64)
        _ok(zfs_bed.tool("bak", f"{d}/A", "--keep-source=2", now=stamp(day, 12)))
    assert _ours(zfs_bed, src) == [snapname("bak", 6, 12), snapname("bak", 7, 12)]
    log_b = _ok(zfs_bed.tool("bak", f"{d}/B", "--no-snapshot", "--debug", now=stamp(8, 9)))
    assert "receiving full" not in log_b
    sends = _sends(log_b)
    assert _base(sends[0]) == f"-i {src}#{days[-1]}__{tag_b}", sends
    assert _guid_of(zfs_bed, old) == old_guid
    newest = snapname("bak", 7, 12)
    assert _ours(zfs_bed, f"{d}/B/{src}")[-1] == newest
    assert zfs_bed.checksum(f"{d}/B/{src}@{newest}") == zfs_bed.checksum(f"{src}@{newest}")

    # B away for good: A keeps the newest for it until B's bookmark goes as an orphan
    for day in (9, 10):
        _ok(zfs_bed.tool("bak", f"{d}/A", "--keep-source=0", "--allow-empty", now=stamp(day)))
        assert _ours(zfs_bed, src) == [snapname("bak", day)]
    _ok(
        zfs_bed.tool(
            "bak",
            f"{d}/A",
            "--keep-source=0",
            "--allow-empty",
            "--destroy-orphan-bookmarks=2d",
            now=stamp(11),
        )
    )
    assert zfs_bed.bookmarks(src) == [f"{snapname('bak', 11)}__{zfs_bed.prop(f'{d}/A', 'guid')}"]
    assert _ours(zfs_bed, src) == []


@pytest.mark.slow  # (CI's time: the same flow is test_bookmarks.py's
# test_no_bookmarks_after_keep_source_0_runs_goes_on_from_the_bookmark; a send from a
# bookmark on real ZFS is test_zfs_bookmarks.py's and test_zfs_guard_stream.py's)
def test_no_bookmarks_after_keep_source_0_runs_goes_on_incrementally(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """docs/migration.md's way back to 3.3's holds, after three --keep-source=0 runs (the
    source has only bookmarks): it goes on from the bookmark (it failed, advising to
    destroy the target), makes and destroys no bookmark, and so does the run after."""
    s, d = pools.src, pools.dst
    src = f"{s}/data"
    zfs_bed.run(f"zfs create {src} && zfs set autobackup:bak=true {src} && zfs create {d}/A")
    for day in (1, 2, 3):
        zfs_bed.write(src, f"day{day}", 64)
        _ok(zfs_bed.tool("bak", f"{d}/A", "--keep-source=0", now=stamp(day)))
    marks = zfs_bed.bookmarks(src)
    assert _ours(zfs_bed, src) == [] and len(marks) == 1
    for day in (4, 5):
        zfs_bed.write(src, f"day{day}", 64)
        log = _ok(zfs_bed.tool("bak", f"{d}/A", "--no-bookmarks", "--debug", now=stamp(day)))
        (send,) = _sends(log)
        base = f"#{marks[0]}" if day == 4 else f"@{snapname('bak', 4)}"
        assert _base(send) in (f"-i {src}{base}", f"-i {base}"), send
        assert zfs_bed.bookmarks(src) == marks  # neither made nor destroyed
    assert _ours(zfs_bed, f"{d}/A/{src}") == [snapname("bak", day) for day in range(1, 6)]
    newest = snapname("bak", 5)
    assert zfs_bed.checksum(f"{d}/A/{src}@{newest}") == zfs_bed.checksum(f"{src}@{newest}")
    assert zfs_bed.holds(f"{src}@{newest}") == ["zfs_autobackup:bak"]


def test_two_targets_on_the_sources_host_leave_each_other_alone(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """Two targets of one backup name on the host that holds the sources, default
    options, three days: the copies under B carry the selection as a received value, and
    A's run took them as sources (snapshotted them, released B's hold, thinned B's
    common snapshot, sent a copy of a copy), then B failed advising to destroy itself.
    They are replicas now: each target receives every day, and neither run touches the
    other's snapshots."""
    s, d = pools.src, pools.dst
    src = f"{s}/data"
    zfs_bed.run(
        f"zfs create {src} && zfs create {src}/sub && zfs set autobackup:bak=true {src} && "
        f"zfs create {d}/A && zfs create {d}/B"
    )
    for day in (1, 2, 3):
        for hour, (target, other) in ((10, ("A", "B")), (11, ("B", "A"))):
            for ds in (src, f"{src}/sub"):
                zfs_bed.write(ds, f"f{day}{hour}", 16)
            before = zfs_bed.run(
                f"zfs list -H -p -o name,guid,userrefs -t all -r {d}/{other}"
            ).stdout
            log = _ok(zfs_bed.tool("bak", f"{d}/{target}", "--keep-source=1", "-v",
                                   now=stamp(day, hour)))  # fmt: skip
            after = zfs_bed.run(
                f"zfs list -H -p -o name,guid,userrefs -t all -r {d}/{other}"
            ).stdout
            assert after == before, (day, target, log)
            if f"{d}/{other}/{src}\t" in before:
                assert f"{d}/{other}/{src}: Ignored (replica of {src}: not a source" in log, log
            taken = snapname("bak", day, hour)
            for ds in (src, f"{src}/sub"):
                assert taken in _ours(zfs_bed, f"{d}/{target}/{ds}"), (day, target, ds)
    names = zfs_bed.names(d)
    assert not [n for n in names if f"{d}/A/{d}" in n or f"{d}/B/{d}" in n], names
    for target in ("A", "B"):
        print(f"{d}/{target}/{src}: {' '.join(_ours(zfs_bed, f'{d}/{target}/{src}'))}")
