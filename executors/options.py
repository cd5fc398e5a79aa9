"""The command line: zfs-autobackup v3's options, parsed and turned into a Job.

Every option of the v3.0 `--help` (and the v3.3 additions) is accepted with its v3
meaning. Bad values are one-line errors naming the value.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, Callable, NoReturn, Optional

import attrs

from executors.execute import DEFAULT_PARALLEL, Settings
from executors.lock import lock_path
from executors.modes import Mode
from executors.regular import MIB, NAME_MAX, Unreadable, read_regular, size_words
from planner import status
from reconcile import __version__, formats, naming, zfs_names
from reconcile.errors import UsageError, quoted
from reconcile.job import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    Job,
    Remote,
    SelectionRules,
    Snapshotting,
    Thinning,
    Transfer,
)
from reconcile.model import Host
from reconcile.pipes import COMPRESSORS, TransferOptions
from reconcile.schedule import DEFAULT, Schedule, parse_duration
from reconcile.scripts import SYSTEMD_PROPERTIES

#: --parallel at most (each send is a few processes, and over ssh a session of the
#: host's one connection: sshd allows 10 sessions per connection by default)
MAX_PARALLEL = 8
#: the largest --ssh-config read (checked before ssh reads it; /dev/zero is refused)
MAX_SSH_CONFIG = MIB


#: --retries at most (each retry waits twice as long as the one before)
MAX_RETRIES = 20
#: --retry-delay at most, in seconds
MAX_RETRY_DELAY = 3600.0
#: --strip-path at most (a dataset name of 255 characters has fewer components)
MAX_STRIP_PATH = 128
#: a number of bytes at most (zfs counts them in a signed 64-bit integer)
MAX_BYTES = 2**63 - 1

_INTEGER = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{0,9})?|\.[0-9]{1,9}", re.ASCII)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        _check_values(self, parsed)
        return parsed, extras


def _check_values(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> None:
    """What argparse lets through on its own: `--opt=--` and a second `--` as a
    positional's value (Python 3.9 to 3.12 make it an empty list, or drop it) and a NUL
    character (no program's argument can hold one)."""
    for action in parser._actions:
        if not action.option_strings and action.nargs in (None, "?"):
            # (a positional: `restore B -- -- DS` makes TARGET-PATH an empty list)
            if getattr(parsed, action.dest, None) == []:
                raise UsageError(
                    f"invalid value '--' for {action.metavar}: a {action.metavar} is needed "
                    "('--' ends the options once)"
                )
            continue
        if action.nargs == 0:
            continue
        value = getattr(parsed, action.dest, None)
        values = value if isinstance(action, argparse._AppendAction) else [value]
        for item in values or ():
            if item in ([], "--"):
                raise UsageError(
                    f"invalid value '--' for {action.option_strings[0]}: a value is needed "
                    f"(write {action.option_strings[0]}=VALUE)"
                )
            if isinstance(item, str) and "\0" in item:
                raise UsageError(
                    f"invalid value {quoted(item)} for {action.option_strings[0]}: "
                    "no NUL character is allowed"
                )


def _whole_number(option: str, low: int = 0, high: int = MAX_BYTES) -> Callable[[str], int]:
    """argparse type: an integer (ASCII digits) from `low` to `high`, or a one-line error."""
    allowed = f"from {low} to {high}"

    def parse(text: str) -> int:
        value = int(text) if _INTEGER.fullmatch(text) else None
        if value is None or value < low or value > high:
            raise argparse.ArgumentTypeError(
                f"invalid value {quoted(text)} for {option}: a whole number {allowed} is allowed"
            )
        return value

    return parse


def add_parallel(g: Any) -> None:
    g.add_argument(
        "--parallel",
        metavar="N",
        type=_whole_number("--parallel", 1, MAX_PARALLEL),
        default=DEFAULT_PARALLEL,
        help="send and thin up to N datasets at the same time "
        "(default %(default)s; --debug: one by one)",
    )


def _file_parser(mode: Mode) -> argparse.ArgumentParser:
    command = mode.prog.split()[-1]
    p = _Parser(prog=mode.prog, description=f"{command} a saved plan file")
    p.add_argument(
        "plan_file", metavar="FILE", help="a plan saved with: zfs-autobackup plan ... --out FILE"
    )
    mode.command.arguments(p)
    return p


def _seconds(option: str, high: float) -> Callable[[str], float]:
    """argparse type: a number of seconds from 0 to `high` (ASCII digits, decimals allowed)."""

    def parse(text: str) -> float:
        value = float(text) if _DECIMAL.fullmatch(text) else -1.0
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(
                f"invalid value {quoted(text)} for {option}: a number of seconds "
                f"from 0 to {high:g} is allowed"
            )
        return value

    return parse


def duration_type(option: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return parse_duration(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(f"{option}: {exc.message}") from None

    return parse


def add_thresholds(g: Any) -> None:
    g.add_argument(
        "--warn",
        metavar="AGE",
        type=duration_type("--warn"),
        default=status.DEFAULT_WARN,
        help="WARNING when the recovery point is older (default 25h; 30min, 2d, 1w, ...)",
    )
    g.add_argument(
        "--crit",
        metavar="AGE",
        type=duration_type("--crit"),
        default=status.DEFAULT_CRIT,
        help="CRITICAL when the recovery point is older (default 49h)",
    )


def add_reporting(g: Any) -> None:
    """A run that reports itself (docs/monitoring.md)."""
    g.add_argument(
        "--prometheus-file",
        metavar="PATH",
        help="write the run's metrics and each dataset's status there at the end (atomically)",
    )
    g.add_argument(
        "--on-failure",
        metavar="COMMAND",
        help="run COMMAND after a run with failures (its outcome in ZFS_AUTOBACKUP_* variables)",
    )
    g.add_argument(
        "--on-success",
        metavar="COMMAND",
        help="run COMMAND after a run without failures",
    )
    add_thresholds(g)


def choice_type(option: str, allowed: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"invalid value {quoted(text)} for {option}: allowed are {', '.join(allowed)}"
            )
        return text

    return parse


def build_parser(mode: Mode = Mode.CLASSIC) -> argparse.ArgumentParser:
    """The parser for a mode: the job options every backup mode shares, with the mode's
    own arguments (its Subcommand, executors.subcommands)."""
    if mode.about.takes_file:
        return _file_parser(mode)
    command = mode.command
    p = _Parser(
        prog=mode.prog,
        description=f"zfs-autobackup v{__version__} (zfs-reconcile): snapshot, replicate "
        "and thin ZFS datasets, compatible with zfs-autobackup v3. Also: "
        "'zfs-autobackup plan|apply|show ...' (see docs/plan-apply.md).",
        epilog=command.epilog
        or "When a dataset fails, the others go on; the exit code is the number of "
        "failed datasets (255: usage or fatal error).",
    )
    p.add_argument(
        "backup_name",
        metavar="BACKUP-NAME",
        help="name of the backup: select datasets with 'zfs set autobackup:BACKUP-NAME=true'",
    )
    command.arguments(p)
    p.add_argument(
        "--version", action="version", version=f"zfs-autobackup v{__version__} (zfs-reconcile)"
    )

    g = p.add_argument_group("Hosts")
    g.add_argument("--ssh-config", metavar="CONFIG-FILE", help="custom ssh client config")
    g.add_argument("--ssh-source", metavar="USER@HOST", help="source host to pull the backup from")
    g.add_argument("--ssh-target", metavar="USER@HOST", help="target host to push the backup to")
    g.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="read every snapshot: don't serve unchanged datasets' snapshots from the listing "
        "cache (kept per job in ~/.cache/zfs-autobackup, trusted only while ZFS's "
        "snapshots_changed says nothing changed)",
    )

    g = p.add_argument_group("Snapshots")
    g.add_argument("--no-snapshot", action="store_true", help="don't create new snapshots")
    g.add_argument(
        "--min-change",
        metavar="BYTES",
        type=_whole_number("--min-change"),
        default=1,
        help="only snapshot datasets with at least this many bytes written (default 1)",
    )
    g.add_argument(
        "--allow-empty",
        action="store_true",
        help="snapshot even unchanged datasets (same as --min-change 0)",
    )
    g.add_argument(
        "--other-snapshots", action="store_true", help="send other snapshots too, not just ours"
    )
    g.add_argument(
        "--set-snapshot-properties",
        metavar="PROPERTY=VALUE,...",
        help="properties for new snapshots",
    )
    g.add_argument(
        "--pre-snapshot-cmd",
        metavar="COMMAND",
        action="append",
        default=[],
        help="run COMMAND on the source before snapshotting (repeatable)",
    )
    g.add_argument(
        "--post-snapshot-cmd",
        metavar="COMMAND",
        action="append",
        default=[],
        help="run COMMAND on the source after snapshotting, even if it failed (repeatable)",
    )
    g.add_argument(
        "--exclude-snapshot-pattern",
        metavar="REGEX",
        action="append",
        default=[],
        help="ignore snapshots matching REGEX",
    )

    g = p.add_argument_group("Selection")
    g.add_argument("--ignore-replicated", action="store_true", help="same as --exclude-unchanged 1")
    g.add_argument(
        "--exclude-unchanged",
        metavar="BYTES",
        type=_whole_number("--exclude-unchanged"),
        default=0,
        help="exclude datasets with fewer bytes written since their newest snapshot (Proxmox HA)",
    )
    g.add_argument(
        "--exclude-received",
        action="store_true",
        help="exclude datasets whose selection was received",
    )
    g.add_argument(
        "--include-received",
        action="store_true",
        help="select received values too: replicas (a received dataset that shares a "
        "snapshot with another selected one on this host), and, without TARGET-PATH on "
        "one host, every received value (otherwise --exclude-received is on by itself "
        "there, as in zfs-autobackup 3.3)",
    )
    g.add_argument(
        "--property-format",
        metavar="FORMAT",
        default=naming.PROPERTY_FORMAT,
        help="selection property (default %(default)s)",
    )
    g.add_argument(
        "--snapshot-format",
        metavar="FORMAT",
        default=naming.SNAPSHOT_FORMAT,
        help="snapshot name (default %(default)s)",
    )
    g.add_argument(
        "--hold-format",
        metavar="FORMAT",
        default=naming.HOLD_FORMAT,
        help="hold tag (default %(default)s)",
    )
    g.add_argument("--utc", action="store_true", help="snapshot names in UTC instead of local time")

    g = p.add_argument_group("Transfer")
    g.add_argument("--no-send", action="store_true", help="don't send snapshots (thin only)")
    g.add_argument("--no-holds", action="store_true", help="don't hold the common snapshots")
    g.add_argument(
        "--read-only-source",
        action="store_true",
        help="change nothing on the source (for a source whose key is limited by "
        "zfs-autobackup-guard --read-only): no snapshots, holds, bookmarks or thinning "
        "there; snapshots are taken on the source by its own cron job",
    )
    g.add_argument(
        "--no-bookmarks",
        action="store_true",
        help="don't keep each target's chain with a bookmark on the source (as "
        "zfs-autobackup 3.3: the source holds its newest common snapshot instead)",
    )
    g.add_argument(
        "--no-clone",
        action="store_true",
        help="send a selected clone in full (as zfs-autobackup 3.3), not as a clone of its "
        "origin on the target",
    )
    g.add_argument(
        "--strip-path",
        metavar="N",
        type=_whole_number("--strip-path", 0, MAX_STRIP_PATH),
        default=0,
        help="strip N leading components of source names on the target",
    )
    g.add_argument(
        "--clear-refreservation",
        action="store_true",
        help="same as --filter-properties refreservation",
    )
    g.add_argument(
        "--clear-mountpoint", action="store_true", help="same as --set-properties canmount=noauto"
    )
    g.add_argument(
        "--filter-properties",
        metavar="PROPERTY,...",
        help="properties not to receive (zfs recv -x)",
    )
    g.add_argument(
        "--set-properties",
        metavar="PROPERTY=VALUE,...",
        help="properties to override (zfs recv -o)",
    )
    g.add_argument(
        "--rollback", action="store_true", help="roll the target back to its newest snapshot first"
    )
    g.add_argument(
        "--force",
        "-F",
        action="store_true",
        help="restore over an existing dataset: roll it back to the snapshot it has in "
        "common with the backup, destroying what came after"
        if mode.restores
        else "receive with zfs recv -F (use with care)",
    )
    g.add_argument(
        "--destroy-incompatible",
        action="store_true",
        help="destroy incompatible target snapshots, then roll back to the newest "
        "remaining one (use with care)",
    )
    g.add_argument(
        "--ignore-transfer-errors",
        action="store_true",
        help="ignore receive errors as long as the snapshot arrived",
    )
    g.add_argument(
        "--retries",
        metavar="N",
        type=_whole_number("--retries", 0, MAX_RETRIES),
        default=DEFAULT_RETRIES,
        help="repeat a transfer whose ssh link broke up to N times in the same run, from "
        "its resume token where there is one (default %(default)s; 0: never)",
    )
    g.add_argument(
        "--retry-delay",
        metavar="SECONDS",
        type=_seconds("--retry-delay", MAX_RETRY_DELAY),
        default=DEFAULT_RETRY_DELAY,
        help="wait before the first retry; each next one waits twice as long (default %(default)g)",
    )
    g.add_argument(
        "--no-guid-check", action="store_true", help="match common snapshots by name only"
    )
    g.add_argument(
        "--raw",
        action="store_true",
        help="restore an --encrypt backup's copies raw (encrypted with the backup server's "
        "key), not decrypted"
        if mode.restores
        else argparse.SUPPRESS,
    )
    g.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--decrypt", action="store_true", help="decrypt data before sending it")
    g.add_argument("--encrypt", action="store_true", help="encrypt data after receiving it")
    g.add_argument(
        "--zfs-compressed",
        action="store_true",
        help="send compressed blocks as they are (zfs send -c)",
    )
    g.add_argument(
        "--compress",
        metavar="TYPE",
        nargs="?",
        const="zstd-fast",
        help=f"compress the transfer (default zstd-fast; {', '.join(COMPRESSORS)})",
    )
    g.add_argument("--buffer", metavar="SIZE", help="mbuffer on both ends")
    g.add_argument(
        "--buffer-chunk-size",
        metavar="SIZE",
        help="mbuffer's block size (-s, default 128k; turns mbuffer on)",
    )
    g.add_argument("--rate", metavar="RATE", help="limit the transfer rate (mbuffer)")
    add_parallel(g)
    g.add_argument(
        "--send-pipe",
        metavar="COMMAND",
        action="append",
        default=[],
        help="pipe zfs send through COMMAND",
    )
    g.add_argument(
        "--recv-pipe",
        metavar="COMMAND",
        action="append",
        default=[],
        help="pipe zfs recv input through COMMAND",
    )

    g = p.add_argument_group("Thinning")
    g.add_argument(
        "--keep-source",
        metavar="SCHEDULE",
        default=DEFAULT,
        help="source schedule (default %(default)s)",
    )
    g.add_argument(
        "--keep-target",
        metavar="SCHEDULE",
        default=DEFAULT,
        help="target schedule (default %(default)s)",
    )
    g.add_argument("--no-thinning", action="store_true", help="don't destroy any snapshots")
    g.add_argument(
        "--destroy-missing",
        metavar="DEADLINE",
        help="destroy target datasets missing on the source after DEADLINE (e.g. 30d)",
    )
    g.add_argument(
        "--destroy-orphan-bookmarks",
        metavar="DEADLINE",
        help="destroy our source bookmarks of other target paths whose snapshot is older "
        "than DEADLINE (e.g. 90d): the chain to a target that is gone (without it, the "
        "plan lists them)",
    )

    g = p.add_argument_group("Output")
    command.output(g)
    g.add_argument("--verbose", "-v", action="store_true", help="verbose output")
    g.add_argument(
        "--debug",
        "-d",
        action="store_true",
        help="show every command; stop at the first failure",
    )
    g.add_argument(
        "--debug-output", action="store_true", help="show commands with their output and exit codes"
    )
    g.add_argument("--progress", action="store_true", default=None, help="show transfer progress")
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no transfer progress"
    )
    return p


def _list(text: Optional[str]) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _properties(option: str, text: Optional[str]) -> list[str]:
    items = _list(text)
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise UsageError(f"Invalid {option} item {quoted(item)}: use PROPERTY=VALUE,...")
        _check_property(option, item, name)
    return items


def _property_names(option: str, text: Optional[str]) -> list[str]:
    names = _list(text)
    for name in names:
        _check_property(option, name, name)
    return names


def _check_property(option: str, item: str, name: str) -> None:
    problem = zfs_names.property_problem(name)
    if problem is not None:
        raise UsageError(f"Invalid {option} item {quoted(item)}: {problem}")


def _host(ssh: Optional[str], ssh_config: Optional[str]) -> Host:
    if ssh is not None and (not ssh or ssh.startswith("-") or any(c.isspace() for c in ssh)):
        raise UsageError(
            f"Invalid ssh host {quoted(ssh)}: use USER@HOST or a Host alias from your ssh config"
        )
    return Host(ssh=ssh, ssh_config=ssh_config) if ssh else Host()


def job_from_args(args: argparse.Namespace) -> Job:
    for pattern in args.exclude_snapshot_pattern:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            raise UsageError(
                f"Invalid --exclude-snapshot-pattern {quoted(pattern)}: {exc} "
                "(a Python regular expression)"
            ) from None
    if args.ssh_config is not None:
        try:
            read_regular(args.ssh_config, MAX_SSH_CONFIG)
        except Unreadable as exc:
            raise UsageError(
                f"Can't read --ssh-config {quoted(args.ssh_config)}: {exc} "
                f"(a regular file of at most {size_words(MAX_SSH_CONFIG)})"
            ) from None
    name = args.backup_name
    formats.check_backup_name(name)
    if args.target_path is not None and args.target_path.startswith("/"):
        # zfs would take it for a path and list whatever is mounted there
        raise UsageError(
            f"Invalid target path {quoted(args.target_path)}: a dataset name never starts with "
            "a / (Target should not start with a /)"
        )
    if args.target_path is not None and (
        "@" in args.target_path or not args.target_path.strip("/")
    ):
        raise UsageError(
            f"Invalid target path {quoted(args.target_path)}: name a filesystem, not a snapshot"
        )
    if args.target_path is not None:
        _check_target_path(args.target_path)
    filter_properties = _property_names("--filter-properties", args.filter_properties)
    if args.clear_refreservation:
        filter_properties.append("refreservation")
    set_properties = _properties("--set-properties", args.set_properties)
    for item in set_properties:
        if item.startswith(SYSTEMD_PROPERTIES):
            raise UsageError(
                f"Invalid --set-properties item {quoted(item)}: a backup is never mounted "
                f"at boot by a {SYSTEMD_PROPERTIES} property (set it with zfs set on the "
                "backup, if you mean it)"
            )
    if args.clear_mountpoint:
        set_properties.append("canmount=noauto")
    orphans = None
    if args.destroy_orphan_bookmarks is not None:
        if args.no_bookmarks:
            raise UsageError(
                f"--destroy-orphan-bookmarks {args.destroy_orphan_bookmarks} needs bookmarks: "
                "drop --no-bookmarks"
            )
        try:
            orphans = parse_duration(args.destroy_orphan_bookmarks)
        except UsageError as exc:
            raise UsageError(f"--destroy-orphan-bookmarks: {exc.message}") from None
    if args.read_only_source and orphans is not None:
        raise UsageError(
            f"--destroy-orphan-bookmarks {args.destroy_orphan_bookmarks} destroys on the "
            "source: not with --read-only-source"
        )
    keep_source = Schedule.parse(args.keep_source)
    keep_target = Schedule.parse(args.keep_target)
    exclude_unchanged = args.exclude_unchanged or (1 if args.ignore_replicated else 0)
    job = Job(
        naming=naming.Naming.create(
            name,
            property_format=args.property_format,
            snapshot_format=args.snapshot_format,
            hold_format=args.hold_format,
            utc=args.utc,
        ),
        remote=Remote(
            source=_host(args.ssh_source, args.ssh_config),
            target=_host(args.ssh_target, args.ssh_config),
            target_path=args.target_path.rstrip("/") if args.target_path else None,
            strip_path=args.strip_path,
        ),
        selection=SelectionRules(
            snapshot=not (args.no_snapshot or args.read_only_source),
            min_change=0 if args.allow_empty else args.min_change,
            exclude_received=args.exclude_received,
            include_received=args.include_received,
            exclude_unchanged=exclude_unchanged,
        ),
        snapshotting=Snapshotting(
            properties=tuple(
                _properties("--set-snapshot-properties", args.set_snapshot_properties)
            ),
            pre_cmds=tuple(
                formats.split_command("--pre-snapshot-cmd", c) for c in args.pre_snapshot_cmd
            ),
            post_cmds=tuple(
                formats.split_command("--post-snapshot-cmd", c) for c in args.post_snapshot_cmd
            ),
        ),
        thinning=Thinning(
            keep_source=None if args.no_thinning or args.read_only_source else keep_source,
            keep_target=None if args.no_thinning else keep_target,
            destroy_missing=parse_duration(args.destroy_missing) if args.destroy_missing else None,
            destroy_orphan_bookmarks=orphans,
        ),
        transfer=Transfer(
            send=not args.no_send,
            other_snapshots=args.other_snapshots,
            exclude_snapshot_patterns=tuple(args.exclude_snapshot_pattern),
            guid_check=not args.no_guid_check,
            holds=not args.no_holds,
            bookmarks=not (args.no_bookmarks or args.read_only_source),
            clones=not args.no_clone,
            read_only_source=args.read_only_source,
            rollback=args.rollback,
            destroy_incompatible=args.destroy_incompatible,
            force=args.force,
            decrypt=args.decrypt,
            encrypt=args.encrypt,
            zfs_compressed=args.zfs_compressed,
            ignore_transfer_errors=args.ignore_transfer_errors,
            filter_properties=tuple(filter_properties),
            set_properties=tuple(set_properties),
            pipes=TransferOptions.create(
                args.compress,
                args.buffer,
                args.rate,
                args.send_pipe,
                args.recv_pipe,
                chunk_size=args.buffer_chunk_size,
            ),
            retries=args.retries,
            retry_delay=args.retry_delay,
        ),
    )
    _check_lock_name(job)
    return job


def _check_target_path(path: str) -> None:
    check_dataset("target path", path.rstrip("/"))


def check_dataset(what: str, path: str) -> None:
    """A dataset name zfs takes: components of ZFS name characters, 255 at most."""
    for component in path.split("/"):
        problem = zfs_names.component_problem(component)
        if problem is None and component in (".", ".."):
            problem = "no component may be '.' or '..'"
        if problem is None and path.startswith("/"):
            problem = "a dataset name never starts with a /"
        if problem is not None or len(path) > zfs_names.MAX_NAME:
            raise UsageError(
                f"Invalid {what} {quoted(path)}: "
                f"{problem or f'a dataset name has at most {zfs_names.MAX_NAME} characters'}"
            )


def _check_lock_name(job: Job) -> None:
    """The backup name is part of the lock file's name (executors.lock), which can't be
    longer than NAME_MAX: the longest backup name is what the rest of that name leaves."""
    name = job.naming.backup_name
    longest = NAME_MAX - (len(lock_path(job).name.encode()) - len(name.encode()))
    if len(name.encode()) > longest:
        raise UsageError(
            f"Invalid backup name {quoted(name)}: at most {longest} characters "
            "(it is part of the lock file's name)"
        )


@attrs.frozen
class RunOptions:
    """How this run runs (not what it does: that is the Job), built once from argv."""

    #: (no default: a mode that writes must be asked for, never fallen back to)
    mode: Mode
    verbose: bool = False
    #: --debug (or --debug-output): every command; one thing at a time; stop at a failure
    debug: bool = False
    #: --debug-output: commands with their output and exit codes
    debug_output: bool = False
    #: --test (classic mode): nothing that writes runs
    test: bool = False
    #: --progress / --no-progress (by default on when stderr is a terminal)
    progress: bool = False
    parallel: int = DEFAULT_PARALLEL

    @property
    def settings(self) -> Settings:
        return Settings(
            progress=self.progress and not self.test and self.mode.writes,
            parallel=self.parallel,
            debug=self.debug,
        )

    @property
    def read_only(self) -> bool:
        """Nothing that writes may run: --test, or a mode that doesn't say it writes."""
        return self.test or not self.mode.writes


def run_options(mode: Mode, args: argparse.Namespace) -> RunOptions:
    """Every run option of a parsed command line (the file modes have fewer)."""
    progress = vars(args).get("progress")
    debug_output = bool(vars(args).get("debug_output", False))
    return RunOptions(
        mode=mode,
        verbose=bool(vars(args).get("verbose", False)),
        debug=bool(vars(args).get("debug", False)) or debug_output,
        debug_output=debug_output,
        # (restore --list only reads)
        test=bool(vars(args).get("test", False)) or bool(vars(args).get("list", False)),
        progress=sys.stderr.isatty() if progress is None else bool(progress),
        parallel=int(vars(args).get("parallel", DEFAULT_PARALLEL)),
    )
