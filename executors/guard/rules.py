"""The remote guard's rules, pure: which command lines `zfs-autobackup-guard` lets through.

Contract: `judge(line, policy, lookups)` returns the stages (argv tuples) of `line` when
it is written in the language the runner speaks (`" | ".join(shlex.join(argv) ...)`)
and every stage is a command zfs-reconcile sends in the guard's mode; otherwise it
raises `Refused` with a one-line reason. Nothing here runs anything: the questions
that need zfs (is a dataset selected, which snapshot does a resume token send, which
datasets are clones of a snapshot, ...) are asked through `lookups`. Standard library
only, with `reconcile.formats`, `reconcile.filters`, `reconcile.scripts` and
`reconcile.errors`: the guard runs where the project's dependencies are not installed.
It must not import the compile stage it mirrors (tests/test_guard.py feeds it every
command that stage builds).

Examples, a source guard of the backup `bak` (defaults; pool/a selected, pool/x not):

    zfs list -H -p -o name,guid -t snapshot -r pool
        allowed (a read)
    zfs send -L -p -i @bak-20260101000000 pool/a@bak-20260102000000 | zstd -T0 -3
        allowed
    zfs send -R pool/a@bak-20260102000000
        refused: zfs send: option '-R' is not allowed
    zfs send pool/x@bak-20260102000000
        refused: zfs send: dataset 'pool/x' is not selected by autobackup:bak
    zfs send -p pool/a@bak-20260102000000 | nc host 1
        refused: 'nc host 1' is not a stream filter zfs-reconcile sends after zfs send
    zfs destroy pool/a@bak-20260101000000
        refused: zfs destroy needs --allow-destroy on a source guard
    zfs list; id
        refused: shell syntax ';'

A snapshot that is not ours (`pool/a@__base__`) is sent only when a selected dataset is
its clone: the tool sends a clone's origin first, so that the clone arrives as a clone.

and a target guard (`--target-path backup`), whose receives the tool sends with
`-x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by` and, with
--clear-mountpoint, `-o canmount=noauto` (the host never mounts them, at boot neither):

    zstd -dc | zfs recv -u -s -o canmount=noauto backup/pool/a
        refused: zfs recv without -x org.openzfs.systemd:wanted-by (mounted at boot)
    zstd -dc | zfs recv -u -s backup/pool/a
        refused: zfs recv without -o canmount=noauto: use --clear-mountpoint, or --allow-mount
    zfs recv -u -o canmount=noauto backup2/pool/a
        refused: zfs recv: 'backup2/pool/a' is not under the target path 'backup'
    zfs destroy backup/pool/a@bak-20260101000000,bak-20260101010000
        allowed (thinning)
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional

from executors.guard.words import (
    PROGRAM,
    TOKEN,
    Argv,
    Refused,
    at_least,
    bookmark,
    dataset_name,
    is_component,
    is_dataset,
    no_options,
    scan,
    snapshot,
    tokenize,
)
from reconcile import formats, selection_values
from reconcile.errors import UsageError
from reconcile.guard_protocol import EXIT_REFUSED, READ_ONLY, refusal

__all__ = ["EXIT_REFUSED", "Argv", "Refused", "refusal", "tokenize", "under"]
from reconcile.filters import COMPRESSORS, SIZE
from reconcile.scripts import (
    BOOT_MOUNT_PROPERTIES,
    MOUNT_SCRIPT,
    PROBE_SCRIPT,
    SYSTEMD_PROPERTIES,
    received_unmountable,
)
from reconcile.zfs_names import under


class TokenSend(NamedTuple):
    """What `zfs send -nv -t TOKEN` says of a resume token, and the guid of what it sends."""

    #: the token's own fields (the sender wrote them; an attacker can too)
    toname: str
    toguid: int
    #: the snapshot zfs would send ("full send of ..."; zfs finds it by toguid)
    sends: Optional[str]
    #: the guid of `sends`, as zfs lists it
    guid: Optional[int]


class Lookups(NamedTuple):
    """What the rules ask zfs (the guard runs the real commands; tests pass functions)."""

    #: is this dataset selected by the backup's property (selection.py's rules)?
    selected: Callable[[str], bool]
    #: what a resume token sends; None when zfs refuses the token
    token: Callable[[str], Optional[TokenSend]]
    #: the short names of a dataset's snapshots, oldest first; None: no such dataset
    snapshots: Callable[[str], Optional[list[str]]]
    #: a dataset's mountpoint property (a path, none or legacy); None: no such dataset
    mountpoint: Callable[[str], Optional[str]]
    #: the datasets that are clones of a snapshot (its `clones` property; none: [])
    clones: Callable[[str], list[str]] = lambda snapshot: []


class Policy(NamedTuple):
    """The guard's options: the names it recognises and what it may let through."""

    property_name: str
    snapshot_pattern: str
    hold_tag: str
    #: a target guard receives under this path; None: a source guard
    target_path: Optional[str] = None
    read_only: bool = False
    allow_destroy: bool = False
    #: a target guard: receives without --clear-mountpoint, and the mount script
    allow_mount: bool = False
    other_snapshots: bool = False
    send_pipes: tuple[Argv, ...] = ()
    recv_pipes: tuple[Argv, ...] = ()
    #: --pre-snapshot-cmd and --post-snapshot-cmd
    snapshot_cmds: tuple[Argv, ...] = ()

    @classmethod
    def create(
        cls,
        backup_name: str,
        *,
        property_format: str = formats.PROPERTY_FORMAT,
        snapshot_format: str = formats.SNAPSHOT_FORMAT,
        hold_format: str = formats.HOLD_FORMAT,
        target_path: Optional[str] = None,
        read_only: bool = False,
        allow_destroy: bool = False,
        allow_mount: bool = False,
        other_snapshots: bool = False,
        send_pipes: Sequence[Argv] = (),
        recv_pipes: Sequence[Argv] = (),
        snapshot_cmds: Sequence[Argv] = (),
    ) -> Policy:
        """From the guard's options; a bad value is a UsageError naming it."""
        names = formats.names(
            backup_name,
            property_format=property_format,
            snapshot_format=snapshot_format,
            hold_format=hold_format,
        )
        if target_path is not None and not is_dataset(target_path):
            raise UsageError(f"Invalid --target-path '{target_path}': a dataset name is allowed")
        return cls(
            property_name=names.property_name,
            snapshot_pattern=names.snapshot_pattern,
            hold_tag=names.hold_tag,
            target_path=target_path,
            read_only=read_only,
            allow_destroy=allow_destroy,
            allow_mount=allow_mount,
            other_snapshots=other_snapshots,
            send_pipes=tuple(send_pipes),
            recv_pipes=tuple(recv_pipes),
            snapshot_cmds=tuple(snapshot_cmds),
        )

    @property
    def target(self) -> bool:
        return self.target_path is not None


