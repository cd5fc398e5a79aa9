"""The command chokepoint: exact shell lines, ssh quoting, read-only policy, pipelines."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from executors.runner import (
    LocalRunner,
    PipelineResult,
    ReadOnlyRunner,
    SshSettings,
    Stage,
    is_read_only,
    pipeline_error,
    shell_line,
)
from reconcile import errors
from reconcile.model import Host

AWKWARD = ["pool/it's a $(reboot) `x`; rm -rf /", "tab\there", "ünïcode ☃", "new\nline"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["zfs", "list", "-H"], True),
        (["zfs", "get", "all"], True),
        (["zfs", "holds", "-H", "a@b"], True),
        (["zfs", "send", "a@b"], True),
        (["/sbin/zfs", "list"], True),
        (["zfs", "recv", "a"], False),
        (["zfs", "destroy", "a@b"], False),
        (["zfs", "snapshot", "a@b"], False),
        (["zfs", "hold", "t", "a@b"], False),
        (["zfs", "release", "t", "a@b"], False),
        (["zfs", "rollback", "a@b"], False),
        (["zfs", "set", "x=y", "a"], False),
        (["zfs"], False),
        (["zpool", "list"], True),
        (["zpool", "destroy", "x"], False),
        (["sh", "-c", "zfs list"], False),
        ([], False),
    ],
)
def test_read_only_policy_knows_writes(argv: list[str], expected: bool) -> None:
    assert is_read_only(argv) is expected


def test_local_line_is_pasteable() -> None:
    argv = ("zfs", "snapshot", *AWKWARD)
    line = shell_line([Stage(Host(), argv)])
    assert shlex.split(line) == list(argv)


def test_ssh_line_quotes_twice_and_survives_a_remote_shell() -> None:
    argv = ("printf", "%s|", *AWKWARD)
    host = Host(ssh="root@example", ssh_config="/etc/my ssh config")
    line = shell_line([Stage(host, argv)], SshSettings())
    outer = shlex.split(line)
    assert outer[:3] == ["ssh", "-F", "/etc/my ssh config"]
    assert "BatchMode=yes" in outer
    assert outer[-2] == "root@example"
    # the remote shell splits the last word back into exactly our argv
    assert shlex.split(outer[-1]) == list(argv)
    # and a real POSIX shell agrees: run the remote part locally with sh -c
    out = subprocess.run(["sh", "-c", outer[-1]], capture_output=True, text=True, check=True)
    assert out.stdout == "".join(f"{a}|" for a in AWKWARD)


def test_consecutive_remote_stages_share_one_ssh() -> None:
    src = Host(ssh="src")
    stages = [
        Stage(src, ("zfs", "send", "p/a b@s")),
        Stage(src, ("zstd", "-1")),
        Stage(Host(), ("zstd", "-d")),
        Stage(Host(), ("zfs", "recv", "q/a b")),
    ]
    line = shell_line(stages)
    words = shlex.split(line)
    assert words.count("ssh") == 1
    remote = words[words.index("src") + 1]
    assert remote == "zfs send 'p/a b@s' | zstd -1"
    assert line.endswith(" | zstd -d | zfs recv 'q/a b'")


def test_control_socket_options_only_when_asked() -> None:
    host = Host(ssh="h")
    assert "ControlMaster=auto" not in SshSettings().prefix(host)
    assert "ControlMaster=auto" in SshSettings(control_dir="/tmp/x").prefix(host)


def test_pipeline_joins_processes_and_reports_each_exit_code() -> None:
    runner = LocalRunner()
    ok = runner.pipeline(
        [Stage(Host(), ("printf", "a\\nb\\nc\\n")), Stage(Host(), ("grep", "-c", "."))]
    )
    assert ok.stdout.strip() == "3"
    assert ok.returncodes == (0, 0)
    failed = runner.pipeline(
        [Stage(Host(), ("sh", "-c", "echo boom >&2; exit 3")), Stage(Host(), ("cat",))],
        check=False,
    )
    assert failed.returncodes == (3, 0)
    assert failed.stderrs[0].strip() == "boom"
    with pytest.raises(errors.ZfsError, match="boom"):
        runner.pipeline([Stage(Host(), ("sh", "-c", "echo boom >&2; exit 3"))])


def test_run_feeds_stdin_and_logs_exact_lines() -> None:
    seen: list[tuple[str, str]] = []
    runner = LocalRunner(lambda label, text: seen.append((label, text)), show_output=True)
    result = runner.run(Host(), ["cat"], label="[Source]", input="hello")
    assert result.stdout == "hello"
    assert seen[0] == ("[Source]", "CMD > cat")
    assert ("[Source]", "STDOUT > hello") in seen
    assert runner.history == ["cat"]


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(errors.CommandNotFound, match="no-such-program-xyz"):
        LocalRunner().run(Host(), ["no-such-program-xyz"])


def test_read_only_runner_runs_reads_and_swallows_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "touched"
    seen: list[str] = []
    runner = ReadOnlyRunner(LocalRunner(), lambda label, text: seen.append(text))
    assert runner.run(Host(), ["true"]).returncode == 0
    runner.run(Host(), ["touch", str(marker)])
    runner.pipeline([Stage(Host(), ("zfs", "send", "x@y")), Stage(Host(), ("touch", str(marker)))])
    assert not marker.exists()
    assert runner.history == ["true"]
    assert runner.swallowed == [f"touch {marker}", f"zfs send x@y | touch {marker}"]
    assert seen == [
        f"Would execute > touch {marker}",
        f"Would execute > zfs send x@y | touch {marker}",
    ]


# --- which process of a failed pipeline is the cause (#31) ---------------------------

CUT = "cannot receive incremental stream: checksum mismatch or incomplete stream.\nPartially received snapshot is saved."  # fmt: skip
SRC, DST, HERE = Host(ssh="src"), Host(ssh="dst"), Host()


@pytest.mark.parametrize(
    ("hosts", "codes", "stderrs", "kind", "message"),
    [
        # a pull whose remote zfs send died (ssh says nothing, exits 255): zfs recv's
        # complaint is the victim's (before #31 the failure reported)
        ([SRC, HERE], (255, 1), ("", CUT), errors.TransportError,
         "ssh to src failed: exit code 255, the connection or the remote command was lost"),
        # ssh's own words, with zfs send -P's lines around them
        ([SRC, HERE], (255, 1),
         ("full\tpool/a@x\t123\nsize\t123\n12:00:01\t99\tpool/a@x\nclient_loop: send disconnect: Broken pipe\n", CUT),
         errors.TransportError, "ssh to src failed: client_loop: send disconnect: Broken pipe"),
        # a push: zfs send's broken pipe is the victim of the ssh that lost its link
        ([HERE, DST], (1, 255),
         ("warning: cannot send 'pool/a@x': Broken pipe", "Connection to dst closed by remote host."),
         errors.TransportError, "ssh to dst failed: Connection to dst closed by remote host."),
        # a push refused by zfs recv on the target: the refusal, never the link
        ([HERE, DST], (1, 1),
         ("warning: cannot send 'pool/a@x': Broken pipe", "cannot receive new filesystem stream: out of space"),
         errors.ZfsError, "Command failed: cannot receive new filesystem stream: out of space"),
        # a pull refused by zfs recv: its remote zfs send then dies of SIGPIPE (ssh 255)
        ([SRC, HERE], (255, 1), ("", "cannot receive new filesystem stream: out of space"),
         errors.ZfsError, "Command failed: cannot receive new filesystem stream: out of space"),
        # a stream cut by a pipe stage of the user's (`head -c N`): not the link
        ([HERE, HERE, HERE], (141, 0, 1), ("", "", CUT),
         errors.ZfsError, "Command failed: cannot receive incremental stream: checksum mismatch"),
        # zfs send refused on the source: its refusal, whatever follows
        ([SRC, HERE], (1, 1), ("cannot open 'pool/a@x': dataset does not exist", CUT),
         errors.DatasetNotFound, "Command failed: cannot open 'pool/a@x': dataset does not exist"),
        # the receiving end finished: nothing to repeat
        ([SRC, HERE], (255, 0), ("Connection reset by peer", ""),
         errors.SshError, "ssh to src failed: Connection reset by peer"),
    ],
)  # fmt: skip
def test_a_pipeline_fails_with_the_process_that_failed_first(
    hosts: list[Host],
    codes: tuple[int, ...],
    stderrs: tuple[str, ...],
    kind: type[errors.ReconcileError],
    message: str,
) -> None:
    error = pipeline_error(hosts, PipelineResult("zfs send | zfs recv", codes, stderrs, ""))
    assert type(error) is kind
    assert str(error).startswith(message), str(error)
