"""The subcommands, one module each: a mode's own arguments and what it does.

A mode is declared once, in executors.modes: its word, whether it may write, its error
exit code, and the module here that holds the rest (`About.command`, "module:NAME"). That
module has a `Subcommand`: the positional arguments and option groups the mode adds to
the job options every mode shares (executors.options), its options in the Output group,
and its run function. So a new subcommand is one module here plus one line in
executors.modes; the parser (options.build_parser) and the entry point (executors.cli)
dispatch on the declaration and name no mode. A mode's module is imported only when the
mode runs, so the classic run starts without the others' libraries.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any, Callable, Optional

import attrs

from executors.console import Console
from executors.execute import Settings
from executors.listing_store import Store, cache_path
from executors.monitor import Reporting
from executors.options import RunOptions, job_from_args
from executors.runner import Runner
from reconcile import __version__
from reconcile.job import Job


@attrs.frozen
class Run:
    """What a subcommand's run function is given: its parsed command line, and what the
    entry point made of it (executors.cli)."""

    args: argparse.Namespace
    options: RunOptions
    console: Console
    runner: Runner
    now: float
    #: --prometheus-file, --on-failure, --on-success (None: none of them)
    reporting: Optional[Reporting]
    #: how steps run (with send sizes when the run writes a Prometheus file)
    settings: Settings

    def job(self) -> Job:
        """The Job of the command line, after the notes zfs-autobackup 3.3 prints (on
        stdout) about the options it no longer needs."""
        args, console = self.args, self.console
        if args.resume:
            console.warning("The --resume option isn't needed anymore (it's autodetected now)")
        if args.raw and not self.options.mode.restores:
            console.warning(
                "The --raw option isn't needed anymore (it's autodetected now). "
                "Also see --encrypt and --decrypt."
            )
        if args.ignore_replicated:
            console.warning("--ignore-replicated has been renamed, using --exclude-unchanged")
        job = job_from_args(args)
        console.verbose(
            f"zfs-autobackup v{__version__} (zfs-reconcile, compatible with zfs-autobackup v3)"
        )
        return job

    def settings_for(self, job: Job, settings: Optional[Settings] = None) -> Settings:
        """The run's `settings` with the job's listing cache (unless --no-cache)."""
        settings = settings or self.settings
        if not vars(self.args).get("cache", True):
            return settings
        store = Store.load(cache_path(job), self.console.warning, self.console.debug)
        return attrs.evolve(settings, store=store)


def _nothing(_: Any) -> None:
    """(a mode that adds nothing there)"""


def optional_target_path(p: argparse.ArgumentParser) -> None:
    """The backup modes' TARGET-PATH: without it, only snapshot and thin the source."""
    p.add_argument(
        "target_path",
        metavar="TARGET-PATH",
        nargs="?",
        help="target ZFS filesystem (without it: only snapshot and thin the source)",
    )


def target_path(p: argparse.ArgumentParser) -> None:
    """TARGET-PATH, required: where the backup is."""
    p.add_argument("target_path", metavar="TARGET-PATH", help="where the backup is")


@attrs.frozen
class Subcommand:
    """A mode's arguments and its run function (its declaration is in executors.modes)."""

    #: what it does; its exit code is the run's
    run: Callable[[Run], int]
    #: its positional arguments after BACKUP-NAME (or after FILE, for a mode that takes
    #: a plan file) and its own option groups
    arguments: Callable[[argparse.ArgumentParser], None] = optional_target_path
    #: its options in the Output group (a mode that takes a file has no such group)
    output: Callable[[Any], None] = _nothing
    #: the end of its --help (None: the backup's exit codes)
    epilog: Optional[str] = None
    #: a read-only mode that makes temporary changes, each undone, names them here: its
    #: runner lets through exactly the writes this says yes to (executors.runner)
    allow: Optional[Callable[[Sequence[str]], bool]] = None


def load(command: str) -> Subcommand:
    """The Subcommand that a declaration names ("module:NAME", a module of this package)."""
    module, _, name = command.partition(":")
    found = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    if not isinstance(found, Subcommand):
        raise TypeError(f"{command} is not a Subcommand")
    return found
