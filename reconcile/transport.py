"""Which process of a failed transfer pipeline failed first, and whether it was the link.

A pipeline's processes fail together: when one dies, its neighbours see the pipe break.
The writer before it fails with EPIPE ("Broken pipe"), the `zfs recv` after it
complains about an incomplete stream. Reporting the first non-zero exit code in
pipeline order, or the first stderr line, names a victim as often as the culprit.
This module reads each process's own exit code and stderr and names the culprit, pure:

    ssh src 'zfs send ...'  255 "Connection reset by peer"   <- the cause: the link
    zfs recv -s ...           1 "checksum mismatch or incomplete stream"   (its victim)

    zfs send ...              1 "warning: cannot send ...: Broken pipe"    (its victim)
    ssh dst 'zfs recv ...'    1 "cannot receive new filesystem stream: out of space"
                                                          <- the cause: zfs refused

The transport (an ssh process that exits 255: it lost or never had its connection, or
the remote command died of a signal) is the cause only when no process refused on its
own: a refusal is never taken for the link, so a refusal is never retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import attrs

from reconcile import zfs_text

#: ssh's exit code for its own failures (and for a remote command killed by a signal)
SSH_FAILED = 255
#: how a process killed by SIGPIPE exits (a shell's 128+13; Python's -13)
_SIGPIPE = (141, -13)


@attrs.frozen
class Process:
    """One process of a pipeline: the ssh destination it runs on (None: this machine,
    no ssh), its exit code and what it said on stderr (`zfs send -P`'s lines left out)."""

    remote: Optional[str]
    returncode: int
    stderr: str = attrs.field(converter=zfs_text.without_send_progress)


@attrs.frozen
class Cause:
    """The process whose failure the others followed; `transport`: it was the link
    (ssh), so the transfer may be repeated."""

    index: int
    transport: bool


def _link_broke(process: Process) -> bool:
    """An ssh process that lost its connection: exit 255, and no zfs refusal of the
    remote command in its stderr (ssh's own words, or nothing: a remote command killed
    by a signal leaves ssh with 255 and says nothing)."""
    if process.remote is None or process.returncode != SSH_FAILED:
        return False
    text = process.stderr.strip()
    return not text or zfs_text.looks_like_ssh_failure(text)


def _pipe_closed(process: Process) -> bool:
    return process.returncode in _SIGPIPE or zfs_text.says_pipe_closed(process.stderr)


def first_failure(processes: Sequence[Process]) -> Optional[Cause]:
    """The process that failed first (None: none failed).

    - a process that refused on its own (any failure that is neither the link, nor a
      broken pipe after a later process failed, nor a cut stream after an earlier one
      failed) is the cause, the first such one; never the transport;
    - else the first ssh process that lost its link, as long as the receiving end (the
      last process) did not finish: the transfer may be repeated;
    - else the first failure that is not a broken pipe (a cut stream with nothing
      failed before it: `head -c N` in a --send-pipe), or the first failure."""
    failed = [i for i, p in enumerate(processes) if p.returncode != 0]
    if not failed:
        return None

    def victim(i: int) -> bool:
        process = processes[i]
        before = any(j < i for j in failed)
        after = any(j > i for j in failed)
        if _link_broke(process):
            return True  # (the link is the cause only when nobody refused: below)
        if after and _pipe_closed(process):
            return True
        return before and zfs_text.says_stream_cut(process.stderr)

    refusals = [i for i in failed if not victim(i)]
    if refusals:
        return Cause(refusals[0], transport=False)
    links = [i for i in failed if _link_broke(processes[i])]
    if links:
        return Cause(links[0], transport=processes[-1].returncode != 0)
    unpiped = [i for i in failed if not _pipe_closed(processes[i])]
    return Cause((unpiped or failed)[0], transport=False)


def describe_link(process: Process) -> str:
    """What broke, for the log: "ssh to HOST failed: ssh's words"."""
    assert process.remote is not None
    lines = [line.strip() for line in process.stderr.split("\n") if line.strip()]
    ssh_words = [line for line in lines if zfs_text.looks_like_ssh_failure(line)]
    words = (ssh_words or lines or [""])[0] or (
        f"exit code {SSH_FAILED}, the connection or the remote command was lost"
    )
    return f"ssh to {process.remote} failed: {words}"
