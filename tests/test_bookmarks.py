"""Bookmarks through the whole tool, against the fake zfs (each behaviour is also proven
on real OpenZFS in tests/test_zfs_bookmarks.py)."""

from __future__ import annotations

import io
import shlex

import attrs
import pytest

from executors.classic import run_classic
from executors.console import Console
from executors.options import build_parser, job_from_args
from executors.session import prepare
from planner import invariants
from planner.actions import Action, Bookmark, DestroyBookmark, Send
from planner.compile import Options
from planner.plan import Plan
from planner.show import render
from reconcile.errors import PlanRefused
from tests.fakezfs import FakeError, FakeRunner, FakeZfs, FBookmark, Output

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def _world(targets: tuple[str, ...] = ("dst",)) -> tuple[FakeZfs, FakeRunner]:
    zfs = FakeZfs()
    for name in ("src", "src/data", "src/data/a", *targets):
        zfs.create(name)
    zfs.datasets["src/data"].local_props["autobackup:bk"] = "true"
    zfs.now = START
    return zfs, FakeRunner({None: zfs})


def _run(zfs: FakeZfs, runner: FakeRunner, *args: str, target: str = "dst") -> tuple[int, str]:
    for name in ("src/data", "src/data/a"):
        zfs.write(name)
    zfs.now += 3600
    argv = ["bk", target, *args]
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err, verbose=True, color=False)
    rc = run_classic(job_from_args(build_parser().parse_args(argv)), False, console, runner,
                     float(zfs.now))  # fmt: skip
    return rc, out.getvalue() + err.getvalue()


def _tag(zfs: FakeZfs, target: str = "dst") -> str:
    return str(zfs.datasets[target].guid)


def test_keep_source_0_keeps_no_snapshot_and_every_later_send_is_incremental() -> None:
    zfs, runner = _world()
    runner.history.clear()
    received: list[list[str]] = []
    for run in range(5):
        rc, log = _run(zfs, runner, "--keep-source=0")
        assert rc == 0, log
        src = zfs.datasets["src/data"]
        assert src.snaps == [], f"run {run}: {src.snaps}"
        names = [b.name for b in src.bookmarks]
        assert len(names) == 1 and names[0].endswith(f"__{_tag(zfs)}"), names
        received.append([s.name for s in zfs.datasets["dst/src/data"].snaps])
    sends = [line for line in runner.history if line.startswith("zfs send") and "src/data@" in line]
    assert "-i" not in sends[0].split() and "-I" not in sends[0].split()  # the first: full
    for line in sends[1:]:
        argv = shlex.split(line.partition(" | ")[0])
        base = argv[argv.index("-i") + 1]  # each later one from the bookmark
        assert base.startswith("src/data#bk-") and "-I" not in argv, line
    # the target kept every older snapshot (incremental receives, never a new full one)
    for before, after in zip(received, received[1:]):
        assert after[: len(before)] == before and len(after) == len(before) + 1
    assert "receiving incremental (from bookmark)" in log


def test_a_source_snapshot_destroyed_behind_our_back_is_bridged_by_its_bookmark() -> None:
    zfs, runner = _world()
    assert _run(zfs, runner, "--no-holds")[0] == 0
    common = zfs.datasets["src/data"].snaps[-1].name
    zfs.command(["zfs", "destroy", f"src/data@{common}"])  # as Proxmox HA might
    assert zfs.datasets["src/data"].snaps == []
    rc, log = _run(zfs, runner, "--no-holds")
    assert rc == 0, log
    target = zfs.datasets["dst/src/data"]
    assert target.snaps[0].name == common and len(target.snaps) == 2
    assert ("recv-F", "dst/src/data") not in zfs.events


