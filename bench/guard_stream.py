"""Receive throughput through the guard: `zfs send | zfs-autobackup-guard | zfs recv`
against `zfs send | zfs recv`, same guest, same stream.

    .venv/bin/python -m bench.guard_stream [--mib 1024] [--files 20000] [--rounds 2]

Boots the real-ZFS test bed (one guest; or the running one of ZFSVM_GUEST=WORKDIR:NAME),
writes MIB of random data in one file into a dataset (1 MiB records) and FILES small
files into another (a record header read per block and per file), snapshots both, and
receives each stream of STREAMS (`-p`: a package, whose every record header the guard
reads) `--rounds` times each way, alternating, destroying the copy in between. The guard
runs as it runs behind sshd (`SSH_ORIGINAL_COMMAND`, reading its stdin), without ssh, so
that the ratio is the guard's alone. Prints a markdown table; report the ratio, not the
times (the guest is emulated).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import tempfile
import time
from pathlib import Path

from tests.zfsvm.bed import ZfsBed
from tests.zfsvm.guest import Guest
from tests.zfsvm.image import ensure_image

NAME = "bench"
RECV = (
    "zfs recv -u -s -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by "
    "-o canmount=noauto"
)


#: (dataset, zfs send flags): the stream the tool sends between two pools with the
#: default features (planner/compile.py: -L and -e where both pools have large_blocks and
#: embedded_data, -p), then the same data without -L (its 1 MiB blocks go as 128 KiB
#: records: eight times as many records for the guard to read), then many small files
STREAMS = (("blob", "-L -e -p"), ("blob", "-p"), ("files", "-L -e -p"))


def timed(bed: ZfsBed, script: str) -> float:
    started = time.monotonic()
    bed.run(script, timeout=7200)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
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
        bed.install_tool()
        size = f"{max(1024, args.mib * 5 // 2 + 512)}M"
        src, dst = bed.create_pools(("src", "dst"), size=size).names
        bed.run(
            f"zfs create -o recordsize=1M {src}/blob && "
            f"dd if=/dev/urandom of=/mnt/{src}/blob/f bs=1M count={args.mib} status=none && "
            f"zfs create {src}/files && cd /mnt/{src}/files && "
            f"python3 -c 'import os\nfor i in range({args.files}): "
            'open("f%d" % i, "wb").write(os.urandom(4096))\' && '
            f"zpool sync {src} && zfs snapshot -r {src}@{NAME}-20260101000000 && "
            f"zfs create {dst}/backup && zfs create -o canmount=off {dst}/backup/{src}",
            timeout=7200,
        )
        rows = []
        for dataset, flags in STREAMS:
            send = f"zfs send {flags} {src}/{dataset}@{NAME}-20260101000000"
            target = f"{dst}/backup/{src}/{dataset}"
            guard = shlex.join(["zfs-autobackup-guard", NAME, "--target-path", f"{dst}/backup"])
            line = shlex.quote(f"{RECV} {target}")
            ways = {
                "bare": f"{send} | {RECV} {target}",
                "guard": f"{send} | SSH_ORIGINAL_COMMAND={line} {guard}",
            }
            times: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(args.rounds):
                for way, script in ways.items():
                    times[way].append(timed(bed, script))
                    bed.run(f"zfs destroy -r {target} && zpool wait -t free {dst}")
            size_mib = int(bed.prop(f"{src}/{dataset}", "used")) / 2**20
            bare, through = (statistics.median(times[w]) for w in ("bare", "guard"))
            rows.append((dataset, f"`zfs send {flags}`", f"{size_mib:.0f}", f"{bare:.1f}",
                         f"{through:.1f}", f"{bare / through:.1%}"))  # fmt: skip
        print("| data | stream | MiB | zfs recv (s) | through the guard (s) | guard / bare |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    finally:
        if not running:
            guest.stop()


if __name__ == "__main__":
    main()
