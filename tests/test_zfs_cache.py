"""The listing cache on real OpenZFS (#36): what it serves, and that what changed behind
the tool's back is seen, whatever the local clock says. The tool's view of both hosts is
the `assumptions` of `plan --json` (every selected source dataset's and every target
dataset's snapshots, by name and guid): with the cache it must be the view without it."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from executors.listing_store import cache_path
from executors.options import build_parser, job_from_args
from tests.zfsvm.bed import GUEST_PREFIX, Pools, ZfsBed

pytestmark = pytest.mark.zfs
NAME = "cch"
#: where the tool run as root in the guest keeps its listing cache
GUEST_CACHE = "/root/.cache/zfs-autobackup"


def stamp(day: int, hour: int = 12) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def _plan(bed: ZfsBed, d: str, now: str, *extra: str) -> dict[str, object]:
    run = bed.tool("plan", NAME, d, "--json", *extra, now=now)
    assert run.stdout.startswith("{"), run.stdout + run.stderr  # (exit 1: a problem planned)
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def _view(plan: dict[str, object]) -> dict[tuple[str, str], dict[str, int]]:
    """What the tool saw: (side, dataset) -> {snapshot: guid}."""
    prints = plan["assumptions"]["datasets"]  # type: ignore[index]
    return {(p["side"], p["name"]): p["snapshots"] for p in prints}


def _served(bed: ZfsBed, d: str, now: str, *extra: str) -> dict[str, set[str]]:
    """`--test --debug`: per side, the datasets the cache served."""
    run = bed.tool(NAME, d, "--test", "--debug", *extra, now=now)
    assert "Served from the listing cache" in run.stdout, run.stdout + run.stderr
    served: dict[str, set[str]] = {"Source": set(), "Target": set()}
    for side, names in re.findall(
        r"# \[(\w+)\] Served from the listing cache \(\d+\): (.*)", run.stdout
    ):
        served[side] = set(names.split(", "))
    return served


def _cache_file(d: str) -> str:
    job = job_from_args(build_parser().parse_args([NAME, d]))
    return f"{GUEST_CACHE}/{cache_path(job).name}"


def _guest_time(bed: ZfsBed, shift: str) -> str:
    return bed.run(f"date -u -d '{shift}' +'%Y-%m-%d %H:%M:%S'").stdout.strip()


def test_the_cache_serves_what_did_not_change_and_sees_what_did(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(
        f"zfs create {s}/a && zfs create {s}/b && zfs create {s}/c && "
        f"zfs create -V 8M {s}/v && zfs set autobackup:{NAME}=true {s}"
    )
    assert zfs_bed.tool(NAME, d, now=stamp(1)).returncode == 0
    assert zfs_bed.tool(NAME, d, "--allow-empty", now=stamp(1, 13)).returncode == 0
    zfs_bed.run("sleep 2")  # (a read two seconds after the last change: trusted)
    before = _view(_plan(zfs_bed, d, stamp(1, 14)))

    # behind the tool's back: a snapshot made, one of ours destroyed on the target, and
    # a target volume destroyed and made again with the same snapshot name (a new guid)
    ours = sorted(n for n in before[("target", f"{d}/{s}/c")] if n.startswith(NAME))
    vol = before[("target", f"{d}/{s}/v")]
    zfs_bed.run(
        f"zfs snapshot {s}/b@manual && zfs destroy {d}/{s}/c@{ours[0]} && "
        f"zfs release -r zfs_autobackup:{NAME} {d}/{s}/v@{max(vol)} && "
        f"zfs destroy -r {d}/{s}/v && zfs create -V 8M {d}/{s}/v && "
        f"zfs snapshot {d}/{s}/v@{max(vol)}"
    )
    served = _served(zfs_bed, d, stamp(1, 14))
    assert served["Source"] == {s, f"{s}/a", f"{s}/c", f"{s}/v"}, served
    assert {f"{d}/{s}", f"{d}/{s}/a", f"{d}/{s}/b"} <= served["Target"], served
    assert not {f"{d}/{s}/c", f"{d}/{s}/v"} & served["Target"], served

    cached = _plan(zfs_bed, d, stamp(1, 14))
    assert cached == _plan(zfs_bed, d, stamp(1, 14), "--no-cache")
    view = _view(cached)
    assert "manual" in view[("source", f"{s}/b")]
    assert ours[0] not in view[("target", f"{d}/{s}/c")]
    assert view[("target", f"{d}/{s}/v")][max(vol)] != vol[max(vol)]

    # the local clock an hour ahead of the host, then an hour behind: a stale entry
    # never looks fresh (the host's own clock decides, never this one)
    for shift, dataset in (("+1 hour", "a"), ("-1 hour", "c")):
        zfs_bed.run(f"sleep 2 && zfs snapshot {s}/{dataset}@later")
        when = _guest_time(zfs_bed, shift)
        cached = _plan(zfs_bed, d, when)
        assert "later" in _view(cached)[("source", f"{s}/{dataset}")], shift
        assert cached == _plan(zfs_bed, d, when, "--no-cache"), shift

    # a cache file that is not the tool's: a warning, everything read, nothing else
    zfs_bed.run(f'printf \'{{"format": 1, "entries": [7]}}\' > {_cache_file(d)}')
    run = zfs_bed.tool(NAME, d, "--test", "--debug", now=stamp(1, 14))
    assert "can't be used" in run.stdout and "reading every snapshot" in run.stdout
    assert "Served from the listing cache" not in run.stdout
    assert json.loads(zfs_bed.run(f"cat {_cache_file(d)}").stdout)["format"] == 1


#: in the guest, with the tool's own code: someone snapshots, the tool reads the dataset
#: (and keeps what it read, as a run does), someone snapshots again right after the
#: listing, all in one second of the host: tried until the second holds all three (the
#: new snapshots_changed is the one the entry holds); prints the last snapshot's name
SAME_SECOND = textwrap.dedent(
    """
    import subprocess, sys, time
    from executors.listing_store import Store, cache_path
    from executors.options import build_parser, job_from_args
    from executors.runner import LocalRunner
    from reconcile.listing_cache import Cache
    from reconcile.model import Host
    from reconcile.observe import observe_tree

    name, target, dataset = sys.argv[1:]
    job = job_from_args(build_parser().parse_args([name, target]))

    def changed():
        argv = ["zfs", "get", "-Hp", "-o", "value", "snapshots_changed", dataset]
        return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)

    class Someone(LocalRunner):
        def run(self, host, argv, **kw):
            result = super().run(host, argv, **kw)
            if argv[:2] == ["zfs", "list"] and self.after:
                subprocess.run(["zfs", "snapshot", self.after], check=True)
                self.after = None
            return result

    for attempt in range(30):
        while time.time() % 1 > 0.02:
            time.sleep(0.005)
        subprocess.run(["zfs", "snapshot", f"{dataset}@before{attempt}"], check=True)
        reader = Someone()
        reader.after = f"{dataset}@after{attempt}"
        state = observe_tree(reader, Host(), dataset, "[Source]", cache=Cache())
        entry = state.entries[0]
        if entry.changed == changed() and f"after{attempt}" not in [s.name for s in entry.snapshots]:
            store = Store.load(cache_path(job), print, print)
            store.seen("[Source]", state)
            store.save()
            print(f"after{attempt}")
            break
    else:
        sys.exit("no attempt fit in one second")
    """
)


def test_a_snapshot_made_in_the_same_second_as_the_read_is_seen(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run(f"zfs create {s}/a && zfs create {s}/b && zfs set autobackup:{NAME}=true {s}")
    assert zfs_bed.tool(NAME, d, now=stamp(1)).returncode == 0
    run = zfs_bed.guest.run_argv(
        ["env", f"PYTHONPATH={GUEST_PREFIX}", "python3", "-c", SAME_SECOND, NAME, d, f"{s}/b"],
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    after = run.stdout.split()[-1]
    # the cache holds {s}/b as read before `after`, with snapshots_changed as it is now:
    # only the rule that the read must be a second later than the change stops it
    cached = _plan(zfs_bed, d, stamp(1, 13))
    assert after in _view(cached)[("source", f"{s}/b")]
    assert cached == _plan(zfs_bed, d, stamp(1, 13), "--no-cache")