def is_ours(policy: Policy, short: str) -> bool:
    """A snapshot name of this backup: it parses with the snapshot format (naming.py)."""
    parsed = formats.parse_time(policy.snapshot_pattern, short)
    if parsed is None:
        return False
    try:
        parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        return False  # (a date the clock cannot represent is not ours, as naming.py)
    return True


def _ours(policy: Policy, command: str, dataset: str, short: str) -> None:
    if not is_ours(policy, short):
        raise Refused(
            f"{command}: snapshot {dataset + '@' + short!r} is not one of ours "
            f"({policy.snapshot_pattern})"
        )


def _sendable(policy: Policy, lookups: Lookups, command: str, dataset: str, short: str) -> None:
    """A snapshot a stream may carry: one of ours, or the origin of a clone the backup
    selects (`pool/tmpl@__base__` of a selected `pool/vm-101`): the tool sends that
    origin first, so that the clone arrives as a clone (reconcile/clones.py). Its own
    dataset must be selected too: that is the sender's check (the tool sends an
    unselected origin's clone in full instead)."""
    if policy.other_snapshots or is_ours(policy, short):
        return
    if any(lookups.selected(clone) for clone in lookups.clones(f"{dataset}@{short}")):
        return
    raise Refused(
        f"{command}: snapshot {dataset + '@' + short!r} is not one of ours "
        f"({policy.snapshot_pattern}), nor the origin of a selected clone"
    )


