"""The remote guard (zfs-autobackup-guard): what it lets through and what it refuses.

1. Every command the tool sends is allowed: the tool runs stories against the fake zfs
   behind two ssh hosts (pull+push), each remote command line is recorded exactly as
   sshd would hand it to the guard (SSH_ORIGINAL_COMMAND), and fed to the guard's
   rules in the mode of that host.
2. A table of hostile commands, each refused with its reason.
3. main() end to end, with a fake `zfs` program on PATH.
4. The guard runs on the standard library alone (no site-packages).
"""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executors.classic import run_classic
from executors.console import Console
from executors.execute import Settings
from executors.guard import program as guard
from executors.guard import rules
from executors.listing_store import Store
from executors.options import build_parser, job_from_args
from executors.runner import (
    CLOCK_ARGV,
    PipelineResult,
    PipelineWatch,
    Result,
    Stage,
    group_stages,
    shell_line,
)
from planner.actions import SOURCE, TARGET
from planner.compile import PROBE_PREFIX, Compiled, Facts, Options, compile_plan, estimate_argv
from planner.plan import build_plan
from reconcile import guard_protocol, selection_values, zfs_rows, zfs_text
from reconcile.errors import GuardRefused
from reconcile.filters import COMPRESSORS
from reconcile.guard_protocol import READ_ONLY
from reconcile.model import Host
from reconcile.pipes import TransferOptions
from reconcile.scripts import MOUNT_SCRIPT, PROBE_SCRIPT
from tests import sendstreams as mk
from tests.builders import dataset, job, run_desire, state
from tests.fakezfs import FakeError, FakeRunner, FakeZfs

REPO = Path(__file__).resolve().parents[1]
NO_TOKEN: Callable[[str], Optional[rules.TokenSend]] = lambda token: None  # noqa: E731
NO_SNAPSHOTS: Callable[[str], Optional[list[str]]] = lambda dataset: None  # noqa: E731
NO_MOUNTPOINT: Callable[[str], Optional[str]] = lambda dataset: None  # noqa: E731
#: the -x of every receive the host would otherwise mount at boot (zfs-mount-generator)
NO_BOOT = "-x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by"
START = 1_767_225_600  # 2026-01-01 00:00 UTC
PROP = "autobackup:bak"
TAG = "zfs_autobackup:bak"
#: the tool's transfer options in the story (each one a stage the guards must allow)
TRANSFER = [
    "--compress", "zstd-fast", "--buffer", "16M", "--rate", "1M",
    "--send-pipe", "cat", "--recv-pipe", "cat -u",
    "--set-snapshot-properties", "com.example:note=it's here",
    "--pre-snapshot-cmd", "sync", "--post-snapshot-cmd", "logger -t bak done",
]  # fmt: skip
SOURCE_GUARD = [
    "bak", "--allow-destroy", "--exclude-received", "--send-pipe", "cat",
    "--pre-snapshot-cmd", "sync", "--post-snapshot-cmd", "logger -t bak done",
]  # fmt: skip
TARGET_GUARD = [
    "bak", "--target-path", "backup", "--allow-destroy", "--allow-mount", "--recv-pipe", "cat -u",
]  # fmt: skip


def _policy(argv: Sequence[str]) -> rules.Policy:
    return guard.policy_from(guard.build_parser().parse_args(list(argv)))


# --- 1. every command the tool sends is allowed -----------------------------------------


class Recorder:
    """The tool's runner for a source on ssh host "src" and a target on "tgt": each
    remote command line, as sshd hands it to the guard there, is recorded and judged by
    that host's guard when it is sent (a guard's lookups see the state of that moment),
    and (allowed or not) run on one fake zfs (pools "pool" and "backup": a resume token
    is the same machine's), a pipeline's zfs send and zfs recv only (its filters pass the
    stream through). The helper probe finds every program installed, the pre- and
    post-snapshot commands work. Each real send's estimate (`plan --estimate`) is judged
    too."""

    def __init__(self, zfs: FakeZfs, guards: dict[str, rules.Policy]) -> None:
        self.fake = FakeRunner({"src": zfs, "tgt": zfs})
        self.guards = guards
        self.lookups = _lookups(zfs)
        #: (ssh host, SSH_ORIGINAL_COMMAND)
        self.lines: list[tuple[str, str]] = []
        #: the guards' refusals (of commands the tool sent)
        self.refused: list[str] = []

    def _record(self, stages: Sequence[Stage]) -> None:
        for host, group in group_stages(stages):
            assert host.ssh is not None, "both sides are remote in these stories"
            # the ssh command line the runner builds; its last word is the remote command
            sent = shlex.split(shell_line(group))[-1]
            sends = [s.argv for s in group if s.argv[:2] == ("zfs", "send") and "-P" in s.argv]
            for line in (sent, *(shlex.join(estimate_argv(argv)) for argv in sends)):
                self.lines.append((host.ssh, line))
                try:
                    rules.judge(line, self.guards[host.ssh], self.lookups)
                except rules.Refused as exc:
                    self.refused.append(f"[{host.ssh}] {rules.refusal(exc.message, line)}")

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result:
        self._record([Stage(host, tuple(argv))])
        if tuple(argv[:3]) == PROBE_PREFIX or argv[0] not in ("zfs", "zpool", "sh"):
            return Result(shlex.join(argv), 0, "", "")  # (the snapshot commands work)
        return self.fake.run(host, argv, label=label, input=input, check=check)

    def host_clock(self, host: Host) -> Optional[int]:
        """A remote host's clock, read as executors.runner reads it (`date +%s` there)."""
        self._record([Stage(host, CLOCK_ARGV)])
        return self.fake.host_clock(host)

    def pipeline(
        self, stages: Sequence[Stage], *, check: bool = True, watch: Optional[PipelineWatch] = None
    ) -> PipelineResult:
        self._record(stages)
        ends = [s for s in stages if s.argv[:2] in (("zfs", "send"), ("zfs", "recv"))]
        return self.fake.pipeline(ends, check=check)


class World:
    def __init__(self, source_guard: Sequence[str] = SOURCE_GUARD) -> None:
        self.zfs = FakeZfs()
        self.zfs.now = START
        for name in ("pool", "pool/a", "pool/a/b", "pool/a/my data", "pool/c", "pool/x", "backup"):
            self.zfs.create(name)
        self.zfs.datasets["pool/a"].local_props[PROP] = "true"
        self.zfs.datasets["pool/c"].local_props[PROP] = "child"
        self.zfs.create("pool/c/d")
        guards = {"src": _policy(source_guard), "tgt": _policy(TARGET_GUARD)}
        self.runner = Recorder(self.zfs, guards)
        self.cache = Path(tempfile.mkdtemp()) / "listing.json"

    def run(self, *flags: str) -> str:
        self.zfs.now += 3600
        for name in ("pool/a", "pool/a/b", "pool/a/my data", "pool/c/d"):
            self.zfs.write(name)
        # (--exclude-received: the received copies are on the same machine, selected)
        argv = ["bak", "backup", "--ssh-source", "src", "--ssh-target", "tgt",
                "--exclude-received", *flags]  # fmt: skip
        args = build_parser().parse_args(argv)
        out = io.StringIO()
        console = Console(out=out, err=out, verbose=True, color=False)
        job = job_from_args(args)
        # (with the listing cache, as a run from the command line: its reads are sent too)
        store = Store.load(self.cache, console.warning, console.debug)
        settings = Settings(parallel=1, send_sizes=True, store=store)
        run_classic(job, False, console, self.runner, float(self.zfs.now), settings=settings)
        return out.getvalue()


def _lookups(zfs: FakeZfs) -> rules.Lookups:
    """The guard's questions (with --exclude-received), answered by the fake as zfs would."""

    def selected(dataset: str) -> bool:
        if dataset not in zfs.datasets:
            return False
        value, source = zfs.prop(dataset, PROP)
        origin = selection_values.inherited_from(source)
        above = zfs.prop(origin, PROP)[1] if origin else source
        return rules.selects(value, source, above, exclude_received=True)

    def token(text: str) -> Optional[rules.TokenSend]:
        try:
            out = zfs.command(["zfs", "send", "-nv", "-t", text])
        except FakeError:
            return None
        toname, toguid = zfs_rows.parse_resume_info(out.stdout)
        assert toname is not None and toguid is not None
        sends = zfs_rows.resume_sends(out.stdout, toname)
        assert sends is not None
        return rules.TokenSend(toname, toguid, sends, zfs.get_snap(sends)[1].guid)

    def snapshots(name: str) -> Optional[list[str]]:
        ds = zfs.datasets.get(name)
        return [s.name for s in ds.snaps] if ds else None

    return rules.Lookups(selected, token, snapshots, lambda name: "none", zfs.clones_of)


