"""The executor with a scripted runner: order, failure isolation, snapshot commands.

(What the commands do to real datasets is tested on real ZFS; here only the executor's
own decisions: what runs, what is skipped after a failure, what counts as failed.)
"""

from __future__ import annotations

import io
import shlex
import threading
from collections.abc import Sequence
from typing import Optional

from executors.console import Console
from executors.execute import Executor, Settings
from executors.runner import PipelineResult, PipelineWatch, Result, Stage, shell_line
from planner.compile import Facts, Options, compile_plan
from planner.plan import Plan, build_plan
from reconcile import zfs_text
from reconcile.model import Host
from tests.builders import dataset, job, run_desire, state


class ScriptedRunner:
    """Records every command; fails those containing one of `fail_on`."""

    def __init__(self, fail_on: Sequence[str] = ()) -> None:
        self.fail_on = fail_on
        self.lines: list[str] = []

    def _result(self, line: str, check: bool) -> tuple[int, str]:
        self.lines.append(line)
        failing = any(f in line for f in self.fail_on)
        if failing and check:
            raise zfs_text.command_error(line, 1, "cannot do it: simulated failure")
        return (1 if failing else 0), ""

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result:
        line = shlex.join(argv)
        code, out = self._result(line, check)
        return Result(line, code, out, "")

    def pipeline(
        self, stages: Sequence[Stage], *, check: bool = True, watch: Optional[PipelineWatch] = None
    ) -> PipelineResult:
        line = shell_line(stages)
        code, _ = self._result(line, check)
        return PipelineResult(line, (code,), ("",), "")


SNAP = "bak-20260102120000"


def _plan(j, names=("p/a", "p/b")):  # type: ignore[no-untyped-def]
    source = state(
        [dataset(n, ("bak-20260101120000",), selection=("true", "local"), written=9) for n in names]
    )
    target = state([dataset("backup")])
    now = j.naming.timestamp(SNAP)
    desired = run_desire(j, source, target, now)
    return build_plan(j, desired, source, target)


def _exec(executor: Executor, plan: Plan, **kwargs: object):  # type: ignore[no-untyped-def]
    """Compile (no pool features observed, no recursive holds) and execute."""
    compiled = compile_plan(
        plan,
        executor.job.transfer_recipe,
        executor.job.snapshotting,
        Facts(),
        Options(parallel=executor.parallel),
    )
    failed = [p.unit for p in plan.problems]
    return executor.execute(compiled, failed=failed, **kwargs)  # type: ignore[arg-type]


def _console() -> Console:
    return Console(verbose=True, out=io.StringIO(), err=io.StringIO(), color=False)


def test_a_failing_dataset_does_not_stop_the_others() -> None:
    j = job()
    runner = ScriptedRunner(
        fail_on=[
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a"
        ]
    )
    console = _console()
    outcome = _exec(Executor(j, runner, console), _plan(j))
    assert outcome.failed == ("p/a",)
    # p/b was sent completely, p/a's later actions were skipped
    assert any(
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/b"
        in line
        for line in runner.lines
    )
    assert not any(line.startswith("zfs hold") and "p/a@" in line for line in runner.lines)
    errors = console.err.getvalue()  # type: ignore[attr-defined]
    assert (
        "! [Target] backup/p/a: FAILED: Command failed: cannot do it: simulated failure" in errors
    )


def test_stop_on_error_stops_everything() -> None:
    j = job()
    runner = ScriptedRunner(
        fail_on=[
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a"
        ]
    )
    outcome = _exec(Executor(j, runner, _console()), _plan(j), stop_on_error=True)
    assert not any("backup/p/b" in line for line in runner.lines)
    assert outcome.failed == ("p/a",)


def test_failed_snapshot_fails_its_datasets_and_post_cmd_still_runs() -> None:
    j = job(pre_snapshot_cmds=(("freeze",),), post_snapshot_cmds=(("thaw",),))
    runner = ScriptedRunner(fail_on=["zfs snapshot"])
    outcome = _exec(Executor(j, runner, _console()), _plan(j))
    assert set(outcome.failed) == {"p/a", "p/b"}
    assert runner.lines.index("freeze") < runner.lines.index("thaw")
    assert not any("zfs send" in line for line in runner.lines)


def test_failing_pre_snapshot_cmd_takes_no_snapshot() -> None:
    j = job(pre_snapshot_cmds=(("freeze",),), post_snapshot_cmds=(("thaw",),))
    runner = ScriptedRunner(fail_on=["freeze"])
    outcome = _exec(Executor(j, runner, _console()), _plan(j))
    assert set(outcome.failed) == {"p/a", "p/b"}
    assert not any(line.startswith("zfs snapshot") for line in runner.lines)
    assert "thaw" in runner.lines


