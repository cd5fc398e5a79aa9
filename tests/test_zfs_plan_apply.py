"""plan / apply / show on real OpenZFS: review a plan, apply exactly it, refuse drift."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from planner.actions import Destroy, Send
from planner.planfile import VERSION, loads
from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs

PLAN = "/var/tmp/test-plan.json"
TAG = "zfs_autobackup:offsite1"


def stamp(day: int, hour: int = 12) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(day: int, hour: int = 12) -> str:
    return f"offsite1-202601{day:02d}{hour:02d}0000"


def _setup(zfs_bed: ZfsBed, pools: Pools) -> str:
    """src/a and src/a/b backed up twice (hours 0 and 1); returns the target path."""
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/a && zfs create {s}/a/b && zfs set autobackup:offsite1=true {s}/a")
    zfs_bed.write(f"{s}/a", "f", 64)
    for hour in (0, 1):
        run = zfs_bed.tool("offsite1", d, "--allow-empty", now=stamp(1, hour))
        assert run.returncode == 0, run.stdout + run.stderr
    zfs_bed.write(f"{s}/a", "g", 64)
    return d


def _state(zfs_bed: ZfsBed, pools: Pools) -> str:
    """Everything that must not change: datasets, snapshots, guids, holds, tokens."""
    listing = zfs_bed.run(
        f"zfs list -H -p -o name,guid,userrefs,receive_resume_token -t all -r {pools.src} {pools.dst}"
    ).stdout
    return listing + zfs_bed.all_holds(pools.src, pools.dst)


def _plan_args(d: str) -> list[str]:
    return ["plan", "offsite1", d, "--keep-source=1", "--keep-target=1", "--out", PLAN]


def test_plan_apply_file_then_nothing_to_do(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _setup(zfs_bed, pools)
    before = _state(zfs_bed, pools)
    run = zfs_bed.tool(*_plan_args(d), "--debug", "--detailed-exitcode", now=stamp(1, 2))
    assert run.returncode == 2, run.stdout + run.stderr
    # plan ran only read-only commands, and changed nothing
    commands = [
        line.split(" CMD > ", 1)[1] for line in run.stdout.splitlines() if " CMD > " in line
    ]
    assert commands and all(
        c.split()[:2] in (["zfs", "list"], ["zfs", "get"], ["zfs", "holds"], ["zpool", "get"])
        for c in commands
    ), commands
    assert "Would execute" not in run.stdout
    assert _state(zfs_bed, pools) == before
    assert (
        "Plan: 1 snapshots to create, 1 to send, 3 to destroy on source, 3 on target" in run.stdout
    ), run.stdout

    saved = loads(zfs_bed.run(f"cat {PLAN}").stdout)
    shown = zfs_bed.tool("show", PLAN)
    assert shown.returncode == 0 and "send incremental" in shown.stdout

    # applied later (the clock moved on): exactly what was reviewed, with the planned name
    run = zfs_bed.tool("apply", PLAN, "--verbose", now=stamp(1, 5))
    assert run.returncode == 0, run.stdout + run.stderr
    for action in saved.plan.actions:
        if isinstance(action, Send):
            target_snap = f"{action.target_dataset}@{action.snapshot}"
            assert action.snapshot == snapname(1, 2)
            assert zfs_bed.prop(target_snap, "guid") == zfs_bed.prop(
                f"{action.source_dataset}@{action.snapshot}", "guid"
            )
        if isinstance(action, Destroy):
            remaining = zfs_bed.snapshots(action.dataset)
            assert not set(action.snapshots) & set(remaining)
    assert zfs_bed.snapshots(f"{s}/a") == [snapname(1, 2)]
    assert zfs_bed.snapshots(f"{d}/{s}/a") == [snapname(1, 2)]
    assert zfs_bed.holds(f"{d}/{s}/a@{snapname(1, 2)}") == [TAG]

    run = zfs_bed.tool("plan", "offsite1", d, "--no-snapshot", "--keep-source=1", "--keep-target=1",
                       "--detailed-exitcode", now=stamp(1, 6))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes. Source and target are in sync." in run.stdout


def _new_target_snapshot(zfs_bed: ZfsBed, pools: Pools) -> None:
    zfs_bed.sh("zfs", "snapshot", f"{pools.dst}/{pools.src}/a@manual")


def _base_destroyed(zfs_bed: ZfsBed, pools: Pools) -> None:
    base = f"{pools.src}/a@{snapname(1, 1)}"
    zfs_bed.run(f"zfs release {TAG} {base} && zfs destroy {base}")


def _dataset_created(zfs_bed: ZfsBed, pools: Pools) -> None:
    zfs_bed.sh("zfs", "create", f"{pools.src}/a/new")


def _dataset_destroyed(zfs_bed: ZfsBed, pools: Pools) -> None:
    child = f"{pools.src}/a/b"
    zfs_bed.run(f"zfs release {TAG} {child}@{snapname(1, 1)} && zfs destroy -r {child}")


def _resume_token(zfs_bed: ZfsBed, pools: Pools) -> None:
    """An interrupted receive under the target path leaves a resume token."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/big && dd if=/dev/urandom of=/mnt/{s}/big/f bs=1M count=20 status=none && "
        f"zfs snapshot {s}/big@x && (zfs send {s}/big@x | head -c 15000000 | zfs recv -s {d}/{s}/partial || true)"
    )
    assert zfs_bed.prop(f"{d}/{s}/partial", "receive_resume_token") not in ("", "-")