def _story() -> World:
    """Runs that make the tool send every kind of command (asserted by the caller)."""
    world = World()
    zfs = world.zfs

    def run(*flags: str) -> str:
        log = world.run(*TRANSFER, *flags)
        assert "dataset(s) failed" not in log, log
        return log

    run()  # full sends
    run()  # increments
    # snapshots only, twice: the next send is one stream of them (-I); as 3.3: holds on
    # the source (no bookmarks), compressed blocks, receive properties
    run("--no-send")
    run("--no-send")
    recv = ["--clear-refreservation", "--clear-mountpoint", "--set-properties", "com.example:x=1"]
    run("--no-bookmarks", "--zfs-compressed", *recv)
    # a clone: its first send is from its origin (-i pool/a@SNAP)
    zfs.clone(f"pool/a@{zfs.datasets['pool/a'].snaps[-1].name}", "pool/a/clone")
    run("--keep-source=1", "--keep-target=2")
    # an interrupted transfer, resumed (zfs send -nv -t; zfs send -t)
    zfs.interrupt_next = 1
    world.run(*TRANSFER)
    assert "resuming" in run("--no-snapshot")
    # one that can no longer be used (its snapshot is gone) is aborted (zfs recv -A); with
    # --ignore-transfer-errors the failed send is looked for on the target
    zfs.interrupt_next = 1
    world.run(*TRANSFER, "--ignore-transfer-errors")
    (partial,) = [ds.name for ds in zfs.datasets.values() if ds.token]
    source = partial.removeprefix("backup/")
    zfs.command(["zfs", "destroy", f"{source}@{zfs.datasets[source].snaps[-1].name}"])
    assert "Aborting resume" in run()
    # written on the target: rolled back (--rollback), then forced (--force)
    zfs.write("backup/pool/a")
    run("--rollback")
    zfs.write("backup/pool/a")
    run("--force")
    # the chain rests on someone else's bookmark: ours is a copy of it
    ours = zfs.datasets["pool/a"].bookmarks[-1].name
    snap = ours.rpartition("__")[0]
    zfs.command(["zfs", "bookmark", f"pool/a@{snap}", "pool/a#sanoid_marker"])
    zfs.command(["zfs", "destroy", f"pool/a#{ours}"])
    zfs.command(["zfs", "destroy", f"pool/a@{snap}"])
    run("--no-snapshot")
    run()  # from our bookmark (-i DS#BOOKMARK)
    return world


#: what the story must have made the tool send (host, regex): every kind of command
SENT = [
    # observation, features, helper probe
    ("src", r"^zfs get -H -p -o name,value,source -t filesystem,volume autobackup:bak$"),
    ("src", r"^zfs list -H -p -o name,\S+ -t filesystem,volume,snapshot,bookmark -r pool/a pool/c/d$"),
    ("tgt", r"^zfs list -H -p -o name,\S+ -t filesystem,volume,snapshot -r backup$"),
    # the listing cache: the clock, the pools, the datasets, the snapshots not served
    ("src", r"^date \+%s$"),
    ("tgt", r"^date \+%s$"),
    ("src", r"^zpool get -H -o name,property,value guid,feature@large_blocks,\S+ pool$"),
    ("tgt", r"^zpool get -H -o name,property,value guid,feature@large_blocks,\S+ backup$"),
    ("src", r"^zfs list -H -p -o name,\S+,snapshots_changed -t filesystem,volume,bookmark -r pool/a pool/c/d$"),
    ("tgt", r"^zfs list -H -p -o name,\S+,snapshots_changed -t filesystem,volume -r backup$"),
    ("src", r"^zfs list -H -p -o name,\S+ -t snapshot -d 1 pool/a"),
    ("tgt", r"^zfs list -H -p -o name,\S+ -t snapshot -d 1 backup"),
    ("tgt", r"^zfs holds -H backup/pool/a@\S+ backup/"),
    ("src", r"^sh -c 'for p in .* sh cat mbuffer zstd$"),
    ("tgt", r"^sh -c 'for p in .* sh cat mbuffer zstd$"),
    # snapshots and the commands around them
    ("src", r"^sync$"),
    ("src", r"^logger -t bak done$"),
    ("src", r"^zfs snapshot -o 'com.example:note=it'\"'\"'s here' pool/a@\S+ pool/a/b@\S+ 'pool/a/my data@\S+' pool/c/d@"),
    ("src", r"^zfs send -P -L -e -p -i @\S+ 'pool/a/my data@\S+' \| "),
    ("tgt", rf"\| zfs recv -u -s {NO_BOOT} 'backup/pool/a/my data'$"),
    # sends: full, incremental, several snapshots, from a clone's origin, from a
    # bookmark, compressed blocks, resumed, through the filters; estimates
    ("src", r"^zfs send -P -L -e -p pool/a@\S+ \| cat \| zstd -T0 -3 \| mbuffer -q -s128k -m16M -R1M$"),
    ("src", r"^zfs send -P -L -e -p -i @\S+ pool/a/b@\S+ \| cat \| zstd"),
    ("src", r"^zfs send -P -L -e -c -p -I @\S+ pool/a@\S+ \| "),
    ("src", r"^zfs send -P -L -e -p -i pool/a@\S+ pool/a/clone@\S+ \| "),
    ("src", r"^zfs send -P -L -e -p -i 'pool/a#\S+__\d+' pool/a@\S+ \| "),
    ("src", r"^zfs send -nv -t 1-fake-\d+$"),
    ("src", r"^zfs send -P -L -e -t 1-fake-\d+ \| cat \| "),
    ("src", r"^zfs send -n -P -L -e -p -i @\S+ pool/a@\S+$"),
    ("src", r"^zfs send -n -P -L -e -t 1-fake-\d+$"),
    # receives, with and without -F and the receive properties; aborted; arrived?
    ("tgt", rf"^zstd -dc \| cat -u \| mbuffer -q -s128k -m16M \| zfs recv -u -s {NO_BOOT} backup/pool/a$"),
    ("tgt", rf"\| zfs recv -u -s -x refreservation {NO_BOOT} -o com.example:x=1 -o canmount=noauto backup/pool/a$"),
    ("tgt", rf"\| zfs recv -u -s {NO_BOOT} -F backup/pool/a$"),
    ("tgt", r"^zfs recv -A backup/pool/a$"),
    ("tgt", r"^zfs list -H -o name backup/pool/\S+@\S+$"),
    ("tgt", r"^zfs create -o canmount=off backup/pool$"),
    ("tgt", r"^sh -c 'zfs get -H -o property,value all .* sh backup/pool/a$"),
    ("tgt", r"^zfs rollback backup/pool/a@\S+$"),
    # holds, bookmarks, thinning
    ("src", r"^zfs hold -r zfs_autobackup:bak pool/a@\S+$"),
    ("src", r"^zfs hold zfs_autobackup:bak pool/c/d@\S+$"),
    ("src", r"^zfs release -r zfs_autobackup:bak pool/a@\S+$"),
    ("tgt", r"^zfs hold -r zfs_autobackup:bak backup/pool/a@\S+$"),
    ("tgt", r"^zfs release -r zfs_autobackup:bak backup/pool/a@\S+$"),
    ("tgt", r"^zfs release zfs_autobackup:bak backup/pool/a@\S+ backup/pool/a/b@\S+"),
    ("src", r"^zfs bookmark pool/a@\S+ 'pool/a#\S+__\d+'$"),
    ("src", r"^zfs bookmark 'pool/a#sanoid_marker' 'pool/a#\S+__\d+'$"),
    ("src", r"^zfs destroy 'pool/a#\S+__\d+'$"),
    ("src", r"^zfs destroy pool/a@[^,]+,[^,]+"),
    ("tgt", r"^zfs destroy backup/pool/a@\S+$"),
]  # fmt: skip


def test_every_command_the_tool_sends_is_allowed_by_the_guard_of_its_host() -> None:
    world = _story()
    assert world.runner.refused == []
    lines = world.runner.lines
    missing = [(host, regex) for host, regex in SENT
               if not any(h == host and re.search(regex, line) for h, line in lines)]  # fmt: skip
    assert not missing, missing


def test_a_pull_through_a_read_only_source_guard_with_snapshots_taken_on_the_source() -> None:
    """The source's own cron takes the snapshots: the backup server only reads and sends
    (--no-snapshot --no-thinning, no holds or bookmarks on the source)."""
    world = World(source_guard=["bak", "--read-only", "--exclude-received"])
    flags = ["--no-snapshot", "--no-thinning", "--no-holds", "--no-bookmarks", *TRANSFER[:6]]
    for hour in (1, 2):
        names = ["pool/a", "pool/a/b", "pool/a/my data", "pool/c/d"]
        world.zfs.snapshot([f"{name}@bak-2026010{hour}000000" for name in names])
        assert "dataset(s) failed" not in (log := world.run(*flags)), log
    assert world.runner.refused == []
    sent = [line for host, line in world.runner.lines if host == "src" and "zfs send -P" in line]
    assert len(sent) == 8 and all(" | zstd -T0 -3 | mbuffer " in line for line in sent), sent
    # the same commands with snapshots, holds and bookmarks on the source: refused
    world.run()
    assert world.runner.refused and all(
        ": the guard is --read-only: " in line or "a pre/post snapshot command" in line
        for line in world.runner.refused
    ), world.runner.refused


# a Proxmox-like template: pool/tmpl@__base__ (not a snapshot of ours) and its clone
TEMPLATE, BASE = "pool/tmpl", "pool/tmpl@__base__"


def _template_world(*, backed_up_before: bool) -> World:
    """Only pool/tmpl and its clone pool/vm-101 are selected; the template has one more
    snapshot that is not ours (@other) after @__base__. `backed_up_before`: the template
    was sent before @__base__ was taken (the origin then goes incrementally)."""
    world = World()
    zfs = world.zfs
    del zfs.datasets["pool/a"].local_props[PROP], zfs.datasets["pool/c"].local_props[PROP]
    zfs.create(TEMPLATE).local_props[PROP] = "true"
    zfs.write(TEMPLATE)
    if backed_up_before:
        assert "dataset(s) failed" not in (log := world.run(*TRANSFER)), log
        zfs.write(TEMPLATE)
    zfs.snapshot([BASE])
    zfs.write(TEMPLATE)
    zfs.snapshot([f"{TEMPLATE}@other"])
    zfs.clone(BASE, "pool/vm-101").local_props[PROP] = "true"
    return world


