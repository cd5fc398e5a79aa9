"""Observation reads only what the selection rules may select (against the fake zfs)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any, Optional

import pytest

from executors.classic import run_classic
from executors.console import Console
from executors.options import build_parser, job_from_args
from executors.runner import Result
from executors.session import observe_hosts, prepare
from planner.compile import Options
from reconcile.model import Host
from tests.fakezfs import FakeRunner, FakeZfs


def _local_backup() -> tuple[FakeZfs, FakeRunner]:
    """src/data (selected, two children) backed up once into dst/backup on the same host,
    so the received copies carry the selection property with source `received`."""
    zfs = FakeZfs()
    for name in ("src", "src/data", "src/data/a", "src/data/b", "dst", "dst/backup"):
        zfs.create(name)
    zfs.datasets["src/data"].local_props["autobackup:bk"] = "true"
    runner = FakeRunner({None: zfs})
    zfs.now = 1_767_225_600  # 2026-01-01
    argv = ["bk", "dst/backup", "--parallel", "1"]
    rc = run_classic(job_from_args(build_parser().parse_args(argv)), False,
                     Console(out=io.StringIO(), err=io.StringIO()), runner, float(zfs.now))  # fmt: skip
    assert rc == 0
    assert "dst/backup/src/data/a" in zfs.datasets
    assert zfs.prop("dst/backup/src/data", "autobackup:bk") == ("true", "received")
    return zfs, runner


def _source_lists(runner: FakeRunner) -> list[str]:
    return [line for line in runner.history if line.startswith("zfs list") and " src/" in line]


def test_the_target_path_on_the_same_host_is_not_listed_as_a_source() -> None:
    zfs, runner = _local_backup()
    runner.history.clear()
    job = job_from_args(build_parser().parse_args(["bk", "dst/backup", "--no-snapshot"]))
    observed = prepare(job, runner, float(zfs.now + 60), Options())
    (source_list,) = _source_lists(runner)
    assert source_list.endswith("-r src/data"), source_list
    assert sorted(observed.source.datasets) == ["src/data", "src/data/a", "src/data/b"]
    # the excluded copies still have their (quiet) line in the selection
    reasons = {c.dataset: c.reason for c in observed.desired.choices}
    assert reasons["dst/backup/src/data/a"] == "path in exclude list"
    assert reasons["src/data/a"] == "inherited selection"
    assert not observed.plan.actions


def test_received_values_are_not_listed_with_exclude_received() -> None:
    """Backing up to another path: the earlier copy under dst/backup is received, so
    --exclude-received skips it (and does not read its snapshots); without the flag it
    is selected and read."""
    zfs, runner = _local_backup()
    zfs.create("dst/other")
    for flags, expected in (
        (["--exclude-received"], "-r src/data"),
        ([], "-r dst/backup/src/data src/data"),
    ):
        runner.history.clear()
        job = job_from_args(build_parser().parse_args(["bk", "dst/other", "--no-snapshot", *flags]))
        prepare(job, runner, float(zfs.now + 60), Options())
        (source_list,) = _source_lists(runner)
        assert source_list.endswith(expected), (flags, source_list)


class MeetingRunner(FakeRunner):
    """The source's `zfs get` and the target's `zfs list` wait for each other (when
    `meet`), so a run gets past them only by reading both hosts at once."""

    def __init__(self, hosts: dict[Optional[str], FakeZfs], meet: bool) -> None:
        super().__init__(hosts)
        self.barrier = threading.Barrier(2, timeout=5) if meet else None
        self.order: list[str] = []

    def run(self, host: Host, argv: Sequence[str], **kwargs: Any) -> Result:
        line = " ".join(argv)
        if line.startswith("zfs get") or line.endswith("-r dst/backup"):
            self.order.append(argv[1])
            if self.barrier is not None:
                self.barrier.wait()
        return super().run(host, argv, **kwargs)


@pytest.mark.parametrize("together", [True, False])
def test_source_and_target_are_read_at_the_same_time_unless_one_at_a_time(
    together: bool,
) -> None:
    zfs, _ = _local_backup()
    runner = MeetingRunner({None: zfs}, meet=together)
    job = job_from_args(build_parser().parse_args(["bk", "dst/backup", "--no-snapshot"]))
    source, target = observe_hosts(job, runner, together=together)
    assert target is not None and "dst/backup/src/data/a" in target.datasets
    assert "src/data/a" in source.datasets
    assert sorted(runner.order) == ["get", "list"]
    if not together:  # --parallel 1, --debug: in order
        assert runner.order == ["get", "list"]
