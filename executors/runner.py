"""The one chokepoint for every command the tool runs.

A command is an argv tuple and the host it runs on. It stays a tuple of strings until
the shell boundary: locally it is executed directly (no shell); on an ssh host the
remote command line is built with `shlex.join`, so every argument arrives verbatim
whatever it contains. The `--debug` line for a command is exactly what a user could
paste into a shell to run it again, ssh included.

Pipelines (`zfs send | ... | zfs recv`) are processes joined by OS pipes: the data never
passes through Python. Consecutive stages on the same remote host share one ssh
process (`ssh host 'zfs send ... | zstd'`).

`ReadOnlyRunner` wraps a runner for `plan` and `--test`: reads pass through, anything
not known to be read-only is shown as "Would execute" and not run. Callers cannot
forget to check a flag, because they never see one.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Callable, Optional, Protocol

import attrs
from plumbum import local
from plumbum.commands.processes import CommandNotFound as PlumbumCommandNotFound

from planner.compile import PROBE_PREFIX
from reconcile import errors, transport, zfs_text
from reconcile.model import Host

#: Called with (label, text) for every command line and, with --debug-output, its output.
CommandListener = Callable[[str, str], None]


def _strings(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


@attrs.frozen
class Stage:
    """One command of a pipeline: argv on a host. `label` says which side it is ([Source])."""

    host: Host
    argv: tuple[str, ...] = attrs.field(converter=_strings)
    label: str = ""


@attrs.frozen
class Result:
    command: str
    returncode: int
    stdout: str
    stderr: str


@attrs.frozen
class PipelineResult:
    command: str
    #: one per process started (a remote group of stages is one ssh process)
    returncodes: tuple[int, ...]
    stderrs: tuple[str, ...]
    stdout: str

    @property
    def ok(self) -> bool:
        return all(rc == 0 for rc in self.returncodes)


class PipelineWatch(Protocol):
    """Told when a pipeline's processes run (pids and stderr files, one per process)."""

    def started(self, pids: Sequence[int], stderr: Sequence[IO[bytes]]) -> None: ...

    def finished(self) -> None: ...


class Runner(Protocol):
    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result: ...

    def pipeline(
        self,
        stages: Sequence[Stage],
        *,
        check: bool = True,
        watch: Optional[PipelineWatch] = None,
    ) -> PipelineResult: ...

    def host_clock(self, host: Host) -> Optional[int]:
        """The host's own clock, in whole seconds since the epoch (None: unknown)."""
        ...


# --- what may run in plan / --test -------------------------------------------------

_READ_ONLY_ZFS = frozenset({"list", "get", "holds", "version", "send", "userspace", "groupspace"})
_READ_ONLY_ZPOOL = frozenset({"list", "get", "status", "version"})
_READ_ONLY_PROGRAMS = frozenset({"true", "uname"})


#: how a remote host's clock is read (in whole seconds: what `snapshots_changed` has)
CLOCK_ARGV = ("date", "+%s")


def is_read_only(argv: Sequence[str]) -> bool:
    """True only for commands known to change nothing. Unknown means "writes"."""
    if not argv:
        return False
    if tuple(argv) == CLOCK_ARGV:
        return True
    program = argv[0].rsplit("/", 1)[-1]
    if tuple(argv[:3]) == PROBE_PREFIX:
        return True
    if program == "zfs":
        return len(argv) > 1 and argv[1] in _READ_ONLY_ZFS
    if program == "zpool":
        return len(argv) > 1 and argv[1] in _READ_ONLY_ZPOOL
    return program in _READ_ONLY_PROGRAMS


# --- how a command becomes a process -----------------------------------------------


@attrs.frozen
class SshSettings:
    """ssh options the tool adds to every ssh it starts (one place builds the prefix)."""

    #: directory for the multiplexing control sockets; None = no multiplexing
    control_dir: Optional[str] = None
    connect_timeout: int = 30

    def display(self) -> SshSettings:
        """The same without the connection sharing options: what --debug and
        `plan --commands` show (the control socket's path differs from run to run; the
        line does the same without it)."""
        return attrs.evolve(self, control_dir=None)

    def prefix(self, host: Host) -> list[str]:
        assert host.ssh is not None
        argv = ["ssh"]
        if host.ssh_config:
            argv += ["-F", host.ssh_config]
        # A host that asks for a password is an error, not a hang.
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        if self.control_dir:
            argv += [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self.control_dir}/%C",
                "-o",
                "ControlPersist=60",
            ]
        return [*argv, host.ssh]


def _process_argv(host: Host, commands: Sequence[Sequence[str]], ssh: SshSettings) -> list[str]:
    """argv of the one local process that runs `commands` (piped) on `host`."""
    if host.ssh is None:
        assert len(commands) == 1, "local stages are separate processes"
        return list(commands[0])
    remote = " | ".join(shlex.join(c) for c in commands)
    return [*ssh.prefix(host), remote]