def _our_bookmark(policy: Policy, command: str, dataset: str, short: str) -> None:
    """Ours: `<our snapshot>__<decimal target guid>` (bookmarks.py)."""
    snap, sep, tag = short.rpartition("__")
    ours = bool(sep and snap and tag.isdigit() and tag.isascii())
    if not ours or not (policy.other_snapshots or is_ours(policy, snap)):
        raise Refused(f"{command}: bookmark {dataset + '#' + short!r} is not one of ours")


def _under_target(policy: Policy, command: str, dataset: str) -> None:
    assert policy.target_path is not None
    if not under(dataset, policy.target_path):
        raise Refused(f"{command}: {dataset!r} is not under the target path {policy.target_path!r}")


# --- reads (allowed everywhere) ---------------------------------------------------------

#: how the tool reads a host's clock (executors.runner.CLOCK_ARGV; the guard imports
#: nothing of the tool but the standard library and its own protocol)
CLOCK = ("date", "+%s")


def _zfs_list(args: Sequence[str]) -> None:
    options, names = scan("zfs list", args, flags="Hpr", valued="otd")
    if any(not depth.isdigit() for depth in options.get("d", [])):
        raise Refused(f"zfs list: -d {options['d'][0]!r} is not a depth")
    for name in names:
        _any_name("zfs list", name)


def _any_name(command: str, name: str) -> None:
    if "@" in name:
        snapshot(command, name)
    elif "#" in name:
        bookmark(command, name)
    else:
        dataset_name(command, name)


def _zfs_get(args: Sequence[str]) -> None:
    _, names = scan("zfs get", args, flags="Hp", valued="ot")
    at_least("zfs get", names, 1, "the property list")
    for name in names[1:]:
        _any_name("zfs get", name)


def _zfs_holds(args: Sequence[str]) -> None:
    _, names = scan("zfs holds", args, flags="Hr")
    at_least("zfs holds", names, 1, "a snapshot")
    for name in names:
        snapshot("zfs holds", name)


def _zpool_get(args: Sequence[str]) -> None:
    _, names = scan("zpool get", args, flags="H", valued="o")
    at_least("zpool get", names, 1, "the property list")
    for pool in names[1:]:
        if "/" in pool:
            raise Refused(f"zpool get: {pool!r} is not a pool name")
        dataset_name("zpool get", pool)


# --- sends ---------------------------------------------------------------------------------

#: `zfs send` flags the tool sends, each its own word
_SEND_FLAGS = "PLecwp"
#: and, combined in one word, in dry runs only (`-nv -t TOKEN`, `-nP`)
_DRY_FLAGS = "nv"


class _Send(NamedTuple):
    letters: str
    combined: bool
    base: Optional[str]
    token: Optional[str]
    names: tuple[str, ...]
    #: the base came with -I (a stream of every snapshot between the two)
    intermediates: bool = False

    @property
    def dry(self) -> bool:
        return "n" in self.letters


def _parse_send(args: Sequence[str]) -> _Send:
    letters, combined, intermediates = "", False, False
    base = token = None
    names: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word in ("-i", "-I", "-t"):
            if i >= len(args) or args[i].startswith("-") or not args[i]:
                raise Refused(f"zfs send: {word} needs a value")
            if (word == "-t" and token is not None) or (word != "-t" and base is not None):
                raise Refused(f"zfs send: {word} is given twice")
            if word == "-t":
                token = args[i]
            else:
                base, intermediates = args[i], word == "-I"
            i += 1
        elif word.startswith("--") or word == "-":
            raise Refused(f"zfs send: option {word!r} is not allowed")
        elif word.startswith("-"):
            for letter in word[1:]:
                if letter not in _SEND_FLAGS + _DRY_FLAGS:
                    raise Refused(f"zfs send: option '-{letter}' is not allowed")
                if letter in letters:
                    raise Refused(f"zfs send: -{letter} is given twice")
                letters += letter
            combined = combined or len(word) > 2
        else:
            names.append(word)
    return _Send(letters, combined, base, token, tuple(names), intermediates)


def _base(base: str) -> None:
    """`-i`/`-I`: @snap, DS#bookmark or OTHER@snap (a clone's origin)."""
    if base.startswith("@"):
        if not is_component(base[1:]):
            raise Refused(f"zfs send: {base!r} is not a snapshot name")
    elif "#" in base:
        bookmark("zfs send", base)
    else:
        snapshot("zfs send", base)