#: what the tool sends of a clone whose origin is not ours (host "src"), by story
CLONE_SENT = {
    False: [  # the origin in full (resumed), then the template from it, the clone from it
        r"^zfs send -P -L -e -p pool/tmpl@__base__ \| cat \| zstd",
        r"^zfs send -n -P -L -e -p pool/tmpl@__base__$",
        r"^zfs send -nv -t 1-fake-\d+$",
        r"^zfs send -P -L -e -t 1-fake-\d+ \| cat \| zstd",
        r"^zfs send -P -L -e -p -i @__base__ pool/tmpl@bak-\d+ \| ",
        r"^zfs send -P -L -e -p -i pool/tmpl@__base__ pool/vm-101@bak-\d+ \| ",
    ],
    True: [  # the origin incrementally (compressed blocks; holds, not bookmarks)
        r"^zfs send -P -L -e -c -p -i @bak-\d+ pool/tmpl@__base__ \| ",
        r"^zfs send -P -L -e -c -p -i @__base__ pool/tmpl@bak-\d+ \| ",
        r"^zfs send -P -L -e -c -p -i pool/tmpl@__base__ pool/vm-101@bak-\d+ \| ",
        r"^zfs hold zfs_autobackup:bak .*pool/vm-101@bak-\d+",
    ],
}


@pytest.mark.parametrize("backed_up_before", [False, True], ids=["full", "incremental"])
def test_a_guarded_pull_of_a_clone_whose_origin_is_not_ours(backed_up_before: bool) -> None:
    """#31: the tool sends a selected clone's origin (pool/tmpl@__base__, not ours) first,
    so that the clone arrives as a clone: the source guard allows exactly that (in full,
    resumed, or incrementally, and as the clone's base)."""
    world = _template_world(backed_up_before=backed_up_before)
    zfs = world.zfs
    flags = ["--no-bookmarks", "--zfs-compressed"] if backed_up_before else []
    if not backed_up_before:
        zfs.interrupt_next = 1  # (the first receive: the origin's full one)
        world.run(*TRANSFER)
    for _ in range(2):
        zfs.write("pool/vm-101")
        assert "dataset(s) failed" not in (log := world.run(*TRANSFER, *flags)), log
    assert world.runner.refused == []
    sent = [line for host, line in world.runner.lines if host == "src"]
    missing = [regex for regex in CLONE_SENT[backed_up_before]
               if not any(re.search(regex, line) for line in sent)]  # fmt: skip
    assert not missing, (missing, [line for line in sent if "tmpl" in line or "vm-101" in line])
    assert zfs.datasets["backup/pool/vm-101"].origin == f"backup/{BASE}"
    assert "__base__" in [s.name for s in zfs.datasets["backup/pool/tmpl"].snaps]


def test_the_guard_sends_no_other_snapshot_that_is_not_ours() -> None:
    """The origin rule lets through the origin of a selected clone in a selected dataset,
    nothing else: not the template's other snapshot, not an unselected dataset's origin
    (the tool sends its clone in full), not an origin whose clones are all unselected,
    not a selected origin as the base of an unselected clone."""
    world = _template_world(backed_up_before=False)
    zfs = world.zfs
    zfs.create("pool/secret-tmpl")  # (not selected) with a selected clone
    zfs.write("pool/secret-tmpl")
    zfs.snapshot(["pool/secret-tmpl@__base__", f"{TEMPLATE}@{OURS}", f"{TEMPLATE}@lonely"])
    zfs.clone("pool/secret-tmpl@__base__", "pool/vm-102").local_props[PROP] = "true"
    zfs.clone(f"{TEMPLATE}@lonely", "pool/scratch")  # (not selected)
    zfs.clone(BASE, "pool/secret")  # (not selected)
    zfs.snapshot([f"pool/vm-101@{OURS}", f"pool/secret@{OURS}", f"pool/vm-102@{OURS}"])
    source = _policy(SOURCE_GUARD)
    lookups = _lookups(zfs)
    nor = "is not one of ours (bak-%Y%m%d%H%M%S), nor the origin of a selected clone"
    for line, reason in (
        (f"zfs send -p {TEMPLATE}@other", f"snapshot '{TEMPLATE}@other' {nor}"),
        (f"zfs send -p -i @__base__ {TEMPLATE}@other", f"snapshot '{TEMPLATE}@other' {nor}"),
        (f"zfs send -p {TEMPLATE}@lonely", f"snapshot '{TEMPLATE}@lonely' {nor}"),
        (
            f"zfs send -I @__base__ {TEMPLATE}@{OURS}",
            f"zfs send -I: snapshot '{TEMPLATE}@other' {nor}",
        ),
        ("zfs send -p pool/secret-tmpl@__base__", "dataset 'pool/secret-tmpl' is not selected"),
        (f"zfs send -p -i {BASE} pool/secret@{OURS}", "dataset 'pool/secret' is not selected"),
        (f"zfs send -p pool/secret@{OURS}", "dataset 'pool/secret' is not selected"),
    ):
        with pytest.raises(rules.Refused) as refused:
            rules.judge(line, source, lookups)
        assert reason in refused.value.message, line
    for line in (  # (their neighbours, as the tool sends them)
        f"zfs send -L -e -c -p {BASE} | zstd -T0 -3",
        f"zfs send -w -p {BASE}",
        f"zfs send -p -i {BASE} pool/vm-101@{OURS}",
        f"zfs send -p -i pool/secret-tmpl@__base__ pool/vm-102@{OURS}",
        f"zfs send -p pool/vm-102@{OURS}",  # (in full: its origin's dataset is not selected)
    ):
        assert rules.judge(line, source, lookups), line
    # without the clone the origin is just another snapshot that is not ours
    zfs.datasets["pool/vm-101"].local_props[PROP] = "false"
    with pytest.raises(rules.Refused, match=f"snapshot '{BASE}' {re.escape(nor)}"):
        rules.judge(f"zfs send -p {BASE}", source, lookups)


def _remote_lines(compiled: Compiled) -> list[tuple[str, str]]:
    """(host, SSH_ORIGINAL_COMMAND) of every compiled command, the source on ssh host
    "src" and the target on "tgt", as the runner sends them."""
    hosts = {SOURCE: Host(ssh="src"), TARGET: Host(ssh="tgt")}
    found = []
    for step in compiled.steps:
        for s in (step, *step.fallback):
            stages = [Stage(hosts[c.side], c.argv) for c in s.commands]
            for host, group in group_stages(stages):
                found.append((str(host.ssh), shlex.split(shell_line(group))[-1]))
    return found


@pytest.mark.parametrize("compress", sorted(COMPRESSORS))
def test_compiled_sends_of_every_kind_are_allowed(compress: str) -> None:
    """Raw sends of encrypted datasets, --decrypt, --encrypt, volumes, every compressor,
    chunk sizes, fallbacks (one destroy or hold at a time), built by the compile stage."""
    old, new = "bak-20260101120000", "bak-20260102120000"
    source = state([
        dataset("p", (old,), selection=("true", "local"), written=9, encryption="aes-256-gcm"),
        dataset("p/v", (old,), selection=("true", "inherited from p"), written=9, kind="volume"),
    ])  # fmt: skip
    target = state([dataset("backup")])
    transfer = TransferOptions.create(compress, "1G", None, [], [], chunk_size="1M")
    guards = {"src": _policy(["bak", "--allow-destroy"]), "tgt": _policy(TARGET_GUARD)}
    asked = rules.Lookups(lambda ds: ds in ("p", "p/v"), NO_TOKEN, NO_SNAPSHOTS, NO_MOUNTPOINT)
    features = frozenset({"large_blocks", "embedded_data", "extensible_dataset"})
    facts = Facts({SOURCE: {"p": features}, TARGET: {"backup": features}})
    seen = set()
    for options in (
        {"zfs_compressed": True},
        {"decrypt": True, "set_properties": ("canmount=noauto",)},
        {"encrypt": True, "filter_properties": ("mountpoint",), "force": True},
    ):
        j = job(transfer=transfer, **options)
        now = j.naming.timestamp(new)
        plan = build_plan(j, run_desire(j, source, target, now), source, target)
        for host, line in _remote_lines(
            compile_plan(plan, j.transfer_recipe, j.snapshotting, facts, Options(progress=True))
        ):
            rules.judge(line, guards[host], asked)  # (raises Refused)
            seen.add(line)
    compressor = shlex.join(COMPRESSORS[compress].compress)
    pipe = f" | {compressor} | mbuffer -q -s1M -m1G"
    for sent in (
        f"zfs send -P -L -c -w -p -i @{old} p@{new}{pipe}",  # raw, compressed blocks
        f"zfs send -P -L -e -i @{old} p@{new}{pipe}",  # decrypted
        f"zfs send -P -L -w -p -i @{old} p@{new}{pipe}",  # raw, for --encrypt
        f"zfs send -P -L -e -p -i @{old} p/v@{new}{pipe}",  # a volume
    ):
        assert sent in seen, sorted(seen)
    decompress = shlex.join(COMPRESSORS[compress].decompress)
    received = [line for line in seen if line.startswith(f"{decompress} | mbuffer -q -s1M -m1G | ")]
    assert any(line.endswith(" -o canmount=noauto backup/p") for line in received), received
    assert any(" -x mountpoint " in line and line.endswith(" backup/p") for line in received)
    assert any(" -x keylocation " in line and " -F " in line for line in received), received


# --- 2. hostile commands ----------------------------------------------------------------

