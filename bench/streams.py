"""One replication stream against one stream per dataset, for an incremental run.

    .venv/bin/python -m bench.streams [--datasets 100]

Boots one guest, builds N datasets with 2 snapshots (`bench.peers.build_tree`), makes
three replicas of them with `zfs send -R | zfs recv -u`, takes one more snapshot of the
tree, and brings each replica up to date a different way:
  - one `zfs send -i | zfs recv -u -s` per dataset, 4 at a time (this tool's default);
  - the same, one at a time (as zfs-autobackup 3.3 does);
  - one replication stream for the whole tree (`zfs send -R -I | zfs recv -u`).
Before each, the target pool is exported and imported (nothing cached). Prints a
markdown table. The question it answers: would fewer streams than datasets make an
incremental run cheaper? (The kernel receives each dataset's part of a replication
stream on its own, and both ends of `-R` first gather every snapshot of the tree.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.peers import build_tree, name, send_each, snapshot_tree
from tests.zfsvm.bed import ZfsBed
from tests.zfsvm.guest import Guest
from tests.zfsvm.image import ensure_image


def ways(s: str, d: str) -> dict[str, str]:
    """Label -> shell line bringing one replica of S/bench (D/r1, D/r2, D/r3) up to date."""
    base, new = name(1), name(2)

    def per_dataset(parallel: int, replica: str) -> str:
        return send_each(s, f"{d}/{replica}", base, new, parallel)

    return {
        "one stream per dataset, 4 at a time": per_dataset(4, "r1"),
        "one stream per dataset, 1 at a time": per_dataset(1, "r2"),
        "one replication stream (`send -R -I`)": (
            f"zfs send -R -I @{base} {s}/bench@{new} | zfs recv -u {d}/r3/bench"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=100)
    n = parser.parse_args().datasets
    guest = Guest(ensure_image(), Path(tempfile.mkdtemp(prefix="bench-")))
    rows: list[tuple[str, float, int]] = []
    try:
        guest.boot()
        bed = ZfsBed(guest)
        s, d = bed.create_pools(("src", "dst"), size="2G").names
        build_tree(bed, s, n, 2)
        for replica in ("r1", "r2", "r3"):
            bed.run(
                f"zfs create -u {d}/{replica} && "
                f"zfs send -R {s}/bench@{name(1)} | zfs recv -u {d}/{replica}/bench",
                timeout=3600,
            )
        snapshot_tree(bed, s, 2)
        for (label, line), replica in zip(ways(s, d).items(), ("r1", "r2", "r3")):
            bed.reimport(d, mount=False)
            started = time.monotonic()
            bed.run(line, timeout=3600)
            seconds = time.monotonic() - started
            arrived = bed.run(f"zfs list -H -t snapshot -o name -r {d}/{replica}").stdout
            rows.append((label, seconds, arrived.count(f"@{name(2)}\n")))
    finally:
        guest.stop()
    print(f"| {n + 1} datasets, 1 new snapshot each | seconds | new snapshots received |")
    print("|---|---|---|")
    for label, seconds, count in rows:
        print(f"| {label} | {seconds:.1f} | {count} |")


if __name__ == "__main__":
    main()