def _zfs_send(args: Sequence[str], policy: Policy, lookups: Lookups) -> None:
    send = _parse_send(args)
    if send.token is not None:
        if send.names or send.base:
            raise Refused("zfs send: -t goes without a snapshot or a base")
        if send.token.startswith("-") or not set(send.token) <= TOKEN:
            raise Refused(f"zfs send: {send.token!r} is not a resume token")
    else:
        if len(send.names) != 1:
            raise Refused(f"zfs send: one snapshot is sent, not {len(send.names)}")
        if send.base is not None:
            _base(send.base)
        snapshot("zfs send", send.names[0])
    if send.dry:
        return  # (a dry run only prints sizes or what a token is about)
    if "v" in send.letters:
        raise Refused("zfs send: -v only in a dry run (-n)")
    if send.combined:
        raise Refused("zfs send: combined flags are only sent in a dry run (-n)")
    if policy.target:
        raise Refused("zfs send on a target guard (--target-path)")
    if send.token is not None:
        dataset, short = snapshot("zfs send -t", _token_sends(send.token, lookups))
    else:
        dataset, short = snapshot("zfs send", send.names[0])
    _sendable(policy, lookups, "zfs send", dataset, short)
    if not lookups.selected(dataset):
        raise Refused(f"zfs send: dataset {dataset!r} is not selected by {policy.property_name}")
    if send.base is not None and send.intermediates:
        _intermediates(policy, lookups, send.base, dataset, short)


def _token_sends(token: str, lookups: Lookups) -> str:
    """The snapshot a resume token really sends: the one zfs names, which must be the
    token's own toname with the token's guid (zfs finds it by the guid, anywhere)."""
    info = lookups.token(token)
    if info is None:
        raise Refused("zfs send -t: zfs names no snapshot for this resume token")
    if info.sends is None:
        raise Refused(f"zfs send -t: zfs does not say what it sends for {info.toname!r}")
    if info.sends != info.toname:
        raise Refused(f"zfs send -t: the token names {info.toname!r} but sends {info.sends!r}")
    if info.guid != info.toguid:
        raise Refused(f"zfs send -t: the token's guid {info.toguid} is not that of {info.toname!r}")
    return info.sends


def _intermediates(policy: Policy, lookups: Lookups, base: str, dataset: str, short: str) -> None:
    """`-I`: every snapshot that the stream carries between the two is ours."""
    base_dataset, _, base_short = base.rpartition("@")
    if "#" in base or base_dataset not in ("", dataset):
        raise Refused("zfs send: -I from another dataset or a bookmark")
    names = lookups.snapshots(dataset) or []
    first = names.index(base_short) if base_short in names else len(names)
    last = names.index(short) if short in names else -1
    if first >= last:
        raise Refused(f"zfs send -I: zfs lists no {base!r} before {dataset + '@' + short!r}")
    for other in names[first + 1 : last]:
        _sendable(policy, lookups, "zfs send -I", dataset, other)


def _is_mbuffer(argv: Argv) -> bool:
    """`mbuffer -q -sSIZE -mSIZE [-RSIZE]` (compile's shape, nothing else)."""
    if argv[:2] != ("mbuffer", "-q") or len(argv) not in (4, 5):
        return False
    return all(
        word.startswith(prefix) and SIZE.fullmatch(word[2:]) is not None
        for word, prefix in zip(argv[2:], ("-s", "-m", "-R"))
    )


def _filters(stages: Sequence[Argv], allowed: set[Argv], where: str) -> None:
    for argv in stages:
        if argv not in allowed and not _is_mbuffer(argv):
            shown = shlex.join(argv)
            raise Refused(f"{shown!r} is not a stream filter zfs-reconcile sends {where}")


# --- writes on a source ------------------------------------------------------------------


def _zfs_snapshot(args: Sequence[str], policy: Policy) -> None:
    options, names = scan("zfs snapshot", args, valued="o", repeat="o")
    for prop in options.get("o", []):
        if "=" not in prop.lstrip("="):
            raise Refused(f"zfs snapshot: -o {prop!r} is not PROPERTY=VALUE")
    at_least("zfs snapshot", names, 1, "a snapshot")
    shorts = set()
    for name in names:
        dataset, short = snapshot("zfs snapshot", name)
        _ours(policy, "zfs snapshot", dataset, short)
        shorts.add(short)
    if len(shorts) > 1:
        raise Refused("zfs snapshot: snapshots of different names in one command")


