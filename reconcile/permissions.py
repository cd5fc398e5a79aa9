"""Delegated permissions (`zfs allow`): what a permission is, what each feature needs. Pure.

The tool runs as an unprivileged user where `zfs allow` grants it what replication
needs. What each command needs is stated where the command is made, next to its argv
(planner.commands, OpenZFS 2.3's rules as measured on Linux); what each feature needs
is FEATURES below (tests/test_zfs_privilege.py grants exactly FEATURES' sets and runs
every mode with them).

A received stream's properties (`zfs send -p`) each need their own permission on the
target (userprop for user properties such as the selection property) where the receive
sets them: a full stream's, or one whose value changed (an incremental stream's unchanged
properties need none, measured); zfs receives the data without them, says "cannot
receive P property on DS: permission denied" and exits 0, even when the property is
filtered with `-x P`. Mounting cannot be delegated on Linux: only root mounts, so a
delegated user's backups stay unmounted (`zfs recv -u`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import attrs

#: a user property (`module:name`) needs this permission, a native one its own name
USER_PROPERTIES = "userprop"


def for_property(prop: str) -> str:
    """The permission that lets a user set `prop` (`compression`, or userprop)."""
    return USER_PROPERTIES if ":" in prop else prop


@attrs.frozen
class Need:
    """Permissions a command needs, and the dataset to grant them on."""

    permissions: tuple[str, ...]
    dataset: str

    def grant(self, user: str) -> str:
        """The `zfs allow` line that grants them (as a user would paste it)."""
        perms = ",".join(self.permissions)
        return f"zfs allow -u {shlex.quote(user)} {perms} {shlex.quote(self.dataset)}"


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@attrs.frozen
class Feature:
    """A feature, and the permissions it adds on the source and on the target."""

    name: str
    #: the options that turn it on or off
    options: str
    source: tuple[str, ...]
    target: tuple[str, ...]
    note: str = ""


#: What each feature needs; the default run needs the union of DEFAULT_FEATURES' sets.
FEATURES = (
    Feature(
        "replication", "(always)", ("send",), ("receive", "create", "mount", "userprop"),
        "userprop: the selection property and other user properties set on the source arrive "
        "with a full stream (an incremental one's unchanged properties need nothing)",
    ),
    Feature(
        "intermediates", "(a send of several kept snapshots: zfs send -I)", ("hold",), (),
        "zfs send -I holds what it sends while it sends it (measured: 'cannot hold: "
        "permission denied' without)",
    ),
    Feature("snapshots", "off with --no-snapshot", ("snapshot",), ()),
    Feature(
        "thinning", "off with --no-thinning", ("destroy", "mount"), ("destroy", "mount"),
    ),
    Feature(
        "holds", "off with --no-holds", (), ("hold", "release"),
        "the target's common snapshot; while bookmarks are on the source holds nothing",
    ),
    Feature(
        "bookmarks",
        "off with --no-bookmarks, --no-guid-check, or a source pool without feature@bookmarks",
        ("bookmark", "destroy"), (),
        "destroy: superseded bookmarks",
    ),
    Feature(
        "source holds", "when bookmarks are off (above), unless --no-holds", ("hold", "release"),
        (),
        "the source's common snapshot is held, not bookmarked; grant release also to "
        "release, once, the holds that zfs-autobackup 3.3 or --no-bookmarks runs left",
    ),
    Feature(
        "parents", "(when the target lacks a parent)", (), ("canmount",),
        "the unmountable parents it creates (zfs create -o canmount=off)",
    ),
    Feature("resume", "(always)", (), (), "zfs send -t and zfs recv -A need nothing more"),
    Feature(
        "encryption", "raw sends, --encrypt, --decrypt", (), (),
        "a raw receive needs no key; --decrypt needs the key loaded on the source",
    ),
    Feature("--force", "--force", (), (), "zfs recv -F needs nothing more than receive"),
    Feature("--rollback", "--rollback", (), ("rollback", "mount")),
    Feature(
        "--destroy-missing", "--destroy-missing, --destroy-incompatible", (),
        ("destroy", "mount"),
    ),
    Feature("--clear-mountpoint", "--clear-mountpoint", (), ("canmount",)),
    Feature(
        "--set-properties", "--set-properties P=V", (), ("P",),
        "each property P (userprop for user properties)",
    ),
    Feature(
        "--filter-properties", "--filter-properties P", (), ("P",),
        "zfs still checks P's permission for a filtered property (measured)",
    ),
    Feature(
        "received properties", "(sources with locally set properties)", (), ("P",),
        "each property the source sets locally (zfs get -s local all SOURCE)",
    ),
    Feature(
        "--set-snapshot-properties", "--set-snapshot-properties P=V", ("P",), (),
        "each property P (userprop for user properties)",
    ),
)  # fmt: skip

#: The features of a run with the default options.
DEFAULT_FEATURES = (
    "replication", "intermediates", "snapshots", "thinning", "holds", "bookmarks", "parents",
)  # fmt: skip


def table() -> str:
    """FEATURES as the markdown table of docs/security.md (`python -m reconcile.permissions`
    prints it; a unit test keeps the page equal to it)."""
    rows = [
        f"| {f.name} | {f.options} | {','.join(f.source)} | {','.join(f.target)} | {f.note} |"
        for f in FEATURES
    ]
    head = ["| feature | when | source | target | note |", "|---|---|---|---|---|"]
    return "\n".join([*head, *rows])


def default_set(side: str) -> tuple[str, ...]:
    """The permissions a run with the default options needs on `side` ("source", "target")."""
    perms = [
        p
        for f in FEATURES
        if f.name in DEFAULT_FEATURES
        for p in (f.source if side == "source" else f.target)
    ]
    return _unique(perms)


if __name__ == "__main__":
    print(table())