def test_child_is_skipped_when_its_parents_full_send_fails() -> None:
    j = job()
    runner = ScriptedRunner(
        fail_on=[
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a"
        ]
    )
    console = _console()
    outcome = _exec(Executor(j, runner, console), _plan(j, ("p/a", "p/a/c")))
    assert set(outcome.failed) == {"p/a", "p/a/c"}
    assert not any("backup/p/a/c" in line for line in runner.lines)
    assert "backup/p/a/c: skipped, because backup/p/a failed" in console.err.getvalue()  # type: ignore[attr-defined]


def test_a_dataset_with_a_problem_does_not_block_its_pools_snapshot() -> None:
    j = job()
    source = state(
        [
            dataset("p/bad", ("bak-20260101120000",), selection=("true", "local"), written=9),
            dataset("p/good", ("bak-20260101120000",), selection=("true", "local"), written=9),
        ]
    )
    # the target of p/bad has a snapshot that is not on the source: no common snapshot
    target = state([dataset("backup"), dataset("backup/p/bad", ("alien",), lineage="x")])
    desired = run_desire(j, source, target, j.naming.timestamp(SNAP))
    plan = build_plan(j, desired, source, target)
    runner = ScriptedRunner()
    outcome = _exec(Executor(j, runner, _console()), plan)
    assert outcome.failed == ("p/bad",)
    assert any(line.startswith("zfs snapshot") and "p/good@" in line for line in runner.lines)
    assert any(
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/good"
        in line
        for line in runner.lines
    )


def test_holds_and_releases_of_many_datasets_are_one_command_per_side() -> None:
    j = job()
    held = {"bak-20260101120000": ("zfs_autobackup:bak",)}
    names = [f"p/d{i}" for i in range(5)]
    source = state(
        [
            dataset(n, ("bak-20260101120000",), selection=("true", "local"), written=9, holds=held)
            for n in names
        ]
    )
    target = state(
        [dataset("backup")]
        + [dataset(f"backup/{n}", ("bak-20260101120000",), lineage=n, holds=held) for n in names]
    )
    desired = run_desire(j, source, target, j.naming.timestamp(SNAP))
    plan = build_plan(j, desired, source, target)
    runner = ScriptedRunner()
    outcome = _exec(Executor(j, runner, _console()), plan)
    assert outcome.failed == ()
    holds = [line for line in runner.lines if line.startswith("zfs hold ")]
    releases = [line for line in runner.lines if line.startswith("zfs release ")]
    assert len(holds) == 2 and len(releases) == 2  # one per side
    assert holds[0] == "zfs hold zfs_autobackup:bak " + " ".join(
        f"backup/{n}@{SNAP}" for n in names
    )


def test_a_failing_batched_hold_is_retried_one_by_one() -> None:
    j = job()
    runner = ScriptedRunner(fail_on=["backup/p/b@"])
    # fail only the batch and the single hold of p/b, not the sends into it
    runner.fail_on = [
        "zfs hold zfs_autobackup:bak backup/p/a@bak-20260102120000 backup/p/b@",
        "zfs hold zfs_autobackup:bak backup/p/b@",
    ]
    outcome = _exec(Executor(j, runner, _console()), _plan(j))
    assert outcome.failed == ("p/b",)
    assert f"zfs hold zfs_autobackup:bak backup/p/a@{SNAP}" in runner.lines


class ConcurrentRunner(ScriptedRunner):
    """Sends (pipelines) wait for `meet` of them to run at the same time (or time out),
    and record when each started and ended."""

    def __init__(self, meet: int, fail_on: Sequence[str] = ()) -> None:
        super().__init__(fail_on)
        self.barrier = threading.Barrier(meet, timeout=10) if meet > 1 else None
        self.events: list[tuple[str, str]] = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def pipeline(
        self, stages: Sequence[Stage], *, check: bool = True, watch: Optional[PipelineWatch] = None
    ) -> PipelineResult:
        line = shell_line(stages)
        target = line.rsplit(" ", 1)[-1]
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.events.append(("start", target))
        try:
            if self.barrier is not None:
                self.barrier.wait()
            return super().pipeline(stages, check=check, watch=watch)
        finally:
            with self.lock:
                self.running -= 1
                self.events.append(("end", target))


