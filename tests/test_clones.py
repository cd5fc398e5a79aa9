"""Clones arrive as clones, against the fake zfs (each behaviour is also proven on real
OpenZFS in tests/test_zfs_clones.py)."""

from __future__ import annotations

import io

import attrs
import pytest

from executors.classic import run_classic
from executors.console import Console
from executors.options import build_parser, job_from_args
from executors.session import prepare
from planner import invariants
from planner.actions import SOURCE, TARGET, Destroy, Send
from planner.compile import Options
from planner.show import render
from reconcile.errors import PlanRefused
from tests.fakezfs import FakeRunner, FakeZfs

START = 1_767_225_600  # 2026-01-01 00:00 UTC


def _world(*selected: str) -> tuple[FakeZfs, FakeRunner]:
    zfs = FakeZfs()
    for name in ("src", "src/z-base", "dst"):
        zfs.create(name)
    for name in selected:
        zfs.datasets[name].local_props["autobackup:bk"] = "true"
    zfs.now = START
    return zfs, FakeRunner({None: zfs})


def _run(zfs: FakeZfs, runner: FakeRunner, *args: str) -> tuple[int, str]:
    zfs.now += 3600
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err, verbose=True, color=False)
    job = job_from_args(build_parser().parse_args(["bk", "dst", *args]))
    rc = run_classic(job, False, console, runner, float(zfs.now))
    return rc, out.getvalue() + err.getvalue()


def _plan(zfs: FakeZfs, runner: FakeRunner, *args: str) -> tuple[list[Send], str]:
    job = job_from_args(build_parser().parse_args(["bk", "dst", *args]))
    plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
    return [a for a in plan.actions if isinstance(a, Send)], render(plan, {})


def _clone(zfs: FakeZfs, snapshot: str, name: str) -> None:
    zfs.command(["zfs", "clone", snapshot, name])
    zfs.datasets[name].local_props["autobackup:bk"] = "true"
    zfs.write(name)


def test_a_clone_of_a_sent_snapshot_is_received_as_a_clone_of_it() -> None:
    zfs, runner = _world("src/z-base")
    zfs.write("src/z-base")
    assert _run(zfs, runner)[0] == 0
    (first,) = [s.name for s in zfs.datasets["src/z-base"].snaps]
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    sends, text = _plan(zfs, runner)
    clone = next(s for s in sends if s.source_dataset == "src/a-clone")
    assert clone.base == f"src/z-base@{first}" and clone.from_origin
    assert f"from src/z-base@{first} (its origin: received as a clone)" in text
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    assert f"-i src/z-base@{first} src/a-clone@" in "\n".join(runner.history)
    assert zfs.datasets["dst/src/a-clone"].origin == f"dst/src/z-base@{first}"
    assert "(a clone of src/z-base@" in log
    # and it goes on incrementally, as any dataset
    zfs.write("src/a-clone")
    assert _run(zfs, runner)[0] == 0
    assert len(zfs.datasets["dst/src/a-clone"].snaps) == 2


def test_an_origin_made_before_the_first_run_is_sent_first_even_if_not_ours() -> None:
    """A template's snapshot (another tool's name): the origin's pair sends it, before
    the clone that sorts first by name is received from it."""
    zfs, runner = _world("src/z-base")
    zfs.write("src/z-base")
    zfs.command(["zfs", "snapshot", "src/z-base@__base__"])
    _clone(zfs, "src/z-base@__base__", "src/a-clone")
    sends, _ = _plan(zfs, runner)
    order = [(s.source_dataset, s.snapshots) for s in sends]
    assert order[0][0] == "src/z-base" and "__base__" in order[0][1], order
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    assert zfs.datasets["dst/src/a-clone"].origin == "dst/src/z-base@__base__"


def test_a_clone_whose_origin_is_not_selected_is_sent_in_full_and_the_plan_says_why() -> None:
    zfs, runner = _world()
    zfs.command(["zfs", "snapshot", "src/z-base@tmpl"])
    _clone(zfs, "src/z-base@tmpl", "src/a-clone")
    sends, text = _plan(zfs, runner)
    assert [s.base for s in sends] == [None]
    assert "sent in full: its origin src/z-base@tmpl is not selected" in text
    assert _run(zfs, runner)[0] == 0
    assert zfs.datasets["dst/src/a-clone"].origin is None