def test_two_targets_each_keep_exactly_one_bookmark_and_never_touch_the_other() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    for _ in range(3):
        for target in ("dst1", "dst2"):
            rc, log = _run(zfs, runner, target=target)
            assert rc == 0, log
        marks = sorted(b.name.rpartition("__")[2] for b in zfs.datasets["src/data"].bookmarks)
        assert marks == sorted([_tag(zfs, "dst1"), _tag(zfs, "dst2")])
    # and no source snapshot carries a hold: the bookmarks keep the chains
    assert not any(s.holds for s in zfs.datasets["src/data"].snaps)


def test_no_bookmarks_creates_and_destroys_none_and_holds_as_3_3() -> None:
    """(It lists them: an existing one is a base, see below.)"""
    zfs, runner = _world()
    runner.history.clear()
    for _ in range(2):
        assert _run(zfs, runner, "--no-bookmarks")[0] == 0
    zfs_lines = [line for line in runner.history if line.startswith("zfs ")]
    assert not any(line.startswith("zfs bookmark") or "#" in line for line in zfs_lines)
    assert zfs.datasets["src/data"].bookmarks == []
    assert zfs.datasets["src/data"].snaps[-1].holds == ["zfs_autobackup:bk"]


def test_an_existing_bookmark_of_another_snapshot_stops_that_dataset_only() -> None:
    zfs, runner = _world()
    assert _run(zfs, runner)[0] == 0
    # someone made the name this run's bookmark will want, of another snapshot
    zfs.command(["zfs", "snapshot", "src/data@other"])
    wanted = f"src/data#bk-20260101020000__{_tag(zfs)}"  # (the next run's snapshot)
    zfs.command(["zfs", "bookmark", "src/data@other", wanted])
    before = [(b.name, b.guid) for b in zfs.datasets["src/data"].bookmarks]
    rc, log = _run(zfs, runner)
    assert rc == 1, log
    assert "exists but is of another snapshot" in log and f"zfs destroy {wanted}" in log
    assert [(b.name, b.guid) for b in zfs.datasets["src/data"].bookmarks] == before
    # the child went on
    assert len(zfs.datasets["dst/src/data/a"].snaps) == 2


def test_a_pool_without_the_bookmarks_feature_runs_as_no_bookmarks_and_says_so_once() -> None:
    zfs, runner = _world()
    zfs.disabled_features["src"] = {"feature@bookmarks", "feature@bookmark_v2"}
    for _ in range(2):
        rc, log = _run(zfs, runner)
        assert rc == 0, log
    assert log.count("lacks feature@bookmarks") == 1, log
    assert zfs.datasets["src/data"].bookmarks == []
    assert zfs.datasets["src/data"].snaps[-1].holds == ["zfs_autobackup:bk"]
    job = job_from_args(build_parser().parse_args(["bk", "dst", "--allow-empty"]))
    plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
    assert not any(isinstance(a, (Bookmark, DestroyBookmark)) for a in plan.actions)
    assert "Without bookmarks:" in render(plan, {})


def test_the_plan_shows_bookmark_actions_and_bookmark_bases() -> None:
    zfs, runner = _world()
    assert _run(zfs, runner, "--keep-source=0")[0] == 0
    job = job_from_args(
        build_parser().parse_args(["bk", "dst", "--keep-source=0", "--allow-empty"])
    )
    plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
    sends = [a for a in plan.actions if isinstance(a, Send)]
    assert sends and all(a.from_bookmark for a in sends)
    text = render(plan, {})
    assert "(a bookmark)" in text and "base for dst/src/data" in text
    assert "superseded by #bk-" in text and "its bookmark keeps the chain" in text
    assert "bookmarks to create" in text


def test_a_4_0rc2_bookmark_of_the_target_is_used_and_replaced() -> None:
    """zfs-autobackup 4.0rc2 names its bookmarks as we do: ours, used and superseded."""
    zfs, runner = _world()
    assert _run(zfs, runner, "--no-bookmarks", "--no-holds")[0] == 0
    snap = zfs.datasets["src/data"].snaps[-1].name
    old = f"{snap}__{_tag(zfs)}"
    zfs.command(["zfs", "bookmark", f"src/data@{snap}", f"src/data#{old}"])
    zfs.command(["zfs", "destroy", f"src/data@{snap}"])
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    names = [b.name for b in zfs.datasets["src/data"].bookmarks]
    assert old not in names and len(names) == 1
    assert any(f"-i 'src/data#{old}'" in line for line in runner.history)