OURS = "bak-20260101000000"
GUARDS = {
    "src": ["bak"],
    "src+destroy": ["bak", "--allow-destroy"],
    "ro": ["bak", "--read-only", "--allow-destroy"],
    "tgt": ["bak", "--target-path", "backup/x", "--allow-mount"],
    "tgt+destroy": ["bak", "--target-path", "backup/x", "--allow-destroy", "--allow-mount"],
    "tgt+ro": ["bak", "--target-path", "backup/x", "--read-only", "--allow-mount"],
    # (the default: nothing received is ever mounted by the host)
    "tgt-unmounted": ["bak", "--target-path", "backup/x"],
    "ro+cmd": ["bak", "--read-only", "--pre-snapshot-cmd", "sync"],
}
OURS2, OURS3 = "bak-20260102000000", "bak-20260103000000"


def _token(toname: str, sends: Optional[str] = None, guid: int = 7) -> rules.TokenSend:
    return rules.TokenSend(toname, 7, toname if sends is None else sends, guid)


TOKENS = {
    "1-aaa-x": _token(f"pool/x@{OURS}"),
    "1-bbb-a": _token(f"pool/a@{OURS}"),
    "1-ccc-a": _token("pool/a@manual"),
    # forged: the toname is ours, the toguid another snapshot's (zfs sends that one)
    "1-ddd-forged": _token(f"pool/a@{OURS}", sends="pool/x@secret"),
    "1-eee-guid": _token(f"pool/a@{OURS}", guid=8),
    "1-fff-silent": rules.TokenSend(f"pool/a@{OURS}", 7, None, None),
}
SNAPSHOTS = {"pool/a": [OURS, "manual", OURS2, OURS3], "pool/a/b": [OURS, OURS2]}
LOOKUPS = rules.Lookups(
    lambda ds: ds in ("pool/a", "pool/a/b"),
    TOKENS.get,
    SNAPSHOTS.get,
    {"backup/x": "/backup/x"}.get,
)
MOUNT = shlex.join(("sh", "-c", MOUNT_SCRIPT, "sh", "backup/y"))
PROBE = shlex.join(("sh", "-c", PROBE_SCRIPT, "sh", "zstd"))
EVIL = "com.example:note=$(touch /tmp/pwned1);`touch /tmp/pwned2`;'\"; touch /tmp/pwned3 #"
SEND = f"zfs send -p pool/a@{OURS}"