def test_no_clone_sends_clones_in_full_as_3_3() -> None:
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner)[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    sends, text = _plan(zfs, runner, "--no-clone")
    assert all(not s.from_origin for s in sends) and "sent in full" not in text
    assert _run(zfs, runner, "--no-clone")[0] == 0
    assert zfs.datasets["dst/src/a-clone"].origin is None


def test_thinning_never_destroys_an_origin_on_either_side() -> None:
    """--keep-target=1 would destroy the origin snapshot on the target as soon as a newer
    one arrives: in the run that receives the clone from it, and in every run after."""
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner, "--keep-source=1", "--keep-target=1")[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    zfs.write("src/z-base")
    _, text = _plan(zfs, runner, "--keep-source=1", "--keep-target=1")
    assert "origin of dst/src/a-clone, received as its clone in this run" in text
    for _ in range(3):
        zfs.write("src/z-base")
        start = len(zfs.events)
        rc, log = _run(zfs, runner, "--keep-source=1", "--keep-target=1")
        assert rc == 0, log
        destroyed = [e[1] for e in zfs.events[start:] if e[0] == "destroy"]
        assert f"src/z-base@{first}" not in destroyed and f"dst/src/z-base@{first}" not in destroyed
    assert zfs.datasets["dst/src/a-clone"].origin == f"dst/src/z-base@{first}"
    _, text = _plan(zfs, runner, "--keep-source=1", "--keep-target=1")
    assert f"dst/src/z-base@{first}  kept: origin of 1 clone: dst/src/a-clone" in text
    job = job_from_args(build_parser().parse_args(["bk", "dst", "--keep-target=1"]))
    plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
    assert not any(isinstance(a, Destroy) and first in a.snapshots for a in plan.actions)


@pytest.mark.parametrize("bookmarks", [True, False])
def test_after_a_promote_on_the_source_both_go_on_incrementally(bookmarks: bool) -> None:
    """The promoted clone takes the origin's snapshots up to the clone's origin (guids
    and bookmarks move with them); the old origin keeps what came after, which the
    target has: both chains go on by guid."""
    flags = [] if bookmarks else ["--no-bookmarks"]
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner, *flags)[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    zfs.write("src/z-base")
    assert _run(zfs, runner, *flags)[0] == 0
    zfs.command(["zfs", "promote", "src/a-clone"])
    assert zfs.datasets["src/z-base"].origin == f"src/a-clone@{first}"
    assert zfs.datasets["src/a-clone"].snaps[0].name == first
    for _ in range(2):
        for name in ("src/z-base", "src/a-clone"):
            zfs.write(name)
        start = len(zfs.events)
        rc, log = _run(zfs, runner, *flags)
        assert rc == 0, log
        assert "receiving full" not in log
        assert not [e for e in zfs.events[start:] if e[0] in ("recv-F", "rollback")]
    assert len(zfs.datasets["dst/src/a-clone"].snaps) == 3
    assert len(zfs.datasets["dst/src/z-base"].snaps) == 4


def test_promoted_away_is_reported_with_the_fix_and_the_fix_works() -> None:
    """The old origin had no snapshot after the clone's origin: after the promote none
    of its own is on the target. zfs sends from another dataset's snapshot only as a
    clone stream, which an existing dataset can't receive: the dataset is reported with
    the fix, which then converges without a full send (found by the stateful test)."""
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner)[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    assert _run(zfs, runner)[0] == 0
    zfs.command(["zfs", "promote", "src/a-clone"])
    zfs.write("src/z-base")
    rc, log = _run(zfs, runner)
    assert rc == 1, log
    assert "src/z-base was promoted away" in log
    fix = "zfs promote dst/src/a-clone, then zfs destroy -r dst/src/z-base"
    assert fix in log, log
    zfs.command(["zfs", "promote", "dst/src/a-clone"])
    zfs.command(["zfs", "destroy", "-r", "dst/src/z-base"])
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    assert zfs.datasets["dst/src/z-base"].origin == f"dst/src/a-clone@{first}"
    assert "receiving full" not in log


def test_strip_path_maps_the_origin_too() -> None:
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner, "--strip-path=1")[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    rc, log = _run(zfs, runner, "--strip-path=1")
    assert rc == 0, log
    assert zfs.datasets["dst/a-clone"].origin == f"dst/z-base@{first}"


def test_the_checker_refuses_to_destroy_an_origin() -> None:
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner)[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    job = job_from_args(build_parser().parse_args(["bk", "dst"]))
    prepared = prepare(job, runner, float(zfs.now + 3600), Options())
    plan, desired = prepared.plan, prepared.desired
    for side, dataset in ((SOURCE, "src/z-base"), (TARGET, "dst/src/z-base")):
        bad = Destroy(side, dataset, (first,), ("x",), "src/z-base")
        worse = attrs.evolve(plan, actions=(*plan.actions, bad), depends=(*plan.depends, ()))
        with pytest.raises(PlanRefused, match="the origin of a clone"):
            invariants.check(worse, job, desired)


def test_the_clones_receive_waits_for_the_origins_send_in_the_plan() -> None:
    """--parallel runs independent steps side by side: the clone's first send depends on
    the send that puts its origin on the target."""
    zfs, runner = _world("src/z-base")
    zfs.command(["zfs", "snapshot", "src/z-base@__base__"])
    _clone(zfs, "src/z-base@__base__", "src/a-clone")
    job = job_from_args(build_parser().parse_args(["bk", "dst", "--parallel=4"]))
    plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
    sends = {i: a for i, a in enumerate(plan.actions) if isinstance(a, Send)}
    origin = next(i for i, a in sends.items() if "__base__" in a.snapshots)
    clone = next(i for i, a in sends.items() if a.from_origin)
    assert origin < clone and origin in plan.depends[clone]
