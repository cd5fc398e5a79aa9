"""This tool against zfs-autobackup 3.3 and bzfs 1.25, side by side in the same guests.

    .venv/bin/python -m bench.peers [--datasets 100] [--snapshots 10] [--pull]
        [--bzfs-wheel bzfs-1.25.0-py3-none-any.whl] [--first-run-by-ours LABEL] [--bare]

For each tool, on fresh pools: N datasets with K snapshots named as the tools expect
(`bench-%Y%m%d%H%M%S`), then three runs with `--no-snapshot` and the default schedules:
  1. a first full backup,
  2. an incremental run after one new snapshot per dataset,
  3. a run where nothing changed.
Local mode: source and target pools in one guest. `--pull`: the sources live on a
second guest and each tool pulls them over ssh. Each run is measured as wall time and
as the number of zfs processes (a shim first in PATH logs each one, on both guests) and
ssh processes (a shim on the guest the tool runs on) it started. Prints a markdown table;
compare ratios, not absolute times: the guests are emulated.

bzfs runs when its wheel is given (`pip download --no-deps bzfs==1.25.0`): it replicates
the same tree with `bzfs SRC DST --recursive` (it takes no snapshots, places no holds and
thins nothing by default, so it does less work than the other two).

`--bare` adds the floor every tool stands on, in local mode: no tool at all, only what
runs 2 and 3 cannot do without. Its run 2 lists the source's filesystems and sends each
one's new snapshot with `zfs send -L -e -p -i @PREVIOUS DS@NEW | zfs recv -u -s` (the
flags this tool uses), 4 at a time as this tool's default `--parallel`; its run 3 reads
both sides' snapshots once (`zfs list -t snapshot -r`). Its run 1 is done by this tool.
A peer whose run 2 takes less than ten times the floor's cannot be beaten tenfold by any
tool that sends one stream per dataset.

`--first-run-by-ours LABEL`: for a slow peer, run 1 is done by this tool instead (not
measured) and the peer continues from there (both use the same names and hold tag);
used for zfs-autobackup 3.3, whose first run sends every snapshot one by one.

`--shared-first-run` (for N = 1,000, where building the tree and run 1 take the longest):
the tree is built and run 1 done once, by this tool; then `zpool checkpoint` marks both
pools, and every tool (this one too) runs 2 and 3 from that same state: before each
tool both pools are exported and imported again (rewound to the checkpoint, which is then
taken again; the target without mounting its received datasets, as after a receive), so
each starts with nothing cached. `--peer-runs 2` leaves out the peers' run 3 (in
either mode).

At N = 1,000 the test guest's defaults (1.5 GiB, ARC capped at 256 MiB) are too small: a
thousand mounted datasets pin about 0.8 GiB of ARC metadata, the ARC stays over its cap
and `arc_prune`/`arc_evict` take the CPUs (sends slowed tenfold). Give the guests more
(`ZFSVM_MEMORY=8192` in the environment) and raise the cap with `--arc-max-mib 5120`.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Optional

from tests.oracle import oracle_path
from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import PEER, Guest, guest_pair
from tests.zfsvm.image import ensure_image

ZFS_SHIM = """#!/bin/sh
echo "$*" >> /var/tmp/zfs-calls.log
exec /usr/sbin/zfs "$@"
"""
SSH_SHIM = """#!/bin/sh
echo "$*" >> /var/tmp/ssh-calls.log
exec /usr/bin/ssh "$@"
"""
OURS = "zfs-reconcile"
#: label -> command template ({src}: source dataset spec for the tool, {d}: target pool,
#: {pool}: source pool; bzfs's target is where zfs-autobackup puts the same tree, so that
#: with --shared-first-run it continues from this tool's first run)
TOOLS = {
    OURS: "zfs-autobackup {ssh} bench {d} --no-snapshot",
    # (the listing cache off: what it saves, side by side)
    f"{OURS} --no-cache": "zfs-autobackup {ssh} bench {d} --no-snapshot --no-cache",
    "zfs-autobackup 3.3": "zfs-autobackup-3.3 {ssh} bench {d} --no-snapshot",
}
BZFS = "bzfs {src}/bench {d}/{pool}/bench --recursive"
BZFS_WRAPPER = """#!/bin/sh
PYTHONPATH=/opt/bzfs exec python3 -m bzfs_main.bzfs "$@"
"""
BARE = "bare send/recv (the floor)"
RUNS = ["1 first full backup", "2 incremental (1 new snapshot each)", "3 nothing changed"]


def install_bzfs(bed: ZfsBed, wheel: Path) -> None:
    """A wheel is a zip of the package: unpacked in the guest, run with its python3."""
    buf = io.BytesIO()
    with zipfile.ZipFile(wheel) as zf, tarfile.open(fileobj=buf, mode="w") as tar:
        for info in zf.infolist():
            if info.filename.startswith("bzfs_main/") and not info.is_dir():
                data = zf.read(info)
                member = tarfile.TarInfo(info.filename)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    bed.guest.put_tree(buf.getvalue(), "/opt/bzfs")
    bed.run("cat > /usr/local/bin/bzfs && chmod +x /usr/local/bin/bzfs", input=BZFS_WRAPPER)


def stamp(n: int) -> str:
    return f"2026-01-01 {n // 60:02d}:{n % 60:02d}:00"


def name(n: int) -> str:
    return f"bench-20260101{n // 60:02d}{n % 60:02d}00"


Measure = tuple[float, int, int]


def measure(runner: ZfsBed, beds: list[ZfsBed], command: str) -> Measure:
    """(seconds, zfs processes on every guest, ssh processes where the tool runs)."""
    for bed in beds:
        bed.run(": > /var/tmp/zfs-calls.log; : > /var/tmp/ssh-calls.log")
    started = time.monotonic()
    out = runner.run(command, check=False, timeout=6 * 3600)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed: {command}\n{out.stdout}\n{out.stderr}")
    zfs = sum(int(b.run("wc -l < /var/tmp/zfs-calls.log").stdout.strip()) for b in beds)
    ssh = int(runner.run("wc -l < /var/tmp/ssh-calls.log").stdout.strip())
    return seconds, zfs, ssh


def build_tree(bed: ZfsBed, pool: str, n: int, k: int) -> None:
    """N datasets under POOL/bench, selected, with K recursive snapshots."""
    bed.run(
        f"/usr/sbin/zfs create {pool}/bench && "
        f"/usr/sbin/zfs set autobackup:bench=true {pool}/bench && "
        f"seq {n} | xargs -P 4 -I @ /usr/sbin/zfs create {pool}/bench/ds@",
        timeout=3 * 3600,
    )
    for i in range(k):
        snapshot_tree(bed, pool, i)


def snapshot_tree(bed: ZfsBed, pool: str, i: int) -> None:
    bed.run(f"/usr/sbin/zfs snapshot -r {pool}/bench@{name(i)}")


def probe(bed: ZfsBed, dst: str, src: str) -> str:
    """The snapshots of one replica (of ds1), to check that a rewind brought them back."""
    return bed.run(f"zfs list -H -o name -t snapshot {dst}/{src}/bench/ds1").stdout


def reimport_all(src: tuple[ZfsBed, str], dst: tuple[ZfsBed, str], rewind: bool) -> None:
    """Export and import both pools (so nothing stays cached), rewound to their checkpoint
    if asked (then checkpointed again), and trim them. The source mounts everything as when
    it was built; on the target only what was mounted before (received datasets stay
    unmounted)."""
    (sbed, s), (dbed, d) = src, dst
    mounted = dbed.run(f"zfs list -H -o name,mounted -t filesystem -r {d}").stdout
    remount = [line.split("\t")[0] for line in mounted.splitlines() if line.endswith("\tyes")]
    for bed, pool, mount in ((sbed, s, True), (dbed, d, False)):
        bed.reimport(pool, rewind=rewind, mount=mount)
        # a pool's file only grows (ZFS writes anew what it changes): at N = 1,000 the target's
        # 4 GiB file filled the guest's disk within two tools' runs unless freed space is trimmed
        checkpoint = f"zpool checkpoint {pool} && " if rewind else ""
        bed.run(f"{checkpoint}zpool trim -w {pool}", timeout=3600)
    if remount:
        dbed.run(" && ".join(f"zfs mount {ds}" for ds in remount))


def send_each(s: str, into: str, base: str, new: str, parallel: int, flags: str = "") -> str:
    """Shell line: each filesystem S/bench/X sends NEW from BASE (`zfs send FLAGS -i`) into
    INTO/bench/X (`zfs recv -u -s`), PARALLEL at a time."""
    each = f"zfs send {flags}{' ' if flags else ''}-i @{base} {s}/%@{new} | zfs recv -u -s {into}/%"
    names = f"zfs list -H -o name -r {s}/bench | sed 's|^{s}/||'"
    return f"{names} | xargs -P {parallel} -I % sh -c '{each}'"


def bare_lines(s: str, d: str, k: int) -> list[str]:
    """Runs 2 and 3 of the floor (see the module's text), source pool S, target pool D."""
    return [
        send_each(s, f"{d}/{s}", name(k - 1), name(k), 4, flags="-L -e -p"),
        f"zfs list -H -p -t snapshot -r -o name,guid,createtxg {s}/bench >/dev/null && "
        f"zfs list -H -p -t snapshot -r -o name,guid,createtxg {d}/{s}/bench >/dev/null",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--pull", action="store_true", help="pull over ssh from a second guest")
    parser.add_argument("--bzfs-wheel", type=Path, help="also run bzfs from this wheel")
    parser.add_argument("--only", action="append", help="run only these tools (labels)")
    parser.add_argument("--first-run-by-ours", action="append", default=[], metavar="LABEL")
    parser.add_argument("--shared-first-run", action="store_true")
    parser.add_argument("--peer-runs", type=int, choices=(2, 3), default=3, metavar="{2,3}")
    parser.add_argument("--arc-max-mib", type=int, help="raise the guests' zfs_arc_max")
    parser.add_argument("--bare", action="store_true", help="also measure the floor (local)")
    args = parser.parse_args()
    if args.bare and args.pull:
        parser.error("--bare measures the local floor only; leave out --pull or --bare")
    n, k = args.datasets, args.snapshots
    tools = {OURS: TOOLS[OURS]}
    if args.bzfs_wheel:
        tools["bzfs 1.25"] = BZFS
    tools.update(TOOLS)  # zfs-autobackup 3.3 last: the slowest
    if args.only:
        tools = {label: cmd for label, cmd in tools.items() if label in args.only}
    if args.bare:
        tools[BARE] = ""  # its lines come from bare_lines, whatever --only says
    if "zfs-autobackup 3.3" in tools and not (oracle_path() / "zfs_autobackup").is_dir():
        raise SystemExit(
            f"zfs-autobackup 3.3 is not installed in {oracle_path()} (tests/run installs it; "
            "ZFS_AUTOBACKUP_33=DIR names another folder), or leave it out with --only"
        )
    image = ensure_image()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    guests = guest_pair(image, workdir) if args.pull else [Guest(image, workdir)]
    results: dict[str, list[Optional[Measure]]] = {}
    try:
        for guest in guests:
            guest.boot()
        beds = [ZfsBed(g) for g in guests]
        if args.arc_max_mib:
            for bed in beds:
                bed.run(f"echo {args.arc_max_mib << 20} > /sys/module/zfs/parameters/zfs_arc_max")
        here, there = beds[0], beds[-1]
        here.install_tool()
        for bed in beds:
            bed.run("cat > /usr/local/sbin/zfs && chmod +x /usr/local/sbin/zfs", input=ZFS_SHIM)
        here.run("cat > /usr/local/bin/ssh && chmod +x /usr/local/bin/ssh", input=SSH_SHIM)
        if args.bzfs_wheel:
            install_bzfs(here, args.bzfs_wheel)

        def new_pools() -> tuple[Pools, Pools]:
            dst_pools = here.create_pools(("dst",), size="4G")
            src_pools = there.create_pools(("src",), size="4G")
            build_tree(there, src_pools.names[0], n, k)
            return dst_pools, src_pools

        # (received selection values on the target must not select it as a source)
        ssh = f"--ssh-source {PEER} --exclude-received" if args.pull else "--exclude-received"

        def command_line(template: str, d: str, s: str) -> str:
            src = f"{PEER}:{s}" if args.pull else s
            return "faketime -f '{}' " + template.format(src=src, d=d, pool=s, ssh=ssh)

        def later_runs(label: str, line: str, d: str, s: str) -> None:
            """Runs 2 and 3 (the peers' run 3 only if asked)."""
            for step in range(1, 3 if label == OURS else args.peer_runs):
                if label == BARE:
                    line = bare_lines(s, d, k)[step - 1]
                results[label].append(measure(here, beds, line.format(stamp(k + step))))
                print(f"# {label}: {results[label][-1]}", flush=True)

        if args.shared_first_run:
            dst_pools, src_pools = new_pools()
            (d,), (s,) = dst_pools.names, src_pools.names
            done = measure(here, beds, command_line(TOOLS[OURS], d, s).format(stamp(k)))
            print(f"# {OURS} (run 1, shared): {done}", flush=True)
            snapshot_tree(there, s, k)
            here.run(f"zpool checkpoint {d}")
            there.run(f"zpool checkpoint {s}")
            marked = probe(here, d, s)
            for i, label in enumerate(tools):
                results[label] = [done if label == OURS else None]
                reimport_all((there, s), (here, d), rewind=i > 0)
                if probe(here, d, s) != marked:
                    raise SystemExit(f"the target is not back at its checkpoint before {label}")
                later_runs(label, command_line(tools[label], d, s), d, s)
            here.destroy_pools(dst_pools)
            there.destroy_pools(src_pools)
        else:
            for label in tools:
                dst_pools, src_pools = new_pools()
                (d,), (s,) = dst_pools.names, src_pools.names
                line = command_line(tools[label], d, s)
                if label in args.first_run_by_ours or label == BARE:
                    first = command_line(TOOLS[OURS], d, s)
                    here.run(first.format(stamp(k)), timeout=6 * 3600)
                    results[label] = [None]
                else:
                    results[label] = [measure(here, beds, line.format(stamp(k)))]
                print(f"# {label}: {results[label][-1]}", flush=True)
                snapshot_tree(there, s, k)
                later_runs(label, line, d, s)
                here.destroy_pools(dst_pools)
                there.destroy_pools(src_pools)
    finally:
        for guest in guests:
            guest.stop()
    report(results, n, k, "pull over ssh from a second guest" if args.pull else "local")


def report(results: dict[str, list[Optional[Measure]]], n: int, k: int, mode: str) -> None:
    print(
        f"| {n} datasets, {k} snapshots, {mode} | run | seconds | zfs processes | ssh processes |"
    )
    print("|---|---|---|---|---|")
    for label, rows in results.items():
        for run_name, row in zip(RUNS, rows):
            if row is None:
                print(f"| {label} | {run_name} | (done by {OURS}) | | |")
            else:
                print(f"| {label} | {run_name} | {row[0]:.1f} | {row[1]} | {row[2]} |")
    ours = results.get(OURS)
    for label, theirs in results.items():
        if ours is None or label == OURS:
            continue
        for run_name, a, b in zip(RUNS, ours, theirs):
            if a is None or b is None:
                continue
            print(
                f"| ratio {label} / ours | {run_name} | {b[0] / a[0]:.1f}x "
                f"| {b[1] / max(a[1], 1):.1f}x | |"
            )


if __name__ == "__main__":
    main()
