"""Differential tests: the same stories through zfs-autobackup 3.3 and this tool, on real
ZFS, compared after every run (tests/zfsvm/differ.py).

- zfs-autobackup 3.3's own regression scenarios (its tests/, replayed through the
  command line with the same steps and times), each compared run by run;
- random stories (DIFF_STORIES of them, default 2; DIFF_SEED picks the first seed,
  DIFF_RUNS the runs per story, default 3). A longer run is one command:
  `DIFF_STORIES=40 tests/run -k differential` (docs/testing.md).

Every divergence found is fixed or listed in docs/migration.md as a deliberate
difference; the stories here avoid the deliberate ones (each has its own test).
"""

from __future__ import annotations

import calendar
import os
import time
from typing import Any

import pytest

from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.differ import PROP, SETUP, RandomStory, Report, Step, fixed, play, worlds_for

pytestmark = pytest.mark.zfs


def at(stamp: str) -> int:
    """'20101111000000' (3.3's mocktime) -> seconds since the epoch (UTC)."""
    return calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%S"))


def run(stamp: str, *args: str) -> Step:
    return Step("run", args=args, now=at(stamp))


def do(what: str, *lines: str) -> Step:
    return Step(what, lines)


SETUP_STEP = do("3.3's test tree", *SETUP)
#: write into a received filesystem (3.3's tests `touch` into the mounted target)
TOUCH = (
    '[ "$(zfs get -H -o value mounted {T}/{S1}/fs1)" = yes ] || zfs mount {T}/{S1}/fs1; '
    'touch "$(zfs get -H -o value mountpoint {T}/{S1}/fs1)/change.txt"; zpool sync {T}'
)
#: an interrupted transfer: 3 MiB new on fs1, and every stream cut after 1 MB
BIG = 'dd if=/dev/urandom of="$(zfs get -H -o value mountpoint {S1}/fs1)/big" bs=1M count=3 status=none; zpool sync {S1}'
CUT = ("--send-pipe", "head -c 1000000")