def group_stages(stages: Sequence[Stage]) -> list[tuple[Host, list[Stage]]]:
    """Consecutive stages on the same remote host become one ssh process."""
    groups: list[tuple[Host, list[Stage]]] = []
    for stage in stages:
        if groups and not stage.host.is_local and groups[-1][0] == stage.host:
            groups[-1][1].append(stage)
        else:
            groups.append((stage.host, [stage]))
    return groups


def shell_line(stages: Sequence[Stage], ssh: Optional[SshSettings] = None) -> str:
    """The exact shell line for a command or pipeline, as a user could paste it."""
    ssh = ssh or SshSettings()
    return " | ".join(
        shlex.join(_process_argv(host, [s.argv for s in group], ssh))
        for host, group in group_stages(stages)
    )


def display_line(commands: Sequence[tuple[Host, Sequence[str]]]) -> str:
    """The line --debug shows for commands (a pipeline when there are several), as a
    user could paste it."""
    return shell_line([Stage(host, tuple(argv)) for host, argv in commands])


def _plumbum_command(argv: Sequence[str]):  # type: ignore[no-untyped-def]
    try:
        return local[argv[0]][list(argv[1:])]
    except PlumbumCommandNotFound as exc:
        raise errors.CommandNotFound(
            f"Command not found: '{argv[0]}'. Please install it on this machine."
        ) from exc


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


class LocalRunner:
    """Runs commands through plumbum on this machine, or via ssh on remote hosts."""

    def __init__(
        self,
        listener: Optional[CommandListener] = None,
        *,
        ssh: Optional[SshSettings] = None,
        show_output: bool = False,
    ) -> None:
        self._listener = listener
        self._ssh = ssh or SshSettings()
        self._show_output = show_output
        #: every command line executed, in order (the command budget is counted from it)
        self.history: list[str] = []

    def line(self, stages: Sequence[Stage]) -> str:
        """The shell line shown for `stages` (without the connection sharing options)."""
        return shell_line(stages, self._ssh.display())

    def _announce(self, label: str, line: str) -> None:
        self.history.append(line)
        if self._listener:
            self._listener(label, f"CMD > {line}")

    def _show(self, label: str, what: str, text: str) -> None:
        if self._listener and self._show_output and text:
            for out_line in text.rstrip("\n").split("\n"):
                self._listener(label, f"{what} > {out_line}")

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result:
        argv = tuple(argv)
        process_argv = _process_argv(host, [argv], self._ssh)
        line = self.line([Stage(host, argv)])
        self._announce(label, line)
        command = _plumbum_command(process_argv)
        stdin_data = input.encode() if input is not None else None
        proc = command.popen(
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL
        )
        out, err = proc.communicate(stdin_data)
        result = Result(line, proc.returncode, _decode(out), _decode(err))
        self._show(label, "STDOUT", result.stdout)
        self._show(label, "STDERR", result.stderr)
        if self._listener and self._show_output:
            self._listener(label, f"EXIT > {result.returncode}")
        if check and result.returncode != 0:
            raise _failure(host, line, result.returncode, result.stderr)
        return result

    def host_clock(self, host: Host) -> Optional[int]:
        """This machine's clock as its kernel keeps it (not the process's: a preloaded
        fake clock such as faketime's does not reach /proc); a remote host's from `date`
        run there. Either way a moment no later than now."""
        if host.is_local:
            kernel = kernel_clock()
            if kernel is not None:
                return kernel
        result = self.run(host, CLOCK_ARGV, check=False)
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else None

    def pipeline(
        self,
        stages: Sequence[Stage],
        *,
        check: bool = True,
        watch: Optional[PipelineWatch] = None,
    ) -> PipelineResult:
        groups = group_stages(stages)
        line = self.line(stages)
        label = stages[0].label if stages else ""
        self._announce(label, line)
        commands = [
            _plumbum_command(_process_argv(h, [s.argv for s in g], self._ssh)) for h, g in groups
        ]
        with contextlib.ExitStack() as files:
            # stderr of each process goes to its own file: no pipe can fill up and block
            stderr_files = [files.enter_context(tempfile.TemporaryFile()) for _ in commands]
            out, codes = _run_joined(commands, stderr_files, watch)
            stderrs = []
            for err_file in stderr_files:
                err_file.seek(0)
                stderrs.append(_decode(err_file.read()))
        result = PipelineResult(line, codes, tuple(stderrs), _decode(out))
        for text in result.stderrs:
            self._show(label, "STDERR", text)
        if self._listener and self._show_output:
            self._listener(label, f"EXIT > {' '.join(map(str, codes))}")
        if check and not result.ok:
            raise pipeline_error([host for host, _ in groups], result)
        return result


