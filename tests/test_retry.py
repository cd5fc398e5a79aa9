"""Transfers over a flaky link (#31), against the fake zfs: a transfer whose ssh link
broke is repeated in the same run, from its resume token; the failure reported is the
process that failed first; a refusal by zfs is never repeated. (On real OpenZFS, with a
stream cut mid-flight: tests/test_zfs_faults.py.)"""

from __future__ import annotations

import io
from typing import Optional

import pytest

from executors.classic import run_classic
from executors.console import Console
from executors.execute import Settings
from executors.options import build_parser, job_from_args
from tests.fakezfs import FakeRunner, FakeZfs

START = 1_767_225_600  # 2026-01-01 00:00 UTC
DATA = "src/data"
TARGET = "dst/src/data"
RESET = "ssh to src failed: Read from remote host src: Connection reset by peer"


def _world(remote: str = "source") -> tuple[FakeZfs, FakeZfs, FakeRunner]:
    """A pull (the source reached as `src` over ssh) or a push (the target as `dst`)."""
    target = FakeZfs()
    source = FakeZfs(tokens=target.tokens)
    for name in ("src", DATA):
        source.create(name)
    source.datasets[DATA].local_props["autobackup:bk"] = "true"
    target.create("dst")
    source.now = target.now = START
    hosts: dict[Optional[str], FakeZfs] = (
        {"src": source, None: target} if remote == "source" else {None: source, "dst": target}
    )
    return source, target, FakeRunner(hosts)


def _run(runner: FakeRunner, *args: str, remote: str = "source") -> tuple[int, str, list[float]]:
    """One classic run; (exit code, log, the waits it asked for)."""
    ssh = ["--ssh-source", "src"] if remote == "source" else ["--ssh-target", "dst"]
    job = job_from_args(build_parser().parse_args(["bk", "dst", *ssh, *args]))
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err, verbose=True, color=False)
    waits: list[float] = []
    settings = Settings(sleep=waits.append)
    rc = run_classic(job, False, console, runner, float(START), settings=settings)
    return rc, out.getvalue() + err.getvalue(), waits


def _arrived(source: FakeZfs, target: FakeZfs) -> bool:
    """The target has the source's snapshots (same guids) and no resume token."""
    ds = target.datasets.get(TARGET)
    guids = [s.guid for s in source.datasets[DATA].snaps]
    return ds is not None and ds.token is None and [s.guid for s in ds.snaps] == guids


def test_a_broken_link_is_retried_from_the_resume_token() -> None:
    source, target, runner = _world()
    runner.cut_links = 1
    rc, log, waits = _run(runner)
    assert rc == 0, log
    assert _arrived(source, target)
    assert waits == [10.0]
    snap = source.datasets[DATA].snaps[-1].name
    assert (
        f"[Target] {TARGET}@{snap}: transfer failed ({RESET}); retrying in 10 s (retry 1 of 3)"
    ) in log
    assert f"[Target] {TARGET}@{snap}: resuming from the resume token (retry 1 of 3)" in log
    # the token is read once, then the transfer resumes from it (zfs send -t)
    reads = [h for h in runner.history if "receive_resume_token" in h and "get" in h]
    assert reads == [f"zfs get -H -p -o value receive_resume_token {TARGET}"]
    sends = [h for h in runner.history if "zfs send" in h and "recv" in h]
    assert len(sends) == 2 and " -t 1-fake-" in sends[1] and " -t " not in sends[0]
    assert "recv -u -s" in sends[1]


def test_a_push_whose_link_broke_is_retried_and_blames_ssh_not_the_broken_pipe() -> None:
    source, target, runner = _world(remote="target")
    runner.cut_links = 1
    rc, log, waits = _run(runner, remote="target")
    assert rc == 0, log
    assert _arrived(source, target)
    assert waits == [10.0]
    assert "transfer failed (ssh to dst failed: Read from remote host dst: Connection reset" in log
    assert "Broken pipe" not in log


def test_the_cause_reported_is_the_process_that_failed_first() -> None:
    # (before #31: the pull was reported as zfs recv's "checksum mismatch or incomplete
    # stream", the victim of the broken link)
    _, _, runner = _world()
    runner.cut_links = 1
    rc, log, waits = _run(runner, "--retries=0")
    assert rc == 1, log
    failed = [line for line in log.split("\n") if "FAILED" in line]
    assert failed == [f"! [Target] {TARGET}: FAILED: {RESET}"], log
    assert "checksum mismatch" not in log
    assert waits == []


def test_a_refusal_by_zfs_is_not_retried() -> None:
    _, _, runner = _world()
    runner.refusals = ["cannot receive new filesystem stream: out of space"]
    rc, log, waits = _run(runner)
    assert rc == 1, log
    assert waits == [] and "retrying" not in log
    assert f"! [Target] {TARGET}: FAILED: Command failed: cannot receive new filesystem stream: out of space" in log  # fmt: skip
    sends = [h for h in runner.history if "zfs send" in h and "recv" in h]
    assert len(sends) == 1
    assert not any("receive_resume_token" in h and "get" in h for h in runner.history)