HOSTILE = [
    # a target guard without --allow-mount: every receive unmountable, no mounting
    ("tgt-unmounted", "zfs recv -u -s backup/x/a", "zfs recv without -o canmount=noauto"),
    ("tgt-unmounted", "zfs recv -u -o canmount=on backup/x/a", "zfs recv without -o canmount=noauto"),
    # ... and nothing that systemd's generator would mount at boot (the source's values
    # filtered), nothing set that runs or shares what arrives
    ("tgt-unmounted", "zfs recv -u -o canmount=noauto backup/x/a", "zfs recv without -x org.openzfs.systemd:wanted-by (mounted at boot)"),
    ("tgt-unmounted", "zfs recv -u -o canmount=noauto -x org.openzfs.systemd:wanted-by backup/x/a", "zfs recv without -x org.openzfs.systemd:required-by"),
    ("tgt-unmounted", f"zfs recv -u -o canmount=noauto {NO_BOOT} -o org.openzfs.systemd:wanted-by=multi-user.target backup/x/a", "zfs recv: -o org.openzfs.systemd:wanted-by=... (systemd would mount it at boot)"),
    ("tgt", "zfs recv -u -o org.openzfs.systemd:ignore=off backup/x/a", "zfs recv: -o org.openzfs.systemd:ignore=..."),
    ("tgt", "zfs recv -u -o setuid=on backup/x/a", "zfs recv: -o 'setuid=on' is not allowed"),
    ("tgt", "zfs recv -u -o exec=on backup/x/a", "zfs recv: -o 'exec=on' is not allowed"),
    ("tgt", "zfs recv -u -o devices=on backup/x/a", "zfs recv: -o 'devices=on' is not allowed"),
    ("tgt", "zfs recv -u -o sharenfs=rw backup/x/a", "zfs recv: -o 'sharenfs=rw' is not allowed"),
    ("tgt", "zfs recv -u -o sharesmb=on backup/x/a", "zfs recv: -o 'sharesmb=on' is not allowed"),
    ("tgt", "zfs recv -u -o mountpoint=/root/.ssh backup/x/a", "zfs recv: -o mountpoint='/root/.ssh' is outside the target path's mountpoint (/backup/x)"),
    ("tgt", "zfs recv -u -o mountpoint=/backup/x/../../root backup/x/a", "is outside the target path's mountpoint"),
    ("tgt", "zfs recv -u -o mountpoint=/backup/xy backup/x/a", "is outside the target path's mountpoint"),
    # names zfs refuses today: refused by the guard itself
    ("tgt", "zfs recv -u backup/x/..", "zfs recv: 'backup/x/..' is not a dataset name"),
    ("tgt", "zfs recv -u backup/x/./a", "zfs recv: 'backup/x/./a' is not a dataset name"),
    ("src", "zfs send pool/a/..@" + OURS, "is not a snapshot name (DATASET@NAME)"),
    ("src", "zfs list -H pool/..", "zfs list: 'pool/..' is not a dataset name"),
    ("tgt-unmounted", shlex.join(("sh", "-c", MOUNT_SCRIPT, "sh", "backup/x/a")), "sh (mount) needs --allow-mount"),
    # destroys: never a dataset, never with a flag, never a range, only ours
    ("src+destroy", "zfs destroy -r pool", "zfs destroy: no option is allowed ('-r')"),
    ("src+destroy", "zfs destroy pool/ds", "zfs destroy of the dataset 'pool/ds': only our snapshots"),
    ("src+destroy", "zfs destroy pool/ds@a%b", "zfs destroy: a snapshot range '%' in 'pool/ds@a%b'"),
    ("src+destroy", "zfs destroy pool/a@manual", "snapshot 'pool/a@manual' is not one of ours"),
    ("src+destroy", f"zfs destroy pool/a@{OURS},manual", "snapshot 'pool/a@manual' is not one of ours"),
    ("src+destroy", "zfs destroy pool/a@", "zfs destroy: '' is not a snapshot name"),
    ("src+destroy", "zfs destroy 'pool/a#sanoid_marker'", "bookmark 'pool/a#sanoid_marker' is not one of ours"),
    ("src+destroy", "zfs destroy -R pool/a@" + OURS, "zfs destroy: no option is allowed ('-R')"),
    ("src", f"zfs destroy pool/a@{OURS}", "zfs destroy needs --allow-destroy on a source guard"),
    ("tgt", "zfs destroy backup/x", "zfs destroy of the dataset 'backup/x'"),
    ("tgt", f"zfs destroy backup/y@{OURS}", "'backup/y' is not under the target path 'backup/x'"),
    # holds: only our tag
    ("src", f"zfs release zfs_autobackup:other pool/a@{OURS}", "tag 'zfs_autobackup:other' is not ours"),
    ("src", f"zfs hold keep pool/a@{OURS}", "zfs hold: tag 'keep' is not ours ('zfs_autobackup:bak')"),
    ("src", f"zfs hold -r -x zfs_autobackup:bak pool/a@{OURS}", "zfs hold: option '-x' is not allowed"),
    ("tgt", f"zfs hold zfs_autobackup:bak pool/a@{OURS}", "zfs hold: 'pool/a' is not under the target path"),
    # receives: only under the target path, -F only with --allow-destroy, no origin
    ("tgt", "zfs recv -u backup2/pool/a", "zfs recv: 'backup2/pool/a' is not under the target path 'backup/x'"),
    ("tgt", "zfs recv -u backup/x2", "zfs recv: 'backup/x2' is not under the target path 'backup/x'"),
    ("tgt", "zfs recv -u -F backup/x/a", "zfs recv -F needs --allow-destroy"),
    ("tgt+destroy", "zfs recv -u -o origin=backup/x/a@s backup/x/b", "zfs recv: -o origin=... is not allowed"),
    ("tgt", "zfs recv -u -d backup/x", "zfs recv: option '-d' is not allowed"),
    ("tgt", "zfs recv -u -e backup/x", "zfs recv: option '-e' is not allowed"),
    ("tgt", "zfs recv -s backup/x/a", "zfs recv: without -u"),
    ("tgt", "zfs recv -A backup/y", "zfs recv -A: 'backup/y' is not under the target path"),
    ("tgt", "cat | zfs recv -u backup/x/a", "'cat' is not a stream filter zfs-reconcile sends before zfs recv"),
    ("tgt", "zfs recv -u backup/x/a | cat", "a pipeline that does not end with zfs recv ('cat')"),
    ("tgt", "zfs rollback backup/x/a@s", "zfs rollback needs --allow-destroy"),
    ("tgt+destroy", "zfs rollback -r backup/x/a@s", "zfs rollback: no option is allowed ('-r')"),
    ("tgt", "zfs create -o canmount=on backup/x/a", "zfs create: only 'zfs create -o canmount=off DATASET'"),
    ("tgt", "zfs create -o canmount=off other/a", "zfs create: 'other/a' is not under the target path"),
    ("tgt", MOUNT, "sh (mount): 'backup/y' is not under the target path 'backup/x'"),
    ("src", "zfs recv -u pool/a", "zfs recv on a source guard"),
    ("tgt", SEND, "zfs send on a target guard (--target-path)"),
    # shell syntax and the language
    ("src", "sh -c 'id'", "sh -c with a script that is not zfs-reconcile's ('id')"),
    ("src", "sh -c id sh", "sh -c with a script that is not zfs-reconcile's ('id')"),
    ("src", "zfs list; id", "shell syntax ';'"),
    ("src", "zfs list && id", "shell syntax '&'"),
    ("src", "zfs list || id", "shell syntax '|'"),
    ("src", "zfs list $(id)", "shell syntax '$'"),
    ("src", "zfs list `id`", "shell syntax '`'"),
    ("src", "zfs list\nid", "a newline in the command"),
    ("src", "zfs list 'a\nb'", "a newline in the command"),
    ("src", "zfs list 'a\0b'", "a NUL in the command"),
    ("src", "zfs list > /etc/x", "shell syntax '>'"),
    ("src", "zfs list < /etc/x", "shell syntax '<'"),
    ("src", "zfs list *", "shell syntax '*'"),
    ("src", "zfs list ~root", "shell syntax '~'"),
    ("src", "zfs list \\;", "shell syntax '\\\\'"),
    ("src", "zfs list (x)", "shell syntax '('"),
    ("src", 'zfs list "pool"', "a double-quoted string '\"pool\"'"),
    ("src", "zfs list 'pool", "an unbalanced quote \"'\""),
    ("src", "zfs list\tpool", "shell syntax '\\t'"),
    ("src", "zfs list pööl", "the character 'ö' outside quotes"),
    ("src", "zfs list |", "an empty stage in the pipeline"),
    ("src", "| zfs list", "an empty stage in the pipeline"),
    ("src", "", "an interactive login or an empty command"),
    ("src", "   ", "an interactive login or an empty command"),
    # sends: flags, selection, ours, filters
    ("src", f"zfs send -R pool/a@{OURS}", "zfs send: option '-R' is not allowed"),
    ("src", f"zfs send --replicate pool/a@{OURS}", "zfs send: option '--replicate' is not allowed"),
    ("src", "zfs send -- -R", "zfs send: option '--' is not allowed"),
    ("src", f"zfs send -D pool/a@{OURS}", "zfs send: option '-D' is not allowed"),
    ("src", f"zfs send -b pool/a@{OURS}", "zfs send: option '-b' is not allowed"),
    ("src", f"zfs send -h pool/a@{OURS}", "zfs send: option '-h' is not allowed"),
    ("src", f"zfs send -s pool/a@{OURS}", "zfs send: option '-s' is not allowed"),
    ("src", f"zfs send -nR pool/a@{OURS}", "zfs send: option '-R' is not allowed"),
    ("src", f"zfs send -Lp pool/a@{OURS}", "zfs send: combined flags are only sent in a dry run"),
    ("src", f"zfs send -p -p pool/a@{OURS}", "zfs send: -p is given twice"),
    ("src", f"zfs send -v pool/a@{OURS}", "zfs send: -v only in a dry run (-n)"),
    ("src", f"zfs send -i -R pool/a@{OURS}", "zfs send: -i needs a value"),
    ("src", f"zfs send pool/a@{OURS} pool/a/b@{OURS}", "zfs send: one snapshot is sent, not 2"),
    ("src", f"zfs send pool/x@{OURS}", "zfs send: dataset 'pool/x' is not selected by autobackup:bak"),
    ("src", "zfs send pool/a@manual", "zfs send: snapshot 'pool/a@manual' is not one of ours"),
    ("src", "zfs send -t 1-aaa-x", "zfs send: dataset 'pool/x' is not selected by autobackup:bak"),
    ("src", "zfs send -t 1-ccc-a", "zfs send: snapshot 'pool/a@manual' is not one of ours"),
    ("src", "zfs send -t 1-unknown", "zfs send -t: zfs names no snapshot for this resume token"),
    # a resume token is judged by what zfs sends for it, not by the name it carries
    ("src", "zfs send -t 1-ddd-forged", f"zfs send -t: the token names 'pool/a@{OURS}' but sends 'pool/x@secret'"),
    ("ro", "zfs send -t 1-ddd-forged", "but sends 'pool/x@secret'"),
    ("src", "zfs send -t 1-eee-guid", f"zfs send -t: the token's guid 7 is not that of 'pool/a@{OURS}'"),
    ("src", "zfs send -t 1-fff-silent", "zfs send -t: zfs does not say what it sends"),
    # -I carries every snapshot between its two: only when all are ours
    ("src", f"zfs send -I @{OURS} pool/a@{OURS2}", "zfs send -I: snapshot 'pool/a@manual' is not one of ours"),
    ("src", f"zfs send -I @{OURS2} pool/a@{OURS}", f"zfs send -I: zfs lists no '@{OURS2}' before"),
    ("src", f"zfs send -I @{OURS} pool/c@{OURS2}", "zfs send: dataset 'pool/c' is not selected"),
    ("src", f"zfs send -I pool/a/b@{OURS} pool/a@{OURS2}", "zfs send: -I from another dataset or a bookmark"),
    ("src", f"zfs send -I 'pool/a#{OURS}__1' pool/a@{OURS2}", "zfs send: -I from another dataset or a bookmark"),
    ("src", f"zfs send -t 1-bbb-a pool/a@{OURS}", "zfs send: -t goes without a snapshot or a base"),
    ("src", f"{SEND} | nc host 1", "'nc host 1' is not a stream filter zfs-reconcile sends after zfs send"),
    ("src", f"{SEND} | mbuffer -o /etc/passwd", "'mbuffer -o /etc/passwd' is not a stream filter"),
    ("src", f"{SEND} | mbuffer -q -s128k -m1G -o/etc/passwd", "'mbuffer -q -s128k -m1G -o/etc/passwd' is not a stream filter"),
    ("src", f"{SEND} | zstd -o file", "'zstd -o file' is not a stream filter"),
    ("src", f"{SEND} | zstd -dc", "'zstd -dc' is not a stream filter zfs-reconcile sends after zfs send"),
    ("src", f"{SEND} | sh -c 'cat > /tmp/x'", "is not a stream filter zfs-reconcile sends after zfs send"),
    ("src", "zfs list | sh", "a pipeline that does not start with zfs send ('zfs list')"),
    ("src", "zfs send -nv -t 1-bbb-a | nc host 1", "a pipeline after a dry run (zfs send -n)"),
    # writes of a read-only guard
    ("ro", f"zfs snapshot pool/a@{OURS}", "zfs snapshot: the guard is --read-only"),
    ("ro", f"zfs hold zfs_autobackup:bak pool/a@{OURS}", "zfs hold: the guard is --read-only"),
    ("ro", f"zfs release zfs_autobackup:bak pool/a@{OURS}", "zfs release: the guard is --read-only"),
    ("ro", f"zfs destroy pool/a@{OURS}", "zfs destroy: the guard is --read-only"),
    ("ro", f"zfs bookmark pool/a@{OURS} 'pool/a#{OURS}__1'", "zfs bookmark: the guard is --read-only"),
    # snapshots and bookmarks of ours only
    ("src", "zfs snapshot pool/a@manual", "zfs snapshot: snapshot 'pool/a@manual' is not one of ours"),
    ("src", f"zfs snapshot -r pool@{OURS}", "zfs snapshot: option '-r' is not allowed"),
    ("src", f"zfs snapshot pool/a@{OURS} pool/b@bak-20260101000001", "snapshots of different names in one command"),
    ("src", f"zfs bookmark pool/a@{OURS} 'pool/b#{OURS}__1'", "zfs bookmark: the bookmark is of another dataset"),
    ("src", f"zfs bookmark pool/a@{OURS} 'pool/a#mine'", "bookmark 'pool/a#mine' is not one of ours"),
    # commands the tool never sends
    ("src", "zfs set autobackup:bak=true pool", "'zfs set' is not a command zfs-reconcile sends"),
    ("src", "zfs inherit autobackup:bak pool/x", "'zfs inherit' is not a command zfs-reconcile sends"),
    ("src", "zfs allow evil send,destroy pool", "'zfs allow' is not a command zfs-reconcile sends"),
    ("src", "zfs unallow evil pool", "'zfs unallow' is not a command zfs-reconcile sends"),
    ("src", "zfs rename pool/a pool/b", "'zfs rename' is not a command zfs-reconcile sends"),
    ("src", "zfs promote pool/a", "'zfs promote' is not a command zfs-reconcile sends"),
    ("src", f"zfs clone pool/a@{OURS} pool/evil", "'zfs clone' is not a command zfs-reconcile sends"),
    ("src", "zfs mount pool/a", "'zfs mount' is not a command zfs-reconcile sends"),
    ("tgt+destroy", "zfs umount backup/x", "'zfs umount' is not a command zfs-reconcile sends"),
    ("src", "zfs create pool/evil", "zfs create on a source guard"),
    ("src", f"zfs rollback pool/a@{OURS}", "zfs rollback on a source guard"),
    ("tgt", f"zfs snapshot backup/x@{OURS}", "zfs snapshot on a target guard (--target-path)"),
    ("src", "zpool destroy pool", "'zpool' is not a command zfs-reconcile sends"),
    ("src", "/sbin/zfs list", "a program path '/sbin/zfs': only plain program names run"),
    ("src", "./zfs list", "a program path './zfs'"),
    ("src", "bash -i", "'bash' is not a command zfs-reconcile sends"),
    ("src", "zfs list -H -o name -- -x", "zfs list: '--' is not allowed"),
    ("src", "zfs list -S name pool", "zfs list: option '-S' is not allowed"),
    ("src", "zfs list -d x pool", "zfs list: -d 'x' is not a depth"),
    # the host's clock is read, never set
    ("src", "date -s @0", "'date' is not a command zfs-reconcile sends"),
    ("tgt", "date +%s -s @0", "'date' is not a command zfs-reconcile sends"),
    ("src", "zfs get -H -o -x all pool", "zfs get: -o needs a value, not '-x'"),
    # malformed versions of the commands the tool sends
    ("src", "zfs list -H -H pool", "zfs list: -H is given twice"),
    ("src", "zfs list 'pool/a;b'", "zfs list: 'pool/a;b' is not a dataset name"),
    ("src", "zfs list '|' id", "zfs list: '|' is not a dataset name"),
    ("src", "zfs get -H -o name -o value all pool", "zfs get: -o is given twice"),
    ("src", "zfs holds -H", "zfs holds: a snapshot is missing"),
    ("src", "zfs holds -H pool/a", "zfs holds: 'pool/a' is not a snapshot name (DATASET@NAME)"),
    ("src", "zpool get -H -o name all pool/a", "zpool get: 'pool/a' is not a pool name"),
    ("src", f"zfs send -i @{OURS} -I @{OURS} pool/a@{OURS}", "zfs send: -I is given twice"),
    ("src", f"zfs send -i '@a;b' pool/a@{OURS}", "zfs send: '@a;b' is not a snapshot name"),
    ("src", "zfs send -t '1-a;b'", "zfs send: '1-a;b' is not a resume token"),
    ("src", f"zfs snapshot -o x pool/a@{OURS}", "zfs snapshot: -o 'x' is not PROPERTY=VALUE"),
    ("src", "zfs snapshot pool/a@bak-00010101000000", "snapshot 'pool/a@bak-00010101000000' is not one of ours"),
    ("src", f"zfs bookmark pool/a@{OURS}", "zfs bookmark: a snapshot (or bookmark) and a new bookmark are expected"),
    ("src+destroy", f"zfs destroy pool/a@{OURS} pool/b@{OURS}", "zfs destroy: one name is destroyed, not 2"),
    ("tgt", f"zfs destroy 'backup/x#{OURS}__1'", "zfs destroy of a bookmark on a target guard"),
    ("tgt", "zfs recv -A -F backup/x/a", "zfs recv -A: only a dataset goes with -A"),
    ("tgt", "zfs recv -u -o canmount backup/x/a", "zfs recv: -o 'canmount' is not PROPERTY=VALUE"),
    ("tgt", "zfs recv -u backup/x/a backup/x/b", "zfs recv: one dataset receives, not 2"),
    ("tgt+destroy", "zfs rollback backup/x/a@s backup/x/b@s", "zfs rollback: one snapshot, not 2"),
    ("tgt+ro", "zfs recv -u backup/x/a", "zfs recv: the guard is --read-only"),
    ("src", "sh -x -c id", "sh: only 'sh -c SCRIPT sh ARGS...' with zfs-reconcile's scripts"),
    ("src", PROBE.replace(" sh zstd", " bash zstd"), "sh -c SCRIPT: its $0 is not 'sh'"),
    ("src", PROBE.replace(" zstd", " ../zstd"), "sh (probe): '../zstd' is not a program name"),
    ("src", MOUNT, "sh (mount) on a source guard"),
    ("tgt+ro", MOUNT, "sh (mount): the guard is --read-only"),
    ("tgt", MOUNT.replace("backup/y", "backup/x/a backup/x/b"), "sh (mount): one dataset is mounted"),
    ("ro+cmd", "sync", "a pre/post snapshot command, on a --read-only or target guard"),
]  # fmt: skip


