"""The real-ZFS test bed as the tests see it: a booted guest with the tool installed.

How the tool under test reaches ZFS:
- local mode: the tool runs *inside* the guest. The project's packages and its
  pure-Python dependencies are copied from the host's interpreter into
  /opt/zfs-reconcile in the guest (the guest has no network), and
  /usr/local/bin/zfs-autobackup runs them with the guest's python3.
- remote modes: the tool (in the guest) reaches the guest itself as root@localhost,
  or a second guest; the host reaches a guest with `ssh -F <guest.ssh_config> <name>`.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import shlex
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import attrs

from tests.oracle import PEERS, oracle_path
from tests.zfsvm.guest import Guest

REPO = Path(__file__).resolve().parents[2]
GUEST_PREFIX = "/opt/zfs-reconcile"
#: where the test pools' image files live in the guest
POOL_DIR = "/var/tmp/pools"
#: import names of the runtime dependencies (and theirs) that the guest needs
RUNTIME_MODULES = (
    "attr",
    "attrs",
    "cattrs",
    "networkx",
    "tabulate",
    "plumbum",
    "typing_extensions",
)
OUR_PACKAGES = ("reconcile", "planner", "executors", "tests")

WRAPPER = f"""#!/bin/sh
PYTHONPATH={GUEST_PREFIX} exec python3 -m executors "$@"
"""
#: the remote guard, from a folder with nothing but the project's own packages: it must
#: run on the standard library alone
GUARD_PREFIX = "/opt/zfs-reconcile-guard"
GUARD_WRAPPER = f"""#!/bin/sh
PYTHONPATH={GUARD_PREFIX} exec python3 -c 'import sys; from executors.guard import main; sys.exit(main())' "$@"
"""
#: zfs-autobackup 3.3 and 4.0rc2 themselves (the migration partners), from their folders
#: (tests/oracle.py), each as /usr/local/bin/zfs-autobackup-VERSION
PEER_WRAPPER = """#!/bin/sh
PYTHONPATH=/opt/zfs-autobackup-{version} exec python3 -c 'import sys; from zfs_autobackup.ZfsAutobackup import cli; sys.argv[0] = "zfs-autobackup"; cli()' "$@"
"""


def _skip(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
    parts = Path(info.name).parts
    if "__pycache__" in parts or info.name.endswith(".pyc"):
        return None
    # networkx ships its test suite: a third of its files, never imported
    if parts[:1] == ("networkx",) and "tests" in parts:
        return None
    return info


def install_tarball(dependencies: bool = True) -> bytes:
    """The project and (unless not `dependencies`) its runtime dependencies, as the
    guest's PYTHONPATH tree."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for package in OUR_PACKAGES:
            tar.add(REPO / package, arcname=package, filter=_skip)
        for module in RUNTIME_MODULES if dependencies else ():
            spec = importlib.util.find_spec(module)
            if spec is None:
                continue  # e.g. typing_extensions where nothing needs it
            if spec.submodule_search_locations:
                path = Path(next(iter(spec.submodule_search_locations)))
                tar.add(path, arcname=module, filter=_skip)
            elif spec.origin:
                tar.add(spec.origin, arcname=Path(spec.origin).name)
    return buf.getvalue()


# sha256 over (path, sha256 of content) of every regular file under argv[1], on its
# filesystem only, read without touching atime (see ZfsBed.checksum)
_CHECKSUM_PY = """
import hashlib, os, stat, sys
top = sys.argv[1]
dev = os.lstat(top).st_dev
files = []
def walk(path, rel):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
    try:
        names = sorted(os.listdir(fd))
    finally:
        os.close(fd)
    for name in names:
        full, sub = os.path.join(path, name), rel + "/" + name
        st = os.lstat(full)
        if st.st_dev != dev:
            continue
        if stat.S_ISDIR(st.st_mode):
            walk(full, sub)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256()
            fd = os.open(full, os.O_RDONLY | os.O_NOATIME)
            with os.fdopen(fd, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            files.append(sub + " " + digest.hexdigest())
walk(top, ".")
print(hashlib.sha256("\\n".join(sorted(files)).encode()).hexdigest())
"""


@attrs.define
class Pools:
    """Fresh pools for one test. `names[0]` is `src`, `names[1]` is `dst`."""

    bed: ZfsBed
    names: tuple[str, ...]

    @property
    def src(self) -> str:
        return self.names[0]

    @property
    def dst(self) -> str:
        return self.names[1]