def _user_hold(zfs_bed: ZfsBed, pools: Pools) -> None:
    zfs_bed.sh("zfs", "hold", "keepme", f"{pools.dst}/{pools.src}/a@{snapname(1, 0)}")


DRIFTS: dict[str, tuple[Callable[[ZfsBed, Pools], None], str]] = {
    "new-target-snapshot": (_new_target_snapshot, "snapshot @manual appeared"),
    "base-destroyed": (_base_destroyed, f"snapshot @{snapname(1, 1)} was destroyed"),
    "dataset-created": (_dataset_created, "newly selected (or created)"),
    "dataset-destroyed": (_dataset_destroyed, "no longer selected (or destroyed)"),
    "resume-token": (_resume_token, "dataset appeared"),
    "user-hold": (_user_hold, "hold 'keepme' appeared"),
}


#: the drifts CI checks (the others: tests/run --slow)
CI_DRIFTS = ("new-target-snapshot",)


@pytest.mark.parametrize(
    "kind",
    [k if k in CI_DRIFTS else pytest.param(k, marks=pytest.mark.slow) for k in DRIFTS],
)
def test_apply_refuses_a_plan_whose_assumptions_drifted(
    zfs_bed: ZfsBed, pools: Pools, kind: str
) -> None:
    d = _setup(zfs_bed, pools)
    run = zfs_bed.tool(*_plan_args(d), now=stamp(1, 2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "to destroy" in run.stdout
    make_drift, expected = DRIFTS[kind]
    make_drift(zfs_bed, pools)
    before = _state(zfs_bed, pools)
    run = zfs_bed.tool("apply", PLAN, now=stamp(1, 3))
    assert run.returncode == 1, run.stdout + run.stderr
    assert expected in run.stdout
    assert "Plan refused:" in run.stderr and "nothing was applied" in run.stderr
    assert _state(zfs_bed, pools) == before


def test_json_plan_parses_and_round_trips(zfs_bed: ZfsBed, pools: Pools) -> None:
    d = _setup(zfs_bed, pools)
    run = zfs_bed.tool("plan", "offsite1", d, "--json", now=stamp(1, 2))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["format"] == "zfs-reconcile-plan" and data["version"] == VERSION
    saved = loads(run.stdout)
    assert saved.plan.snapshot_name == snapname(1, 2)
    assert [a["kind"] for a in data["plan"]["actions"]] == [a.kind for a in saved.plan.actions]


def test_apply_without_terminal_needs_auto_approve(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    _setup(zfs_bed, pools)
    before = _state(zfs_bed, pools)
    run = zfs_bed.tool("apply", "offsite1", d, now=stamp(1, 2))
    assert run.returncode == 1
    assert "apply needs --auto-approve" in run.stderr
    assert _state(zfs_bed, pools) == before
    run = zfs_bed.tool("apply", "offsite1", d, "--auto-approve", now=stamp(1, 2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert snapname(1, 2) in zfs_bed.snapshots(f"{d}/{s}/a")


def _planned_commands(stdout: str) -> list[str]:
    """The lines under "Commands, in the order they run:" (fallbacks left out)."""
    lines = stdout.split("Commands, in the order they run:\n", 1)[1].splitlines()
    found = []
    for line in lines:
        if not line.startswith("  "):
            break
        if not line.lstrip().startswith("if refused: "):
            found.append(line[2:])
    return found


#: what apply FILE reads before it runs anything (observation)
_READS = ("zfs get ", "zfs list ", "zfs holds ", "zpool get ", "zfs send -nv ")


def _ran_commands(stdout: str) -> list[str]:
    ran = [line.split(" CMD > ", 1)[1] for line in stdout.splitlines() if " CMD > " in line]
    return [c for c in ran if not c.startswith(_READS)]


def test_the_plan_shows_exactly_the_commands_apply_runs(zfs_bed: ZfsBed, pools: Pools) -> None:
    """The seed's walkthrough (first full backup, an incremental one, thinning after time
    passed) as plan --commands --out F, then apply F --debug: the commands the plan shows
    are the ones apply runs, line for line."""
    from tests.test_zfs_core import _seed_tree

    d = pools.dst
    _seed_tree(zfs_bed, pools)
    target = f"{d}/backup/server1"
    for n, (when, write) in enumerate([(stamp(1), False), (stamp(1, 13), True), (stamp(9), True)]):
        if write:
            zfs_bed.write(f"{pools.src}/data", f"more{n}", 32)
        args = ["offsite1", target, "--keep-source=2,1d1w", "--keep-target=3"]
        plan = zfs_bed.tool("plan", *args, "--commands", "--out", PLAN, now=when)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        planned = _planned_commands(plan.stdout)
        assert planned, plan.stdout
        run = zfs_bed.tool("apply", PLAN, "--debug")
        assert run.returncode == 0, run.stdout + run.stderr
        assert _ran_commands(run.stdout) == planned
    kinds = " ".join(planned)
    assert "zfs destroy" in kinds and "zfs send" in kinds and "zfs hold" in kinds