@pytest.mark.parametrize(("guard_name", "line", "reason"), HOSTILE)
def test_hostile_commands_are_refused_with_their_reason(
    guard_name: str, line: str, reason: str
) -> None:
    with pytest.raises(rules.Refused) as refused:
        rules.judge(line, _policy(GUARDS[guard_name]), LOOKUPS)
    assert reason in refused.value.message
    shown = rules.refusal(refused.value.message, line)
    assert shown.startswith("zfs-autobackup-guard: refused: ") and "\n" not in shown
    assert shown.endswith(": " + repr(line[:300]) + ("..." if len(line) > 300 else ""))


def test_the_hostile_table_is_long_and_the_guards_allow_their_neighbours() -> None:
    """(So the table cannot pass by refusing everything: the same shapes, done right,
    are allowed.)"""
    assert len(HOSTILE) >= 30
    mount = shlex.join(("sh", "-c", MOUNT_SCRIPT, "sh", "backup/x/a"))
    allowed = [
        ("tgt-unmounted", f"zfs recv -u -s {NO_BOOT} -o canmount=noauto backup/x/a"),
        (
            "tgt-unmounted",
            f"zstd -dc | zfs recv -u -s -x mountpoint {NO_BOOT} -o canmount=off backup/x/a",
        ),
        ("tgt", "zfs recv -u -o setuid=off -o sharenfs=off -o mountpoint=none backup/x/a"),
        ("tgt", "zfs recv -u -o mountpoint=/backup/x/a -o exec=off backup/x/a"),
        ("src", f"zfs send -I @{OURS2} pool/a@{OURS3}"),
        ("src", f"zfs send -I pool/a@{OURS} pool/a/b@{OURS2}".replace("pool/a@", "pool/a/b@")),
        ("src", f"zfs send -I pool/a/b@{OURS} pool/a/b@{OURS2}"),
        ("src+destroy", f"zfs destroy pool/a@{OURS},bak-20260101000001"),
        ("src+destroy", f"zfs destroy 'pool/a#{OURS}__123'"),
        ("src", f"zfs hold -r zfs_autobackup:bak pool/a@{OURS}"),
        ("src", f"zfs snapshot -o com.example:x=1 pool/a@{OURS} pool/b@{OURS}"),
        ("src", f"zfs bookmark pool/a@{OURS} 'pool/a#{OURS}__1'"),
        # (shell syntax inside quotes is data: it arrives as one word, never runs)
        ("src", f"zfs snapshot -o {shlex.quote(EVIL)} pool/a@{OURS}"),
        ("src", f"{SEND} | zstd -T0 -3 | mbuffer -q -s128k -m1G -R10M"),
        ("src", "zfs send -L -t 1-bbb-a"),
        ("src", "zfs send -nv -t 1-aaa-x"),
        ("src", f"zfs send -nP -i @{OURS} pool/x@{OURS}"),
        ("ro", f"{SEND} | mbuffer -q -s128k -m50%"),
        ("ro", "zfs holds -H pool/a@x pool/b@y"),
        ("tgt", "zfs recv -u -s -x mountpoint -o canmount=noauto backup/x/a"),
        ("tgt", "zstd -dc | mbuffer -q -s128k -m1G | zfs recv -u backup/x"),
        ("tgt", "zfs recv -A backup/x/a"),
        ("tgt", f"zfs destroy backup/x/a@{OURS}"),
        ("tgt", f"zfs release -r zfs_autobackup:bak backup/x/a@{OURS}"),
        ("tgt", "zfs create -o canmount=off backup/x/a"),
        ("tgt", mount),
        ("tgt+destroy", "zfs recv -u -s -F backup/x/a"),
        ("tgt+destroy", "zfs rollback backup/x/a@manual"),
        ("tgt", "zpool get -H -o name,property,value feature@bookmarks backup"),
        ("tgt", "zfs list -H -o name backup/x/a@" + OURS),
    ]
    for guard_name, line in allowed:
        assert rules.judge(line, _policy(GUARDS[guard_name]), LOOKUPS), line


def test_the_policy_docstring_examples_are_true() -> None:
    """The worked examples that open executors/guard/rules.py."""
    doc = rules.__doc__ or ""
    text = doc[doc.index("Examples,") :]
    source, target = text.split("and a target guard")
    lookups = rules.Lookups(lambda ds: ds == "pool/a", NO_TOKEN, NO_SNAPSHOTS, NO_MOUNTPOINT)
    checked = 0
    for part, policy in (
        (source, _policy(["bak"])),
        (target, _policy(["bak", "--target-path", "backup"])),
    ):
        lines = [line.strip() for line in part.split("\n") if line.startswith("    ")]
        for command, outcome in zip(lines[::2], lines[1::2]):
            if outcome.startswith("allowed"):
                assert rules.judge(command, policy, lookups)
            else:
                with pytest.raises(rules.Refused) as refused:
                    rules.judge(command, policy, lookups)
                assert outcome == f"refused: {refused.value.message}"
            checked += 1
    assert checked == 11


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(blacklist_characters="\n\r\0"), max_size=12),
                         min_size=1, max_size=5), min_size=1, max_size=4))  # fmt: skip
def test_the_tokenizer_reads_exactly_what_the_runner_writes(stages: list[list[str]]) -> None:
    line = " | ".join(shlex.join(argv) for argv in stages)
    if not line.strip(" "):
        return
    assert rules.tokenize(line) == tuple(tuple(argv) for argv in stages)


def test_a_refusal_is_one_line_cut_at_300_characters() -> None:
    line = "zfs list " + "x;\n" * 400
    shown = rules.refusal("a newline in the command", line)
    assert "\n" not in shown and shown.endswith("...")
    assert (
        shown
        == "zfs-autobackup-guard: refused: a newline in the command: " + repr(line[:300]) + "..."
    )


# --- the lookups: which zfs commands answer them ------------------------------------------