def test_a_damaged_stream_with_no_broken_link_is_not_retried() -> None:
    _, target, runner = _world()
    target.interrupt_next = 1  # zfs recv: "checksum mismatch or incomplete stream", alone
    rc, log, waits = _run(runner)
    assert rc == 1, log
    assert waits == [] and "retrying" not in log
    assert "checksum mismatch or incomplete stream" in log


def test_retries_0_disables_them() -> None:
    source, target, runner = _world()
    runner.cut_links = 1
    rc, log, waits = _run(runner, "--retries", "0")
    assert rc == 1, log
    assert waits == [] and "retrying" not in log
    assert target.datasets[TARGET].token is not None  # (the next run resumes it)
    rc, log, _ = _run(runner)
    assert rc == 0, log
    assert _arrived(source, target)


def test_the_wait_doubles_each_retry_and_the_last_failure_counts() -> None:
    source, target, runner = _world()
    runner.cut_links = 3
    rc, log, waits = _run(runner, "--retries=3", "--retry-delay=2.5")
    assert rc == 0, log
    assert waits == [2.5, 5.0, 10.0]
    assert "retrying in 10 s (retry 3 of 3)" in log
    assert _arrived(source, target)

    source, target, runner = _world()
    runner.cut_links = 4
    rc, log, waits = _run(runner, "--retries=2", "--retry-delay=1")
    assert rc == 1, log
    assert waits == [1.0, 2.0]
    assert f"! [Target] {TARGET}: FAILED: {RESET} (after 2 retries)" in log


def test_a_link_down_before_any_data_sends_again_from_the_start() -> None:
    source, target, runner = _world()
    runner.links_down = 1
    rc, log, waits = _run(runner)
    assert rc == 0, log
    assert waits == [10.0]
    assert "transfer failed (ssh to src failed: ssh: connect to host src port 22: " in log
    assert "sending again from the start (retry 1 of 3: no resume token, nothing arrived)" in log
    sends = [h for h in runner.history if "zfs send" in h and "recv" in h]
    assert len(sends) == 2 and sends[0] == sends[1]
    assert _arrived(source, target)


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--retries", "-1", "a whole number from 0 to 20"),
        ("--retries", "many", "a whole number from 0 to 20"),
        ("--retries", "1.5", "a whole number from 0 to 20"),
        ("--retry-delay", "-3", "a number of seconds from 0 to 3600"),
        ("--retry-delay", "soon", "a number of seconds from 0 to 3600"),
        ("--retry-delay", "nan", "a number of seconds from 0 to 3600"),
    ],
)
def test_bad_retry_values_are_refused_naming_them(option: str, value: str, allowed: str) -> None:
    from reconcile.errors import UsageError

    with pytest.raises(UsageError) as caught:
        build_parser().parse_args(["bk", "dst", f"{option}={value}"])
    assert f"invalid value '{value}' for {option}: {allowed} is allowed" in str(caught.value)


def test_the_options_reach_the_job() -> None:
    job = job_from_args(build_parser().parse_args(["bk", "dst"]))
    assert (job.transfer.retries, job.transfer.retry_delay) == (3, 10.0)
    job = job_from_args(build_parser().parse_args(["bk", "dst", "--retries=0", "--retry-delay=0.5"]))  # fmt: skip
    assert (job.transfer.retries, job.transfer.retry_delay) == (0, 0.5)


def test_a_cut_stream_of_several_snapshots_resumes_the_cut_one_then_sends_the_rest() -> None:
    """A `zfs send -I` stream's token resumes only the snapshot that was cut (real ZFS,
    and the fake): the retry resumes it, then sends the rest of the stream after it."""
    source, target, runner = _world()
    assert _run(runner)[0] == 0  # the first backup
    for name in ("bk-20260102000000", "bk-20260103000000", "bk-20260104000000"):
        source.command(["zfs", "snapshot", f"{DATA}@{name}"])
        source.write(DATA)
    runner.history.clear()
    runner.cut_links = 1
    rc, log, waits = _run(runner, "--no-snapshot")
    assert rc == 0, log
    assert waits == [10.0]
    assert _arrived(source, target)
    sends = [h.partition(" | ")[0] for h in runner.history if "zfs send" in h and "recv" in h]
    assert f"-I @bk-20260101000000 {DATA}@bk-20260104000000" in sends[0], sends
    assert " -t 1-fake-" in sends[1], sends
    assert f"-I @bk-20260102000000 {DATA}@bk-20260104000000" in sends[2], sends
    assert len(sends) == 3, sends
    assert (
        "resuming bk-20260102000000 from the resume token, then the rest of the stream "
        "after bk-20260102000000 (retry 1 of 3)"
    ) in log
    assert [h for h in runner.history if "zfs send -nv -t 1-fake-" in h], runner.history