def _run_joined(
    commands: Sequence[Any],
    stderr_files: Sequence[IO[bytes]],
    watch: Optional[PipelineWatch] = None,
) -> tuple[bytes, tuple[int, ...]]:
    """Start the processes joined by OS pipes, wait for all; (last stdout, exit codes)."""
    procs: list[Any] = []
    try:
        prev_stdout = None
        for command, err_file in zip(commands, stderr_files):
            proc = command.popen(
                stdin=prev_stdout if prev_stdout is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err_file,
            )
            if prev_stdout is not None:
                # only the two neighbours may hold a pipe, or EOF never arrives
                prev_stdout.close()
            prev_stdout = proc.stdout
            procs.append(proc)
        if watch is not None:
            watch.started([proc.pid for proc in procs], stderr_files)
        out = procs[-1].stdout.read() if procs else b""
        procs[-1].stdout.close()
        return out, tuple(proc.wait() for proc in procs)
    finally:
        if watch is not None:
            watch.finished()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pipeline_error(hosts: Sequence[Host], result: PipelineResult) -> errors.ReconcileError:
    """The error of a failed pipeline (one host per process): the failure of the process
    that failed first (reconcile.transport), in its own words; a TransportError when it
    was the link."""
    processes = [
        transport.Process(host.ssh, rc, err)
        for host, rc, err in zip(hosts, result.returncodes, result.stderrs)
    ]
    cause = transport.first_failure(processes)
    assert cause is not None, "the pipeline did not fail"
    process = processes[cause.index]
    if cause.transport:
        return errors.TransportError(transport.describe_link(process))
    host = hosts[cause.index]
    return _failure(host, result.command, process.returncode, result.stderrs[cause.index])


def _failure(host: Host, line: str, returncode: int, stderr: str) -> errors.ReconcileError:
    if host.ssh is not None and returncode == 255 and zfs_text.looks_like_ssh_failure(stderr):
        return errors.SshError(
            f"ssh to {host.ssh} failed: {zfs_text.first_line(stderr) or 'exit code 255'}"
        )
    return zfs_text.command_error(line, returncode, stderr)


class ReadOnlyRunner:
    """Passes reads through to `inner`; shows and swallows everything else."""

    def __init__(
        self,
        inner: LocalRunner,
        listener: Optional[CommandListener] = None,
        *,
        allow: Optional[Callable[[Sequence[str]], bool]] = None,
    ) -> None:
        self._inner = inner
        self._listener = listener
        #: writes that run all the same: a mode's declared temporary changes (verify's
        #: holds and read-only mounts, planner.verify), each undone by the mode. Such a
        #: mode gets an error for any other write, not a pretended success: it goes on
        #: from what its writes did (a mount it reads)
        self._allow = allow or (lambda argv: False)
        self._strict = allow is not None
        #: command lines that were not run
        self.swallowed: list[str] = []

    @property
    def history(self) -> list[str]:
        return self._inner.history

    def _swallow(self, label: str, line: str) -> None:
        if self._strict:
            raise errors.ReconcileError(
                f"Refused (not a read, nor one of this mode's temporary changes): {line}"
            )
        self.swallowed.append(line)
        if self._listener:
            self._listener(label, f"Would execute > {line}")

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result:
        if is_read_only(argv) or self._allow(argv):
            return self._inner.run(host, argv, label=label, input=input, check=check)
        line = self._inner.line([Stage(host, tuple(argv))])
        self._swallow(label, line)
        return Result(line, 0, "", "")

    def host_clock(self, host: Host) -> Optional[int]:
        return self._inner.host_clock(host)

    def pipeline(
        self,
        stages: Sequence[Stage],
        *,
        check: bool = True,
        watch: Optional[PipelineWatch] = None,
    ) -> PipelineResult:
        if all(is_read_only(s.argv) or self._allow(s.argv) for s in stages):
            return self._inner.pipeline(stages, check=check, watch=watch)
        line = self._inner.line(stages)
        self._swallow(stages[0].label if stages else "", line)
        return PipelineResult(line, (0,), ("",), "")


def kernel_clock() -> Optional[int]:
    """This machine's wall clock from the kernel (boot time + time since boot, each
    rounded down: at most a second early), or None where /proc does not say it."""
    try:
        stat = Path("/proc/stat").read_text(encoding="ascii")
        uptime = Path("/proc/uptime").read_text(encoding="ascii").split()[0]
        boot = next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("btime "))
        return boot + int(float(uptime))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def close_masters(control_dir: str) -> None:
    """Stop the multiplexed ssh connections whose control sockets are in `control_dir`."""
    for control in Path(control_dir).iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={control}", "-O", "exit", "unused"],
            capture_output=True,
            check=False,
            timeout=10,
        )
