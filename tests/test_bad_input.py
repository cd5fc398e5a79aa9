"""Bad input: one clear line naming the value, the documented exit code, no traceback,
and nothing run at all.

The CLI runs as a real process with an empty PATH: had it tried any command (zfs, ssh,
a pipe helper), the error would be "Command not found" instead of the expected message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.planfile import VERSION, dumps
from tests.test_planfile import _saved

REPO = Path(__file__).resolve().parents[1]
T = "backup/server1"

CASES: list[tuple[list[str], int, str]] = [
    (["offsite1", T, "--keep-source=1x1w"], 255, "Invalid time unit 'x' in schedule rule '1x1w'"),
    (["offsite1", T, "--keep-target=1w1d"], 255, "Invalid schedule rule '1w1d': the interval can't be longer than the ttl"),
    (["offsite1", T, "--keep-source=abc"], 255, "Invalid schedule rule 'abc'"),
    (["offsite1", T, "--keep-source=10,,1d1w"], 255, "Invalid schedule '10,,1d1w': empty rule between commas"),
    (["offsite1", T, "--keep-target=0d1w"], 255, "Invalid schedule rule '0d1w': the interval must be above 0"),
    (["offsite1", T, "--min-change=-5"], 255, "invalid value '-5' for --min-change"),
    (["offsite1", T, "--min-change=lots"], 255, "invalid value 'lots' for --min-change"),
    (["offsite1", T, "--retries=-1"], 255, "invalid value '-1' for --retries: a whole number from 0 to 20 is allowed"),
    (["offsite1", T, "--retry-delay=soon"], 255, "invalid value 'soon' for --retry-delay: a number of seconds from 0 to 3600 is allowed"),
    (["offsite1", T, "--strip-path=-1"], 255, "invalid value '-1' for --strip-path"),
    (["offsite1", T, "--exclude-unchanged=x"], 255, "invalid value 'x' for --exclude-unchanged"),
    (["offsite1", T, "--snapshot-format=%Y%m%d"], 255, "Invalid --snapshot-format '%Y%m%d': it must contain {}"),
    (["offsite1", T, "--snapshot-format={}-daily"], 255, "Invalid --snapshot-format '{}-daily': it needs time fields"),
    (["offsite1", T, "--property-format=autobackup"], 255, "Invalid --property-format 'autobackup'"),
    (["offsite1", T, "--hold-format=static"], 255, "Invalid --hold-format 'static'"),
    (["offsite1", T, "--set-properties=canmount"], 255, "Invalid --set-properties item 'canmount': use PROPERTY=VALUE"),
    (["offsite1", T, "--set-properties==x"], 255, "Invalid --set-properties item '=x'"),
    (["offsite1", T, "--set-snapshot-properties=note"], 255, "Invalid --set-snapshot-properties item 'note'"),
    (["offsite1", T, "--compress=lz5"], 255, "Invalid --compress 'lz5': allowed are gzip, pigz-fast"),
    (["offsite1", T, "--buffer=lots"], 255, "Invalid --buffer 'lots': use a size such as 128M"),
    (["offsite1", T, "--rate=fast"], 255, "Invalid --rate 'fast'"),
    (["offsite1", T, "--send-pipe="], 255, "Invalid --send-pipe '': it is empty"),
    (["offsite1", T, "--recv-pipe=cat 'unterminated"], 255, "Invalid --recv-pipe \"cat 'unterminated\": No closing quotation"),
    (["offsite1", T, "--pre-snapshot-cmd='"], 255, "Invalid --pre-snapshot-cmd"),
    (["offsite1", T, "--exclude-snapshot-pattern=(["], 255, "Invalid --exclude-snapshot-pattern '(['"),
    (["offsite1", T, "--destroy-missing=30"], 255, "Invalid duration '30': use a number and a unit"),
    (["offsite1", T, "--destroy-missing=30x"], 255, "Invalid duration '30x'"),
    (["offsite1", T, "--ssh-config=/nonexistent/ssh config"], 255, "Can't read --ssh-config '/nonexistent/ssh config'"),
    (["offsite1", T, "--ssh-source=-oProxyCommand=touch /tmp/x"], 255, "Invalid ssh host '-oProxyCommand=touch /tmp/x'"),
    (["offsite1", T, "--ssh-target=host with space"], 255, "Invalid ssh host 'host with space'"),
    (["offsite1", "pool/ds@snap"], 255, "Invalid target path 'pool/ds@snap': name a filesystem, not a snapshot"),
    (["bad name", T], 255, "Invalid backup name 'bad name'"),
    (["off/site", T], 255, "Invalid backup name 'off/site'"),
    (["offsite1", T, "--frobnicate"], 255, "unrecognized arguments: --frobnicate"),
    ([], 255, "the following arguments are required: BACKUP-NAME"),
    (["plan", "offsite1", T, "--test"], 1, "unrecognized arguments: --test"),
    (["plan", "offsite1", T, "--keep-source=7q"], 1, "Invalid schedule rule '7q'"),
    (["apply", "offsite1", T, "--compress=nope"], 1, "Invalid --compress 'nope'"),
    (["show", "/nonexistent/plan.json"], 1, "Can't read plan file '/nonexistent/plan.json'"),
    (["status", "offsite1", T, "--format=xml"], 3, "invalid value 'xml' for --format: allowed are table, json, nagios, prometheus"),
    (["status", "offsite1", T, "--warn=soon"], 3, "--warn: Invalid duration 'soon'"),
    (["status", "offsite1", T, "--prometheus-file=/nonexistent/dir/x.prom"], 3, "Invalid --prometheus-file '/nonexistent/dir/x.prom'"),
    (["offsite1", T, "--prometheus-file=/nonexistent/dir/x.prom"], 255, "Invalid --prometheus-file"),
    (["offsite1", T, "--on-failure=mail 'x"], 255, "Invalid --on-failure"),
]  # fmt: skip


KEY = b"0123456789abcdef" * 4  # a plan signing key is at least 32 bytes


def _run(args: list[str], tmp_path: Path, key: bytes = KEY) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    key_file = tmp_path / "plan.key"
    key_file.write_bytes(key)
    env = {
        **os.environ,
        "PATH": str(empty),
        "PYTHONPATH": str(REPO),
        "ZFS_AUTOBACKUP_PLAN_KEY": str(key_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "executors", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "message"), CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES]
)
def test_bad_input(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    proc = _run(args, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("! ") and message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Command not found" not in proc.stderr


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[: len(t) // 3], "is not a readable plan (invalid JSON"),
        (
            lambda t: t.replace(f'"version": {VERSION}', '"version": 99'),
            "has plan format version 99",
        ),
        (
            lambda t: t.replace('"hold_tag": "zfs_autobackup:bak"', '"hold_tag": "x"'),
            "was changed after it was saved",
        ),
        (lambda t: json.dumps({"format": "something else"}), "is not a zfs-reconcile plan file"),
    ],
)
def test_bad_plan_files_refused_by_apply_and_show(tmp_path: Path, mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "p.json"
    plan.write_text(mangle(dumps(_saved(), KEY)))
    for command in ("apply", "show"):
        proc = _run([command, str(plan)], tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "Command not found" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_plan_made_on_another_machine_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    plan.write_text(dumps(_saved(), KEY))  # made_on "host1"
    proc = _run(["apply", str(plan)], tmp_path)
    assert proc.returncode == 1
    assert "was made on host 'host1', not here" in proc.stderr


@pytest.mark.parametrize("content", [b"", b"short\n"])
def test_a_bad_plan_signing_key_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    """#31: an empty or short key (left by a failed write, or made by hand) would let anyone
    sign a plan: apply and show refuse it with one line saying how to make a new key."""
    plan = tmp_path / "p.json"
    plan.write_text(dumps(_saved(), KEY))
    for command in ("apply", "show"):
        proc = _run([command, str(plan)], tmp_path, key=content)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1, proc.stderr
        assert len(lines) == 1, proc.stderr
        assert f"The plan signing key {tmp_path / 'plan.key'} is too short" in lines[0]
        assert "remove it; the next `plan --out` makes a new one" in lines[0]
        assert "Traceback" not in proc.stderr + proc.stdout