SCENARIOS: dict[str, list[Step]] = {
    "test_defaults": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--debug"),
        run("20101111000001", "{T}", "--allow-empty"),
        run("20111211000000", "{T}", "--allow-empty", "--verbose"),
        run(
            "20111211000001",
            "{T}",
            "--allow-empty",
            "--verbose",
            "--keep-source",
            "1y1y",
            "--keep-target",
            "1d1y",
        ),
    ],
    "test_nosnapshot_nosend": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--no-snapshot"),
        run("20101111000001", "{T}", "--verbose", "--no-send"),
        run("20101111000002", "{T}", "--verbose", "--no-snapshot"),
    ],
    "test_destroyincompat": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose"),
        do(
            "compatible snapshots",
            "zfs snapshot {T}/{S1}/fs1@compatible1",
            "zfs snapshot {T}/{S1}/fs1@compatible2",
        ),
        run("20101111000001", "{T}", "--verbose", "--allow-empty"),
        do("an incompatible snapshot", TOUCH, "zfs snapshot {T}/{S1}/fs1@incompatible1"),
        run("20101111000002", "{T}", "--verbose", "--allow-empty", "--test"),
        run("20101111000002", "{T}", "--verbose", "--allow-empty"),
        run(
            "20101111000003",
            "{T}",
            "--verbose",
            "--allow-empty",
            "--destroy-incompatible",
            "--test",
        ),
        run("20101111000003", "{T}", "--verbose", "--allow-empty", "--destroy-incompatible"),
    ],
    "test_rollback": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose"),
        do("change the target", TOUCH),
        run("20101111000001", "{T}", "--verbose", "--allow-empty"),
        run("20101111000002", "{T}", "--verbose", "--allow-empty", "--rollback"),
    ],
    "test_keep0": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--keep-source=0", "--keep-target=0"),
        run("20101111000001", "--verbose", "--keep-source=0", "--keep-target=0", "--allow-empty"),
        run("20101111000002", "--verbose", "--keep-source=0", "--keep-target=0", "--allow-empty"),
        run(
            "20101111000003",
            "{T}",
            "--verbose",
            "--keep-source=0",
            "--keep-target=0",
            "--no-holds",
            "--allow-empty",
        ),
        run("20101111000004", "--verbose", "--keep-source=0", "--keep-target=0", "--allow-empty"),
    ],
    "test_force_strip_path": [
        SETUP_STEP,
        do("select the whole pool", f"zfs set {PROP}=true {{S1}}"),
        run("20101111000000", "{T}", "--verbose", "--force", "--strip-path=1"),
        run("20101111000001", "{T}", "--verbose", "--force", "--strip-path=1", "--allow-empty"),
    ],
    "test_exclude_unchanged": [
        SETUP_STEP,
        do("snapshot everything", "zfs snapshot -r {S1}@somesnapshot"),
        run("20101111000000", "{T}", "--verbose", "--allow-empty", "--exclude-unchanged=1"),
        run("20101111000001", "{T}", "--verbose", "--allow-empty", "--exclude-unchanged=1"),
    ],
    # not 3.3's: --destroy-missing destroys a mounted child, then the parent is sent to
    # (zfs removed the child's mountpoint directory from the mounted parent: a change)
    "test_destroymissing_mounted_child_then_send": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--no-holds"),
        do("deselect fs1/sub", f"zfs set {PROP}=false {{S1}}/fs1/sub"),
        run(
            "20101111000001",
            "{T}",
            "--verbose",
            "--no-holds",
            "--no-snapshot",
            "--destroy-missing",
            "0s",
        ),
        run("20101111000002", "{T}", "--verbose", "--no-holds", "--allow-empty"),
        run("20101111000003", "{T}", "--verbose", "--no-holds", "--allow-empty", "--rollback"),
    ],
    "test_destroymissing": [
        SETUP_STEP,
        run("19901111000000", "{T}", "--verbose", "--no-holds"),
        run("20101111000000", "{T}", "--verbose", "--no-holds", "--allow-empty"),
        run("20261201000000", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "0s"),
        do("deselect fs1 (its child stays)", f"zfs set {PROP}=child {{S1}}/fs1"),
        run("20261201000001", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "0s"),
        do(
            "reselect fs1, destroy its child",
            f"zfs inherit {PROP} {{S1}}/fs1",
            "zfs destroy -r {S1}/fs1/sub",
        ),
        run("20261201000002", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "100y"),
        run("20261201000003", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "1y"),
        do(
            "destroy fs1, another snapshot on its backup",
            "zfs destroy -r {S1}/fs1",
            "zfs snapshot -r {T}/{S1}/fs1@other1",
        ),
        run("20261201000004", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "0s"),
        do("destroy the other snapshot", "zfs destroy {T}/{S1}/fs1@other1"),
        run("20261201000005", "{T}", "--verbose", "--no-snapshot", "--destroy-missing", "0s"),
    ],
    "test_mount_consitency_mounted": [
        SETUP_STEP,
        do("a volume", "zfs create -V 10M {S1}/fs1/subvol"),
        run("20101111000000", "{T}", "--verbose", "--allow-empty"),
    ],
    "test_mount_consitency_unmounted": [
        SETUP_STEP,
        do("a volume", "zfs create -V 10M {S1}/fs1/subvol"),
        run("20101111000000", "{T}", "--verbose", "--allow-empty", "--clear-mountpoint"),
    ],
    "test_keepsource0target10queuedsend": [
        SETUP_STEP,
        run(
            "20101111000000",
            "{T}",
            "--verbose",
            "--keep-source=0",
            "--keep-target=10",
            "--allow-empty",
            "--no-send",
        ),
        run(
            "20101111000001",
            "{T}",
            "--verbose",
            "--keep-source=0",
            "--keep-target=10",
            "--allow-empty",
            "--no-send",
        ),
        run(
            "20101111000002",
            "{T}",
            "--verbose",
            "--keep-source=0",
            "--keep-target=10",
            "--allow-empty",
        ),
    ],
    "test_excludepaths": [
        SETUP_STEP,
        do(
            "a selected dataset next to the target path",
            "zfs create {T}/target_shouldnotbeexcluded",
            f"zfs set {PROP}=true {{T}}/target_shouldnotbeexcluded",
            "zfs create {T}/target",
        ),
        run("20101111000000", "{T}/target", "--verbose", "--allow-empty"),
    ],
    "test_invalid_common_snapshot": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--allow-empty"),
        do(
            "same name, other snapshots",
            "zfs snapshot {S1}/fs1@invalid",
            "zfs snapshot {T}/{S1}/fs1@invalid",
        ),
        run("20101111000001", "{T}", "--verbose", "--allow-empty", "--no-guid-check"),
        run("20101111000001", "{T}", "--verbose", "--no-snapshot"),
    ],
    "test_othersnapshots": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose"),
        do(
            "other snapshots",
            "zfs snapshot {S1}/fs1@othersimple",
            "zfs snapshot {S1}/fs1/sub@othersimple",
        ),
        run("20101111000001", "{T}", "--verbose", "--allow-empty"),
        run("20101111000002", "{T}", "--verbose", "--allow-empty", "--other-snapshots"),
        do("more other snapshots", "zfs snapshot -r {S1}/fs1@other2"),
        run(
            "20101111000003",
            "{T}",
            "--verbose",
            "--allow-empty",
            "--other-snapshots",
            "--keep-source=1",
            "--keep-target=1",
        ),
    ],
    "test_noholds_ignorereplicated_strippath": [
        SETUP_STEP,
        run("20101111000000", "{T}", "--verbose", "--no-holds"),
        run("20101111000001", "{T}", "--verbose", "--ignore-replicated"),
        do("a second target", "zfs create {T}/strip"),
        run("20101111000002", "{T}/strip", "--verbose", "--strip-path=1", "--allow-empty"),
    ],
    "test_resume": [
        SETUP_STEP,
        do("3 MiB new on fs1", BIG),
        run("20101111000000", "{T}", "--verbose", *CUT),
        run("20101111000000", "{T}", "--verbose", "--test"),
        run("20101111000000", "{T}", "--verbose"),
        do("3 MiB more on fs1", BIG),
        run("20101111000001", "{T}", "--verbose", *CUT),
        run("20101111000002", "{T}", "--verbose", "--no-send"),
        run("20101111000003", "{T}", "--verbose", "--no-snapshot"),
        do("3 MiB more on fs1", BIG),
        run("20101111000004", "{T}", "--verbose", *CUT),
        do("the snapshot being resumed is destroyed", "zfs destroy {S1}/fs1@dif-20101111000004"),
        run("20101111000005", "{T}", "--verbose"),
    ],
}
# 3.3's test_transfer_thinning runs a second backup name (test2) on fs1/sub only
SCENARIOS["test_transfer_thinning"] = [
    do("3.3's tree, only fs1/sub selected", *SETUP, f"zfs set {PROP}=false {{S1}}/fs1",
       f"zfs set {PROP}=true {{S1}}/fs1/sub", f"zfs set {PROP}=false {{S2}}/fs2"),
    run("20000101000000", "--allow-empty"),
    run("20010101000000", "--allow-empty"),
    do("another snapshot", "zfs snapshot {S1}/fs1/sub@other1"),
    run("20010201000000", "--allow-empty"),
    do("another snapshot", "zfs snapshot {S1}/fs1/sub@other2"),
    run("20010202000000", "--allow-empty"),
    run("20010203000000", "{T}", "--keep-source=1d10d", "--keep-target=1m10m", "--allow-empty",
        "--verbose", "--clear-mountpoint", "--other-snapshots"),
]  # fmt: skip
#: the ones CI runs (the others are marked slow: `tests/run --slow` runs every scenario).
#: None: CI compares with 3.3 through test_random_story, and runs --rollback itself in
#: test_zfs_options (test_rollback moved to --slow to keep CI under an hour)
CI_SCENARIOS: tuple[str, ...] = ()


