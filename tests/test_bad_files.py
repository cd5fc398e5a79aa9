"""Bad files, streams and status (#32): a plan file, key, ssh config or metrics file that
is not what it must be gives one "! " line naming it and what is allowed, a non-zero
exit code, and no change; status of a backup name that selects nothing is UNKNOWN."""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from executors.cli import main
from executors.console import Console
from executors.options import RunOptions
from tests import fakecli
from tests.test_bad_input import KEY, REPO, T
from tests.test_bad_input import _run as run_process


def _one_error(err: str, *parts: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("! "), err
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "plan.key"
    path.write_bytes(KEY)
    monkeypatch.setenv("ZFS_AUTOBACKUP_PLAN_KEY", str(path))
    return path


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_end_of_input_at_the_approval_prompt_is_no(capsys: pytest.CaptureFixture[str]) -> None:
    _zfs, runner = fakecli.world()

    def console(options: RunOptions) -> Console:
        return Console(answers=Terminal(""), color=False)

    assert main(["apply", "bak", "dst"], fakecli.deps(runner, console)) == 1
    _one_error(capsys.readouterr().err, "Ctrl-D", "nothing was applied")
    assert fakecli.writes(runner) == []


@pytest.mark.parametrize("fmt", ["table", "nagios", "json", "prometheus"])
def test_status_of_a_backup_name_that_selects_nothing_is_unknown(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    _zfs, runner = fakecli.world()
    assert main(["status", "typo", "dst", f"--format={fmt}"], fakecli.deps(runner)) == 3
    out = capsys.readouterr().out
    if fmt == "prometheus":  # (the format has no text: the backup's state says it)
        assert 'zfs_autobackup_backup_state{backup="typo",' in out and out.endswith("} 3\n"), out
        return
    assert "No source filesystems selected" in out and "autobackup:typo=true" in out, out
    if fmt == "json":
        assert json.loads(out)["state"] == "UNKNOWN"
    else:
        assert "UNKNOWN" in out


def _plan(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "p.plan"
    _zfs, runner = fakecli.world()
    return main(["plan", "bak", "dst", f"--out={out}", *extra], fakecli.deps(runner)), out


def test_a_key_that_cannot_be_made_leaves_the_old_plan_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "p.plan"
    old.write_bytes(b"the previous plan\n")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ZFS_AUTOBACKUP_PLAN_KEY", str(tmp_path / "file" / "plan.key"))
    code, out = _plan(tmp_path)
    assert code == 1
    _one_error(capsys.readouterr().err, "plan signing key")
    assert out.read_bytes() == b"the previous plan\n"


def test_a_plan_file_that_cannot_be_written_leaves_the_old_one_alone(
    tmp_path: Path, key: Path
) -> None:
    """A write that fails halfway (here: over the file size limit, EFBIG) leaves the old
    plan file as it was and no temporary file behind."""
    old = tmp_path / "p.plan"
    old.write_bytes(b"the previous plan\n")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))

    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fakecli", "plan", "bak", "dst", f"--out={old}"],
        capture_output=True, text=True, env=env, check=False, preexec_fn=small_files,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    _one_error(proc.stderr, f"Can't write the plan to '{old}'")
    assert old.read_bytes() == b"the previous plan\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.plan", "plan.key"]


def test_an_empty_out_is_refused(
    tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    assert main(["plan", "bak", "dst", "--out="], fakecli.deps(runner)) == 1
    _one_error(capsys.readouterr().err, "Invalid --out ''")
    assert runner.history == []


def test_out_a_folder_is_refused(
    tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    assert main(["plan", "bak", "dst", f"--out={tmp_path}"], fakecli.deps(runner)) == 1
    _one_error(capsys.readouterr().err, f"Invalid --out '{tmp_path}'", "is a folder")


def test_a_good_plan_file_is_written_whole_and_applies(tmp_path: Path, key: Path) -> None:
    zfs, runner = fakecli.world()
    out = tmp_path / "p.plan"
    assert main(["plan", "bak", "dst", f"--out={out}"], fakecli.deps(runner)) == 0
    assert fakecli.writes(runner) == []
    assert main(["apply", str(out)], fakecli.deps(runner)) == 0
    assert fakecli.arrived(zfs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.plan", "plan.key"]


def _special(tmp_path: Path, kind: str) -> str:
    if kind == "dir":
        path = tmp_path / "a-dir"
        path.mkdir()
    elif kind == "fifo":
        path = tmp_path / "a-fifo"
        os.mkfifo(path)
    elif kind == "loop":
        path = tmp_path / "loop"
        path.symlink_to(tmp_path / "loop")
    elif kind == "missing":
        path = tmp_path / "missing.plan"
    else:
        return kind
    return str(path)


SPECIAL = {
    "dir": "is a folder, not a regular file",
    "fifo": "is a FIFO, not a regular file",
    "/dev/null": "is a character device, not a regular file",
    "/dev/zero": "is a character device, not a regular file",
    "loop": "Too many levels of symbolic links",
    "missing": "No such file or directory",
}


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("command", ["apply", "show"])
def test_a_plan_file_that_is_not_a_regular_file_is_one_line(
    tmp_path: Path, kind: str, command: str
) -> None:
    path = _special(tmp_path, kind)
    proc = run_process([command, path], tmp_path)
    assert proc.returncode == 1, proc.stderr
    _one_error(proc.stderr, f"plan file '{path}'", SPECIAL[kind])


def test_a_plan_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.plan"
    with path.open("wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse
    proc = run_process(["apply", str(path)], tmp_path)
    assert proc.returncode == 1
    _one_error(proc.stderr, f"plan file '{path}'", "larger than 64 MiB")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "dir"])
def test_a_plan_key_that_is_not_a_regular_file_is_one_line(tmp_path: Path, kind: str) -> None:
    path = _special(tmp_path, kind)
    plan = tmp_path / "p.plan"
    plan.write_text("{}")
    env_key = {"ZFS_AUTOBACKUP_PLAN_KEY": path}
    proc = subprocess.run(
        [sys.executable, "-m", "executors", "show", str(plan)],
        capture_output=True, text=True, check=False, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO), "PATH": "/nonexistent", **env_key},
    )  # fmt: skip
    assert proc.returncode == 1
    _one_error(proc.stderr, f"plan signing key {path}", "not a regular file")


