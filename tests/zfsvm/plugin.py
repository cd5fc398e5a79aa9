"""pytest plugin: boots the real-OpenZFS guest for tests marked `zfs`.

ZFSVM=require (CI): the guest must boot, or the run fails at once.
ZFSVM=auto (default): where no guest can boot, `zfs` tests are skipped, saying why.
ZFSVM=off: skip them without trying.
ZFSVM_GUEST=WORKDIR:NAME: use a guest that is running already (not stopped afterwards).

The guest is booted once per session, before the first test runs, and the OpenZFS
version is printed at the top of the run. Each test asks for fresh pools.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import Guest, GuestError, free_port
from tests.zfsvm.image import ImageUnavailable, ensure_image

_STATE: dict[str, Any] = {"bed": None, "reason": None, "needed": False, "workdir": None}
_OUTCOMES: Counter[str] = Counter()


def _mode() -> str:
    mode = os.environ.get("ZFSVM", "auto")
    if mode not in ("auto", "require", "off"):
        raise pytest.UsageError(f"ZFSVM={mode!r}: allowed values are auto, require, off")
    return mode


def pytest_collection_finish(session: pytest.Session) -> None:
    # after -m/-k deselection: boot only when a selected test needs real ZFS
    _STATE["needed"] = any(item.get_closest_marker("zfs") for item in session.items)


def _boot(config: pytest.Config) -> Optional[ZfsBed]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter:
            reporter.write_line(text)

    if shutil.which("qemu-system-x86_64") is None:
        raise GuestError(
            "qemu-system-x86_64 is not installed (apt install qemu-system-x86 qemu-utils)"
        )
    started = time.monotonic()
    image = ensure_image()
    built = time.monotonic() - started
    running = os.environ.get("ZFSVM_GUEST")
    if running:
        # a guest that is up already (tests/zfsvm/guest.py's workdir and name, as
        # WORKDIR:NAME): for quick reruns while developing; never stopped by the run
        folder, _, name = running.rpartition(":")
        guest = Guest(image, Path(folder), name)
        bed = ZfsBed(guest)
        bed.zfs_version = " / ".join(guest.run("zfs version").stdout.split())
        bed.install_tool()
        _STATE["image"] = image
        _STATE["workdir"] = Path(tempfile.mkdtemp(prefix="zfsvm-"))
        _STATE["peer_port"] = free_port()
        _STATE["reused"] = True
        say(f"real ZFS: {bed.zfs_version} in the running guest {running}")
        return bed
    workdir = Path(tempfile.mkdtemp(prefix="zfsvm-"))
    _STATE["workdir"] = workdir
    # a second guest, booted only when a test needs it, is reachable from this one as
    # root@10.0.2.100 through a port reserved now
    _STATE["peer_port"] = free_port()
    _STATE["image"] = image
    guest = Guest(image, workdir, peer_port=_STATE["peer_port"])
    _STATE["guest"] = guest
    guest.boot()
    bed = ZfsBed(guest)
    bed.zfs_version = " / ".join(guest.run("zfs version").stdout.split())
    installed = time.monotonic()
    bed.install_tool()
    say(
        f"real ZFS: {bed.zfs_version} in a qemu guest ({guest.image.info()}); "
        f"image {built:.0f} s, boot {guest.boot_seconds:.0f} s, "
        f"tool install {time.monotonic() - installed:.0f} s"
    )
    return bed


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    if not _STATE["needed"] or session.config.option.collectonly:
        return
    mode = _mode()
    if mode == "off":
        _STATE["reason"] = "real-ZFS tests disabled (ZFSVM=off)"
        return
    try:
        _STATE["bed"] = _boot(session.config)
    except (GuestError, ImageUnavailable, OSError) as exc:
        reason = f"no real-ZFS guest could be booted here: {exc}"
        guest = _STATE.get("guest")
        if guest is not None:
            guest.stop()
        if mode == "require":
            pytest.exit(f"ZFSVM=require: {reason}", returncode=3)
        _STATE["reason"] = reason


def pytest_sessionfinish(session: pytest.Session) -> None:
    for key in ("bed", "peer"):
        bed: Optional[ZfsBed] = _STATE.get(key)
        if bed is not None and not (key == "bed" and _STATE.get("reused")):
            bed.guest.stop()
    workdir = _STATE.get("workdir")
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "zfs" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _STATE["needed"]:
        return
    bed: Optional[ZfsBed] = _STATE.get("bed")
    counts = ", ".join(f"{n} {what}" for what, n in sorted(_OUTCOMES.items())) or "none ran"
    where = bed.zfs_version if bed else (_STATE.get("reason") or "no guest")
    terminalreporter.write_line(f"real-ZFS tests: {counts} ({where})")


@pytest.fixture(scope="session")
def zfs_bed() -> ZfsBed:
    bed: Optional[ZfsBed] = _STATE.get("bed")
    if bed is None:
        pytest.skip(_STATE.get("reason") or "real-ZFS guest not booted")
    return bed


@pytest.fixture(scope="session")
def zfs_peer(zfs_bed: ZfsBed) -> ZfsBed:
    """A second guest (booted on first use), reachable from the first as root@10.0.2.100."""
    peer: Optional[ZfsBed] = _STATE.get("peer")
    if peer is None:
        guest = Guest(_STATE["image"], _STATE["workdir"], "guest2", port=_STATE["peer_port"])
        try:
            guest.boot()
        except GuestError as exc:
            guest.stop()
            if _mode() == "require":
                pytest.fail(f"ZFSVM=require: the second guest did not boot: {exc}")
            pytest.skip(f"the second guest did not boot: {exc}")
        peer = ZfsBed(guest)
        peer.zfs_version = zfs_bed.zfs_version
        _STATE["peer"] = peer
    return peer


@pytest.fixture
def peer_pools(zfs_peer: ZfsBed) -> Iterator[Pools]:
    """A fresh `src` pool on the second guest."""
    created = zfs_peer.create_pools(("src",))
    try:
        yield created
    finally:
        zfs_peer.destroy_pools(created)


@pytest.fixture
def pools(zfs_bed: ZfsBed) -> Iterator[Pools]:
    """A fresh `src`/`dst` pool pair for one test, destroyed afterwards."""
    created = zfs_bed.create_pools()
    try:
        yield created
    finally:
        zfs_bed.destroy_pools(created)