def test_the_lookups_ask_zfs_and_follow_the_selection_rules() -> None:
    rows = {
        "pool/a": "true\tlocal",
        "pool/a/b": "true\tinherited from pool/a",
        "pool/r": "true\tinherited from pool/rr",
        "pool/rr": "true\treceived",
        "pool/c": "child\tlocal",
        "pool/c/d": "child\tinherited from pool/c",
        "pool/p": "parent\tlocal",
        "pool/p/q": "parent\tinherited from pool/p",
        "pool/f": "false\tlocal",
        "pool/n": "-\t-",
        "pool/i": "maybe\tlocal",
        "pool/o": "true\tinherited from pool/gone",
    }
    asked: list[tuple[str, ...]] = []

    token_text = (
        "resume token contents:\nnvlist version: 0\n\tobject = 0x1\n\ttoguid = 0x7\n"
        "\ttoname = pool/a@x\nfull send of pool/a@x estimated size is 12.5M\n"
    )

    def zfs(argv: Sequence[str]) -> tuple[int, str]:
        asked.append(tuple(argv))
        if argv[:2] == ("zfs", "send"):
            return 0, token_text
        if argv[:3] == ("zfs", "get", "-H") and argv[-2:] == ("guid", "pool/a@x"):
            return 0, "7\n"
        if argv[:2] == ("zfs", "list") and argv[-1] == "pool/a":
            return 0, "pool/a@s1\npool/a@s2\n"
        if argv[:2] == ("zfs", "get") and argv[-2:] == ("mountpoint", "pool/a"):
            return 0, "/pool/a\n"
        if argv[:-1] == ("zfs", "get", "-H", "-o", "value", "clones"):
            return 0, {"pool/a@s1": "pool/v1,pool/v 2\n"}.get(argv[-1], "\n")
        name = argv[-1]
        if argv[:-1] != ("zfs", "get", "-H", "-o", "name,value,source", PROP) or name not in rows:
            return 1, f"cannot open '{name}': dataset does not exist"
        return 0, f"{name}\t{rows[name]}\n"

    policy = _policy(["bak"])
    for exclude, expected in (
        (False, {"pool/a", "pool/a/b", "pool/r", "pool/rr", "pool/c/d", "pool/p", "pool/o"}),
        (True, {"pool/a", "pool/a/b", "pool/c/d", "pool/p"}),
    ):
        lookups = guard.lookups(policy, zfs, exclude_received=exclude)
        assert {name for name in [*rows, "pool/gone"] if lookups.selected(name)} == expected
    assert ("zfs", "get", "-H", "-o", "name,value,source", PROP, "pool/rr") in asked
    assert lookups.token("1-abc") == rules.TokenSend("pool/a@x", 7, "pool/a@x", 7)
    assert asked[-2:] == [("zfs", "send", "-nv", "-t", "1-abc"),
                          ("zfs", "get", "-H", "-p", "-o", "value", "guid", "pool/a@x")]  # fmt: skip
    assert lookups.snapshots("pool/a") == ["s1", "s2"]
    assert asked[-1] == ("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg",
                         "-d", "1", "pool/a")  # fmt: skip
    assert lookups.mountpoint("pool/a") == "/pool/a" and lookups.mountpoint("pool/x") is None
    assert lookups.clones("pool/a@s1") == ["pool/v1", "pool/v 2"]
    assert asked[-1] == ("zfs", "get", "-H", "-o", "value", "clones", "pool/a@s1")
    assert lookups.clones("pool/a@s2") == []
    # what zfs says it sends, as OpenZFS 2.3 words it (a name with " to " in it too)
    for line, sends in (
        ("full send of pool/a b@x estimated size is 1M", "pool/a b@x"),
        ("send from @w to pool/a@x estimated size is 1M", "pool/a@x"),
        ("send from pool/go to me@w to pool/go to me@x estimated size is 0", "pool/go to me@x"),
        ("full send of pool/a@x", "pool/a@x"),
    ):
        assert zfs_rows.resume_sends(f"\ttoname = t\n{line}\n", "pool/go to me@x") == sends
    assert zfs_rows.resume_sends("\ttoname = pool/a@x\n", "pool/a@x") is None
    assert zfs_rows.property_row("pool/b\ttrue\tlocal\n", "pool/a") is None
    assert zfs_rows.parse_resume_info("cannot resume send: invalid resume token")[0] is None
    failing = guard.lookups(policy, lambda argv: (1, "\ttoname = pool/a@x"), False)
    assert failing.token("1-abc") is None and not failing.selected("pool/a")
    assert failing.snapshots("pool/a") is None and failing.clones("pool/a@s1") == []


def test_the_lookups_run_zfs_from_the_path_of_the_environment(tmp_path: Path) -> None:
    env = _guard_env(tmp_path, None)
    code, out = guard.zfs_runner(env)(("zfs", "get", "-H", "-o", "name,value,source", PROP, "p/a"))
    assert (code, out.split("\n")[0]) == (0, "p/a\ttrue\tlocal")
    assert guard.zfs_runner({"PATH": str(tmp_path / "nowhere")})(("zfs", "list")) == (127, "")


# --- 3. main() end to end, with a fake zfs ---------------------------------------------------

FAKE_ZFS = """#!{python}
import json, os, sys
argv = sys.argv[1:]
if argv[:1] == ["get"]:  # the guard's selection lookup
    print(argv[-1] + "\\ttrue\\tlocal")
    sys.exit(0)
data = sys.stdin.buffer.read().decode("latin-1") if argv[:1] == ["recv"] else ""
with open(os.environ["RECORD"], "a") as record:
    record.write(json.dumps({{"argv": argv, "stdin": data}}) + "\\n")
if argv[:1] == ["send"]:
    sys.stdout.write("stream of " + argv[-1])
sys.exit(int(os.environ.get("FAKE_EXIT", "0")) if argv[:1] != ["list"] else 0)
"""


def _guard_env(tmp_path: Path, line: Optional[str], **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "zfs"
    fake.write_text(FAKE_ZFS.format(python=sys.executable))
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECORD": str(tmp_path / "record"),
        "SSH_CLIENT": "192.0.2.7 51234 22",
        **extra,
    }
    if line is not None:
        env["SSH_ORIGINAL_COMMAND"] = line
    return env


def _run_guard(tmp_path: Path, args: Sequence[str], line: Optional[str], stdin: bytes = b"",
               **extra: str) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """The installed console script, as sshd runs it (a process of its own)."""
    script = Path(sys.executable).parent / "zfs-autobackup-guard"
    return subprocess.run([str(script), *args], input=stdin, capture_output=True, check=False,
                          env=_guard_env(tmp_path, line, **extra), timeout=60)  # fmt: skip


def _record(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "record").read_text().splitlines()]


def test_an_allowed_send_runs_its_stages_joined_by_pipes(tmp_path: Path) -> None:
    line = f"zfs send -L -p -i @{OURS} 'pool/a b@bak-20260102000000' | tr a-z A-Z"
    proc = _run_guard(tmp_path, ["bak", "--send-pipe", "tr a-z A-Z"], line)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout == b"STREAM OF POOL/A B@BAK-20260102000000"
    argv = ["send", "-L", "-p", "-i", f"@{OURS}", "pool/a b@bak-20260102000000"]
    assert _record(tmp_path) == [{"argv": argv, "stdin": ""}]


def test_an_allowed_receive_reads_the_stream_from_stdin(tmp_path: Path) -> None:
    line = "tr A-Z a-z | zfs recv -u -s -o 'com.example:note=it'\"'\"'s' backup/pool/a"
    args = ["bak", "--target-path", "backup", "--recv-pipe", "tr A-Z a-z", "--allow-mount"]
    sent = mk.package(mk.substream(f"pool/a@{OURS}", data=b"THE STREAM " * 1000))
    proc = _run_guard(tmp_path, args, line, stdin=sent)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    argv = ["recv", "-u", "-s", "-o", "com.example:note=it's", "backup/pool/a"]
    received = sent.replace(b"THE STREAM", b"the stream").decode("latin-1")
    recorded = _record(tmp_path)
    assert recorded[-1] == {"argv": argv, "stdin": received}
    # (before it, the stream's question: the guids the dataset has; it exists, so its
    # parent does too: one listing)
    assert [r["argv"][:7] for r in recorded[:-1]] == [
        ["list", "-H", "-p", "-o", "guid", "-t", "snapshot,bookmark"]
    ], recorded[:-1]
    # the exit code of the stage that failed
    proc = _run_guard(tmp_path, args, line, stdin=sent, FAKE_EXIT="4")
    assert proc.returncode == 4


def test_a_refused_stream_never_reaches_zfs_recv(tmp_path: Path) -> None:
    """A replication stream (zfs send -R): refused after the filters, before zfs recv
    starts; one line on stderr, exit 126."""
    line = "tr A-Z a-z | zfs recv -u -s backup/pool/a"
    args = ["bak", "--target-path", "backup", "--recv-pipe", "tr A-Z a-z", "--allow-mount"]
    sent = mk.package(mk.substream(f"pool/a@{OURS}", data=b"x" * 300_000), recursive=True)
    proc = _run_guard(tmp_path, args, line, stdin=sent)
    assert proc.returncode == 126 and proc.stdout == b"", proc.stderr
    reason = "the stream: a replication stream (zfs send -R) creates and destroys datasets; "
    assert (
        proc.stderr.decode() == rules.refusal(reason + "zfs-reconcile never sends one", line) + "\n"
    )
    assert not (tmp_path / "record").exists()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("zfs destroy -r pool", "zfs destroy needs --allow-destroy on a source guard"),
        ("zfs list; touch /tmp/x", "shell syntax ';'"),
        (
            f"zfs send -p pool/a@{OURS} | nc host 1",
            "'nc host 1' is not a stream filter zfs-reconcile sends after zfs send",
        ),
        (None, "an interactive login or an empty command (no SSH_ORIGINAL_COMMAND)"),
    ],
)
def test_a_refused_command_runs_nothing_and_says_so_in_one_line(
    tmp_path: Path, line: Optional[str], reason: str
) -> None:
    proc = _run_guard(tmp_path, ["bak"], line)
    assert proc.returncode == 126 and proc.stdout == b""
    assert proc.stderr.decode() == f"zfs-autobackup-guard: refused: {reason}: {line or ''!r}\n"
    assert not (tmp_path / "record").exists()


