"""The progress line, and counting a real process's bytes through /proc."""

from __future__ import annotations

import subprocess
import time

from executors.progress import Progress, describe


def test_progress_line() -> None:
    mib = 1024 * 1024
    assert describe(45 * mib, 100 * mib, 3.0) == "45% 15.0 MiB/s 45.0 MiB of 100.0 MiB, ETA 0:00:03"
    assert describe(3 * mib, None, 2.0) == "3.0 MiB at 1.5 MiB/s"
    assert describe(None, 10 * mib, 75.0) == "0:01:15 elapsed, 10.0 MiB in all"


def test_progress_counts_what_a_process_wrote(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shown: list[str] = []
    err = (tmp_path / "err").open("w+b")
    err.write(b"full\tp/a@s\t3000000\nsize\t3000000\n")
    err.flush()
    writer = subprocess.Popen(
        ["sh", "-c", "head -c 3000000 /dev/zero; sleep 2"], stdout=subprocess.DEVNULL
    )
    progress = Progress(
        "[Target] x@s", lambda text, done: shown.append(text), count=(0, "wchar"), interval=0.2
    )
    progress.started([writer.pid], [err])
    time.sleep(1.0)
    progress.finished()
    writer.kill()
    writer.wait()
    assert any("100% " in line and "of 2.9 MiB" in line for line in shown if line), shown
