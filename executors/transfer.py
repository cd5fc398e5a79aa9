"""The transfer pipeline of a send as processes on the right hosts.

Stages on the same remote host run in one ssh (`ssh src 'zfs send ... | zstd -T0 -3'`);
between hosts the data flows through OS pipes on this machine (pull+push: two ssh
processes); it never passes through Python. Helper programs are checked on each host
before the first transfer.
"""

from __future__ import annotations

from collections.abc import Sequence

from executors.runner import PROBE_SCRIPT, Runner, Stage
from reconcile.errors import CommandNotFound
from reconcile.model import Host
from reconcile.pipes import TransferOptions, helpers, source_side, target_side


def pipeline(
    source: Host,
    target: Host,
    send: Sequence[str],
    recv: Sequence[str],
    options: TransferOptions,
) -> list[Stage]:
    remote = not (source.is_local and target.is_local)
    stages = [Stage(source, tuple(send), "[Source]")]
    stages += [Stage(source, argv, "[Source]") for argv in source_side(options)]
    stages += [Stage(target, argv, "[Target]") for argv in target_side(options, remote)]
    stages.append(Stage(target, tuple(recv), "[Target]"))
    return stages


def check_helpers(
    runner: Runner, job_source: Host, job_target: Host, options: TransferOptions
) -> None:
    """Refuse, before any transfer, when a helper program is missing on a host."""
    remote = not (job_source.is_local and job_target.is_local)
    for side, host in (("source", job_source), ("target", job_target)):
        needed = helpers(options, remote)[side]
        if not needed:
            continue
        label = "[Source]" if side == "source" else "[Target]"
        out = runner.run(host, ["sh", "-c", PROBE_SCRIPT, "sh", *needed], label=label)
        missing = out.stdout.split()
        if missing:
            raise CommandNotFound(
                f"{', '.join(missing)} not installed on the {side} ({host.describe()}): "
                "install it there, or drop the option that needs it "
                "(--compress, --buffer, --rate, --send-pipe, --recv-pipe)"
            )