def test_independent_datasets_are_sent_in_parallel_up_to_the_limit() -> None:
    j = job()
    names = [f"p/d{i}" for i in range(6)]
    # the barrier makes each group of 3 sends wait for each other: it only passes when
    # 3 really run at the same time (serial execution times out and fails)
    runner = ConcurrentRunner(meet=3)
    outcome = _exec(Executor(j, runner, _console(), Settings(parallel=3)), _plan(j, names))
    assert outcome.failed == ()
    assert runner.most == 3
    ended = [t for what, t in runner.events if what == "end"]
    assert sorted(ended) == sorted(f"backup/{n}" for n in names for _ in range(2))


def test_parallel_sends_wait_for_the_parents_full_send_and_keep_each_datasets_order() -> None:
    j = job()
    source = state(
        [
            dataset(
                n,
                ("bak-20260101120000", "bak-20260101130000"),
                selection=("true", "local"),
                written=9,
            )
            for n in ("p/a", "p/a/c", "p/b")
        ]
    )
    target = state([dataset("backup")])
    desired = run_desire(j, source, target, j.naming.timestamp(SNAP))
    plan = build_plan(j, desired, source, target)
    runner = ConcurrentRunner(meet=1)
    outcome = _exec(Executor(j, runner, _console(), Settings(parallel=4)), plan)
    assert outcome.failed == ()
    events = runner.events
    # p/a/c's first (full) send starts after p/a's full send ended
    first_child = events.index(("start", "backup/p/a/c"))
    assert ("end", "backup/p/a") in events[:first_child]
    # sends of one dataset never overlap
    for target_name in ("backup/p/a", "backup/p/a/c", "backup/p/b"):
        mine = [what for what, t in events if t == target_name]
        assert mine == ["start", "end"] * (len(mine) // 2)
    sends = [line for line in runner.lines if "zfs recv" in line]
    assert len(sends) == 3 * 2  # per dataset: the first snapshot in full, then one -I


def test_a_failing_parallel_send_does_not_stop_the_others() -> None:
    j = job()
    names = ["p/a", "p/a/c", "p/b", "p/d"]
    runner = ConcurrentRunner(
        meet=1,
        fail_on=[
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a"
        ],
    )
    console = _console()
    outcome = _exec(Executor(j, runner, console, Settings(parallel=4)), _plan(j, names))
    assert outcome.failed == ("p/a", "p/a/c")
    for ok in ("backup/p/b", "backup/p/d"):
        assert ("end", ok) in runner.events
        # the compiled batch also holds p/a's snapshots: its fallback, one by one, holds
        # those of the datasets that went on, and not the failed ones'
        assert f"zfs hold zfs_autobackup:bak {ok}@{SNAP}" in runner.lines
    assert not any(f"backup/p/a@{SNAP}" in line and "hold" in line for line in runner.lines)
    assert ("start", "backup/p/a/c") not in runner.events


class ConcurrentDestroys(ScriptedRunner):
    """`zfs destroy` waits for `meet` of them to run at the same time (or times out)."""

    def __init__(self, meet: int, fail_on: Sequence[str] = ()) -> None:
        super().__init__(fail_on)
        self.barrier = threading.Barrier(meet, timeout=10)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def _result(self, line: str, check: bool) -> tuple[int, str]:
        if not line.startswith("zfs destroy "):
            return super()._result(line, check)
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.barrier.wait()
            return super()._result(line, check)
        finally:
            with self.lock:
                self.running -= 1


def _thinning_plan(j, names):  # type: ignore[no-untyped-def]
    """Snapshot-only job keeping 1: each dataset's two old snapshots go."""
    old = ("bak-20260101100000", "bak-20260101110000")
    source = state([dataset(n, old, selection=("true", "local"), written=9) for n in names])
    desired = run_desire(j, source, None, j.naming.timestamp(SNAP))
    return build_plan(j, desired, source, None)


def test_snapshot_destroys_of_different_datasets_run_in_parallel() -> None:
    j = job(target_path=None, keep_source="1")
    names = [f"p/d{i}" for i in range(6)]
    plan = _thinning_plan(j, names)
    runner = ConcurrentDestroys(meet=3)  # passes only when 3 destroys run at once
    outcome = _exec(Executor(j, runner, _console(), Settings(parallel=3)), plan)
    assert outcome.failed == ()
    assert runner.most == 3
    destroys = sorted(line for line in runner.lines if line.startswith("zfs destroy"))
    assert destroys == [f"zfs destroy {n}@bak-20260101100000,bak-20260101110000" for n in names]


def test_a_failing_thinning_destroy_is_retried_one_by_one_and_fails_nothing() -> None:
    """Thinning never blocks: zfs destroys a batch all or none, so a batch it refuses (one
    snapshot has clones) is retried one snapshot at a time; what zfs still refuses is
    reported, and no dataset counts as failed (as 3.3, which destroys one at a time)."""
    j = job(target_path=None, keep_source="1")
    names = ["p/a", "p/b", "p/c"]
    runner = ConcurrentDestroys(
        meet=1,
        fail_on=["zfs destroy p/b@bak-20260101100000,", "zfs destroy p/b@bak-20260101100000"],
    )
    console = _console()
    outcome = _exec(Executor(j, runner, console, Settings(parallel=4)), _thinning_plan(j, names))
    assert outcome.failed == ()
    assert "zfs destroy p/a@bak-20260101100000,bak-20260101110000" in runner.lines
    assert "zfs destroy p/c@bak-20260101100000,bak-20260101110000" in runner.lines
    assert [line for line in runner.lines if line.startswith("zfs destroy p/b@")] == [
        "zfs destroy p/b@bak-20260101100000,bak-20260101110000",
        "zfs destroy p/b@bak-20260101100000",
        "zfs destroy p/b@bak-20260101110000",
    ]
    errors = console.err.getvalue()  # type: ignore[attr-defined]
    assert "p/b@bak-20260101100000: can't destroy it" in errors
    assert "p/b@bak-20260101110000" not in errors


def test_a_failing_thinning_destroy_does_not_stop_the_sends_after_it() -> None:
    """The target's schedule drops an old snapshot that someone cloned: its destroy
    fails, the increment after it is still sent."""
    j = job(keep_target="1")
    old, common = "bak-20260101100000", "bak-20260101120000"
    source = state([dataset("p/a", (old, common), selection=("true", "local"), written=9)])
    target = state([dataset("backup"), dataset("backup/p/a", (old, common), lineage="p/a")])
    desired = run_desire(j, source, target, j.naming.timestamp(SNAP))
    plan = build_plan(j, desired, source, target)
    runner = ScriptedRunner(fail_on=[f"zfs destroy backup/p/a@{old}"])
    console = _console()
    outcome = _exec(Executor(j, runner, console), plan)
    assert outcome.failed == ()
    assert any(f"zfs send -p -i @{common} p/a@{SNAP}" in line for line in runner.lines)
    assert f"zfs hold zfs_autobackup:bak backup/p/a@{SNAP}" in runner.lines


def test_many_holds_are_split_over_parallel_commands_and_retried_one_by_one() -> None:
    j = job()
    names = [f"p/d{i:02d}" for i in range(40)]
    runner = ScriptedRunner(fail_on=["backup/p/d25@"])
    outcome = _exec(Executor(j, runner, _console(), Settings(parallel=4)), _plan(j, names))
    holds = [line.split()[3:] for line in runner.lines if line.startswith("zfs hold")]
    target_holds = [h for h in holds if h[0].startswith("backup/")]
    # 40 holds, at least 16 per command: 2 commands side by side, then the failing
    # command's 20 one by one (only p/d25's fails)
    assert [len(h) for h in target_holds] == [20, 20] + [1] * 20
    assert sorted(n for h in target_holds[:2] for n in h) == sorted(
        f"backup/{n}@{SNAP}" for n in names
    )
    assert outcome.failed == ("p/d25",)


def test_a_failed_send_keeps_its_old_common_snapshot_held_and_in_place() -> None:
    """The releases of two datasets go out as one batch; one dataset's send fails: its
    part of the batch (done one by one, as its fallback) and the destroy of its old
    common snapshot never run. (Found by the thorough stateful stories: the fallback once
    ran a release whose hold had failed, and the old common snapshot was destroyed.)"""
    j = job(keep_source="0", keep_target="0")
    held = {"bak-20260101120000": ("zfs_autobackup:bak",)}
    names = ["p/a", "p/b"]
    source = state(
        [
            dataset(n, ("bak-20260101120000",), selection=("true", "local"), written=9, holds=held)
            for n in names
        ]
    )
    target = state(
        [dataset("backup")]
        + [dataset(f"backup/{n}", ("bak-20260101120000",), lineage=n, holds=held) for n in names]
    )
    plan = build_plan(j, run_desire(j, source, target, j.naming.timestamp(SNAP)), source, target)
    runner = ScriptedRunner(
        fail_on=[
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by backup/p/a"
        ]
    )
    outcome = _exec(Executor(j, runner, _console()), plan)
    assert outcome.failed == ("p/a",)
    old = "bak-20260101120000"
    for line in runner.lines:
        assert not (("release" in line or "destroy" in line) and f"p/a@{old}" in line), line
    assert (
        f"zfs destroy p/b@{old}" in runner.lines and f"zfs destroy backup/p/b@{old}" in runner.lines
    )
