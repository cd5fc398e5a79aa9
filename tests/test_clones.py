"""Clones arrive as clones, against the fake zfs (each behaviour is also proven on real
OpenZFS in tests/test_zfs_clones.py)."""

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
from planner.actions import SOURCE, TARGET, Destroy, DestroyDataset, Send
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


def _destroyed(history: list[str]) -> list[str]:
    """Every dataset and snapshot a `zfs destroy` was attempted on (a batch is
    `DS@A,B`)."""
    names = []
    for line in history:
        words = shlex.split(line)
        if words[:2] == ["zfs", "destroy"]:
            dataset, _, snaps = words[-1].partition("@")
            names += [f"{dataset}@{s}" for s in snaps.split(",")] if snaps else [dataset]
    return names


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
    assert "origin of 1 clone: dst/src/a-clone, received as its clone in this run" in text
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


def test_an_origin_of_ours_the_target_schedule_would_skip_is_still_sent_for_its_clone() -> None:
    """--keep-target=1 keeps only the newest snapshot: the origin (an older snapshot of
    ours, never sent) is sent anyway, so the clone arrives as a clone, not in full."""
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner, "--no-send")[0] == 0
    (first,) = [s.name for s in zfs.datasets["src/z-base"].snaps]
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    zfs.write("src/z-base")
    sends, text = _plan(zfs, runner, "--keep-target=1")
    base = [s for s in sends if s.source_dataset == "src/z-base"]
    assert (base[0].snapshot, base[0].base) == (first, None), base
    assert base[0].reason == "target keeps it: origin of src/a-clone"
    clone = next(s for s in sends if s.source_dataset == "src/a-clone")
    assert clone.base == f"src/z-base@{first}" and clone.from_origin
    assert "sent in full" not in text
    rc, log = _run(zfs, runner, "--keep-target=1")
    assert rc == 0, log
    assert zfs.datasets["dst/src/a-clone"].origin == f"dst/src/z-base@{first}"


def test_a_clone_whose_origin_is_excluded_by_pattern_is_sent_in_full_and_says_why() -> None:
    """The origin's dataset is selected, but --exclude-snapshot-pattern keeps the origin
    snapshot from being sent: the clone is sent in full, for that reason."""
    zfs, runner = _world("src/z-base")
    zfs.write("src/z-base")
    zfs.command(["zfs", "snapshot", "src/z-base@__base__"])
    _clone(zfs, "src/z-base@__base__", "src/a-clone")
    sends, text = _plan(zfs, runner, "--exclude-snapshot-pattern=__base__")
    clone = next(s for s in sends if s.source_dataset == "src/a-clone")
    assert clone.base is None and not clone.from_origin
    assert not any("__base__" in s.snapshots for s in sends)
    reason = "sent in full: its origin src/z-base@__base__ matches --exclude-snapshot-pattern"
    assert reason in text, text
    rc, log = _run(zfs, runner, "--exclude-snapshot-pattern=__base__")
    assert rc == 0, log
    assert zfs.datasets["dst/src/a-clone"].origin is None
    assert zfs.datasets["dst/src/z-base"].snap("__base__") is None


@pytest.mark.parametrize(
    ("selected", "first_run", "there"),
    [
        ("src", (), "dst/src/z-base"),  # under the name it maps to
        ("src/z-base", ("--strip-path=1",), "dst/z-base"),  # elsewhere under the target path
    ],
)
def test_a_clone_of_a_deselected_origin_already_on_the_target_is_received_as_its_clone(
    selected: str, first_run: tuple[str, ...], there: str
) -> None:
    """The template was backed up, then deselected (still listed: its parent is
    selected): the target has the origin snapshot (same guid), so the clone is received
    as a clone of it there, not in full."""
    zfs, runner = _world(selected)
    zfs.write("src/z-base")
    assert _run(zfs, runner, *first_run)[0] == 0
    (first,) = [s.name for s in zfs.datasets["src/z-base"].snaps]
    assert zfs.datasets[there].snaps[0].guid == zfs.datasets["src/z-base"].snaps[0].guid
    zfs.datasets["src"].local_props["autobackup:bk"] = "true"
    zfs.datasets["src/z-base"].local_props["autobackup:bk"] = "false"
    _clone(zfs, f"src/z-base@{first}", "src/a-clone")
    sends, text = _plan(zfs, runner)
    assert "src/z-base" not in [s.source_dataset for s in sends]
    clone = next(s for s in sends if s.source_dataset == "src/a-clone")
    assert clone.base == f"src/z-base@{first}" and clone.from_origin
    assert "sent in full" not in text
    rc, log = _run(zfs, runner)
    assert rc == 0, log
    assert f"-i src/z-base@{first} src/a-clone@" in "\n".join(runner.history)
    assert zfs.datasets["dst/src/a-clone"].origin == f"{there}@{first}"