def test_no_guid_check_runs_without_bookmarks() -> None:
    """Bookmarks are found by guid only: with --no-guid-check none is made (else the
    source would thin the common snapshot and find no base by name next time)."""
    zfs, runner = _world()
    for _ in range(3):
        rc, log = _run(zfs, runner, "--keep-source=0", "--no-guid-check")
        assert rc == 0, log
    assert zfs.datasets["src/data"].bookmarks == []
    assert len(zfs.datasets["src/data"].snaps) == 1  # the common one stays, held
    assert len(zfs.datasets["dst/src/data"].snaps) == 3


def _bad(plan: Plan, action: Action, depends: tuple[int, ...] = ()) -> Plan:
    return attrs.evolve(plan, actions=(*plan.actions, action), depends=(*plan.depends, depends))


def test_the_checker_refuses_plans_that_break_the_bookmark_chain() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    flags = ["--keep-source=0", "--exclude-received"]  # (both targets on this host)
    for target in ("dst1", "dst2"):
        assert _run(zfs, runner, *flags, target=target)[0] == 0
    zfs.write("src/data")
    job = job_from_args(build_parser().parse_args(["bk", "dst1", *flags]))
    prepared = prepare(job, runner, float(zfs.now + 3600), Options())
    plan, desired = prepared.plan, prepared.desired
    invariants.check(plan, job, desired)  # the planner's own plan is fine
    marks = {b.name.rpartition("__")[2]: b.name for b in zfs.datasets["src/data"].bookmarks}
    base = marks[_tag(zfs, "dst1")]
    send = next(
        i for i, a in enumerate(plan.actions) if isinstance(a, Send) and a.unit == "src/data"
    )
    new = next(a for a in plan.actions if isinstance(a, Bookmark) and a.unit == "src/data")
    cases = [
        # the base bookmark before anything was sent
        (DestroyBookmark("src/data", base, "src/data", "x"), (), "before a newer snapshot"),
        # after the send, but nothing else links the target's newest snapshot
        (DestroyBookmark("src/data", base, "src/data", "x"), (send,), "last source object"),
        # another target's
        (DestroyBookmark("src/data", marks[_tag(zfs, "dst2")], "src/data", "x"), (), "no orphan"),
        # someone else's, never observed
        (DestroyBookmark("src/data", "other", "src/data", "x"), (), "not observed"),
    ]
    for action, depends, message in cases:
        with pytest.raises(PlanRefused, match=message):
            invariants.check(_bad(plan, action, depends), job, desired)
    # a bookmark made before its snapshot was sent links nothing: destroying the base
    # after it (and after the send) is refused
    early = attrs.evolve(new, bookmark="early__" + _tag(zfs, "dst1"))
    bad = _bad(plan, early)
    bad = _bad(bad, DestroyBookmark("src/data", base, "src/data", "x"), (send, len(plan.actions)))
    with pytest.raises(PlanRefused, match="last source object"):
        invariants.check(bad, job, desired)


def _plan_text(zfs: FakeZfs, runner: FakeRunner, *args: str, target: str = "dst1") -> str:
    job = job_from_args(build_parser().parse_args(["bk", target, *args]))
    return render(prepare(job, runner, float(zfs.now + 3600), Options()).plan, {})


