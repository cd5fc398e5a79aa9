"""Bad option values, round 3 (#32): each is one line starting with "! " that names the
value (quoted as repr quotes it, so a newline stays on the line) and what is allowed, a
non-zero exit, no traceback, and nothing run at all.

As tests/test_bad_input.py: the CLI runs as a real process with an empty PATH, so a run
that tried any command would say "Command not found" instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bad_input import _run

T = "backup/server1"
NINES = "9" * 400
MANY = "9" * 5000

CASES: list[tuple[list[str], int, str]] = [
    # tracebacks before #32
    (["offsite1", T, "--keep-source=²"], 255, "Invalid schedule rule '²'"),
    (["offsite1", T, "--keep-source=5,²"], 255, "Invalid schedule rule '²'"),
    (["offsite1", T, f"--keep-target=1d{NINES}y"], 255, "at most 1000 years"),
    (["offsite1", T, f"--keep-target=1d{MANY}y"], 255, "at most 1000 years"),
    (["offsite1", T, f"--keep-target={NINES}"], 255, "at most 1000000 snapshots"),
    (["offsite1", T, f"--destroy-missing={NINES}y"], 255, "at most 1000 years"),
    (["offsite1", T, f"--destroy-missing={MANY}y"], 255, "at most 1000 years"),
    (["offsite1", T, f"--destroy-orphan-bookmarks={NINES}d"], 255, "at most 1000 years"),
    (["status", "offsite1", T, f"--warn={NINES}y"], 3, "at most 1000 years"),
    (["offsite1", T, "--buffer=--"], 255, "invalid value '--' for --buffer"),
    (["offsite1", T, "--keep-source=--"], 255, "invalid value '--' for --keep-source"),
    (["offsite1", T, "--send-pipe=--"], 255, "invalid value '--' for --send-pipe"),
    (["plan", "offsite1", T, "--out=--"], 1, "invalid value '--' for --out"),
    (["restore", "offsite1", "--", "--", "src/data"], 1, "invalid value '--' for TARGET-PATH"),
    (["offsite1", T, "--property-format={{}}{.x}"], 255, "Invalid --property-format '{{}}{.x}'"),
    (["offsite1", T, "--hold-format={{}}{[a]}"], 255, "Invalid --hold-format '{{}}{[a]}'"),
    (["offsite1", T, "--hold-format={!r}"], 255, "Invalid --hold-format '{!r}'"),
    (["offsite1", T, "--hold-format={:>9}"], 255, "Invalid --hold-format '{:>9}'"),
    (["a%Y", T], 255, "Invalid backup name 'a%Y'"),
    (["offsite1", T, "--snapshot-format={}-%Y%Y"], 255, "Invalid --snapshot-format '{}-%Y%Y'"),
    (["offsite1", T, "--exclude-snapshot-pattern=a{99999999999}"], 255, "Invalid --exclude-snapshot-pattern 'a{99999999999}'"),
    (["a" * 220, T], 255, "at most 218 characters"),
    (["apply", "z" * 5000], 1, "Invalid backup name 'zzz"),  # (it was a snapshot-format error)
    (["z" * 256, T], 255, "at most 255 characters"),
    # values that reached zfs unchecked
    (["offsite1", T, "--snapshot-format={}-%Y%m%d%H%M%S@x"], 255, "Invalid --snapshot-format '{}-%Y%m%d%H%M%S@x'"),
    (["offsite1", T, "--snapshot-format={}-%Y%m%d%H%M%S/x"], 255, "Invalid --snapshot-format"),
    (["offsite1", T, "--snapshot-format={}-%Y%m%d%H%M%S,x"], 255, "Invalid --snapshot-format"),
    (["offsite1", T, "--snapshot-format={}-%Y%m%d%H%M%S\nx"], 255, "Invalid --snapshot-format '{}-%Y%m%d%H%M%S\\nx'"),
    (["offsite1", T, "--snapshot-format={}-%%"], 255, "Invalid --snapshot-format '{}-%%'"),
    (["offsite1", T, f"--snapshot-format={{}}-%Y%m%d{'x' * 240}"], 255, "at most 253 characters"),
    (["offsite1", T, "--set-properties=a b=c"], 255, "Invalid --set-properties item 'a b=c'"),
    (["offsite1", T, "--set-properties=-o=x"], 255, "Invalid --set-properties item '-o=x'"),
    (["offsite1", T, "--set-snapshot-properties=@=x"], 255, "Invalid --set-snapshot-properties item '@=x'"),
    (["offsite1", T, "--filter-properties=a b"], 255, "Invalid --filter-properties item 'a b'"),
    (["offsite1", T, "--filter-properties=canmount=on"], 255, "Invalid --filter-properties item 'canmount=on'"),
    (["offsite1", T, "--set-properties=Com.Example:x=1"], 255, "Invalid --set-properties item 'Com.Example:x=1'"),
    (["offsite1", T, f"--set-properties=a:{'b' * 300}=1"], 255, "at most 255 characters"),
    # (#33) the guard refuses a receive that sets one, even with --allow-mount: the tool
    # refused nothing and composed it
    (["offsite1", T, "--set-properties=org.openzfs.systemd:wanted-by=multi-user.target"], 255, "Invalid --set-properties item 'org.openzfs.systemd:wanted-by=multi-user.target'"),
    (["offsite1", T, "--hold-format={{}}"], 255, "Invalid --hold-format '{{}}'"),
    (["offsite1", T, "--hold-format=-{}"], 255, "Invalid --hold-format '-{}'"),
    (["offsite1", T, "--hold-format={}\tx"], 255, "a tab, a line break or NUL"),
    (["offsite1", T, "--hold-format=" + "h" * 250 + "{}"], 255, "at most 255 bytes"),
    (["offsite1", T, "--property-format={}"], 255, "Invalid --property-format '{}'"),
    (["Offsite", T], 255, "Invalid --property-format 'autobackup:{}'"),
    # values with a newline: accepted before, or an error on two lines
    (["offsite1", T, "--buffer=128M\n"], 255, "Invalid --buffer '128M\\n'"),
    (["offsite1", T, "--rate=1M\n"], 255, "Invalid --rate '1M\\n'"),
    (["offsite1", T, "--buffer-chunk-size=128k\n"], 255, "Invalid --buffer-chunk-size '128k\\n'"),
    (["offsite1", T, "--compress=lz4\nx"], 255, "Invalid --compress 'lz4\\nx'"),
    (["offsite1", T, "--min-change=1\n"], 255, "invalid value '1\\n' for --min-change"),
    (["offsite1", T, "--min-change=١"], 255, "invalid value '١' for --min-change"),
    (["offsite1", T, "--retry-delay=١"], 255, "invalid value '١' for --retry-delay"),
    (["offsite1", T, f"--min-change={MANY}"], 255, "for --min-change"),
    (["offsite1", T, "--retries=100000"], 255, "from 0 to 20"),
    (["offsite1", T, "--retry-delay=1e9"], 255, "from 0 to 3600"),
    (["offsite1", T, "--destroy-missing=30x\ny"], 255, "Invalid duration '30x\\ny'"),
    (["offsite1", T, "--ssh-source=a\nb"], 255, "Invalid ssh host 'a\\nb'"),
    (["offsite1", T, "--recv-pipe=cat 'x\n"], 255, "Invalid --recv-pipe \"cat 'x\\n\""),
    # (#34) restore: the names it is given are dataset names zfs takes
    (["restore", "offsite1", T, "pool/d@x"], 1, "Invalid DATASET 'pool/d@x'"),
    (["restore", "offsite1", T, "pool/d", "--to", "pool/a@b"], 1, "Invalid --to 'pool/a@b'"),
    (["plan", "restore", "offsite1", T], 1, "the following arguments are required: DATASET"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "message"), CASES, ids=[repr(" ".join(c[0]))[:60] for c in CASES]
)
def test_bad_value(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    proc = _run(args, tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-600:]
    assert proc.returncode == code, proc.stderr[-600:]
    assert len(lines) == 1, proc.stderr[-600:]
    assert lines[0].startswith("! ") and message in lines[0], lines[0][:600]
    assert "Command not found" not in proc.stderr


@pytest.mark.parametrize(
    "target", ["backup/x²", "backup//x", "backup/./x", "backup/x\ny", "b" * 256]
)
def test_a_target_path_zfs_refuses_is_refused(tmp_path: Path, target: str) -> None:
    """(#32, found by tests/test_fuzz_options.py: `status bk ²` said UNKNOWN on stdout
    and nothing on stderr)"""
    for args, code in ((["offsite1", target], 255), (["status", "offsite1", target], 3)):
        proc = _run(args, tmp_path)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == code, proc.stderr
        assert len(lines) == 1 and lines[0].startswith(f"! Invalid target path {target!r}"[:40])
