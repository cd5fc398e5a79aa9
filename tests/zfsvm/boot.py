"""Build (or find) the guest image and boot the first guest, in a process of its own.

    python -m tests.zfsvm.boot WORKDIR PEER_PORT

The pytest plugin starts this when the run starts, so that the minutes of image build
and boot pass while the tests that need no guest run; the first real-ZFS test waits for
it. A process, not a thread: a unit test that patches `os.write` or `os.open` for a
moment must not break the boot. The guest (qemu daemonizes) outlives this process; its
pid is in WORKDIR/guest1/qemu.pid. Prints one JSON line (the image's folder, and the
image build's and the boot's seconds) on success; exits 1 with the reason on standard error otherwise.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from tests.zfsvm.guest import Guest, GuestError
from tests.zfsvm.image import ImageUnavailable, ensure_image


def main(argv: list[str]) -> int:
    workdir, peer_port = Path(argv[0]), int(argv[1])
    if shutil.which("qemu-system-x86_64") is None:
        print("qemu-system-x86_64 is not installed (apt install qemu-system-x86 qemu-utils)",
              file=sys.stderr)  # fmt: skip
        return 1
    started = time.monotonic()
    guest = None
    try:
        image = ensure_image()
        built = time.monotonic() - started
        guest = Guest(image, workdir, peer_port=peer_port)
        guest.boot()
    except (GuestError, ImageUnavailable, OSError) as exc:
        if guest is not None:
            guest.stop()
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({"folder": str(image.folder), "image": built, "boot": guest.boot_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