def test_other_targets_bookmarks_are_listed_and_go_only_as_orphans_past_the_deadline() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    flags = ["--exclude-received"]  # (both targets on this host)
    for target in ("dst1", "dst2"):
        assert _run(zfs, runner, *flags, target=target)[0] == 0
    gone = _tag(zfs, "dst2")  # dst2 is never backed up again: its chain is an orphan
    # without the option: listed once per tag, kept
    text = _plan_text(zfs, runner, *flags)
    assert "Bookmarks of other targets:" in text and f"#...__{gone}" in text
    assert "2 bookmarks of another target path" in text and "orphan:" not in text
    # with it, but younger than the deadline: kept and said so
    zfs.now += 86400
    rc, log = _run(zfs, runner, *flags, "--destroy-orphan-bookmarks", "2d", target="dst1")
    assert rc == 0, log
    tags = sorted(b.name.rpartition("__")[2] for b in zfs.datasets["src/data"].bookmarks)
    assert tags == sorted([_tag(zfs, "dst1"), gone])
    assert "younger than 2d 0h" in _plan_text(
        zfs, runner, *flags, "--destroy-orphan-bookmarks", "2d"
    )
    # past it: dst2's bookmarks go, dst1's stays, and nothing else
    zfs.now += 2 * 86400
    rc, log = _run(zfs, runner, *flags, "--destroy-orphan-bookmarks", "2d", target="dst1")
    assert rc == 0, log
    assert f"orphan: no target of this run has tag {gone}" in log
    for name in ("src/data", "src/data/a"):
        tags = [b.name.rpartition("__")[2] for b in zfs.datasets[name].bookmarks]
        assert tags == [_tag(zfs, "dst1")], (name, tags)
    # and dst1 goes on incrementally
    assert _run(zfs, runner, *flags, target="dst1")[0] == 0
    assert ("recv-F", "dst1/src/data") not in zfs.events


def test_destroy_orphan_bookmarks_refuses_bad_values_and_no_bookmarks() -> None:
    parser = build_parser()
    with pytest.raises(Exception, match="--destroy-orphan-bookmarks: Invalid duration '90x'"):
        job_from_args(parser.parse_args(["bk", "dst", "--destroy-orphan-bookmarks", "90x"]))
    with pytest.raises(Exception, match="needs bookmarks: drop --no-bookmarks"):
        job_from_args(
            parser.parse_args(["bk", "dst", "--no-bookmarks", "--destroy-orphan-bookmarks", "9d"])
        )


def test_the_checker_lets_only_old_orphans_go_and_never_the_chains_base() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    flags = ["--exclude-received", "--destroy-orphan-bookmarks", "1d"]
    assert _run(zfs, runner, *flags, target="dst1")[0] == 0
    # (dst2 gets the same snapshot: both bookmarks are of it)
    assert _run(zfs, runner, *flags, "--no-snapshot", target="dst2")[0] == 0
    marks = {b.name.rpartition("__")[2]: b.name for b in zfs.datasets["src/data"].bookmarks}
    other = DestroyBookmark("src/data", marks[_tag(zfs, "dst2")], "src/data", "x")
    job = job_from_args(build_parser().parse_args(["bk", "dst1", *flags]))
    young = prepare(job, runner, float(zfs.now + 3600), Options())
    with pytest.raises(PlanRefused, match="no orphan older than"):
        invariants.check(_bad(young.plan, other), job, young.desired)
    # the chain of dst1 rests on dst2's bookmark only (ours and the snapshot are gone)
    zfs.command(["zfs", "destroy", f"src/data#{marks[_tag(zfs, 'dst1')]}"])
    snap = marks[_tag(zfs, "dst1")].rpartition("__")[0]
    zfs.command(["zfs", "destroy", f"src/data@{snap}"])
    old = prepare(job, runner, float(zfs.now + 3 * 86400), Options())
    assert not any(a == other for a in old.plan.actions)  # (the planner keeps it)
    with pytest.raises(PlanRefused, match="the base of this target's chain"):
        invariants.check(_bad(old.plan, other), job, old.desired)


