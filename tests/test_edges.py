"""The edges (issue #16), pure: each rule where zfs-autobackup 3.3 and this tool once
disagreed, on the plan (the same rules on real ZFS: tests/test_zfs_edges.py)."""

from __future__ import annotations

import pytest

from executors.options import build_parser, job_from_args
from planner import invariants
from planner.actions import SOURCE, TARGET, AbortResume, CreateParent, Destroy, Hold, Release, Send
from planner.plan import KEPT, Plan, build_plan
from reconcile.errors import UsageError
from reconcile.model import ResumeInfo
from tests.builders import dataset, job, run_desire, state

TAG = "zfs_autobackup:bak"
SELECTED = ("true", "local")


def snap(day: int, hour: int = 12) -> str:
    return f"bak-202601{day:02d}{hour:02d}0000"


def now_at(day: int, hour: int = 12) -> float:
    stamp = job().naming.timestamp(snap(day, hour))
    assert stamp is not None
    return stamp


def plan_for(job_, source, target, now, resume=None) -> Plan:  # type: ignore[no-untyped-def]
    desired = run_desire(job_, source, target, now, resume)
    plan = build_plan(job_, desired, source, target)
    invariants.check(plan, job_, desired)
    return plan


def test_a_snapshot_with_clones_is_kept_and_said_so() -> None:
    """#1: zfs refuses to destroy a snapshot with clones (and the whole batch with it)."""
    clones = {snap(1): ("backup/restore",)}
    source = state([dataset("p", (snap(1), snap(2)), selection=SELECTED, written=9)])
    tgt = dataset("backup/p", (snap(1), snap(2)), lineage="p", clones=clones)
    plan = plan_for(job(keep_target="1"), source, state([dataset("backup"), tgt]), now_at(3))
    destroyed = [s for a in plan.actions if isinstance(a, Destroy) for s in a.snapshots]
    assert snap(1) not in [
        s for a in plan.actions if isinstance(a, Destroy) and a.side == TARGET for s in a.snapshots
    ]
    assert snap(2) in destroyed  # (the old common one, after the new send)
    kept = [(n.side, n.dataset, n.text) for n in plan.notes if n.kind == KEPT]
    assert kept == [(TARGET, f"backup/p@{snap(1)}", "kept: origin of 1 clone: backup/restore")]


def test_thinning_goes_before_what_the_sends_need_and_a_pinned_incompatible_is_a_problem() -> None:
    """3.3's order: both sides are thinned first; an incompatible snapshot zfs would not
    destroy (a clone) stops the dataset, and its thinning still happens."""
    source = state([dataset("p", (snap(1), snap(2)), selection=SELECTED)])
    tgt = dataset(
        "backup/p", (snap(1), snap(2), "manual"), lineage="p",
        snap_written={"manual": 4096}, clones={"manual": ("backup/c",)},
    )  # fmt: skip
    target = state([dataset("backup"), tgt])
    j = job(snapshot=False, destroy_incompatible=True, keep_target="1", keep_source="1")
    plan = plan_for(j, source, target, now_at(3))
    assert [(a.kind, a.side) for a in plan.actions] == [("destroy", TARGET), ("destroy", SOURCE)]
    assert "manual origin of 1 clone: backup/c" in plan.problems[0].message
    # without the clone: thinning, then the incompatible destroy, the rollback, the send
    source = state([dataset("p", (snap(1), snap(2), snap(3)), selection=SELECTED)])
    tgt2 = dataset("backup/p", (snap(2), "manual"), lineage="p", snap_written={"manual": 4096})
    plan = plan_for(j, source, state([dataset("backup"), tgt2]), now_at(4))
    kinds = [a.kind for a in plan.actions]
    assert kinds[:3] == ["destroy", "destroy", "rollback"] and "send" in kinds
    first, second = plan.actions[0], plan.actions[1]
    assert isinstance(first, Destroy) and isinstance(second, Destroy)
    assert first.side == SOURCE and not first.required
    assert second.snapshots == ("manual",) and second.required


