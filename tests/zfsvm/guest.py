"""Boot and drive a throw-away qemu guest with real OpenZFS.

Each boot gets a fresh qcow2 overlay over the cached base image, so every test session
starts clean. The guest is reached by ssh on a forwarded loopback port; the host side
keeps one multiplexed ssh connection, so a command costs no handshake. A second guest
can reach the first as 10.0.2.100:22 (`peer_port`), for true cross-host tests.

Environment:
  ZFSVM_ACCEL   tcg (default here) or kvm (used automatically where kvm_intel/kvm_amd exist)
  ZFSVM_MEMORY  guest memory in MiB (default 1536)
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tests.zfsvm.image import Image

HERE = Path(__file__).resolve().parent
BRIDGE = HERE / "tcp_bridge.py"


class GuestError(Exception):
    pass


#: how a guest reaches itself over ssh (remote modes without a second guest)
LOCAL = "root@localhost"
#: how the first guest reaches the second one (guest1's 10.0.2.100:22 leads to guest2)
PEER = "root@10.0.2.100"


def guest_pair(image: Image, workdir: Path) -> list[Guest]:
    """Two guests (not booted): the first reaches the second as PEER."""
    port = free_port()
    return [Guest(image, workdir, peer_port=port), Guest(image, workdir, "guest2", port=port)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accelerator() -> list[str]:
    wanted = os.environ.get("ZFSVM_ACCEL")
    kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and (
        Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()
    )
    if wanted == "kvm" or (wanted is None and kvm_usable):
        return ["-accel", "kvm", "-cpu", "host"]
    # /dev/kvm on these machines is a nested PVM hypervisor that hangs a stock kernel.
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


class Guest:
    """One booted guest. Use `boot()`, then `run()`, and `stop()` at the end."""

    def __init__(
        self,
        image: Image,
        workdir: Path,
        name: str = "guest1",
        *,
        memory_mb: Optional[int] = None,
        peer_port: Optional[int] = None,
        port: Optional[int] = None,
    ) -> None:
        self.image = image
        self.name = name
        self.workdir = workdir / name
        self.memory_mb = memory_mb or int(os.environ.get("ZFSVM_MEMORY", "1536"))
        self.peer_port = peer_port
        #: the host port forwarded to the guest's ssh (0: pick a free one at boot)
        self.port = port or 0
        self.pid: Optional[int] = None
        self.boot_seconds = 0.0

    # --- paths ---------------------------------------------------------------------

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def ssh_config(self) -> Path:
        """An ssh config on the host in which `self.name` is this guest's root login."""
        return self.workdir / "ssh_config"

    # --- lifecycle -----------------------------------------------------------------

    def boot(self, timeout: float = 600) -> None:
        if shutil.which("qemu-system-x86_64") is None:
            raise GuestError("qemu-system-x86_64 is not installed (apt install qemu-system-x86)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        overlay = self.workdir / "root.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(self.image.root),
                str(overlay),
            ],
            check=True,
        )
        self.port = self.port or free_port()
        nic = f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22"
        if self.peer_port:
            bridge = f"{sys.executable} {BRIDGE} 127.0.0.1 {self.peer_port}"
            nic += f",guestfwd=tcp:10.0.2.100:22-cmd:{bridge}"
        pidfile = self.workdir / "qemu.pid"
        pidfile.unlink(missing_ok=True)
        self.console_log.unlink(missing_ok=True)
        argv = [
            "qemu-system-x86_64",
            *accelerator(),
            "-m", str(self.memory_mb),
            "-smp", str(os.cpu_count() or 2),
            "-kernel", str(self.image.kernel),
            "-initrd", str(self.image.initrd),
            "-append", "root=LABEL=zfsroot rw console=ttyS0 net.ifnames=0 mitigations=off",
            "-drive", f"if=none,id=root,file={overlay},format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root",
            "-nic", nic,
            "-display", "none",
            "-serial", f"file:{self.console_log}",
            "-daemonize",
            "-pidfile", str(pidfile),
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise GuestError(f"qemu failed to start: {proc.stderr.strip()}")
        self.pid = int(pidfile.read_text().strip())
        self._write_ssh_config()
        self._wait_for_ssh(started + timeout)
        self.boot_seconds = time.monotonic() - started

    def _write_ssh_config(self) -> None:
        self.ssh_config.write_text(
            f"Host {self.name}\n"
            f"    HostName 127.0.0.1\n"
            f"    Port {self.port}\n"
            f"    User root\n"
            f"    IdentityFile {self.image.key}\n"
            f"    IdentitiesOnly yes\n"
            f"    StrictHostKeyChecking no\n"
            f"    UserKnownHostsFile /dev/null\n"
            f"    LogLevel ERROR\n"
            f"    ControlMaster auto\n"
            f"    ControlPath {self.workdir}/cm-%C\n"
            f"    ControlPersist 600\n"
            f"    ServerAliveInterval 10\n"
        )

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _wait_for_ssh(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self.alive():
                raise GuestError(f"the guest died while booting\n{self.console_tail()}")
            probe = subprocess.run(
                [*self.ssh_argv(), "-o", "ConnectTimeout=10", "true"],
                capture_output=True,
                check=False,
                timeout=60,
            )
            if probe.returncode == 0:
                return
            time.sleep(1)
        raise GuestError(f"no ssh from the guest in time\n{self.console_tail()}")

    def console_tail(self, lines: int = 80) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.console_log} ---\n{tail}"

    def stop(self) -> None:
        if self.pid is None:
            return
        subprocess.run(
            [*self.ssh_argv(), "-O", "exit"], capture_output=True, check=False, timeout=10
        )
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            until = time.monotonic() + wait
            while self.alive() and time.monotonic() < until:
                time.sleep(0.1)
            if not self.alive():
                break
        self.pid = None
        (self.workdir / "root.qcow2").unlink(missing_ok=True)

    # --- commands ------------------------------------------------------------------

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), self.name]

    def run(
        self,
        script: str,
        *,
        check: bool = True,
        input: Optional[str | bytes] = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """Run a POSIX shell script in the guest as root; text output."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [*self.ssh_argv(), script],
            input=data,
            capture_output=True,
            check=False,
            timeout=timeout,
        )
        result = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        if check and result.returncode != 0:
            raise GuestError(
                f"guest command failed ({result.returncode}): {script}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def run_argv(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(shlex.join(argv), **kwargs)  # type: ignore[arg-type]

    def put_tree(self, tar_bytes: bytes, dest: str) -> None:
        """Unpack a tar archive (made on the host) into `dest` in the guest."""
        self.run(
            f"rm -rf {shlex.quote(dest)} && mkdir -p {shlex.quote(dest)} && "
            f"tar -x -C {shlex.quote(dest)}",
            input=tar_bytes,
        )