def test_a_chain_resting_on_someone_elses_bookmark_gets_a_copy_of_its_own() -> None:
    zfs, runner = _world()
    assert _run(zfs, runner)[0] == 0
    src = zfs.datasets["src/data"]
    (ours,) = [b.name for b in src.bookmarks]
    snap = ours.rpartition("__")[0]
    # another tool bookmarked the common snapshot; ours and the snapshot go behind our back
    zfs.command(["zfs", "bookmark", f"src/data@{snap}", "src/data#sanoid_marker"])
    zfs.command(["zfs", "destroy", f"src/data#{ours}"])
    zfs.command(["zfs", "destroy", f"src/data@{snap}"])
    runner.history.clear()
    rc, log = _run(zfs, runner, "--no-snapshot")  # nothing to send: the copy is made
    assert rc == 0, log
    assert f"zfs bookmark 'src/data#sanoid_marker' 'src/data#{ours}'" in runner.history
    assert sorted(b.name for b in src.bookmarks) == sorted(["sanoid_marker", ours])
    # the other tool prunes its marker: the chain goes on from ours
    zfs.command(["zfs", "destroy", "src/data#sanoid_marker"])
    runner.history.clear()
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    assert any(f"-i 'src/data#{ours}'" in line for line in runner.history), runner.history
    assert len(zfs.datasets["dst/src/data"].snaps) == 2


def _send(*tail: str) -> list[str]:
    """A `zfs send` argv as this world's (local, same features) sends look."""
    return ["zfs", "send", "-L", "-e", "-p", *tail]


def _sends(runner: FakeRunner, dataset: str) -> list[list[str]]:
    """The `zfs send` argv of each stream of `dataset` in runner.history, in order."""
    lines = [line.partition(" | ")[0] for line in runner.history if line.startswith("zfs send")]
    return [argv for argv in map(shlex.split, lines) if argv[-1].startswith(f"{dataset}@")]


def test_a_snapshot_and_a_bookmark_of_the_common_guid_send_from_the_snapshot() -> None:
    """Prefer the snapshot when both exist: `-i @SNAP` / `-I @SNAP`, never `-i DS#BM`."""
    zfs, runner = _world()
    assert _run(zfs, runner)[0] == 0
    src = zfs.datasets["src/data"]
    first = src.snaps[-1]
    # the common guid is on the source twice: the snapshot and our bookmark of it
    assert [(b.name, b.guid) for b in src.bookmarks] == [(f"{first.name}__{_tag(zfs)}", first.guid)]
    runner.history.clear()
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    second = src.snaps[-1]
    assert _sends(runner, "src/data") == [_send("-i", f"@{first.name}", f"src/data@{second.name}")]
    assert "(from bookmark)" not in log
    # several to send: one -I stream from the snapshot
    for _ in range(2):
        assert _run(zfs, runner, "--no-send")[0] == 0
    assert [b.guid for b in src.bookmarks] == [second.guid] and src.snap(second.name)
    runner.history.clear()
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    last = src.snaps[-1]
    assert _sends(runner, "src/data") == [_send("-I", f"@{second.name}", f"src/data@{last.name}")]
    assert "(from bookmark)" not in log
    target = zfs.datasets["dst/src/data"]
    assert [(s.name, s.guid) for s in target.snaps] == [(s.name, s.guid) for s in src.snaps]


def test_the_checker_never_lets_a_bookmark_that_is_not_ours_go() -> None:
    zfs, runner = _world()
    for _ in range(3):
        assert _run(zfs, runner)[0] == 0
    src = zfs.datasets["src/data"]
    old, common = src.snaps[0].name, src.snaps[-1].name
    foreign = {
        "manual": old,  # a person's
        "syncoid_host_2026-01-01:00:00:00-GMT00:00": common,  # another tool's, of the base
        "daily__42": old,  # our name's form, but neither our snapshot nor our tag
        f"{common}__copy": common,  # our snapshot's name, but no tag
    }
    for name, snap in foreign.items():
        zfs.command(["zfs", "bookmark", f"src/data@{snap}", f"src/data#{name}"])
    zfs.write("src/data")
    job = job_from_args(build_parser().parse_args(["bk", "dst"]))
    prepared = prepare(job, runner, float(zfs.now + 3600), Options())
    plan, desired = prepared.plan, prepared.desired
    invariants.check(plan, job, desired)  # the planner's own plan is fine, and keeps them
    assert not any(isinstance(a, DestroyBookmark) and a.bookmark in foreign for a in plan.actions)
    (pair,) = [p for p in desired.pairs if p.name == "src/data"]
    assert set(foreign) <= {b.name for b in pair.source.bookmarks}  # (observed)
    everything = tuple(range(len(plan.actions)))
    for name in foreign:
        for depends in ((), everything):  # first, or after everything else
            bad = _bad(plan, DestroyBookmark("src/data", name, "src/data", "x"), depends)
            with pytest.raises(PlanRefused, match="which is not this target's of ours"):
                invariants.check(bad, job, desired)


