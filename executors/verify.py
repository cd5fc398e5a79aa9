"""`zfs-autobackup verify`: prove that the backup holds the same data as the source.

    zfs-autobackup verify [job options] BACKUP-NAME TARGET-PATH
                   [--snapshot NAME | --all-common] [--sample FRACTION] [--budget DURATION]
                   [--parallel N] [--json]

The job options are the backup's own. For every selected dataset, the newest snapshot
both sides have (reconcile.verify) is held on both sides with the verify tag, mounted
read-only in a temporary directory (a volume: its snapshot device, made visible for
the time), and walked on its own host (reconcile.walk): only the walks' digests cross
the wire. The two walks are compared both ways. Whatever was held, mounted, made or set
is undone on every way out, SIGINT and SIGTERM included (a signal stops the walks,
then the undoing runs). Nothing else that writes can run: the mode's runner lets only
planner.verify's temporary commands through.

Exit: 0 every dataset verified, 1 a difference, 3 a dataset could not be verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Callable, Optional

import attrs

from executors.console import Console
from executors.progress import describe
from executors.runner import PipelineWatch, Runner, Stage
from executors.session import observe_and_desire
from planner import verify as commands
from planner.commands import Command
from planner.show import verify_table
from reconcile import errors, zfs_text
from reconcile.job import Job
from reconcile.model import Host, Side
from reconcile.verify import (
    Difference,
    Outcome,
    Result,
    Task,
    VerifyRequest,
    Walked,
    compare,
    exit_code,
    locked_why,
    parse_walk,
    record_property,
    record_value,
    sample_slices,
    task,
    verify_tag,
)

#: umount of a directory a killed walk still reads: tried again this often, 1 s apart
_UNMOUNT_TRIES = 10


class Cancelled(Exception):
    """SIGINT or SIGTERM: stop, and undo what was done."""


class _Stop(PipelineWatch):
    """The running walks, to stop them on a signal; and whether one came."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self._mine: dict[int, tuple[int, ...]] = {}

    def started(self, pids: Sequence[int], stderr: Sequence[object]) -> None:
        with self._lock:
            self._pids.update(pids)
            self._mine[threading.get_ident()] = tuple(pids)
        if self.event.is_set():
            self._kill(pids)

    def finished(self) -> None:
        with self._lock:
            self._pids.difference_update(self._mine.pop(threading.get_ident(), ()))

    def _kill(self, pids: Sequence[int]) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.event.set()
        with self._lock:
            self._kill(list(self._pids))

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled()


@contextlib.contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    """SIGINT and SIGTERM stop the walks and let each dataset undo its changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, stop.signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


class _Progress:
    """--progress (by default on a terminal): bytes read on both sides, the rate, and the
    time left, from the source snapshots' logical size (twice: both sides read it). A
    dataset's bytes count when its walks end; the line is redrawn every second."""

    def __init__(self, console: Console, total: Optional[int]) -> None:
        self.console = console
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def add(self, read: int) -> None:
        self.done += read
        self._show()

    def _show(self, done: bool = False) -> None:
        line = describe(self.done, self.total, time.monotonic() - self.started)
        self.console.progress(f"verify: {line}", done)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._show()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._show(done=True)