def test_a_plan_key_over_4_kib_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "p.plan"
    plan.write_text("{}")
    proc = run_process(["show", str(plan)], tmp_path, key=b"k" * 5000)
    assert proc.returncode == 1
    _one_error(proc.stderr, "plan signing key", "larger than 4 KiB")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "dir"])
def test_an_ssh_config_that_is_not_a_regular_file_is_one_line(tmp_path: Path, kind: str) -> None:
    path = _special(tmp_path, kind)
    proc = subprocess.run(
        [sys.executable, "-m", "executors", "offsite1", T, f"--ssh-config={path}"],
        capture_output=True, text=True, check=False, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO), "PATH": "/nonexistent"},
    )  # fmt: skip
    assert proc.returncode == 255
    _one_error(proc.stderr, f"Can't read --ssh-config '{path}'", "not a regular file")


@pytest.mark.parametrize("home", ["", "relative/home"])
def test_an_empty_or_relative_home_is_refused_for_the_key(tmp_path: Path, home: str) -> None:
    plan = tmp_path / "p.plan"
    plan.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "ZFS_AUTOBACKUP_PLAN_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "executors", "show", str(plan)],
        capture_output=True, text=True, check=False, timeout=30, cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO), "PATH": "/nonexistent", "HOME": home},
    )  # fmt: skip
    assert proc.returncode == 1
    _one_error(proc.stderr, f"HOME is '{home}'", "ZFS_AUTOBACKUP_PLAN_KEY")
    assert not (tmp_path / "relative").exists()


def test_the_lock_path_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from executors.lock import lock_path
    from executors.options import build_parser, job_from_args

    path = lock_path(job_from_args(build_parser().parse_args(["lockdir32", "dst"])))
    path.mkdir()
    try:
        _zfs, runner = fakecli.world()
        assert main(["lockdir32", "dst"], fakecli.deps(runner)) == 255
        _one_error(capsys.readouterr().err, f"lock file {path} is not a regular file")
        assert runner.history == []
    finally:
        path.rmdir()


def test_status_prometheus_file_a_folder_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    code = main(["status", "bak", "dst", f"--prometheus-file={tmp_path}"], fakecli.deps(runner))
    assert code == 3
    _one_error(capsys.readouterr().err, f"Invalid --prometheus-file '{tmp_path}'", "a folder")
    assert runner.history == []


def test_a_classic_run_with_a_prometheus_file_a_folder_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    code = main(["bak", "dst", f"--prometheus-file={tmp_path}"], fakecli.deps(runner))
    assert code == 255
    _one_error(capsys.readouterr().err, f"Invalid --prometheus-file '{tmp_path}'", "a folder")
    assert runner.history == []


#: file names no file can have (found by the fuzz test as tracebacks): a name longer than
#: NAME_MAX with the temporary file's additions, a path longer than PATH_MAX
_NO_FILE_NAMES = ["y" * 250, "y/" * 3000 + "x"]


@pytest.mark.parametrize("name", _NO_FILE_NAMES, ids=["long-name", "long-path"])
@pytest.mark.parametrize(
    ("args", "option", "code"),
    [
        (["status", "bak", "dst", "--prometheus-file"], "--prometheus-file", 3),
        (["bak", "dst", "--prometheus-file"], "--prometheus-file", 255),
        (["plan", "bak", "dst", "--out"], "--out", 1),
    ],
    ids=["status", "classic", "plan"],
)
def test_a_file_name_no_file_can_have_is_refused_before_anything(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    args: list[str],
    option: str,
    code: int,
) -> None:
    _zfs, runner = fakecli.world()
    path = f"{tmp_path}/{name}"
    assert main([*args, path], fakecli.deps(runner)) == code
    _one_error(capsys.readouterr().err, f"Invalid {option} '{tmp_path}/y")
    assert runner.history == []


@pytest.mark.parametrize("mode", [[], ["apply", "--auto-approve"]])
def test_a_metrics_file_that_cannot_be_written_at_the_end_counts_in_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    """The folder is checked before the run; it can still go away during it."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    zfs, runner = fakecli.world()
    runner.meddle = (3, folder.rmdir)  # gone before the run ends
    args = [*mode, "bak", "dst", f"--prometheus-file={folder}/x.prom"]
    assert main(args, fakecli.deps(runner)) == 1
    assert fakecli.arrived(zfs)
    _one_error(capsys.readouterr().err, f"Can't write --prometheus-file '{folder}/x.prom'")


@pytest.mark.parametrize(
    "arg", ["dir", "fifo", "/dev/null", "missing", "./offsite1", "offsite1.plan"]
)
def test_apply_of_anything_like_a_path_is_a_plan_file(tmp_path: Path, arg: str) -> None:
    path = _special(tmp_path, arg)
    proc = run_process(["apply", path], tmp_path)
    assert proc.returncode == 1, proc.stderr
    line = _one_error(proc.stderr, f"plan file '{path}'")
    assert "Invalid backup name" not in line and "No source filesystems" not in line