def test_after_a_send_from_a_bookmark_the_rest_go_with_dash_I_from_its_snapshot() -> None:
    zfs, runner = _world()
    assert _run(zfs, runner)[0] == 0
    src = zfs.datasets["src/data"]
    common = src.snaps[-1]
    (mark,) = [b.name for b in src.bookmarks]
    zfs.command(["zfs", "destroy", f"src/data@{common.name}"])  # only its bookmark is left
    for _ in range(3):
        assert _run(zfs, runner, "--no-send")[0] == 0
    runner.history.clear()
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    new = [s.name for s in src.snaps]
    assert len(new) == 4 and common.name not in new
    assert _sends(runner, "src/data") == [
        _send("-i", f"src/data#{mark}", f"src/data@{new[0]}"),
        _send("-I", f"@{new[0]}", f"src/data@{new[-1]}"),
    ]
    # (the child still has its common snapshot: one stream from it)
    assert _sends(runner, "src/data/a") == [_send("-I", f"@{common.name}", f"src/data/a@{new[-1]}")]
    assert log.count("(from bookmark)") == 1, log
    target = zfs.datasets["dst/src/data"]
    assert [(s.name, s.guid) for s in target.snaps] == [(common.name, common.guid)] + [
        (s.name, s.guid) for s in src.snaps
    ]
    assert ("recv-F", "dst/src/data") not in zfs.events
    # the chain now rests on a bookmark of the newest
    assert [(b.name, b.guid) for b in src.bookmarks] == [
        (f"{new[-1]}__{_tag(zfs)}", src.snaps[-1].guid)
    ]


def test_exactly_one_valid_bookmark_per_dataset_and_target_after_every_run() -> None:
    """Through thinning, --keep-source=0, nothing to send, and a bookmark destroy that
    fails once (the leftover goes on the next run: no pile-up as zrepl #953)."""
    zfs, runner = _world()
    datasets = ("src/data", "src/data/a")
    real_destroy = zfs._zfs_destroy
    fail: list[str] = []  # the next destroy of a bookmark of src/data fails

    def destroy(args: list[str]) -> Output:
        if fail and args[-1].startswith("src/data#"):
            fail.clear()
            raise FakeError(f"cannot destroy bookmark '{args[-1]}': dataset is busy")
        return real_destroy(args)

    zfs._zfs_destroy = destroy  # type: ignore[method-assign]
    zfs.command(["zfs", "snapshot", "src/data@manual"])
    zfs.command(["zfs", "bookmark", "src/data@manual", "src/data#manual"])  # not ours

    def ours(name: str) -> list[FBookmark]:
        return [b for b in zfs.datasets[name].bookmarks if b.name.endswith(f"__{_tag(zfs)}")]

    runs: list[tuple[str, ...]] = [
        (), (), (), ("--keep-source=2",),  # thinning the source
        ("FAIL",), (),  # a destroy fails, then a run with sends
        ("--keep-source=0",), ("FAIL", "--keep-source=0"),
        ("--keep-source=0", "--no-snapshot"),  # then one with nothing to send
        ("--keep-source=0",), (),
    ]  # fmt: skip
    for number, run in enumerate(runs):
        failing = run[:1] == ("FAIL",)
        args = run[1:] if failing else run
        if failing:
            fail.append("once")
        rc, log = _run(zfs, runner, *args)
        where = f"run {number} {args}"
        assert rc == 0, (where, log)  # (a failed destroy is reported, not a failure)
        for name in datasets:
            newest = zfs.datasets[f"dst/{name}"].snaps[-1]
            want = (f"{newest.name}__{_tag(zfs)}", newest.guid)
            marks = [(b.name, b.guid) for b in ours(name)]
            if failing and name == "src/data":
                # the superseded one stays until the next run
                assert not fail and "dataset is busy); the backup goes on" in log, (where, log)
                assert len(marks) == 2 and marks[-1] == want, (where, marks)
                continue
            assert marks == [want], (where, name, marks)
    assert zfs.datasets["src/data"].bookmark("manual") is not None