class _Verifier:
    def __init__(self, job: Job, runner: Runner, console: Console, request: VerifyRequest,
                 now: float, stop: _Stop) -> None:  # fmt: skip
        self.job = job
        self.runner = runner
        self.console = console
        self.request = request
        self.stop = stop
        self.tag = verify_tag(job.naming.hold_tag)
        self.record = record_property(job.naming.property_name)
        self.now = now
        # --sample: the slice of chunks advances once a day, so that coverage accumulates
        self.sample = None if request.sample is None else sample_slices(request.sample, now)
        #: --budget: when every walk stops (set when the verifying starts)
        self.deadline: Optional[float] = None

    def host(self, side: Side) -> Host:
        return self.job.remote.host(side)

    def run(self, command: Command) -> str:
        self.stop.check()
        return self.runner.run(self.host(command.side), command.argv,
                               label=command.side.label).stdout  # fmt: skip

    def undo(self, command: Command, tries: int = 1, last: Optional[Command] = None) -> None:
        """Run an undoing command (also after a signal), `tries` times a second apart,
        then `last`; say so when it fails."""
        attempts = [command] * tries + ([last] if last is not None else [])
        for attempt, each in enumerate(attempts):
            result = self.runner.run(self.host(each.side), each.argv, label=each.side.label,
                                     check=False)  # fmt: skip
            if result.returncode == 0:
                return
            if attempt + 1 < len(attempts):
                time.sleep(1)
        self.console.error(
            f"Left behind on the {command.side}: {result.command} failed: "
            f"{zfs_text.first_line(result.stderr) or result.returncode}"
        )

    def _record(self, item: Task) -> None:
        """A full verification is recorded on the copy (`status --verify-max-age`)."""
        value = record_value(self.now, item.snapshots[-1][1])
        command = commands.record(item.target, self.record, value)
        try:
            self.run(command)
        except errors.ReconcileError as exc:
            self.console.error(f"Verified {item.target}, but could not record it: {exc}")

    def _change(self, undo: contextlib.ExitStack, command: Command, undoing: Command,
                *, tries: int = 1, last: Optional[Command] = None) -> str:  # fmt: skip
        """Run a temporary change and register its undoing. A change that may have taken
        effect though its command did not say so (a signal stopped it, its ssh link was
        cut) is undone at once (the undoing of nothing fails quietly); one that zfs
        refused is not: a hold refused is another verification's, which stays."""
        self.stop.check()  # (before: a change not tried is not undone)
        try:
            out = self.runner.run(self.host(command.side), command.argv,
                                  label=command.side.label).stdout  # fmt: skip
        except (Cancelled, errors.SshError):
            self.runner.run(self.host(undoing.side), undoing.argv, label=undoing.side.label,
                            check=False)  # fmt: skip
            raise
        undo.callback(self.undo, undoing, tries, last)
        return out

    def _prepare(self, undo: contextlib.ExitStack, side: Side, name: str, volume: bool) -> str:
        """Hold the snapshot and make it readable: the path its walk reads."""
        release = commands.hold_snapshot(side, self.tag, name, release=True)
        self._change(undo, commands.hold_snapshot(side, self.tag, name), release)
        dataset = name.split("@", 1)[0]
        if volume:
            out = self.run(commands.read_snapdev(side, dataset))
            value, _, source = out.strip().partition("\t")
            if value != "visible":
                back = commands.restore_snapdev(side, dataset, value, source)
                self._change(undo, commands.show_devices(side, dataset), back)
            return f"/dev/zvol/{name}"
        path = self.run(commands.make_dir(side)).strip()
        undo.callback(self.undo, commands.remove_dir(side, path))
        lazy = commands.unmount(side, path, lazy=True)
        self._change(undo, commands.mount(side, name, path), commands.unmount(side, path),
                     tries=_UNMOUNT_TRIES, last=lazy)  # fmt: skip
        return path

    def _walk(self, side: Side, path: str, volume: bool) -> Walked:
        self.stop.check()
        left = None if self.deadline is None else max(0.0, self.deadline - time.time())
        command = commands.walk_command(side, path, device=volume, sample=self.sample,
                                        budget=left)  # fmt: skip
        stage = Stage(self.host(side), command.argv, side.label)
        result = self.runner.pipeline([stage], check=False, watch=self.stop)
        self.stop.check()
        if not result.ok:
            text = zfs_text.first_line(result.stderrs[0]) or f"exit code {result.returncodes[0]}"
            raise errors.ReconcileError(f"the walk of {path} on the {side} failed: {text}")
        try:
            return parse_walk(result.stdout)
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.ReconcileError(f"the walk of {path} on the {side}: {exc}") from exc

    def pair(self, item: Task, snapshots: tuple[str, str]) -> tuple[Walked, Walked]:
        """Both sides' walks of one pair of snapshots (at the same time)."""
        names = (f"{item.source}@{snapshots[0]}", f"{item.target}@{snapshots[1]}")
        with contextlib.ExitStack() as undo:
            paths = [
                self._prepare(undo, side, name, item.volume)
                for side, name in zip((Side.SOURCE, Side.TARGET), names)
            ]
            with ThreadPoolExecutor(1, "walk") as other:
                theirs = other.submit(self._walk, Side.TARGET, paths[1], item.volume)
                mine = self._walk(Side.SOURCE, paths[0], item.volume)
                return mine, theirs.result()

    def verify(self, item: Task) -> Result:
        if item.why is not None:
            return Result(item.source, item.target, Outcome.NOT_VERIFIABLE, item.why)
        found: list[Difference] = []
        paths, read, skipped = 0, 0, 0
        complete = True
        for snapshots in item.snapshots:
            try:
                source, target = self.pair(item, snapshots)
            except errors.ReconcileError as exc:
                why = f"@{snapshots[1]}: {exc}"
                if found:  # (--all-common: what an earlier pair found stands)
                    return Result(item.source, item.target, Outcome.DIFFERENT,
                                  f"then {why}", tuple(found), paths, read, skipped)  # fmt: skip
                return Result(item.source, item.target, Outcome.NOT_VERIFIABLE, why)
            compared = compare(source, target)
            complete = complete and compared.complete
            prefix = f"@{snapshots[1]} " if len(item.snapshots) > 1 else ""
            found += [attrs.evolve(d, path=prefix + d.path) for d in compared.differences]
            paths += compared.paths
            read += source.read + target.read
            skipped += source.skipped + target.skipped
        names = ", ".join(f"@{t}" for _, t in item.snapshots)
        if found:
            outcome = Outcome.DIFFERENT
        elif not complete:
            outcome = Outcome.NOT_VERIFIABLE
            names += f": --budget ran out after {paths} paths (these matched)"
        else:
            outcome = Outcome.VERIFIED
            if self.sample is not None:
                part = f"slice {self.sample[1] + 1} of {self.sample[0]}"
                names += f" (a sample, {part}: not recorded)"
            elif item.newest:
                self._record(item)
        return Result(item.source, item.target, outcome, names, tuple(found), paths, read,
                      skipped)  # fmt: skip