def _zfs_hold(verb: str, args: Sequence[str], policy: Policy) -> None:
    command = f"zfs {verb}"
    _, names = scan(command, args, flags="r")
    at_least(command, names, 2, "a tag and a snapshot")
    tag, *snapshots = names
    if tag != policy.hold_tag:
        raise Refused(f"{command}: tag {tag!r} is not ours ({policy.hold_tag!r})")
    for name in snapshots:
        dataset, _ = snapshot(command, name)
        if policy.target:
            _under_target(policy, command, dataset)


def _zfs_bookmark(args: Sequence[str], policy: Policy) -> None:
    names = no_options("zfs bookmark", args)
    if len(names) != 2:
        raise Refused("zfs bookmark: a snapshot (or bookmark) and a new bookmark are expected")
    of, new = names
    if "#" in of:
        dataset, _ = bookmark("zfs bookmark", of)
    else:
        dataset, _ = snapshot("zfs bookmark", of)
    where, short = bookmark("zfs bookmark", new)
    if where != dataset:
        raise Refused("zfs bookmark: the bookmark is of another dataset")
    _our_bookmark(policy, "zfs bookmark", where, short)


def _zfs_destroy(args: Sequence[str], policy: Policy) -> None:
    names = no_options("zfs destroy", args)
    if len(names) != 1:
        raise Refused(f"zfs destroy: one name is destroyed, not {len(names)}")
    (name,) = names
    if "#" in name:
        if policy.target:
            raise Refused("zfs destroy of a bookmark on a target guard")
        dataset, short = bookmark("zfs destroy", name)
        _our_bookmark(policy, "zfs destroy", dataset, short)
        return
    if "@" not in name:
        raise Refused(f"zfs destroy of the dataset {name!r}: only our snapshots are destroyed")
    dataset, _, shorts = name.partition("@")
    if "%" in shorts:
        raise Refused(f"zfs destroy: a snapshot range '%' in {name!r}")
    dataset_name("zfs destroy", dataset)
    if policy.target:
        _under_target(policy, "zfs destroy", dataset)
    for short in shorts.split(","):
        if not is_component(short):
            raise Refused(f"zfs destroy: {short!r} is not a snapshot name")
        _ours(policy, "zfs destroy", dataset, short)


# --- writes on a target -------------------------------------------------------------------


#: `-o` values that would let the host run or share what it received
_NEVER_SET = frozenset({"setuid=on", "exec=on", "devices=on"})
_NEVER_SET_KEYS = ("sharenfs", "sharesmb")


def _zfs_recv(args: Sequence[str], policy: Policy, lookups: Lookups) -> None:
    if tuple(args[:1]) == ("-A",):
        if len(args) != 2:
            raise Refused("zfs recv -A: only a dataset goes with -A")
        _under_target(policy, "zfs recv -A", dataset_name("zfs recv -A", args[1]))
        return
    options, names = scan("zfs recv", args, flags="usF", valued="xo", repeat="xo")
    if len(names) != 1:
        raise Refused(f"zfs recv: one dataset receives, not {len(names)}")
    _under_target(policy, "zfs recv", dataset_name("zfs recv", names[0]))
    if "u" not in options:
        raise Refused("zfs recv: without -u (a received dataset is never mounted by zfs recv)")
    if "F" in options and not policy.allow_destroy:
        raise Refused("zfs recv -F needs --allow-destroy")
    for prop in options.get("o", []):
        _recv_option(prop, policy, lookups)
    # what a stolen source key sends could carry any mountpoint (/etc, /root/.ssh):
    # nothing received is ever mounted by the host unless the guard allows it
    if not (received_unmountable(options.get("o", [])) or policy.allow_mount):
        raise Refused(
            "zfs recv without -o canmount=noauto: use --clear-mountpoint, or --allow-mount"
        )
    missing = [p for p in BOOT_MOUNT_PROPERTIES if p not in options.get("x", [])]
    if missing and not policy.allow_mount:
        raise Refused(f"zfs recv without -x {missing[0]} (mounted at boot)")