def _ours(zfs: FakeZfs, dataset: str) -> list[str]:
    return [s.name for s in zfs.datasets[dataset].snaps if s.name.startswith("bk-")]


def test_a_second_target_gets_every_backup_a_keep_nothing_target_took() -> None:
    """#31: target A thins the source to nothing (--keep-source=0); target B, known by
    its bookmark, runs after it with --no-snapshot. The newest snapshot stays until B
    has it (it was destroyed after A's bookmark existed, and B never got it)."""
    zfs, runner = _world(("dst1", "dst2"))
    flags = ["--exclude-received"]
    assert _run(zfs, runner, *flags, target="dst2")[0] == 0  # B's first backup
    for day in range(4):
        rc, log = _run(zfs, runner, *flags, "--keep-source=0", target="dst1")
        assert rc == 0, log
        taken = _ours(zfs, "src/data")
        assert len(taken) == 1, taken  # kept: B lacks it
        text = _plan_text(zfs, runner, *flags, "--keep-source=0", "--no-snapshot")
        assert f"kept: target {_tag(zfs, 'dst2')} has not received it" in text, text
        rc, log = _run(zfs, runner, *flags, "--no-snapshot", target="dst2")
        assert rc == 0, log
        for target in ("dst1", "dst2"):
            assert taken[0] in _ours(zfs, f"{target}/src/data"), (day, target)
    # B has every backup A took, each received incrementally
    assert _ours(zfs, "dst2/src/data") == _ours(zfs, "dst1/src/data")
    assert not [e for e in zfs.events if e[0] == "recv-F"]
    # once B has it, A's next run leaves nothing but its bookmark
    assert _run(zfs, runner, *flags, "--keep-source=0", "--no-snapshot", target="dst1")[0] == 0
    assert _ours(zfs, "src/data") == []


def test_an_orphaned_target_stops_pinning_the_newest_snapshot() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    flags = ["--exclude-received", "--keep-source=0"]
    for target in ("dst2", "dst1"):
        assert _run(zfs, runner, *flags, target=target)[0] == 0
    assert len(_ours(zfs, "src/data")) == 1  # dst2 lacks dst1's newest
    zfs.now += 3 * 86400  # dst2 stays away past the deadline: its bookmark goes
    rc, log = _run(zfs, runner, *flags, "--destroy-orphan-bookmarks=2d", target="dst1")
    assert rc == 0, log
    tags = {b.name.rpartition("__")[2] for b in zfs.datasets["src/data"].bookmarks}
    assert tags == {_tag(zfs, "dst1")}
    assert _ours(zfs, "src/data") == []  # nothing pins it any more


