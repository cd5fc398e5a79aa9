"""`zfs-autobackup-guard`: the forced command of the backup key on a source or target.

    command="zfs-autobackup-guard NAME [options]",restrict ssh-ed25519 AAAA... backup@server

Contract: `main(argv, environ)` reads the command ssh was asked to run
(`SSH_ORIGINAL_COMMAND`), and runs it only when executors.guard.rules allows it: its
stages as processes joined by OS pipes, never through a shell (the first reads the
guard's stdin, the last writes its stdout, stderr is shared), and returns the first
non-zero exit code of the stages (0 when all worked). Anything else runs nothing,
prints one line on stderr, is logged to syslog (auth facility, warning, with the
user and SSH_CLIENT) and returns 126. `--check COMMAND` tells an administrator what the
guard would do, without running it or logging. A bad option is one line, exit 2.

Standard library only (with the stdlib-only reconcile modules): the guard must run
where the project's dependencies are not installed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import syslog
from collections.abc import Mapping, Sequence
from typing import Callable, NoReturn, Optional

from executors.guard import receive as guard_receive
from executors.guard import rules
from executors.guard import stream as guard_stream
from reconcile import formats, selection_values, zfs_rows
from reconcile.errors import UsageError

PROG = "zfs-autobackup-guard"
EXIT_USAGE = 2
#: a stage's program is not installed (as a shell)
EXIT_NOT_FOUND = 127

#: runs a read-only zfs command for a lookup: (exit code, stdout + stderr)
Zfs = Callable[[Sequence[str]], tuple[int, str]]
#: records a refusal (syslog in production)
Log = Callable[[str], None]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Run SSH_ORIGINAL_COMMAND only if it is a command zfs-reconcile sends "
        "for backup NAME (a forced command for authorized_keys).",
    )
    parser.add_argument("name", metavar="NAME", help="the backup name (as zfs-autobackup's)")
    parser.add_argument(
        "--read-only", action="store_true", help="listings and sends only: no snapshot, hold, ..."
    )
    parser.add_argument(
        "--allow-destroy",
        action="store_true",
        help="source: destroy our snapshots and bookmarks; target: zfs recv -F and rollback",
    )
    parser.add_argument(
        "--target-path", metavar="PATH", help="a target guard: receives under PATH only"
    )
    parser.add_argument(
        "--allow-mount",
        action="store_true",
        help="target: receives without --clear-mountpoint, and mounting them",
    )
    for option, default in (
        ("--property-format", formats.PROPERTY_FORMAT),
        ("--snapshot-format", formats.SNAPSHOT_FORMAT),
        ("--hold-format", formats.HOLD_FORMAT),
    ):
        shown = default.replace("%", "%%")  # (argparse formats help with %)
        parser.add_argument(option, default=default, metavar="F", help=f"as the tool's ({shown})")
    parser.add_argument(
        "--exclude-received", action="store_true", help="received selections do not select"
    )
    parser.add_argument(
        "--other-snapshots", action="store_true", help="sends of snapshots that are not ours"
    )
    for option, what in (
        ("--send-pipe", "a stream filter after zfs send"),
        ("--recv-pipe", "a stream filter before zfs recv"),
        ("--pre-snapshot-cmd", "a command run before the snapshot"),
        ("--post-snapshot-cmd", "a command run after the snapshot"),
    ):
        parser.add_argument(
            option, action="append", default=[], metavar="CMD", help=f"{what}, as the tool's"
        )
    parser.add_argument(
        "--check", metavar="COMMAND", help="say whether COMMAND is allowed; run nothing"
    )
    return parser


def policy_from(args: argparse.Namespace) -> rules.Policy:
    return rules.Policy.create(
        args.name,
        property_format=args.property_format,
        snapshot_format=args.snapshot_format,
        hold_format=args.hold_format,
        target_path=args.target_path,
        read_only=args.read_only,
        allow_destroy=args.allow_destroy,
        allow_mount=args.allow_mount,
        other_snapshots=args.other_snapshots,
        send_pipes=[formats.split_command("--send-pipe", p) for p in args.send_pipe],
        recv_pipes=[formats.split_command("--recv-pipe", p) for p in args.recv_pipe],
        snapshot_cmds=[
            *(formats.split_command("--pre-snapshot-cmd", c) for c in args.pre_snapshot_cmd),
            *(formats.split_command("--post-snapshot-cmd", c) for c in args.post_snapshot_cmd),
        ],
    )


# --- the lookups, through zfs ------------------------------------------------------------


def lookups(policy: rules.Policy, zfs: Zfs, exclude_received: bool) -> rules.Lookups:
    """The questions of the rules, asked with read-only zfs commands: one `zfs get`
    per dataset a send is of (two when its value is inherited and --exclude-received),
    one `zfs send -nv -t` per resumed send, and for a snapshot that is not ours one
    `zfs get clones` (and the selection of each clone). A failed command answers "no"."""
    prop = policy.property_name

    def row(dataset: str) -> Optional[tuple[str, str]]:
        code, out = zfs(("zfs", "get", "-H", "-o", "name,value,source", prop, dataset))
        return zfs_rows.property_row(out, dataset) if code == 0 else None

    def selected(dataset: str) -> bool:
        found = row(dataset)
        if found is None:
            return False
        value, source = found
        origin = selection_values.inherited_from(source)
        origin_source = source
        if origin is not None and exclude_received:
            above = row(origin)
            if above is None:
                return False
            origin_source = above[1]
        return rules.selects(value, source, origin_source, exclude_received)

    def guid(name: str) -> Optional[int]:
        code, out = zfs(("zfs", "get", "-H", "-p", "-o", "value", "guid", name))
        word = out.split("\n", 1)[0].strip()
        return int(word) if code == 0 and word.isdigit() else None

    def token(text: str) -> Optional[rules.TokenSend]:
        code, out = zfs(("zfs", "send", "-nv", "-t", text))
        toname, toguid = zfs_rows.parse_resume_info(out)
        if code != 0 or toname is None or toguid is None or not zfs_rows.plain_resume_info(out):
            return None
        sends = zfs_rows.resume_sends(out, toname)
        return rules.TokenSend(toname, toguid, sends, guid(sends) if sends else None)

    def snapshots(dataset: str) -> Optional[list[str]]:
        argv = ("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg")
        code, out = zfs((*argv, "-d", "1", dataset))
        if code != 0:
            return None
        prefix = dataset + "@"
        return [line[len(prefix) :] for line in out.split("\n") if line.startswith(prefix)]

    def mountpoint(dataset: str) -> Optional[str]:
        code, out = zfs(("zfs", "get", "-H", "-o", "value", "mountpoint", dataset))
        return out.split("\n", 1)[0] if code == 0 else None

    def clones(snapshot: str) -> list[str]:
        # (asked only of a sent snapshot that is not ours: one zfs get, then one per clone)
        code, out = zfs(("zfs", "get", "-H", "-o", "value", "clones", snapshot))
        value = out.split("\n", 1)[0].strip() if code == 0 else ""
        return [] if value in ("", "-") else value.split(",")

    return rules.Lookups(selected, token, snapshots, mountpoint, clones)


def stream_lookups(zfs: Zfs) -> guard_stream.StreamLookups:
    """The stream rules' questions: one `zfs list` each (a failed one answers "none").
    One receive asks about one target: its listing is read once (the stream's own
    snapshots the rules count themselves), and where it exists its parent does too, so
    an incremental receive costs one `zfs list` before zfs gets the stream."""
    there: dict[str, frozenset[int]] = {}

    def listed(*argv: str) -> Optional[frozenset[int]]:
        code, out = zfs(("zfs", "list", "-H", "-p", "-o", "guid", *argv))
        if code != 0:
            return None
        return frozenset(int(word) for word in out.split() if word.isdigit())

    def guids(dataset: str) -> frozenset[int]:
        if dataset not in there:
            found = listed("-t", "snapshot,bookmark", "-d", "1", dataset)
            if found is None:
                return frozenset()
            there[dataset] = found
        return there[dataset]

    def exists(dataset: str) -> bool:
        if any(name.startswith(dataset + "/") for name in there):
            return True  # (a dataset below it was listed)
        return zfs(("zfs", "list", "-H", "-o", "name", dataset))[0] == 0

    return guard_stream.StreamLookups(
        guids=guids,
        guids_under=lambda path: listed("-t", "snapshot", "-r", path) or frozenset(),
        exists=exists,
    )


def zfs_runner(environ: Mapping[str, str]) -> Zfs:
    def run(argv: Sequence[str]) -> tuple[int, str]:
        program = shutil.which(argv[0], path=environ.get("PATH", os.defpath))
        if program is None:
            return EXIT_NOT_FOUND, ""
        proc = subprocess.run(
            list(argv),
            executable=program,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        text = (proc.stdout + b"\n" + proc.stderr).decode("utf-8", errors="replace")
        return proc.returncode, text

    return run


# --- running what is allowed ---------------------------------------------------------------


def _programs(stages: Sequence[rules.Argv], environ: Mapping[str, str]) -> Optional[list[str]]:
    """Each stage's program from the PATH, or None after saying which is missing."""
    path = environ.get("PATH", os.defpath)
    programs = []
    for argv in stages:
        program = shutil.which(argv[0], path=path)
        if program is None:
            print(f"{PROG}: {argv[0]}: command not found", file=sys.stderr)
            return None
        programs.append(program)
    return programs