def test_a_refusal_is_logged_with_the_user_and_the_client(tmp_path: Path) -> None:
    logged: list[str] = []
    args = guard.build_parser().parse_args(["bak"])
    env = _guard_env(tmp_path, "zfs promote pool/a")
    assert guard.guard(args, env, logged.append) == 126
    (message,) = logged
    assert message.startswith("refused: 'zfs promote' is not a command zfs-reconcile sends: ")
    assert "'zfs promote pool/a'" in message and "SSH_CLIENT '192.0.2.7 51234 22'" in message
    assert f"(user {pwd.getpwuid(os.getuid()).pw_name}," in message
    assert not (tmp_path / "record").exists()


def test_check_says_allowed_or_refused_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _guard_env(tmp_path, "zfs destroy pool")  # (--check ignores it)
    assert guard.main(["bak", "--check", f"zfs send -p pool/a@{OURS}"], env) == 0
    assert capsys.readouterr().out == "allowed\n"
    assert guard.main(["bak", "--check", "zfs destroy -r pool"], env) == 126
    out = capsys.readouterr().out
    assert (
        out
        == "zfs-autobackup-guard: refused: zfs destroy needs --allow-destroy on a source guard: 'zfs destroy -r pool'\n"
    )
    # (the selection lookup ran; nothing else did)
    assert not (tmp_path / "record").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: NAME"),
        (
            ["bak", "--snapshot-format", "nope"],
            "Invalid --snapshot-format 'nope': it must contain {}",
        ),
        (
            ["bak", "--snapshot-format", "{}-x"],
            "Invalid --snapshot-format '{}-x': it needs time fields",
        ),
        (
            ["bak", "--send-pipe", "'unclosed"],
            'Invalid --send-pipe "\'unclosed": No closing quotation',
        ),
        (["bak", "--recv-pipe", ""], "Invalid --recv-pipe '': it is empty"),
        (["bak", "--target-path", "-x"], "argument --target-path: expected one argument"),
        (["bak", "--target-path", "backup/"], "Invalid --target-path 'backup/': a dataset name"),
        (["bak", "--allow"], "unrecognized arguments: --allow"),
        # (the tool's own rule: a guard for a name the tool refuses would guard nothing)
        (["off/site"], "Invalid backup name 'off/site': use letters, digits"),
        (["bad name"], "Invalid backup name 'bad name': use letters, digits"),
        (["x" * 256], "at most 255 characters"),
    ],
)
def test_bad_options_are_one_line_naming_the_value(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guard.main(argv, {}) == 2
    err = capsys.readouterr().err
    assert err.startswith("zfs-autobackup-guard: error: ") and message in err
    assert err.count("\n") == 1


def test_help_shows_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert guard.main(["--help"], {}) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zfs-autobackup-guard ") and "({}-%Y%m%d%H%M%S)" in out


# --- 4. the standard library only -------------------------------------------------------------


def test_the_guard_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """No site-packages (-S), no PYTHONPATH (-E): the repository and the interpreter's
    own standard library paths only."""
    code = f"""
import sys
stdlib = [p for p in sys.path if p]
assert not any("site-packages" in p for p in stdlib), stdlib
sys.path[:] = [{str(REPO)!r}, *stdlib]
try:
    import attrs
except ImportError:
    pass
else:
    raise SystemExit("attrs is importable: this is not a bare standard library")
from executors.guard import main
code = main(["bak", "--check", "zfs list -H -o name pool"])
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("reconcile", "planner", "executors"))
print(ours)
raise SystemExit(code)
"""
    proc = subprocess.run([sys.executable, "-S", "-E", "-c", code], capture_output=True,
                          text=True, cwd=tmp_path, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    allowed, modules = proc.stdout.splitlines()
    assert allowed == "allowed"
    assert modules == str(sorted([
        "executors", "executors.guard", "executors.guard.program", "executors.guard.receive",
        "executors.guard.rules", "executors.guard.send_stream", "executors.guard.stream",
        "executors.guard.words", "reconcile", "reconcile.errors", "reconcile.filters",
        "reconcile.formats", "reconcile.guard_protocol", "reconcile.scripts",
        "reconcile.selection_values", "reconcile.zfs_names", "reconcile.zfs_rows",
    ]))  # fmt: skip


def test_the_stages_exit_code_is_the_first_that_failed(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    stages = [("sh", "-c", "exit 3"), ("sh", "-c", "cat >/dev/null; exit 5")]
    assert guard.run_stages(stages, env) == 3
    assert guard.run_stages([("sh", "-c", "exit 0"), ("sh", "-c", "exit 5")], env) == 5
    assert guard.run_stages([("true",)], env) == 0
    assert guard.run_stages([("sh", "-c", "kill -9 $$")], env) == 128 + 9


def test_a_missing_program_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = _guard_env(tmp_path, None)
    assert guard.run_stages([("zfs", "recv", "-u", "backup/a"), ("no-such-program",)], env) == 127
    assert capsys.readouterr().err == "zfs-autobackup-guard: no-such-program: command not found\n"
    assert not (tmp_path / "record").exists()


def test_the_default_formats_are_the_tools() -> None:
    policy = _policy(["bak"])
    assert (policy.property_name, policy.hold_tag) == (PROP, TAG)
    assert rules.is_ours(policy, "bak-20260102030405")
    assert not rules.is_ours(policy, "bak-20261302030405") and not rules.is_ours(policy, "other")


def test_the_stream_questions_cost_one_listing_where_the_target_exists() -> None:
    """#30: the guard's start-up before zfs recv gets the stream: a target that exists
    is listed once, whatever the package holds (its parent then exists too); a new one
    costs its listing and one for its parent."""
    asked: list[tuple[str, ...]] = []
    datasets = {"backup/pool/a": "111\n222\n", "backup/pool": ""}

    def zfs(argv: Sequence[str]) -> tuple[int, str]:
        asked.append(tuple(argv))
        name = argv[-1]
        return (0, datasets[name]) if name in datasets else (1, "dataset does not exist")

    lookups = guard.stream_lookups(zfs)
    for _ in range(3):  # (one question per substream of a package)
        assert lookups.guids("backup/pool/a") == frozenset({111, 222})
    assert lookups.exists("backup/pool")
    assert len(asked) == 1, asked
    asked.clear()
    assert lookups.guids("backup/pool/new") == frozenset()
    assert lookups.exists("backup/pool")  # (answered by the listing of backup/pool/a)
    assert not lookups.exists("backup/other")
    assert [a[-1] for a in asked] == ["backup/pool/new", "backup/other"], asked


@pytest.mark.parametrize("size", ["128k\n", "128k\nx", "1" * 16, "١"])
def test_an_mbuffer_size_is_matched_whole(size: str) -> None:
    """(#32) a size with a trailing newline matched `$` before it; the guard takes only
    the sizes --buffer accepts."""
    from executors.guard import rules as guard_rules

    assert guard_rules._is_mbuffer(("mbuffer", "-q", "-s128k", "-m16M"))
    assert not guard_rules._is_mbuffer(("mbuffer", "-q", f"-s{size}", "-m16M"))


@pytest.mark.parametrize("args", [["bak", "--read-only"], ["bak", "--target-path", "backup"]])
def test_the_tool_knows_a_refusal_by_the_guards_exit_code_and_line(
    tmp_path: Path, args: list[str]
) -> None:
    """What the guard process prints and exits with when it refuses is what the tool
    reads as a GuardRefused (a refusal of a read-only guard: its own marker); the same
    stderr with another exit code is not a refusal."""
    line = f"zfs destroy pool/a@{OURS}"
    proc = _run_guard(tmp_path, args, line)
    assert proc.returncode == rules.EXIT_REFUSED and proc.stdout == b""
    stderr = proc.stderr.decode()
    error = zfs_text.command_error(line, proc.returncode, stderr)
    assert isinstance(error, GuardRefused), error
    assert error.read_only is ("--read-only" in args), error.reason
    assert (READ_ONLY in error.reason) is error.read_only
    assert str(error) == f"Command failed: {stderr.strip()}"
    assert not isinstance(zfs_text.command_error(line, 1, stderr), GuardRefused)
    assert not (tmp_path / "record").exists()


def test_a_read_only_refusal_is_known_by_its_marker_not_by_its_words() -> None:
    """(#33) A reason quotes names the guard was given (a dataset name may hold spaces and
    any words): a refusal that only says "the guard is --read-only" is not a read-only
    guard's, and the tool does not advise --read-only-source for it."""
    line = f"zfs destroy 'pool/{READ_ONLY}@x'"
    plain = rules.refusal(f"zfs destroy: 'pool/{READ_ONLY}' is not selected", line)
    marked = rules.refusal(f"zfs destroy: {READ_ONLY}", line, read_only=True)
    for stderr, read_only in ((plain, False), (marked, True)):
        error = zfs_text.command_error(line, rules.EXIT_REFUSED, stderr + "\n")
        assert isinstance(error, GuardRefused) and READ_ONLY in error.reason
        assert error.read_only is read_only
    assert guard_protocol.refused(1, marked) is None