def test_no_bookmarks_after_keep_source_0_runs_goes_on_from_the_bookmark() -> None:
    """#31: going back to 3.3's holds after bookmark-only runs goes on incrementally
    (it failed with advice to destroy the target), and makes and destroys no bookmark;
    so does --no-guid-check."""
    zfs, runner = _world()
    for _ in range(3):
        assert _run(zfs, runner, "--keep-source=0")[0] == 0
    assert _ours(zfs, "src/data") == []
    for flag in ("--no-bookmarks", "--no-guid-check"):
        marks = [b.name for b in zfs.datasets["src/data"].bookmarks]
        runner.history.clear()
        rc, log = _run(zfs, runner, flag)
        assert rc == 0, log
        assert "need to destroy" not in log
        assert [b.name for b in zfs.datasets["src/data"].bookmarks] == marks  # untouched
        sends = [shlex.split(line) for line in runner.history if line.startswith("zfs send")]
        assert sends and all("-i" in argv or "-I" in argv for argv in sends), sends
        if flag == "--no-bookmarks":  # (the source kept no snapshot: from the bookmark)
            assert sends[0][sends[0].index("-i") + 1].startswith("src/data#bk-"), sends
        # the next run with bookmarks, and the next with the flag, go on incrementally
        assert _run(zfs, runner)[0] == 0
        assert _run(zfs, runner, flag)[0] == 0
    assert not [e for e in zfs.events if e[0] == "recv-F"]
    assert len(_ours(zfs, "dst/src/data")) == 9


def test_no_message_advises_destroying_a_target_still_linked_to_the_source() -> None:
    """With --no-guid-check the base is found by name: a source snapshot renamed since
    has no name in common, but its guid still links the two sides."""
    zfs, runner = _world()
    assert _run(zfs, runner, "--no-bookmarks")[0] == 0
    zfs.datasets["src/data"].snaps[-1].name = "renamed"
    rc, log = _run(zfs, runner, "--no-guid-check", "--no-bookmarks")
    assert rc >= 1
    assert "need to destroy" not in log and "don't destroy the target" in log, log
    assert "src/data@renamed has the guid of the target's dst/src/data@bk-" in log, log


@pytest.mark.parametrize("keep_a", ["--keep-source=1", "--keep-source=0"])
def test_two_targets_on_the_sources_host_never_touch_each_others_copies(keep_a: str) -> None:
    """#31: the copies under target B carry the selection as a received value; A's run
    took them as sources (snapshotted them, released B's hold, thinned B's common
    snapshot, and sent a copy of a copy). They are replicas: left out, and said so."""
    zfs, runner = _world(("dst1", "dst2"))
    for day in range(3):
        for target, other in (("dst1", "dst2"), ("dst2", "dst1")):
            start = len(zfs.events)
            copies = f"{other}/src/data" in zfs.datasets
            zfs.now += 86400 // 2
            keep = keep_a if target == "dst1" else "--keep-source=1"
            rc, log = _run(zfs, runner, keep, target=target)
            assert rc == 0, log
            touched = [e for e in zfs.events[start:] if e[1].startswith(f"{other}/")]
            assert not touched, (day, target, touched)
            if copies:
                note = f"{other}/src/data: Ignored (replica of src/data: not a source; "
                assert note + "--include-received to back it up)" in log, log
            (taken,) = [
                n for k, n in zfs.events[start:] if k == "snapshot" and n.startswith("src/data@")
            ]
            assert taken.partition("@")[2] in _ours(zfs, f"{target}/src/data")
    assert not [n for n in zfs.datasets if n.startswith(("dst1/dst2", "dst2/dst1"))]
    # every snapshot taken, each target up to its last run (A's misses B's last one)
    taken = [n.partition("@")[2] for k, n in zfs.events if k == "snapshot" and "src/data@" in n]
    taken = [n for n in dict.fromkeys(taken) if n.startswith("bk-")]
    assert len(taken) == 6
    # (B's first run follows A's first: with --keep-source=0 A could not know B then)
    assert _ours(zfs, "dst2/src/data") == (taken[1:] if keep_a.endswith("=0") else taken)
    assert _ours(zfs, "dst1/src/data") == taken[:-1]


def test_include_received_backs_a_replica_up() -> None:
    zfs, runner = _world(("dst1", "dst2"))
    assert _run(zfs, runner, target="dst2")[0] == 0
    rc, log = _run(zfs, runner, "--include-received", target="dst1")
    assert rc == 0, log
    assert "dst1/dst2/src/data" in zfs.datasets