def _locked(job: Job, runner: Runner, tasks: Sequence[Task]) -> set[str]:
    """The encrypted copies whose key is not loaded (one `zfs get` for all of them)."""
    names = [t.target for t in tasks if t.encrypted and t.why is None]
    if not names:
        return set()
    command = commands.read_keystatus(names)
    out = runner.run(job.remote.target, command.argv, label=Side.TARGET.label).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return {row[0] for row in rows if len(row) == 2 and row[1] != "available"}


def plan_tasks(job: Job, runner: Runner, now: float, request: VerifyRequest,
               together: bool) -> list[Task]:  # fmt: skip
    """Observe both sides (reads only), and what is compared for each selected dataset."""
    seen = observe_and_desire(job, runner, now, together=together)
    tasks = []
    by_name = {p.source.name: p for p in seen.desired.pairs}
    for pair in seen.desired.pairs:
        tasks.append(task(pair.source, pair.target_name, pair.target,
                          guid_check=job.transfer.guid_check, snapshot=request.snapshot,
                          all_common=request.all_common))  # fmt: skip
    locked = _locked(job, runner, tasks)
    for index, item in enumerate(tasks):
        if item.target in locked:
            pair = by_name[item.source]
            assert pair.target is not None
            tasks[index] = attrs.evolve(item, why=locked_why(pair.source, pair.target))
    return tasks


def run_verify(
    job: Job,
    request: VerifyRequest,
    console: Console,
    runner: Runner,
    now: float,
    *,
    as_json: bool = False,
    together: bool = True,
    clock: Callable[[], float] = time.time,
    progress: bool = False,
) -> int:
    stop = _Stop()
    verifier = _Verifier(job, runner, console, request, now, stop)
    with _signals(stop):
        tasks = plan_tasks(job, runner, now, request, together)
        if not tasks:
            raise errors.UsageError(f"No datasets are selected by {job.naming.property_name}")
        started = clock()
        if request.budget is not None:
            verifier.deadline = time.time() + request.budget
        shown = _Progress(console, _total(runner, job, tasks)) if progress else None

        def one(item: Task) -> Result:
            result = verifier.verify(item)
            if shown is not None:
                shown.add(result.read)
            return result

        with ThreadPoolExecutor(max(1, request.parallel), "verify") as pool:
            futures = [pool.submit(one, t) for t in tasks]
            results: list[Result] = []
            cancelled = False
            for future in futures:
                try:
                    results.append(future.result())
                except Cancelled:
                    cancelled = True
                except BaseException:
                    # (an error of ours: the other datasets stop, undo, then it is raised)
                    stop.signal(0, None)
                    raise
        if shown is not None:
            shown.close()
        if cancelled or stop.event.is_set():
            console.error("Aborted: verification stopped (what it held, mounted or set is undone)")
            return 3
    elapsed = clock() - started
    if as_json:
        console.write(console.out, json.dumps(_as_json(results), indent=2) + "\n")
    else:
        console.info(verify_table(results))
        read = sum(r.read for r in results)
        console.info(
            f"Verify: {_count(results, Outcome.VERIFIED)} verified, "
            f"{_count(results, Outcome.DIFFERENT)} DIFFERENT, "
            f"{_count(results, Outcome.NOT_VERIFIABLE)} not verifiable; "
            f"{read / 2**20:.1f} MiB read in {elapsed:.1f} s."
        )
    return exit_code(results)


def _total(runner: Runner, job: Job, tasks: Sequence[Task]) -> Optional[int]:
    """Twice the logical size of the source snapshots compared (None: unknown)."""
    names = [f"{t.source}@{s}" for t in tasks if t.why is None for s, _ in t.snapshots]
    if not names:
        return None
    command = commands.read_sizes(names)
    result = runner.run(job.remote.source, command.argv, label=Side.SOURCE.label, check=False)
    sizes = [line.rpartition("\t")[2] for line in result.stdout.splitlines()]
    if result.returncode != 0 or not all(s.isdigit() for s in sizes):
        return None
    return 2 * sum(int(s) for s in sizes)


def _count(results: Sequence[Result], outcome: Outcome) -> int:
    return sum(1 for r in results if r.outcome is outcome)


def _as_json(results: Sequence[Result]) -> list[dict[str, object]]:
    return [
        {
            "dataset": r.dataset,
            "target": r.target,
            "outcome": r.outcome.value,
            "detail": r.detail,
            "paths": r.paths,
            "read": r.read,
            "skipped": r.skipped,
            "differences": [{"path": d.path, "what": d.what} for d in r.differences],
        }
        for r in results
    ]
