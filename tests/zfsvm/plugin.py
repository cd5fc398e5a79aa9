"""pytest plugin: boots the real-OpenZFS guest for tests marked `zfs`.

ZFSVM=require (CI): the guest must boot, or the run fails at once.
ZFSVM=auto (default): where no guest can boot, `zfs` tests are skipped, saying why.
ZFSVM=off: skip them without trying.
ZFSVM_GUEST=WORKDIR:NAME: use a guest that is running already (not stopped afterwards).

The guest is built and booted once per session, in the background from the moment the
run starts: the tests that need no guest run meanwhile, and the first real-ZFS test waits
for it (printing the OpenZFS version then). Each test asks for fresh pools.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.zfsvm.bed import REPO, Pools, ZfsBed
from tests.zfsvm.guest import Guest, GuestError, free_port
from tests.zfsvm.image import Image, ImageUnavailable, cache_root, ensure_image

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


def _start_boot() -> None:
    """Start building the image and booting the guest, in tests/zfsvm/boot.py's process
    (reusing a running guest: nothing to start)."""
    _STATE["workdir"] = Path(tempfile.mkdtemp(prefix="zfsvm-"))
    # a second guest, booted only when a test needs it, is reachable from this one as
    # root@10.0.2.100 through a port reserved now
    _STATE["peer_port"] = free_port()
    if os.environ.get("ZFSVM_GUEST"):
        return
    log = (_STATE["workdir"] / "boot.log").open("w+")
    _STATE["booting"] = (
        subprocess.Popen(
            [sys.executable, "-m", "tests.zfsvm.boot", str(_STATE["workdir"]),
             str(_STATE["peer_port"])],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        ),
        log,
    )  # fmt: skip


def _finish_boot() -> tuple[ZfsBed, str]:
    """Wait for the guest that _start_boot started (or take the running one), install
    the tool in it, and say what it is."""
    running = os.environ.get("ZFSVM_GUEST")
    if running:
        image = _STATE["image"] = ensure_image()
        # a guest that is up already (tests/zfsvm/guest.py's workdir and name, as
        # WORKDIR:NAME): for quick reruns while developing; never stopped by the run
        folder, _, name = running.rpartition(":")
        bed = ZfsBed(Guest(image, Path(folder), name))
        bed.zfs_version = " / ".join(bed.guest.run("zfs version").stdout.split())
        bed.install_tool()
        _STATE["reused"] = True
        return bed, f"real ZFS: {bed.zfs_version} in the running guest {running}"
    guest = _STATE["guest"] = _booted_guest()
    _STATE["image"] = guest.image
    times = _STATE["boot_times"]
    bed = ZfsBed(guest)
    bed.zfs_version = " / ".join(guest.run("zfs version").stdout.split())
    installed = time.monotonic()
    bed.install_tool()
    return bed, (
        f"real ZFS: {bed.zfs_version} in a qemu guest ({guest.image.info()}); "
        f"image {times['image']:.0f} s, boot {times['boot']:.0f} s (while other tests ran), "
        f"tool install {time.monotonic() - installed:.0f} s"
    )


def _booted_guest() -> Guest:
    """The guest tests/zfsvm/boot.py booted, once its process is done (GuestError with
    its reason where it failed)."""
    proc, log = _STATE["booting"]
    proc.wait()
    del _STATE["booting"]  # (only now: interrupted while waiting, sessionfinish stops it)
    log.seek(0)
    lines = log.read().strip().splitlines()
    log.close()
    # (its image's folder and times: the image it found or built, not looked for again)
    _STATE["boot_times"] = json.loads(lines[-1]) if proc.returncode == 0 else {}
    folder = _STATE["boot_times"].get("folder", cache_root())
    guest = Guest(Image(Path(folder)), _STATE["workdir"], peer_port=_STATE["peer_port"])
    pidfile = guest.workdir / "qemu.pid"
    if pidfile.exists():
        guest.pid = int(pidfile.read_text().strip())
    if proc.returncode != 0:
        guest.stop()
        raise GuestError(lines[-1] if lines else f"the boot exited with {proc.returncode}")
    return guest


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    if not _STATE["needed"] or session.config.option.collectonly:
        return
    mode = _mode()
    if mode == "off":
        _STATE["reason"] = "real-ZFS tests disabled (ZFSVM=off)"
        return
    _start_boot()
    _STATE["waiting"] = True


def _wait_for_guest(config: pytest.Config) -> Optional[ZfsBed]:
    """The guest (waiting for its boot the first time), or None; ZFSVM=require: a guest
    that did not boot ends the run."""
    if _STATE.pop("waiting", False):
        try:
            _STATE["bed"], said = _finish_boot()
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            capture = config.pluginmanager.get_plugin("capturemanager")
            if reporter and capture:
                with capture.global_and_fixture_disabled():  # (inside a test's setup)
                    reporter.write_line(said)
        except (GuestError, ImageUnavailable, OSError) as exc:
            _STATE["reason"] = f"no real-ZFS guest could be booted here: {exc}"
            guest = _STATE.get("guest")
            if guest is not None:
                guest.stop()
            if _mode() == "require":
                pytest.exit(f"ZFSVM=require: {_STATE['reason']}", returncode=3)
    return _STATE.get("bed")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if "booting" in _STATE:
        # (no real-ZFS test was reached: stop what the boot started)
        with contextlib.suppress(GuestError, OSError):
            _booted_guest().stop()
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
def zfs_bed(request: pytest.FixtureRequest) -> ZfsBed:
    bed = _wait_for_guest(request.config)
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
