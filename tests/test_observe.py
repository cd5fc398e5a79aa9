"""Observation reads only what the selection rules may select (against the fake zfs)."""

from __future__ import annotations

import io

from executors.classic import observe_and_plan, run_classic
from executors.console import Console
from executors.options import build_parser, job_from_args
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
    observed = observe_and_plan(job, runner, float(zfs.now + 60))
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
        observe_and_plan(job, runner, float(zfs.now + 60))
        (source_list,) = _source_lists(runner)
        assert source_list.endswith(expected), (flags, source_list)
