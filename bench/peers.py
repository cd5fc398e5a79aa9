"""This tool against zfs-autobackup 3.3, side by side in the same guest.

    .venv/bin/python -m bench.peers [--datasets 100] [--snapshots 10]

For each tool, on fresh pools in the same (emulated) guest: N datasets with K snapshots
named as both tools expect (`bench-%Y%m%d%H%M%S`), then three runs with
`--no-snapshot` and the default schedules:
  1. a first full backup,
  2. an incremental run after one new snapshot per dataset,
  3. a run where nothing changed.
Each run is measured as wall time and as the number of zfs processes started (a shim
first in PATH logs each one). Prints a markdown table; compare ratios, not absolute
times: the guest is emulated.

bzfs 1.25 runs too when its wheel is given (`--bzfs-wheel bzfs-1.25.0-py3-none-any.whl`,
from `pip download --no-deps bzfs==1.25.0`): it replicates the same tree with
`bzfs SRC DST --recursive` (it creates no snapshots and thins nothing by default, so it
does less work than the other two).
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from tests.zfsvm.bed import ZfsBed
from tests.zfsvm.guest import Guest
from tests.zfsvm.image import ensure_image

SHIM = """#!/bin/sh
echo "$*" >> /var/tmp/zfs-calls.log
exec /usr/sbin/zfs "$@"
"""
#: label -> command template ({s}: source pool, {d}: target pool)
TOOLS = {
    "zfs-reconcile": "zfs-autobackup bench {d} --no-snapshot",
    "zfs-autobackup 3.3": "zfs-autobackup-3.3 bench {d} --no-snapshot",
}
BZFS = "bzfs {s}/bench {d}/bench --recursive"
BZFS_WRAPPER = """#!/bin/sh
PYTHONPATH=/opt/bzfs exec python3 -m bzfs_main.bzfs "$@"
"""


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


def measure(bed: ZfsBed, command: str) -> tuple[float, int]:
    bed.run(": > /var/tmp/zfs-calls.log")
    started = time.monotonic()
    out = bed.run(command, check=False)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed: {command}\n{out.stdout}\n{out.stderr}")
    calls = int(bed.run("wc -l < /var/tmp/zfs-calls.log").stdout.strip())
    return seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--bzfs-wheel", type=Path, help="also run bzfs from this wheel")
    parser.add_argument("--only", action="append", help="run only these tools (labels)")
    args = parser.parse_args()
    n, k = args.datasets, args.snapshots
    tools = dict(TOOLS)
    if args.bzfs_wheel:
        tools["bzfs 1.25"] = BZFS
    if args.only:
        tools = {label: cmd for label, cmd in tools.items() if label in args.only}
    guest = Guest(ensure_image(), Path(tempfile.mkdtemp(prefix="bench-")))
    results: dict[str, list[tuple[float, int]]] = {}
    try:
        guest.boot()
        bed = ZfsBed(guest)
        bed.install_tool()
        bed.run("cat > /usr/local/sbin/zfs && chmod +x /usr/local/sbin/zfs", input=SHIM)
        if args.bzfs_wheel:
            install_bzfs(bed, args.bzfs_wheel)
        for label, command in tools.items():
            pools = bed.create_pools(size="2G")
            s, d = pools.src, pools.dst
            bed.run(
                f"zfs create {s}/bench && zfs set autobackup:bench=true {s}/bench && "
                f"for i in $(seq {n}); do /usr/sbin/zfs create {s}/bench/ds$i; done"
            )
            for i in range(k):
                bed.run(f"/usr/sbin/zfs snapshot -r {s}/bench@{name(i)}")
            run = f"faketime -f '{{}}' {command.format(s=s, d=d)}"
            results[label] = [measure(bed, run.format(stamp(k)))]
            bed.run(f"/usr/sbin/zfs snapshot -r {s}/bench@{name(k)}")
            results[label].append(measure(bed, run.format(stamp(k + 1))))
            results[label].append(measure(bed, run.format(stamp(k + 2))))
            bed.destroy_pools(pools)
    finally:
        guest.stop()
    print(f"| {n} datasets, {k} snapshots, local, same guest | run | seconds | zfs processes |")
    print("|---|---|---|---|")
    runs = ["1 first full backup", "2 incremental (1 new snapshot each)", "3 nothing changed"]
    for label, rows in results.items():
        for run_name, (seconds, calls) in zip(runs, rows):
            print(f"| {label} | {run_name} | {seconds:.1f} | {calls} |")
    ours = results.get("zfs-reconcile")
    for label, theirs in results.items():
        if ours is None or label == "zfs-reconcile":
            continue
        for run_name, (a, b) in zip(runs, zip(ours, theirs)):
            print(
                f"| ratio {label} / ours | {run_name} | {b[0] / a[0]:.1f}x "
                f"| {b[1] / max(a[1], 1):.1f}x |"
            )


if __name__ == "__main__":
    main()
