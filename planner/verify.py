"""Verify's commands, and the only writes a verification may make: each is temporary,
and undone by the command this module pairs it with.

    zfs hold TAG:verify DS@S              zfs release TAG:verify DS@S
    mktemp -d -t zfs-autobackup-verify.XXXXXX  rmdir DIR
    mount -t zfs -o ro,nodev,nosuid,noexec DS@S DIR   umount DIR
    zfs set snapdev=visible VOL           zfs inherit [-S] snapdev VOL | zfs set snapdev=V VOL
    python3 -c WALK [--sample N --slice K] [--budget S] [--device --wait S] PATH   (reads)

and one that stays: the record of a full verification, a user property on the copy

    zfs set autobackup:NAME:verified="SECONDS @SNAPSHOT" COPY

`is_temporary` is what the runner of the read-only `verify` mode lets through besides
reads (executors.runner.ReadOnlyRunner): these, and nothing else that writes. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from planner.commands import Command, Verb, hold, read
from reconcile import walk
from reconcile.model import Side
from reconcile.verify import parse_record

#: the temporary directories' names (mktemp's template, under $TMPDIR or /tmp)
PREFIX = "zfs-autobackup-verify."
MOUNT_OPTIONS = "ro,nodev,nosuid,noexec"


def _program(text: str) -> str:
    """A module's source without its docstring (the command line shows the rest)."""
    if text.startswith('"""'):
        text = text[text.index('"""', 3) + 3 :].lstrip("\n")
    return text


#: the walker's source (reconcile.walk): run as `python3 -c SOURCE`, so that a host needs
#: no installed copy of this tool
WALK_SOURCE = _program(Path(walk.__file__).read_text(encoding="utf-8"))


def hold_snapshot(side: Side, tag: str, name: str, *, release: bool = False) -> Command:
    return hold(side, tag, [name], release=release)


def make_dir(side: Side) -> Command:
    return Command(side, ("mktemp", "-d", "-t", f"{PREFIX}XXXXXX"), Verb.MOUNT)


def remove_dir(side: Side, path: str) -> Command:
    return Command(side, ("rmdir", path), Verb.MOUNT)


def mount(side: Side, snapshot: str, path: str) -> Command:
    argv = ("mount", "-t", "zfs", "-o", MOUNT_OPTIONS, snapshot, path)
    return Command(side, argv, Verb.MOUNT, (snapshot.split("@", 1)[0],))


def unmount(side: Side, path: str, *, lazy: bool = False) -> Command:
    """`umount DIR` (`-l`: the last try, when a walk that was stopped still reads it)."""
    return Command(side, ("umount", *(["-l"] if lazy else []), path), Verb.MOUNT)


def show_devices(side: Side, volume: str) -> Command:
    """`zfs set snapdev=visible VOL`: its snapshots' devices appear (/dev/zvol/VOL@S)."""
    return Command(side, ("zfs", "set", "snapdev=visible", volume), Verb.SET, (volume,))


def restore_snapdev(side: Side, volume: str, value: str, source: str) -> Command:
    """Put `snapdev` back as it was: its local value, its received one, or inherited."""
    if source == "local":
        argv: tuple[str, ...] = ("zfs", "set", f"snapdev={value}", volume)
    elif source == "received":
        argv = ("zfs", "inherit", "-S", "snapdev", volume)
    else:
        argv = ("zfs", "inherit", "snapdev", volume)
    return Command(side, argv, Verb.SET, (volume,))


def read_snapdev(side: Side, volume: str) -> Command:
    """`snapdev`'s value and where it comes from (to put it back as it was)."""
    return read(side, ("zfs", "get", "-H", "-o", "value,source", "snapdev", volume), volume)


def read_keystatus(names: Sequence[str]) -> Command:
    """Whose key is loaded, of the target's encrypted copies (one command for all)."""
    argv = ("zfs", "get", "-H", "-o", "name,value", "keystatus", *names)
    return Command(Side.TARGET, argv, Verb.READ, tuple(names))


