"""verify's walker against `sha256sum` of the same files, on the same guest (#35: at least
80 %), and a sparse file against a dense one.

    .venv/bin/python -m bench.verify [--mib 512] [--rounds 3]

Boots the real-ZFS test bed (or uses the running guest of ZFSVM_GUEST=WORKDIR:NAME),
writes MIB of random data in four files, a 1 GiB sparse file (4 KiB of data) and a
dense 1 GiB file of zeros into a dataset, snapshots it, mounts the snapshot read-only as
verify does, and times, `--rounds` times each, alternating, with a cold cache (the pool
exported and imported before each): the walker (`python3 -c WALK ROOT`, as verify runs
it) and `sha256sum` over the random files; then the walker over the sparse file and over
the dense one. Prints a markdown table; report the ratios, not the times (the guest is
emulated).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import tempfile
import time
from pathlib import Path

from planner.verify import MOUNT_OPTIONS, WALK_SOURCE
from tests.zfsvm.bed import POOL_DIR, ZfsBed
from tests.zfsvm.guest import Guest
from tests.zfsvm.image import ensure_image

SNAP = "bench-20260101000000"


def timed(bed: ZfsBed, script: str) -> float:
    started = time.monotonic()
    bed.run(script, timeout=7200)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    image = ensure_image()
    running = os.environ.get("ZFSVM_GUEST")
    if running:
        folder, _, name = running.rpartition(":")
        guest = Guest(image, Path(folder), name)
    else:
        guest = Guest(image, Path(tempfile.mkdtemp(prefix="bench-")))
        guest.boot()
    try:
        bed = ZfsBed(guest)
        pools = bed.create_pools(("vfy",), size=f"{args.mib * 2 + 2048}M")
        (pool,) = pools.names
        quarter = max(1, args.mib // 4)
        bed.run(
            f"zfs create -o compression=off {pool}/data && cd /mnt/{pool}/data && mkdir random && "
            f"for i in 1 2 3 4; do dd if=/dev/urandom of=random/f$i bs=1M count={quarter} "
            "status=none; done && mkdir sparse dense && truncate -s 1G sparse/f && "
            "dd if=/dev/urandom of=sparse/f bs=4k count=1 conv=notrunc status=none && "
            "cp --sparse=never sparse/f dense/f && "
            f"zpool sync {pool} && zfs snapshot {pool}/data@{SNAP} && mkdir -p /mnt/vfy-snap && "
            f"mount -t zfs -o {MOUNT_OPTIONS} {pool}/data@{SNAP} /mnt/vfy-snap",
            timeout=7200,
        )
        cold = (
            f"umount /mnt/vfy-snap && zpool export {pool} && zpool import -d {POOL_DIR} {pool} "
            f"&& mount -t zfs -o {MOUNT_OPTIONS} {pool}/data@{SNAP} /mnt/vfy-snap"
        )
        walk = f"python3 -c {shlex.quote(WALK_SOURCE)}"
        runs = {
            "walker (random files)": f"{walk} /mnt/vfy-snap/random >/dev/null",
            "sha256sum (random files)": "sha256sum /mnt/vfy-snap/random/* >/dev/null",
            "walker (1 GiB sparse file)": f"{walk} /mnt/vfy-snap/sparse >/dev/null",
            "walker (1 GiB dense zeros)": f"{walk} /mnt/vfy-snap/dense >/dev/null",
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for what, script in runs.items():
                bed.run(cold, timeout=600)
                times[what].append(timed(bed, script))
        bed.run("umount /mnt/vfy-snap; rmdir /mnt/vfy-snap", check=False)
        bed.destroy_pools(pools)
        best = {k: statistics.median(v) for k, v in times.items()}
        print(f"| what | seconds (median of {args.rounds}, cold cache) | MiB/s |")
        print("|---|---|---|")
        sizes = {"random": args.mib, "sparse": 1024, "dense": 1024}
        for what, seconds in best.items():
            mib = next(v for k, v in sizes.items() if k in what)
            print(f"| {what} | {seconds:.2f} | {mib / seconds:.0f} |")
        ratio = best["sha256sum (random files)"] / best["walker (random files)"]
        print(f"\nwalker throughput / sha256sum throughput: {ratio:.0%}")
        sparse = best["walker (1 GiB dense zeros)"] / best["walker (1 GiB sparse file)"]
        print(f"sparse 1 GiB file: {sparse:.0f}x faster than the same size written dense")
    finally:
        if not running:
            guest.stop()


if __name__ == "__main__":
    main()