def test_destroy_missing_keeps_the_last_snapshot_of_a_missing_dataset_that_is_an_origin() -> None:
    """The template was backed up, then deselected (its target dataset is missing on the
    source); a clone of its last snapshot is selected. Past the --destroy-missing
    deadline, the dataset's older snapshots go, but not that origin nor the dataset: in
    the run that receives the clone from it, and in every run after; the plan says why,
    and the log does not claim a destroy that is not done."""
    zfs, runner = _world("src")
    for _ in range(2):
        zfs.write("src/z-base")
        assert _run(zfs, runner)[0] == 0
    older, last = [s.name for s in zfs.datasets["dst/src/z-base"].snaps]
    zfs.datasets["src/z-base"].local_props["autobackup:bk"] = "false"
    _clone(zfs, f"src/z-base@{last}", "src/a-clone")
    zfs.now += 7200  # past the deadline
    flags = ("--destroy-missing=1h",)
    job = job_from_args(build_parser().parse_args(["bk", "dst", *flags]))
    for run in ("receives the clone", "after"):
        plan = prepare(job, runner, float(zfs.now + 3600), Options()).plan
        text = render(plan, {})
        doomed = [
            (a.dataset, snap)
            for a in plan.actions
            if isinstance(a, Destroy)
            for snap in a.snapshots
        ]
        assert ("dst/src/z-base", last) not in doomed, run
        assert not [a for a in plan.actions if isinstance(a, DestroyDataset)], run
        if run == "receives the clone":
            assert doomed == [("dst/src/z-base", older)]
            why = "origin of 1 clone: dst/src/a-clone, received as its clone in this run"
        else:
            assert doomed == []
            why = "origin of 1 clone: dst/src/a-clone"
        assert f"dst/src/z-base@{last}  kept: {why}" in text, text
        start = len(runner.history)
        rc, log = _run(zfs, runner, *flags)
        assert rc == 0, log
        destroyed = _destroyed(runner.history[start:])
        assert destroyed == ([f"dst/src/z-base@{older}"] if run == "receives the clone" else [])
        assert f"dst/src/z-base@{last}" not in destroyed and "dst/src/z-base" not in destroyed
        assert "dst/src/z-base: Destroy missing.\n" not in log, log
        assert "dst/src/z-base: Destroy missing: Still has clones (dst/src/a-clone" in log, log
        assert zfs.datasets["dst/src/z-base"].snap(last) is not None
        assert zfs.datasets["dst/src/a-clone"].origin == f"dst/src/z-base@{last}"


@pytest.mark.parametrize("count", [1, 2])
def test_a_kept_origin_says_how_many_clones_it_has_and_names_them(count: int) -> None:
    """--keep-target=1 would destroy the origin on the target: the plan keeps it with
    "origin of N clone(s): ..." on both sides, in the run that receives the clones from
    it ("received as its clone(s) in this run") and in the runs after."""
    flags = ("--keep-source=1", "--keep-target=1")
    zfs, runner = _world("src/z-base")
    assert _run(zfs, runner, *flags)[0] == 0
    first = zfs.datasets["src/z-base"].snaps[0].name
    names = ["src/a-clone", "src/b-clone"][:count]
    for name in names:
        _clone(zfs, f"src/z-base@{first}", name)
    zfs.write("src/z-base")
    what = f"origin of {count} clone{'s' if count > 1 else ''}"
    on_source = f"src/z-base@{first}      kept: {what}: {', '.join(names)}"
    targets = ", ".join(f"dst/{n}" for n in names)
    on_target = f"dst/src/z-base@{first}  kept: {what}: {targets}"
    _, text = _plan(zfs, runner, *flags)
    assert on_source in text, text
    s = "s" if count > 1 else ""
    assert f"{on_target}, received as its clone{s} in this run" in text, text
    rc, log = _run(zfs, runner, *flags)
    assert rc == 0, log
    zfs.write("src/z-base")
    _, text = _plan(zfs, runner, *flags)
    assert on_source in text and f"{on_target}\n" in text, text