def record(copy: str, prop: str, value: str) -> Command:
    """`zfs set PROP=VALUE COPY`: when its newest verification was (reconcile.verify)."""
    return Command(Side.TARGET, ("zfs", "set", f"{prop}={value}", copy), Verb.SET, (copy,))


def read_records(target_path: str, prop: str) -> Command:
    """Every copy's record under the target path (one command: `status --verify-max-age`)."""
    argv = ("zfs", "get", "-H", "-p", "-o", "name,value", "-s", "local", "-r", prop, target_path)
    return read(Side.TARGET, argv, target_path)


def read_sizes(snapshots: Sequence[str]) -> Command:
    """The logical bytes of the source's snapshots (what the walks will read, roughly):
    the total that --progress counts down, one command for all."""
    argv = ("zfs", "get", "-H", "-p", "-o", "name,value", "logicalreferenced", *snapshots)
    return Command(Side.SOURCE, argv, Verb.READ, tuple(s.split("@")[0] for s in snapshots))


def walk_command(
    side: Side,
    path: str,
    *,
    device: bool = False,
    sample: Optional[tuple[int, int]] = None,
    budget: Optional[float] = None,
) -> Command:
    argv = ["python3", "-c", WALK_SOURCE]
    if sample is not None:
        argv += ["--sample", str(sample[0]), "--slice", str(sample[1])]
    if budget is not None:
        argv += ["--budget", f"{budget:.1f}"]
    if device:
        # (its snapshot device appears when udev has made it)
        argv += ["--device", "--wait", "30"]
    return Command(side, (*argv, path), Verb.WALK)


#: a directory `make_dir` made: mktemp's name, six letters or digits, anywhere
_TEMP_DIR = re.compile(rf"/(?:[^/\0]+/)*{re.escape(PREFIX)}[A-Za-z0-9]{{6}}")


def _temp_dir(path: str) -> bool:
    return _TEMP_DIR.fullmatch(path) is not None


def _named(arg: str, mark: str) -> bool:
    """A dataset's snapshot (`@`) or a dataset below a pool (`/`), never an option."""
    return mark in arg and not arg.startswith("-")


def is_temporary(argv: Sequence[str]) -> bool:
    """One of the writes above (and the walker, which only reads), and nothing more: a
    verify tag, a directory of mktemp's making, snapdev only visible or hidden, the
    record only as `record_value` writes it."""
    argv = tuple(argv)
    if argv[:3] == ("python3", "-c", WALK_SOURCE):
        return True
    if argv[:2] in (("zfs", "hold"), ("zfs", "release")):
        return len(argv) == 4 and argv[2].endswith(":verify") and _named(argv[3], "@")
    if argv == ("mktemp", "-d", "-t", f"{PREFIX}XXXXXX"):
        return True
    if argv[:1] in (("rmdir",), ("umount",)) or argv[:2] == ("umount", "-l"):
        return len(argv) in (2, 3) and argv[-2] in ("rmdir", "umount", "-l") and _temp_dir(argv[-1])
    if argv[:5] == ("mount", "-t", "zfs", "-o", MOUNT_OPTIONS):
        return len(argv) == 7 and _named(argv[5], "@") and _temp_dir(argv[6])
    if argv[:2] == ("zfs", "set") and len(argv) == 4 and not argv[3].startswith("-"):
        name, _, value = argv[2].partition("=")
        if name.endswith(":verified"):
            # (on a copy: it may be TARGET-PATH itself, a pool, with --strip-path)
            return parse_record(value) is not None and "@" not in argv[3]
        return name == "snapdev" and value in ("visible", "hidden") and "/" in argv[3]
    if argv[:2] == ("zfs", "inherit") and _named(argv[-1], "/"):
        return argv[2:-1] in (("snapdev",), ("-S", "snapdev"))
    return False