def _recv_option(prop: str, policy: Policy, lookups: Lookups) -> None:
    """One `-o P=V` of a receive: the tool's (--set-properties, --clear-mountpoint), never
    one that mounts, runs or shares what arrives, or makes it a clone."""
    key, sep, value = prop.partition("=")
    if not sep or not key:
        raise Refused(f"zfs recv: -o {prop!r} is not PROPERTY=VALUE")
    if key == "origin":
        raise Refused("zfs recv: -o origin=... is not allowed")
    if key.startswith(SYSTEMD_PROPERTIES):
        raise Refused(f"zfs recv: -o {key}=... (systemd would mount it at boot)")
    if prop in _NEVER_SET or (key in _NEVER_SET_KEYS and value != "off"):
        raise Refused(f"zfs recv: -o {prop!r} is not allowed")
    if key == "mountpoint" and value not in ("none", "legacy"):
        assert policy.target_path is not None
        base = lookups.mountpoint(policy.target_path)
        inside = base is not None and base.startswith("/") and _below_path(value, base)
        if not inside:
            raise Refused(
                f"zfs recv: -o mountpoint={value!r} is outside the target path's "
                f"mountpoint ({base or 'none'})"
            )


def _below_path(path: str, base: str) -> bool:
    """`path` is `base` or a directory below it, written plainly (no '.', '..', '//')."""
    parts = path.split("/")
    if not path.startswith("/") or any(p in (".", "..") for p in parts) or "//" in path:
        return False
    return path == base or path.startswith(base.rstrip("/") + "/")


def _zfs_create(args: Sequence[str], policy: Policy) -> None:
    if len(args) != 3 or tuple(args[:2]) != ("-o", "canmount=off"):
        raise Refused("zfs create: only 'zfs create -o canmount=off DATASET' is allowed")
    _under_target(policy, "zfs create", dataset_name("zfs create", args[2]))


def _zfs_rollback(args: Sequence[str], policy: Policy) -> None:
    names = no_options("zfs rollback", args)
    if len(names) != 1:
        raise Refused(f"zfs rollback: one snapshot, not {len(names)}")
    if not policy.allow_destroy:
        raise Refused("zfs rollback needs --allow-destroy")
    dataset, _ = snapshot("zfs rollback", names[0])
    _under_target(policy, "zfs rollback", dataset)


# --- one command --------------------------------------------------------------------------

_READS = {"list": _zfs_list, "get": _zfs_get, "holds": _zfs_holds}
_SOURCE_WRITES = frozenset({"snapshot", "hold", "release", "bookmark", "destroy"})
_TARGET_WRITES = frozenset({"recv", "create", "hold", "release", "destroy", "rollback"})


def _sh(args: Sequence[str], policy: Policy) -> None:
    """`sh -c PROBE_SCRIPT sh PROG...` anywhere, `sh -c MOUNT_SCRIPT sh DS` on a target."""
    if len(args) < 2 or args[0] != "-c":
        raise Refused("sh: only 'sh -c SCRIPT sh ARGS...' with zfs-reconcile's scripts")
    script, rest = args[1], args[3:]
    if script not in (PROBE_SCRIPT, MOUNT_SCRIPT):
        raise Refused(f"sh -c with a script that is not zfs-reconcile's ({script[:40]!r})")
    if tuple(args[2:3]) != ("sh",):
        raise Refused("sh -c SCRIPT: its $0 is not 'sh'")
    if script == PROBE_SCRIPT:
        at_least("sh (probe)", rest, 1, "a program name")
        for program in rest:
            if program.startswith("-") or not set(program) <= PROGRAM:
                raise Refused(f"sh (probe): {program!r} is not a program name")
        return
    if not policy.target:
        raise Refused("sh (mount) on a source guard")
    if not policy.allow_mount:
        raise Refused("sh (mount) needs --allow-mount")
    if policy.read_only:
        raise Refused(f"sh (mount): {READ_ONLY}", read_only=True)
    if len(rest) != 1:
        raise Refused("sh (mount): one dataset is mounted")
    _under_target(policy, "sh (mount)", dataset_name("sh (mount)", rest[0]))