def _pools(zfs_bed: ZfsBed) -> Pools:
    # (3.3's test pools have zfs' default mountpoints: a local one on a source pool would be
    # received with -p onto a target it lands on with --strip-path)
    return zfs_bed.create_pools(
        ("s1a", "s2a", "ta", "s1b", "s2b", "tb"), size="256M", under_mnt=False
    )


def _play(zfs_bed: ZfsBed, name: str, steps) -> Report:  # type: ignore[no-untyped-def]
    zfs_bed.tool_v33("--version")  # skips where 3.3 is not installed
    pools = _pools(zfs_bed)
    try:
        return play(zfs_bed, worlds_for(pools.names), name, steps)
    finally:
        zfs_bed.destroy_pools(pools)


def _scenarios() -> list[Any]:
    return [
        name if name in CI_SCENARIOS else pytest.param(name, marks=pytest.mark.slow)
        for name in SCENARIOS
    ]


@pytest.mark.parametrize("name", _scenarios())
def test_v33_regression_scenario(zfs_bed: ZfsBed, name: str) -> None:
    report = _play(zfs_bed, name, fixed(SCENARIOS[name]))
    print(report.text())
    assert report.runs == sum(1 for s in SCENARIOS[name] if s.args is not None)
    assert report.divergence is None, report.text()


def _seeds() -> list[Any]:
    """DIFF_STORIES random stories from DIFF_SEED on; CI runs the first, --slow all."""
    first = int(os.environ.get("DIFF_SEED", "1"))
    seeds = range(first, first + int(os.environ.get("DIFF_STORIES", "2")))
    return [s if s == first else pytest.param(s, marks=pytest.mark.slow) for s in seeds]


@pytest.mark.parametrize("seed", _seeds())
def test_random_story(zfs_bed: ZfsBed, seed: int) -> None:
    runs = int(os.environ.get("DIFF_RUNS", "3"))
    report = _play(zfs_bed, f"random-{seed}", RandomStory(seed, runs))
    print(report.text())
    assert report.divergence is None, report.text()
    assert report.runs == runs