def test_holds_move_only_with_a_transfer_and_only_off_the_previous_common_snapshot() -> None:
    """#6 and 3.3: the previous common snapshot is released whatever its name (here
    another tool's, with --other-snapshots); nothing else is (a held snapshot may be the
    common snapshot of another target); a run that sends nothing places no hold."""
    held = {"manual": (TAG,), snap(1): (TAG,)}
    source = state([dataset("p", (snap(1), "manual"), selection=SELECTED, written=9, holds=held)])
    tgt = dataset("backup/p", ("manual",), lineage="p", holds={"manual": (TAG,)})
    j = job(other_snapshots=True, keep_source="10", keep_target="10")
    plan = plan_for(j, source, state([dataset("backup"), tgt]), now_at(2))
    releases = {(a.side, a.snapshot) for a in plan.actions if isinstance(a, Release)}
    assert releases == {(TARGET, "manual"), (SOURCE, "manual")}
    holds = {(a.side, a.snapshot) for a in plan.actions if isinstance(a, Hold)}
    assert holds == {(TARGET, snap(2)), (SOURCE, snap(2))}
    # nothing to send: no hold is placed, even where the common snapshot has none
    bare = dataset("backup/p", ("manual",), lineage="p")
    plan = plan_for(
        job(snapshot=False, other_snapshots=True),
        source,
        state([dataset("backup"), bare]),
        now_at(2),
    )
    assert plan.empty


def test_no_send_leaves_a_resume_token_alone() -> None:
    """#7: aborting would delete a partially received first backup."""
    source = state([dataset("p", (snap(1),), selection=SELECTED)])
    partial = dataset("backup/p", (), lineage="p", token="1-abc")
    resume = {"backup/p": ResumeInfo(f"p@{snap(1)}")}
    plan = plan_for(
        job(snapshot=False, send=False),
        source,
        state([dataset("backup"), partial]),
        now_at(2),
        resume,
    )
    assert not any(isinstance(a, AbortResume) for a in plan.actions)
    plan = plan_for(
        job(snapshot=False), source, state([dataset("backup"), partial]), now_at(2), resume
    )
    assert [a.kind for a in plan.actions][:1] == ["send"]


def test_a_resume_token_of_another_snapshot_with_the_same_name_is_aborted() -> None:
    source = state([dataset("p", (snap(1),), selection=SELECTED)])
    partial = dataset("backup/p", (), lineage="p", token="1-abc")
    wrong = {"backup/p": ResumeInfo(f"p@{snap(1)}", toguid=12345)}
    plan = plan_for(
        job(snapshot=False), source, state([dataset("backup"), partial]), now_at(2), wrong
    )
    abort = [a for a in plan.actions if isinstance(a, AbortResume)]
    assert abort and abort[0].reason == "Aborting resume, its no longer valid."
    send = next(a for a in plan.actions if isinstance(a, Send))
    assert send.resume_token is None


def test_excluded_snapshots_do_not_count_in_the_target_schedule() -> None:
    """#10 (a deliberate difference from 3.3): snapshots never sent do not push real
    backups out of "keep the last N"."""
    source = state([dataset("p", (snap(1), snap(2), snap(3), snap(4)), selection=SELECTED)])
    tgt = dataset("backup/p", (snap(1), snap(2)), lineage="p")
    j = job(
        snapshot=False, keep_target="2", exclude_snapshot_patterns=(f"@{snap(3)}$", f"@{snap(4)}$")
    )
    plan = plan_for(j, source, state([dataset("backup"), tgt]), now_at(5))
    assert not any(isinstance(a, Destroy) and a.side == TARGET for a in plan.actions)


def test_strip_path_parents_come_first_whatever_the_source_names() -> None:
    """a/x/y lands under b/x's target with --strip-path 1: b/x's full send goes first."""
    source = state(
        [
            dataset("a/x/y", (snap(1),), selection=SELECTED),
            dataset("b/x", (snap(1),), selection=SELECTED),
        ]
    )
    plan = plan_for(
        job(snapshot=False, strip_path=1), source, state([dataset("backup")]), now_at(2)
    )
    sends = {a.target_dataset: i for i, a in enumerate(plan.actions) if isinstance(a, Send)}
    assert sends["backup/x"] in plan.depends[sends["backup/x/y"]]
    assert not any(isinstance(a, CreateParent) for a in plan.actions)


def test_parents_are_created_also_when_nothing_is_sent() -> None:
    """3.3's test_nosnapshot: the target's parents (canmount=off), not the dataset."""
    source = state([dataset("p/fs2/sub", (), selection=("child", "inherited from p/fs2"))])
    plan = plan_for(job(snapshot=False), source, state([dataset("backup")]), now_at(2))
    assert [(a.kind, a.dataset) for a in plan.actions] == [
        ("create-parent", "backup/p"),
        ("create-parent", "backup/p/fs2"),
    ]
    plan = plan_for(job(snapshot=False, send=False), source, state([dataset("backup")]), now_at(2))
    assert plan.empty


