"""What reading the snapshots of received, unmounted datasets costs, by way of reading.

    .venv/bin/python -m bench.listing [--datasets 100] [--snapshots 12]

Boots one guest, builds N datasets with K snapshots (`bench.peers.build_tree`),
replicates them with `zfs send -R | zfs recv -u` (received datasets stay unmounted, as
every backup tool leaves them), holds the newest snapshot of each, and times each way of
reading them, once right after `zpool export` + `zpool import -N` (nothing cached) and
once again. Prints a markdown table. The question it answers: is there a cheaper way
than one `zfs list -t snapshot` to learn what a backup target holds (names only, the
"simple" iteration `zfs list` uses for `-o name -s name`, explicit names,
`snapshots_changed`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.peers import build_tree, name
from tests.zfsvm.bed import ZfsBed
from tests.zfsvm.guest import Guest
from tests.zfsvm.image import ensure_image


def ways(tree: str) -> dict[str, str]:
    """Label -> shell line; /var/tmp/newest and /var/tmp/fss hold names, one per line."""
    snaps = f"zfs list -H -p -t snapshot -r {tree}"
    return {
        "`zfs list -t snapshot -r -o name,guid,createtxg`": f"{snaps} -o name,guid,createtxg",
        "`zfs list -t snapshot -r -o name`": f"{snaps} -o name",
        "`-o name -s name` (libzfs' simple iteration)": f"{snaps} -o name -s name",
        "`-o name -s createtxg` (simple iteration)": f"{snaps} -o name -s createtxg",
        "`zfs list -t snapshot -d 1 FS...` (every filesystem named)": (
            "xargs zfs list -H -p -t snapshot -d 1 -o name,guid,createtxg < /var/tmp/fss"
        ),
        "`zfs get guid FS@newest...` (one snapshot per filesystem)": (
            "xargs zfs get -H -p -o name,value guid < /var/tmp/newest"
        ),
        "`zfs holds FS@newest...` (one snapshot per filesystem)": (
            "xargs zfs holds -H < /var/tmp/newest"
        ),
        "filesystems only, `-o name,snapshots_changed`": (
            f"zfs list -H -p -r -o name,snapshots_changed {tree}"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=12)
    args = parser.parse_args()
    n, k = args.datasets, args.snapshots
    guest = Guest(ensure_image(), Path(tempfile.mkdtemp(prefix="bench-")))
    rows: list[tuple[str, int, float, float]] = []
    try:
        guest.boot()
        bed = ZfsBed(guest)
        s, d = bed.create_pools(("src", "dst"), size="2G").names
        build_tree(bed, s, n, k)
        newest = name(k - 1)
        bed.run(
            f"zfs send -R {s}/bench@{newest} | zfs recv -u {d}/bench && "
            f"zfs hold -r keep {d}/bench@{newest} && "
            f"zfs list -H -o name -t filesystem -r {d}/bench > /var/tmp/fss && "
            f"sed 's/$/@{newest}/' /var/tmp/fss > /var/tmp/newest",
            timeout=3600,
        )
        for label, line in ways(f"{d}/bench").items():
            times: list[float] = []
            for cold in (True, False):
                if cold:
                    bed.reimport(d, mount=False)
                started = time.monotonic()
                out = bed.run(line, timeout=3600).stdout
                times.append(time.monotonic() - started)
            rows.append((label, len(out.splitlines()), times[0], times[1]))
    finally:
        guest.stop()
    print(f"| {n} received unmounted datasets, {k} snapshots each | rows | cold s | warm s |")
    print("|---|---|---|---|")
    for label, count, cold_s, warm_s in rows:
        print(f"| {label} | {count} | {cold_s:.1f} | {warm_s:.1f} |")


if __name__ == "__main__":
    main()
