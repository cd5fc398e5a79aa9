"""Recursive holds: `-r` only where it does exactly what the single holds would."""

from __future__ import annotations

import io

from executors.classic import run_classic
from executors.console import Console
from executors.options import build_parser, job_from_args
from planner.cover import cover
from tests.fakezfs import FakeRunner, FakeZfs


def present(**snaps: str) -> dict[str, frozenset[str]]:
    """present(p="s t", p__a="s") -> {"p": {"s", "t"}, "p/a": {"s"}}"""
    return {name.replace("__", "/"): frozenset(v.split()) for name, v in snaps.items()}


def test_a_whole_subtree_becomes_one_recursive_root() -> None:
    tree = present(p="s", p__a="s", p__a__x="s", p__b="s")
    got = cover(["p@s", "p/a@s", "p/a/x@s", "p/b@s"], tree)
    assert got.recursive == ("p@s",)
    assert got.covered["p@s"] == ("p@s", "p/a@s", "p/a/x@s", "p/b@s")
    assert got.single == ()


def test_a_descendant_whose_snapshot_is_not_in_the_batch_keeps_its_ancestors_single() -> None:
    # p/b@s exists but is not to be held (say it is held already): no -r over p
    tree = present(p="s", p__a="s", p__a__x="s", p__b="s")
    got = cover(["p@s", "p/a@s", "p/a/x@s"], tree)
    assert got.recursive == ("p/a@s",)
    assert got.covered["p/a@s"] == ("p/a@s", "p/a/x@s")
    assert got.single == ("p@s",)


def test_descendants_without_the_snapshot_do_not_matter_and_names_are_separate() -> None:
    tree = present(p="s t", p__a="s t", p__new="", p__b="t")
    got = cover(["p@s", "p/a@s", "p@t", "p/a@t"], tree)
    # @s: p/new and p/b have no @s, so p@s stands for p and p/a; @t: p/b@t is missing
    assert got.recursive == ("p@s",)
    assert set(got.single) == {"p@t", "p/a@t"}


def test_similar_names_are_not_descendants() -> None:
    tree = present(p="s", p__a="s", **{"p-x": "s"})
    got = cover(["p@s", "p/a@s"], tree)
    assert got.recursive == ("p@s",)
    assert got.covered["p@s"] == ("p@s", "p/a@s")
    assert cover(["p@s"], present(p="s", **{"p-x": "s"})).single == ("p@s",)


def test_unknown_datasets_and_lone_snapshots_stay_single() -> None:
    got = cover(["q@s", "p@s"], present(p="s"))
    assert got.recursive == ()
    assert got.single == ("q@s", "p@s")


def _tree(zfs: FakeZfs) -> None:
    for name in ("src", "src/data", "src/data/a", "src/data/a/x", "src/data/b", "dst"):
        zfs.create(name)
    zfs.datasets["src/data"].local_props["autobackup:bk"] = "true"


def _run(zfs: FakeZfs, runner: FakeRunner, *flags: str) -> int:
    for name in ("src/data", "src/data/a", "src/data/a/x", "src/data/b"):
        zfs.write(name)  # (unchanged datasets get no new snapshot)
    # (source holds are 3.3's: with bookmarks the source holds nothing)
    argv = ["bk", "dst", "--parallel", "1", "--no-bookmarks", *flags]
    console = Console(out=io.StringIO(), err=io.StringIO())
    return run_classic(job_from_args(build_parser().parse_args(argv)), False, console, runner,
                       float(zfs.now))  # fmt: skip


def _backed_up_once() -> tuple[FakeZfs, FakeRunner]:
    """The tree backed up once to dst; the clock an hour on, the command history empty."""
    zfs = FakeZfs()
    _tree(zfs)
    runner = FakeRunner({None: zfs})
    zfs.now = 1_767_225_600
    assert _run(zfs, runner) == 0
    zfs.now += 3600
    runner.history.clear()
    return zfs, runner


def test_holds_of_a_tree_go_out_as_one_recursive_command_per_side() -> None:
    zfs, runner = _backed_up_once()
    assert _run(zfs, runner) == 0
    holds = [line for line in runner.history if line.startswith(("zfs hold ", "zfs release "))]
    new, old = "bk-20260101010000", "bk-20260101000000"
    assert holds == [
        f"zfs hold -r zfs_autobackup:bk dst/src/data@{new}",
        f"zfs hold -r zfs_autobackup:bk src/data@{new}",
        f"zfs release -r zfs_autobackup:bk dst/src/data@{old}",
        f"zfs release -r zfs_autobackup:bk src/data@{old}",
    ]
    for name in ("src/data", "src/data/a/x", "dst/src/data/b"):
        assert zfs.get_snap(f"{name}@{new}")[1].holds == ["zfs_autobackup:bk"]
        assert zfs.get_snap(f"{name}@{old}")[1].holds == []


def test_a_failing_recursive_hold_is_retried_one_by_one() -> None:
    """Someone holds one received snapshot with our tag before we do: the -r hold fails
    (all or none), the single holds take the rest, and that one counts as done."""
    zfs, runner = _backed_up_once()
    new = "bk-20260101010000"

    def meddle() -> None:
        zfs.get_snap(f"dst/src/data/a@{new}")[1].holds.append("zfs_autobackup:bk")

    original = runner.run

    def run(host, argv, **kwargs):  # type: ignore[no-untyped-def]
        if list(argv[:3]) == ["zfs", "hold", "-r"] and argv[-1].startswith("dst/"):
            meddle()
        return original(host, argv, **kwargs)

    runner.run = run  # type: ignore[method-assign]
    assert _run(zfs, runner) == 0
    singles = [line for line in runner.history if line.startswith("zfs hold zfs_autobackup")]
    assert len(singles) == 4  # dst/src/data, a, a/x, b
    for name in ("dst/src/data", "dst/src/data/a", "dst/src/data/a/x", "dst/src/data/b"):
        assert zfs.get_snap(f"{name}@{new}")[1].holds == ["zfs_autobackup:bk"]


def test_a_target_inside_the_source_tree_keeps_the_source_holds_off_the_copies() -> None:
    """Target path pool/data/bk inside the selected pool/data, on one host: the copies
    received in this run have the same snapshot names, so pool/data@s must not be held
    with -r (it would hold the copies too); pool/data/a's own subtree still can."""
    zfs = FakeZfs()
    for name in ("pool", "pool/data", "pool/data/a", "pool/data/a/x", "pool/data/bk"):
        zfs.create(name)
    zfs.datasets["pool/data"].local_props["autobackup:bk"] = "true"
    runner = FakeRunner({None: zfs})
    zfs.now = 1_767_225_600
    argv = ["bk", "pool/data/bk", "--parallel", "1", "--no-bookmarks"]
    console = Console(out=io.StringIO(), err=io.StringIO())
    rc = run_classic(job_from_args(build_parser().parse_args(argv)), False, console, runner,
                     float(zfs.now))  # fmt: skip
    assert rc == 0, console.err.getvalue()  # type: ignore[attr-defined]
    snap = "bk-20260101000000"
    holds = sorted(line for line in runner.history if line.startswith("zfs hold "))
    assert holds == [
        f"zfs hold -r zfs_autobackup:bk pool/data/a@{snap}",
        f"zfs hold -r zfs_autobackup:bk pool/data/bk/pool/data@{snap}",
        f"zfs hold zfs_autobackup:bk pool/data@{snap}",
    ]
    for name in ("pool/data", "pool/data/a/x", "pool/data/bk/pool/data/a/x"):
        assert zfs.get_snap(f"{name}@{snap}")[1].holds == ["zfs_autobackup:bk"]
