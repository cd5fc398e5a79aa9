"""`zfs-autobackup status [options] BACKUP-NAME [TARGET-PATH]`: is every backup current,
for people and for Nagios, Prometheus and JSON (docs/monitoring.md). Exit codes are
Nagios': 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also a bad command line)."""

from __future__ import annotations

from typing import Any

from executors import monitor
from executors.options import add_thresholds, choice_type, duration_type
from executors.subcommands import Run, Subcommand
from reconcile.errors import UsageError


def _output(g: Any) -> None:
    add_thresholds(g)
    g.add_argument(
        "--format",
        metavar="FORMAT",
        default="table",
        type=choice_type("--format", monitor.FORMATS),
        help="table (default), json (docs/status-format.md), nagios or prometheus",
    )
    g.add_argument(
        "--prometheus-file",
        metavar="PATH",
        help="also write the report for node_exporter's textfile collector (atomically)",
    )
    g.add_argument(
        "--verify-max-age",
        metavar="AGE",
        type=duration_type("--verify-max-age"),
        help="WARNING when a copy's last full verification (zfs-autobackup verify) is older, "
        "or there is none (e.g. 30d)",
    )


def _run(run: Run) -> int:
    args = run.args
    job = run.job()
    if args.verify_max_age is not None and not job.remote.target_path:
        raise UsageError("--verify-max-age needs TARGET-PATH: the records are on the copies")
    return monitor.run_status(
        job,
        run.console,
        run.runner,
        run.now,
        warn=args.warn,
        crit=args.crit,
        fmt=args.format,
        prometheus_file=args.prometheus_file,
        together=run.options.settings.observe_together,
        store=run.settings_for(job).store,
        verify_max_age=args.verify_max_age,
    )


STATUS = Subcommand(
    run=_run,
    output=_output,
    epilog="Exit code (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also a usage error).",
)
