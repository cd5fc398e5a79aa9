"""The smoke scenario that proves the bed: snapshot, `zfs send | zfs recv`, compare.

Runs through the project's own runner (plumbum), on any host the runner can reach.
Used from the host (ssh into the guest) and, as a script, inside the guest (locally
and through ssh to root@localhost):

    python3 -m tests.zfsvm.smoke_pipe SRC_DATASET DST_DATASET [SSH_HOST]

prints one JSON object: guids and checksums on both sides.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from executors.runner import LocalRunner, Stage
from reconcile.model import Host


def replicate(runner: LocalRunner, host: Host, src: str, dst: str) -> dict[str, str]:
    def run(*argv: str) -> str:
        return runner.run(host, argv).stdout.strip()

    run("zfs", "create", src)
    mnt = run("zfs", "get", "-H", "-o", "value", "mountpoint", src)
    run("dd", "if=/dev/urandom", f"of={mnt}/blob", "bs=1M", "count=3", "status=none")
    run("sync")
    run("zfs", "snapshot", f"{src}@smoke")
    piped = runner.pipeline(
        [Stage(host, ("zfs", "send", f"{src}@smoke")), Stage(host, ("zfs", "recv", dst))]
    )
    dst_mnt = run("zfs", "get", "-H", "-o", "value", "mountpoint", dst)
    return {
        "src_guid": run("zfs", "get", "-H", "-p", "-o", "value", "guid", f"{src}@smoke"),
        "dst_guid": run("zfs", "get", "-H", "-p", "-o", "value", "guid", f"{dst}@smoke"),
        "src_sum": run("sha256sum", f"{mnt}/blob").split()[0],
        "dst_sum": run("sha256sum", f"{dst_mnt}/blob").split()[0],
        "command": piped.command,
    }


def main(argv: Optional[list[str]] = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    host = Host(ssh=args[2]) if len(args) > 2 else Host()
    print(json.dumps(replicate(LocalRunner(), host, args[0], args[1])))


if __name__ == "__main__":
    main()