def run_stages(stages: Sequence[rules.Argv], environ: Mapping[str, str]) -> int:
    """The stages as processes joined by OS pipes (no shell): the first exit code that
    is not 0 (128+N for a signal, as a shell), or 0."""
    programs = _programs(stages, environ)
    if programs is None:
        return EXIT_NOT_FOUND
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(environ)
    try:
        previous = None
        for index, (argv, program) in enumerate(zip(stages, programs)):
            last = index == len(stages) - 1
            proc = subprocess.Popen(
                list(argv),
                executable=program,
                env=env,
                stdin=previous,
                stdout=None if last else subprocess.PIPE,
            )
            if previous is not None:
                previous.close()  # (only the two neighbours may hold a pipe, or EOF never comes)
            previous = proc.stdout
            procs.append(proc)
    except OSError as exc:  # (found, but cannot be executed)
        print(f"{PROG}: {exc}", file=sys.stderr)
        for proc in procs:
            proc.kill()
            proc.wait()
        return rules.EXIT_REFUSED
    return guard_receive.first_failure([proc.wait() for proc in procs])


def _syslog(message: str) -> None:
    syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_AUTH)
    syslog.syslog(syslog.LOG_WARNING, message)
    syslog.closelog()


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def guard(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    log: Log,
    zfs: Optional[Zfs] = None,
) -> int:
    """Judge (and run) one command line: the work of main() with its dependencies passed."""
    policy = policy_from(args)
    zfs = zfs or zfs_runner(environ)
    asked = lookups(policy, zfs, args.exclude_received)
    if args.check is not None:
        try:
            rules.judge(args.check, policy, asked)
        except rules.Refused as exc:
            print(rules.refusal(exc.message, args.check, read_only=exc.read_only))
            return exc.exit_code
        print("allowed")
        return 0
    line = environ.get("SSH_ORIGINAL_COMMAND", "")

    def refused(exc: rules.Refused) -> None:
        print(rules.refusal(exc.message, line, read_only=exc.read_only), file=sys.stderr)
        client = environ.get("SSH_CLIENT") or "unknown"
        shown = rules.refusal(exc.message, line, prog="", read_only=exc.read_only)
        log(f"{shown} (user {_user()}, SSH_CLIENT {client!r})")

    try:
        stages = rules.judge(line, policy, asked)
    except rules.Refused as exc:
        refused(exc)
        return exc.exit_code
    dataset = rules.received_dataset(stages, policy)
    if dataset is None:
        return run_stages(stages, environ)
    programs = _programs(stages, environ)
    if programs is None:
        return EXIT_NOT_FOUND
    receive = guard_stream.Receive(policy, dataset, stream_lookups(zfs))
    return guard_receive.run(stages, programs, receive, environ, refused)


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        return guard(args, os.environ if environ is None else environ, _syslog)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # (--help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