@attrs.define
class ZfsBed:
    guest: Guest
    zfs_version: str = ""
    _counter: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))

    def install_tool(self) -> None:
        self.guest.put_tree(install_tarball(), GUEST_PREFIX)
        self.guest.run(
            "cat > /usr/local/bin/zfs-autobackup && chmod +x /usr/local/bin/zfs-autobackup",
            input=WRAPPER,
        )
        self.guest.put_tree(install_tarball(dependencies=False), GUARD_PREFIX)
        guard = "/usr/local/bin/zfs-autobackup-guard"
        self.guest.run(f"cat > {guard} && chmod +x {guard}", input=GUARD_WRAPPER)
        for version in PEERS:
            package = oracle_path(version) / "zfs_autobackup"
            if not package.is_dir():
                continue
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(package, arcname="zfs_autobackup", filter=_skip)
            self.guest.put_tree(buf.getvalue(), f"/opt/zfs-autobackup-{version}")
            script = f"/usr/local/bin/zfs-autobackup-{version}"
            self.guest.run(
                f"cat > {script} && chmod +x {script}", input=PEER_WRAPPER.format(version=version)
            )

    def tool_v33(self, *args: str, now: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        """Run zfs-autobackup 3.3 in the guest (skips the test where it is not installed)."""
        return self.tool_peer("3.3", *args, now=now)

    def tool_peer(
        self, version: str, *args: str, now: Optional[str] = None
    ) -> subprocess.CompletedProcess[str]:
        """Run zfs-autobackup VERSION (3.3, 4.0rc2) in the guest (skips the test where it
        is not installed)."""
        script = f"/usr/local/bin/zfs-autobackup-{version}"
        if self.guest.run(f"test -x {script}", check=False).returncode:
            import pytest

            pytest.skip(f"zfs-autobackup {version} is not installed here (tests/run installs it)")
        argv = [script, *args]
        if now:
            argv = ["faketime", "-f", now, *argv]
        return self.guest.run_argv(argv, check=False)

    def run(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.guest.run(script, **kwargs)  # type: ignore[arg-type]

    def sh(self, *argv: str) -> str:
        """Run one command (argv) in the guest, fail on error, return stdout."""
        return self.guest.run(shlex.join(argv)).stdout

    # --- pools ---------------------------------------------------------------------

    def create_pools(
        self, roles: Sequence[str] = ("src", "dst"), size: str = "384M", *, under_mnt: bool = True
    ) -> Pools:
        """Fresh pools. `under_mnt=False`: zfs' default mountpoints (/NAME, as in
        zfs-autobackup 3.3's tests), not a local mountpoint under /mnt."""
        n = next(self._counter)
        # the peer guest's pools get a "p" so names never repeat between the two guests
        names = tuple(f"{role}{n}{'p' if self.guest.name != 'guest1' else ''}" for role in roles)
        # (each pool made in a process of its own, all at once: a `zpool create` is most
        # of a second of waiting in the guest, and every real-ZFS test makes two)
        script = [f"mkdir -p {POOL_DIR}", "pids="]
        for name in names:
            img = f"{POOL_DIR}/{name}.img"
            # (a pool an interrupted earlier session left behind in a reused guest goes)
            steps = [f"{{ zpool destroy -f {name} 2>/dev/null; true; }}"]
            steps.append(f"rm -f {img} && truncate -s {size} {img}")
            # mountpoints under /mnt keep test pools away from the guest's own tree
            where = f"-m /mnt/{name} " if under_mnt else ""
            steps.append(f"zpool create -f -o cachefile=none {where}{name} {img}")
            script.append(f'{{ {" && ".join(steps)}; }} & pids="$pids $!"')
        script.append('for pid in $pids; do wait "$pid" || exit 1; done')
        self.guest.run("\n".join(script))
        return Pools(self, names)

    def destroy_pools(self, pools: Pools) -> None:
        """Destroy the pools (again, a moment later, where one was still busy)."""
        # (each pool in a process of its own, all at once, as they were made)
        self.guest.run(
            "".join(
                f"{{ for attempt in 1 2 3; do "
                f"zpool list -H -o name {n} >/dev/null 2>&1 || break; "
                f"zpool destroy -f {n} 2>/dev/null && break; sleep 1; done; "
                f"rm -f {POOL_DIR}/{n}.img; }} & "
                for n in pools.names
            )
            + "wait",
            check=False,
        )

    def reimport(self, pool: str, *, rewind: bool = False, mount: bool = True) -> None:
        """Export a pool and import it again: none of its data stays cached. `rewind`: back
        to its checkpoint (which that discards); `mount=False`: mount none of its datasets."""
        flags = ("--rewind-to-checkpoint " if rewind else "") + ("" if mount else "-N ")
        self.guest.run(
            f"zpool export {pool} && zpool import -d {POOL_DIR} {flags}{pool}", timeout=3600
        )

    # --- reading state for assertions ---------------------------------------------

    def names(self, *roots: str) -> list[str]:
        """`zfs list -H -o name -t all -r ROOTS` as a list (zfs' own order)."""
        out = self.guest.run_argv(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", *roots])
        return [line for line in out.stdout.split("\n") if line]

    def snapshots(self, dataset: str) -> list[str]:
        """Short snapshot names of one dataset, oldest first."""
        out = self.guest.run_argv(
            [
                "zfs",
                "list",
                "-H",
                "-o",
                "name",
                "-t",
                "snapshot",
                "-s",
                "createtxg",
                "-d",
                "1",
                dataset,
            ]
        )
        return [line.split("@", 1)[1] for line in out.stdout.split("\n") if line]

    def bookmarks(self, dataset: str) -> list[str]:
        """Short bookmark names of one dataset, oldest first."""
        argv = ["zfs", "list", "-H", "-o", "name", "-t", "bookmark", "-s", "createtxg", "-d", "1"]
        out = self.guest.run_argv([*argv, dataset])
        return [line.split("#", 1)[1] for line in out.stdout.split("\n") if line]

    def guids(self, dataset: str) -> list[str]:
        """The guids of one dataset's snapshots, oldest first."""
        argv = ["zfs", "list", "-H", "-o", "guid", "-t", "snapshot", "-s", "createtxg", "-d", "1"]
        out = self.guest.run_argv([*argv, dataset])
        return [line for line in out.stdout.split("\n") if line]

    def prop(self, dataset: str, prop: str) -> str:
        return self.guest.run_argv(
            ["zfs", "get", "-H", "-p", "-o", "value", prop, dataset]
        ).stdout.strip()

    def holds(self, snapshot: str) -> list[str]:
        out = self.guest.run_argv(["zfs", "holds", "-H", snapshot]).stdout
        return sorted(line.split("\t")[1] for line in out.split("\n") if line)

    def all_holds(self, *roots: str) -> str:
        """`zfs holds -H` of every snapshot under `roots` (sorted lines)."""
        names = " ".join(shlex.quote(r) for r in roots)
        out = self.guest.run(f"zfs list -H -o name -t snapshot -r {names} | xargs -r zfs holds -H")
        return "\n".join(sorted(out.stdout.splitlines()))

    def write(self, dataset: str, path: str = "file", size_kb: int = 64) -> None:
        """Write fresh random data into a mounted filesystem."""
        mnt = self.prop(dataset, "mountpoint")
        target = f"{mnt}/{path}"
        self.guest.run_argv(
            ["dd", "if=/dev/urandom", f"of={target}", "bs=1k", f"count={size_kb}", "status=none"]
        )
        # `sync` only reaches the ZIL; `written` changes when the transaction group commits
        self.guest.run_argv(["zpool", "sync", dataset.split("/", maxsplit=1)[0]])

    def checksum(self, dataset: str) -> str:
        """sha256 over the files of a filesystem or snapshot (mounted read-only if needed).

        Files and directories are read with O_NOATIME: reading a filesystem that is mounted
        read-write must not update atime, which would count as a change of that dataset
        (the next incremental receive into it would then need --rollback)."""
        script = f"""
set -e
ds={shlex.quote(dataset)}
if [ "$(zfs get -H -o value mounted "$ds")" = yes ]; then
    mnt=$(zfs get -H -o value mountpoint "$ds"); tmp=""
else
    mnt=$(mktemp -d); tmp=$mnt
    case "$ds" in
        *@*) mount -t zfs -o ro "$ds" "$mnt" ;;  # a snapshot
        *) mount -t zfs -o ro,zfsutil "$ds" "$mnt" ;;
    esac
fi
python3 -c {shlex.quote(_CHECKSUM_PY)} "$mnt"
if [ -n "$tmp" ]; then umount "$tmp"; rmdir "$tmp"; fi
"""
        return self.guest.run(script).stdout.split()[0]

    def replica_report(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, ...]]:
        """For each (source, target) in one guest script: the newest snapshot on each side,
        their guids, the target's resume token, and checksums of both newest snapshots."""
        lines = []
        for source, target in pairs:
            src, tgt = shlex.quote(source), shlex.quote(target)
            lines.append(
                f"s=$(zfs list -H -o name -t snapshot -s createtxg -d 1 {src} | tail -n 1); "
                f"t=$(zfs list -H -o name -t snapshot -s createtxg -d 1 {tgt} | tail -n 1); "
                'printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "${s#*@}" "${t#*@}" '
                '"$(zfs get -H -p -o value guid "$s")" "$(zfs get -H -p -o value guid "$t")" '
                f'"$(zfs get -H -o value receive_resume_token {tgt})" "$(sum_of "$s")" "$(sum_of "$t")"'
            )
        script = (
            'sum_of() { m=$(mktemp -d); mount -t zfs -o ro "$1" "$m" && '
            f'python3 -c {shlex.quote(_CHECKSUM_PY)} "$m" | cut -c1-16; '
            'umount "$m"; rmdir "$m"; }\n' + "\n".join(lines)
        )
        return [tuple(line.split("\t")) for line in self.guest.run(script).stdout.splitlines()]

    def tool(
        self, *args: str, now: Optional[str] = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run zfs-autobackup inside the guest; `now` ('YYYY-MM-DD HH:MM:SS') freezes its clock."""
        argv = ["zfs-autobackup", *args]
        if now:
            argv = ["faketime", "-f", now, *argv]
        return self.guest.run_argv(argv, check=check)