def check_command(argv: Argv, policy: Policy, lookups: Lookups) -> None:
    """One stage on its own (not a pipeline's filter)."""
    if argv in policy.snapshot_cmds:
        if policy.read_only or policy.target:
            raise Refused("a pre/post snapshot command, on a --read-only or target guard")
        return
    program, args = argv[0], argv[1:]
    if "/" in program:
        raise Refused(f"a program path {program!r}: only plain program names run")
    if program == "sh":
        _sh(args, policy)
        return
    if program == "zpool" and args[:1] == ("get",):
        _zpool_get(args[1:])
        return
    if tuple(argv) == CLOCK:  # (the host's clock, for the listing cache: a read)
        return
    if program != "zfs" or not args:
        raise Refused(f"{program!r} is not a command zfs-reconcile sends")
    verb, rest = args[0], args[1:]
    if verb in _READS:
        _READS[verb](rest)
    elif verb == "send":
        _zfs_send(rest, policy, lookups)
    elif verb not in _SOURCE_WRITES | _TARGET_WRITES:
        raise Refused(f"'zfs {verb}' is not a command zfs-reconcile sends")
    elif policy.read_only:
        raise Refused(f"zfs {verb}: {READ_ONLY}", read_only=True)
    elif verb not in (_TARGET_WRITES if policy.target else _SOURCE_WRITES):
        where = "a target guard (--target-path)" if policy.target else "a source guard"
        raise Refused(f"zfs {verb} on {where}")
    else:
        _write(verb, rest, policy, lookups)


def _write(verb: str, args: Argv, policy: Policy, lookups: Lookups) -> None:
    if verb == "snapshot":
        _zfs_snapshot(args, policy)
    elif verb in ("hold", "release"):
        _zfs_hold(verb, args, policy)
    elif verb == "bookmark":
        _zfs_bookmark(args, policy)
    elif verb == "destroy":
        if not (policy.target or policy.allow_destroy):
            raise Refused("zfs destroy needs --allow-destroy on a source guard")
        _zfs_destroy(args, policy)
    elif verb == "recv":
        _zfs_recv(args, policy, lookups)
    elif verb == "create":
        _zfs_create(args, policy)
    else:
        _zfs_rollback(args, policy)


def check(stages: Sequence[Argv], policy: Policy, lookups: Lookups) -> None:
    """Every stage allowed: one command, or `zfs send | filters` on a source and
    `filters | zfs recv` on a target."""
    if len(stages) == 1:
        check_command(stages[0], policy, lookups)
        return
    if not policy.target:
        send = stages[0]
        if send[:2] != ("zfs", "send"):
            raise Refused(f"a pipeline that does not start with zfs send ({shlex.join(send)!r})")
        if _parse_send(send[2:]).dry:
            raise Refused("a pipeline after a dry run (zfs send -n)")
        check_command(send, policy, lookups)
        allowed = {c.compress for c in COMPRESSORS.values()} | set(policy.send_pipes)
        _filters(stages[1:], allowed, "after zfs send")
        return
    recv = stages[-1]
    if recv[:2] != ("zfs", "recv") or "-A" in recv:
        raise Refused(f"a pipeline that does not end with zfs recv ({shlex.join(recv)!r})")
    check_command(recv, policy, lookups)
    allowed = {c.decompress for c in COMPRESSORS.values()} | set(policy.recv_pipes)
    _filters(stages[:-1], allowed, "before zfs recv")


def received_dataset(stages: Sequence[Argv], policy: Policy) -> Optional[str]:
    """The dataset that allowed `stages` receive a stream into (their last is `zfs recv`
    on a target guard, not `-A`), whose stream the guard must judge too; else None."""
    recv = stages[-1]
    if not policy.target or recv[:2] != ("zfs", "recv") or "-A" in recv:
        return None
    return recv[-1]


def judge(line: str, policy: Policy, lookups: Lookups) -> tuple[Argv, ...]:
    """The stages to run for `line`, or Refused."""
    stages = tokenize(line)
    check(stages, policy, lookups)
    return stages


# --- what zfs answers the lookups ------------------------------------------------------


def selects(value: str, source: str, origin_source: str, exclude_received: bool) -> bool:
    """selection.py's rules for one dataset: `value` and `source` of the property on it
    (`zfs get -o name,value,source`), `origin_source` the source where an inherited
    value is set (local or received; `source` itself when not inherited)."""
    inherited = selection_values.inherited_from(source) is not None
    if selection_values.refusal(value, inherited) is not None:
        return False
    return selection_values.received_refusal(origin_source, exclude_received) is None