def _job(*args: str):  # type: ignore[no-untyped-def]
    return job_from_args(build_parser().parse_args(list(args)))


def test_snapshot_only_mode_leaves_received_backups_alone_unless_asked() -> None:
    """#2: as 3.3, --exclude-received is on by itself without a target on one host."""
    assert _job("bak").excludes_received
    assert not _job("bak", "--include-received").excludes_received
    assert not _job("bak", "backup").excludes_received
    assert not _job("bak", "--ssh-source", "host1").excludes_received
    values = {"p": ("true", "received"), "q": ("true", "local")}
    source = state([dataset(n, (snap(1),), selection=v, written=9) for n, v in values.items()])
    desired = run_desire(_job("bak", "--keep-source=0"), source, None, now_at(2))
    assert desired.selected == ["q"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bak", "/backup"], "Invalid target path '/backup': a dataset name never starts with a /"),
    ],
)
def test_a_target_path_with_a_leading_slash_is_refused(args: list[str], message: str) -> None:
    """#3: zfs would resolve it as a path and list another dataset's names."""
    with pytest.raises(UsageError, match=message):
        _job(*args)


def test_every_v33_option_spelling_is_accepted() -> None:
    """Every option string of zfs-autobackup 3.3's own parser parses here, with a value
    where 3.3 takes one."""
    from tests.oracle import load

    v33 = load("ZfsAutobackup").ZfsAutobackup
    parser = v33.get_parser(v33.__new__(v33))
    ours = build_parser()
    for action in parser._actions:
        for option in action.option_strings:
            if option in ("--help", "-h", "--version"):
                continue
            value = [] if action.nargs == 0 else ["1"]
            if option == "--compress":
                value = ["zstd-fast"]
            elif option in ("--keep-source", "--keep-target"):
                value = ["10"]
            elif option == "--destroy-missing":
                value = ["30d"]
            elif option in ("--set-properties", "--set-snapshot-properties"):
                value = ["a=b"]
            elif option == "--buffer-chunk-size" or option in ("--buffer", "--rate"):
                value = ["128k"]
            ours.parse_args(["bak", "backup", option, *value])


def test_strip_path_reports_3_3s_collision_first() -> None:
    """3.3's test layout with --strip-path=2: fs1 lands on the target path itself, and
    the first thing wrong is the collision of the two `sub` (3.3 says the same)."""
    from reconcile.mapping import map_targets

    with pytest.raises(
        UsageError,
        match=r"^Target collision: 's1/fs1/sub' and 's2/fs2/sub' would both be received as 'T/sub'",
    ):  # (3.3's word: scripts grep for "collision")
        map_targets(["s1/fs1", "s1/fs1/sub", "s2/fs2/sub"], "T", 2)
    with pytest.raises(UsageError, match="strips too much from 's1/fs1'"):
        map_targets(["s1/fs1", "s1/fs1/sub"], "T", 3)


def test_recv_is_resumable_only_where_the_target_pool_can_resume() -> None:
    """`zfs recv -s` needs extensible_dataset on the target pool (3.3 checks it too); the
    features are read once per host, and only when something is sent."""
    import io

    from executors.classic import run_classic
    from executors.console import Console
    from tests.fakezfs import FakeRunner, FakeZfs

    zfs = FakeZfs()
    for name in ("src", "src/a", "old", "old/bak", "new", "new/bak"):
        zfs.create(name)
    zfs.datasets["src/a"].local_props["autobackup:bak"] = "true"
    zfs.disabled_features["old"] = {"feature@extensible_dataset"}
    runner = FakeRunner({None: zfs})
    console = Console(out=io.StringIO(), err=io.StringIO(), color=False)
    for target in ("old/bak", "new/bak"):
        zfs.now += 60
        assert run_classic(_job("bak", target), False, console, runner, float(zfs.now)) == 0
    recvs = [line.split("| ", 1)[1] for line in runner.history if "zfs recv" in line]
    # (the second run also backs up the first one's copy: its value arrived as received)
    assert (
        recvs[0]
        == "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by old/bak/src/a"
    )
    assert (
        "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by new/bak/src/a"
        in recvs
    )
    assert sum(line.startswith("zpool get") for line in runner.history) == 4
    start = len(runner.history)
    assert (
        run_classic(_job("bak", "new/bak", "--no-snapshot"), False, console, runner, zfs.now + 60)
        == 0
    )
    assert not any(line.startswith("zpool") for line in runner.history[start:])
