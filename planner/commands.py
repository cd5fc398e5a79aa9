"""Typed commands: one value per command the tool sends, made by one constructor per verb.

A command knows the side whose host runs it, its argv (what `plan --commands` prints,
the plan file stores and `apply FILE` compares), the datasets it acts on, and the
delegated permission it needs (`zfs allow`, reconcile.permissions). Each constructor
states its verb's delegation next to the argv it builds, so nothing reads an argv back
to find out what it was (OpenZFS 2.3's rules, measured on Linux):

    zfs snapshot [-o P=V] DS@S    snapshot (and P, userprop for a user property)
    zfs destroy DS@a,b            destroy,mount          zfs destroy DS#BM   destroy
    zfs hold / zfs release        hold / release         zfs bookmark        bookmark
    zfs send                      send (-I: and hold)    zfs rollback        rollback,mount
    zfs recv [-o P=V] DS          receive,create,mount (and P), on the parent of a new DS
    zfs recv -A DS                receive                zfs recv -F         nothing more
    zfs create -o canmount=off    create,mount,canmount, on the parent
    zfs rollback -r               rollback,mount,destroy zfs set P=V         P (userprop)

Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Optional

import attrs

from reconcile.model import Side
from reconcile.permissions import Need, for_property


class Verb(enum.Enum):
    """What a command does."""

    SNAPSHOT = "snapshot"
    SEND = "send"
    RECEIVE = "receive"
    DESTROY = "destroy"
    HOLD = "hold"
    RELEASE = "release"
    BOOKMARK = "bookmark"
    ROLLBACK = "rollback"
    CREATE = "create"
    SET = "set"
    #: a zfs command that only reads (a list, a get, a dry-run send)
    READ = "read"
    #: one of the tool's own shell scripts (reconcile.scripts: the mount check, the probe)
    SCRIPT = "script"
    #: a stage of a transfer between zfs send and zfs recv (compression, buffer, a pipe)
    PIPE = "pipe"
    #: a command the user gave (--pre-snapshot-cmd, --post-snapshot-cmd)
    USER = "user"
    #: verify's temporary read-only mount of a snapshot, and its directory (mktemp,
    #: mount, umount, rmdir: planner.verify)
    MOUNT = "mount"
    #: verify's walker (reconcile.walk): reads a snapshot's files, prints their digests
    WALK = "walk"


@attrs.frozen
class Command:
    """argv on the host of a side, what it is, and what it needs."""

    side: Side
    argv: tuple[str, ...]
    verb: Verb
    #: the datasets it acts on
    datasets: tuple[str, ...] = ()
    #: the delegated permissions it needs (None: none, or not a zfs command)
    need: Optional[Need] = None
    #: a receive that makes its dataset needs its permissions on the parent instead
    need_new: Optional[Need] = None

    @property
    def program(self) -> str:
        """`zfs destroy`: the program and its subcommand, for messages."""
        return " ".join(self.argv[:2])


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name


def _properties(assignments: Sequence[str]) -> list[str]:
    """The permissions that `-o P=V` options need."""
    return [for_property(a.split("=", 1)[0]) for a in assignments]


def _options(assignments: Sequence[str]) -> list[str]:
    return [arg for assignment in assignments for arg in ("-o", assignment)]


def snapshot(datasets: Sequence[str], name: str, properties: Sequence[str]) -> Command:
    """`zfs snapshot [-o P=V] DS@NAME ...`: one atomic snapshot of several datasets."""
    argv = ("zfs", "snapshot", *_options(properties), *(f"{ds}@{name}" for ds in datasets))
    need = Need(_unique(["snapshot", *_properties(properties)]), datasets[0])
    return Command(Side.SOURCE, argv, Verb.SNAPSHOT, tuple(datasets), need)


def destroy_snapshots(side: Side, dataset: str, snapshots: Sequence[str]) -> Command:
    """`zfs destroy DS@a,b,c`: snapshots of one dataset in one command."""
    argv = ("zfs", "destroy", f"{dataset}@{','.join(snapshots)}")
    return Command(side, argv, Verb.DESTROY, (dataset,), Need(("destroy", "mount"), dataset))


def destroy_bookmark(side: Side, dataset: str, bookmark: str) -> Command:
    """`zfs destroy DS#NAME` (one per command: zfs destroys no list of bookmarks)."""
    argv = ("zfs", "destroy", f"{dataset}#{bookmark}")
    return Command(side, argv, Verb.DESTROY, (dataset,), Need(("destroy",), dataset))


def destroy_dataset(side: Side, dataset: str) -> Command:
    """`zfs destroy DS`: never -r (the dataset has no children, its snapshots are gone)."""
    argv = ("zfs", "destroy", dataset)
    return Command(side, argv, Verb.DESTROY, (dataset,), Need(("destroy", "mount"), dataset))


def hold(side: Side, tag: str, names: Sequence[str], *, release: bool = False,
         recursive: bool = False) -> Command:  # fmt: skip
    """`zfs hold|release [-r] TAG DS@S ...`."""
    verb = Verb.RELEASE if release else Verb.HOLD
    argv = ("zfs", verb.value, *(["-r"] if recursive else []), tag, *names)
    datasets = _unique([n.split("@", 1)[0] for n in names])
    return Command(side, argv, verb, datasets, Need((verb.value,), datasets[-1]))


def bookmark(dataset: str, of: str, name: str) -> Command:
    """`zfs bookmark DS@SNAP DS#NAME` (or `DS#OTHER DS#NAME`): `of` is "@SNAP" or "#OTHER"."""
    argv = ("zfs", "bookmark", f"{dataset}{of}", f"{dataset}#{name}")
    return Command(Side.SOURCE, argv, Verb.BOOKMARK, (dataset,), Need(("bookmark",), dataset))


def rollback(
    dataset: str, snapshot_name: str, *, side: Side = Side.TARGET, destroy_newer: bool = False
) -> Command:
    """`zfs rollback DS@S` (`-r`: destroying the snapshots after it)."""
    argv = ("zfs", "rollback", *(["-r"] if destroy_newer else []), f"{dataset}@{snapshot_name}")
    perms = ("rollback", "mount", "destroy") if destroy_newer else ("rollback", "mount")
    return Command(side, argv, Verb.ROLLBACK, (dataset,), Need(perms, dataset))


def set_property(side: Side, dataset: str, assignment: str) -> Command:
    """`zfs set P=V DS`."""
    argv = ("zfs", "set", assignment, dataset)
    need = Need((for_property(assignment.split("=", 1)[0]),), dataset)
    return Command(side, argv, Verb.SET, (dataset,), need)


def create_parent(dataset: str) -> Command:
    """`zfs create -o canmount=off DS`: granted on the parent."""
    argv = ("zfs", "create", "-o", "canmount=off", dataset)
    need = Need(("create", "mount", "canmount"), _parent(dataset))
    return Command(Side.TARGET, argv, Verb.CREATE, (dataset,), need)


def abort_resume(dataset: str) -> Command:
    """`zfs recv -A DS`: drop a partly received state."""
    argv = ("zfs", "recv", "-A", dataset)
    return Command(Side.TARGET, argv, Verb.RECEIVE, (dataset,), Need(("receive",), dataset))


def send(argv: Sequence[str], dataset: str, *, several: bool, side: Side = Side.SOURCE) -> Command:
    """A `zfs send` whose flags planner.compile chose; `several`: -I (zfs holds what it
    sends while it sends it). `side`: the target's, for a restore."""
    need = Need(("send", "hold") if several else ("send",), dataset)
    return Command(side, tuple(argv), Verb.SEND, (dataset,), need)


def receive(
    argv: Sequence[str], dataset: str, properties: Sequence[str], *, side: Side = Side.TARGET
) -> Command:
    """A `zfs recv` whose flags planner.compile chose; `properties`: its `-o P=V`.
    `side`: the source's, for a restore."""
    perms = _unique(["receive", "create", "mount", *_properties(properties)])
    need, need_new = Need(perms, dataset), Need(perms, _parent(dataset))
    return Command(side, tuple(argv), Verb.RECEIVE, (dataset,), need, need_new)


def read(side: Side, argv: Sequence[str], dataset: str) -> Command:
    """A zfs command that only reads."""
    return Command(side, tuple(argv), Verb.READ, (dataset,))


def script(side: Side, argv: Sequence[str], datasets: Sequence[str] = ()) -> Command:
    return Command(side, tuple(argv), Verb.SCRIPT, tuple(datasets))


def pipe(side: Side, argv: Sequence[str]) -> Command:
    return Command(side, tuple(argv), Verb.PIPE)


def user(side: Side, argv: Sequence[str]) -> Command:
    return Command(side, tuple(argv), Verb.USER)
