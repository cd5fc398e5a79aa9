"""Transfer throughput: the tool against a bare `zfs send | ssh | zfs recv`, same guests.

    .venv/bin/python -m bench.throughput [--mib 64] [--rounds 3]
    .venv/bin/python -m bench.throughput --mib 1024 --rounds 1    (about 12 minutes)

Boots the real-ZFS test bed (two guests), writes MIB of random data into a dataset on
the second guest, and pulls it into the first: once with a bare pipe, once with
`zfs-autobackup --ssh-source`. The tool's transfer time is its run time minus the run
time of the same command with nothing to send (observation, planning and start-up),
measured right after. Prints a markdown table; report the ratio, not absolute times (the
guests are emulated).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.zfsvm.bed import ZfsBed
from tests.zfsvm.guest import PEER, guest_pair
from tests.zfsvm.image import ensure_image


def timed(bed: ZfsBed, script: str) -> float:
    started = time.monotonic()
    bed.run(script)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    image = ensure_image()
    guests = guest_pair(image, Path(tempfile.mkdtemp(prefix="bench-")))
    try:
        for guest in guests:
            guest.boot()
        local, remote = ZfsBed(guests[0]), ZfsBed(guests[1])
        local.install_tool()
        # room for the data and one copy of it at a time (each copy goes once measured)
        size = f"{max(1024, args.mib * 3 // 2 + 256)}M"
        (dst,) = local.create_pools(("dst",), size=size).names
        (src,) = remote.create_pools(("src",), size=size).names
        remote.run(
            f"zfs create {src}/data && zfs set autobackup:bench=true {src}/data && "
            f"dd if=/dev/urandom of=/mnt/{src}/data/blob bs=1M count={args.mib} status=none && "
            f"zpool sync {src}"
        )

        def drop(copy: str) -> None:
            """Destroy a received copy and wait until its space is free again."""
            local.run(f"zfs destroy -r {dst}/{copy} && zpool wait -t free {dst}")

        bare, tool = [], []
        for n in range(args.rounds):
            snap = f"bench-2026010{n + 1}000000"
            remote.run(f"zfs snapshot {src}/data@{snap}")
            # before each transfer: every send reads the data from disk (not the second one
            # from the first one's cache)
            remote.reimport(src)
            bare.append(
                timed(local, f"ssh {PEER} 'zfs send {src}/data@{snap}' | zfs recv -u {dst}/bare{n}")
            )
            drop(f"bare{n}")
            run = f"zfs-autobackup --ssh-source {PEER} bench {dst}/tool{n} --no-snapshot --no-holds"
            local.run(f"zfs create {dst}/tool{n}")
            remote.reimport(src)
            total = timed(local, run)
            idle = timed(local, run)  # the same run again: nothing to send
            tool.append(total - idle)
            remote.run(f"zfs destroy {src}/data@{snap}")
            drop(f"tool{n}")
        mib = args.mib
        rate_bare = mib / statistics.median(bare)
        rate_tool = mib / statistics.median(tool)
        print(
            f"| transfer of {mib} MiB (guest to guest over ssh, median of {args.rounds}) | MiB/s |"
        )
        print("|---|---|")
        print(f"| bare `ssh src 'zfs send' \\| zfs recv` | {rate_bare:.1f} |")
        print(f"| zfs-autobackup --ssh-source (transfer part) | {rate_tool:.1f} |")
        print(f"| ratio tool / bare | {rate_tool / rate_bare:.0%} |")
    finally:
        for guest in guests:
            guest.stop()


if __name__ == "__main__":
    main()
