"""Compile: the ordered plan -> the exact commands that carry it out, as steps. Pure.

Everything that decides a command is here, and nowhere else: send flags (`-L`, `-e`,
`-c`, `-w`, `-p`, `-P`, `-i`/`-I`/`-t`) from the pool features observation read, the
receive flags, the transfer pipeline (user pipes, compression, buffers, rate), holds and
releases grouped into `zfs hold -r` where that is exact (planner.cover) and split over
`parallel` commands, destroys batched under the argument limit (with the one-by-one
commands to fall back to), the mount check, the helper-program probe, the pre- and
post-snapshot commands, the arrival check of --ignore-transfer-errors.

A step is what the executor runs as one: a command, or a pipeline of commands (a send),
on the hosts its commands name by side. It says which plan actions it carries out, which
datasets its failure counts against, which steps it needs, whether it writes, which
steps may run beside it (`group`), and what to do when it fails (`fallback`: steps that
replace it, one after the other; `soft`: its failure is reported and blocks nothing).
The executor only schedules steps; it never builds an argv. `plan --commands` prints
them, the plan file carries them, and `apply FILE` runs them as saved.

    send @y from @x   ->  zfs send -L -e -p -i @x pool/a@y | zfs recv -u -s backup/pool/a
    holds of a tree   ->  zfs hold -r zfs_autobackup:bak pool/a@y
    destroy @a, @b    ->  zfs destroy pool/a@a,b        (if refused: zfs destroy pool/a@a;
                                                          zfs destroy pool/a@b)
    send @z from #y   ->  zfs send -L -e -p -i pool/a#y pool/a@z | zfs recv -u -s ...
    bookmark @z       ->  zfs bookmark pool/a@z pool/a#z__8419732213
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import attrs

from planner import commands, describe
from planner.actions import (
    SOURCE,
    TARGET,
    AbortResume,
    Action,
    Bookmark,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Mount,
    Release,
    Restore,
    Rollback,
    Send,
    SetProperty,
)
from planner.commands import Command
from planner.cover import Cover, Present, cover
from planner.describe import Level, Line
from planner.plan import Plan
from reconcile.job import Snapshotting, TransferRecipe
from reconcile.limits import ARG_BYTES, chunked
from reconcile.model import Side
from reconcile.never import assert_never
from reconcile.pipes import COMPRESSORS, TransferOptions
from reconcile.scripts import BOOT_MOUNT_PROPERTIES, MOUNT_SCRIPT, PROBE_SCRIPT

#: properties that cannot be set on a volume (zfs refuses the whole receive otherwise)
NOT_FOR_VOLUMES = frozenset({"canmount", "mountpoint"})
#: holds (releases) per command before they are split over --parallel commands
HOLDS_PER_COMMAND = 16
#: how a probe command starts (it only reads: the runner's read-only guard lets it run)
PROBE_PREFIX = ("sh", "-c", PROBE_SCRIPT)

# step kinds beyond the action kinds
CHECK_HELPERS, PRE_SNAPSHOT, POST_SNAPSHOT = (
    "check-helpers",
    "pre-snapshot-cmd",
    "post-snapshot-cmd",
)


@attrs.frozen
class Resume:
    """How a send step starts again after its link broke (executors retry it): `token`
    reads the target's receive_resume_token; with one, the step's `zfs send` becomes
    `send` + `-t TOKEN` (the same flags; `resumed`). A stream of several snapshots (-I)
    leaves a token that resumes only the snapshot that was cut: `rest` has, for each
    snapshot of the stream but the last, the `zfs send` of the rest of the stream after
    it (`continued`); which one was cut is read with `which` (`zfs send -nv -t`)."""

    token: Command
    send: Optional[tuple[str, ...]] = None
    #: (snapshot, the `zfs send` of what comes after it in this step's -I stream)
    rest: tuple[tuple[str, Command], ...] = ()
    #: the step's last snapshot (its stream ends with it)
    last: str = ""
    #: the source dataset
    dataset: str = ""

    def which(self, token: str) -> Command:
        """Prints what `token` resumes (its toname), on the source."""
        return commands.read(SOURCE, ("zfs", "send", "-nv", "-t", token), self.dataset)


class Failure(enum.Enum):
    """What a step's failure does (the executor reads this, never what the step is)."""

    #: its datasets fail, and what needs it is skipped (and fails)
    FAILS = "fails"
    #: it is said, and counts nothing: thinning, releases, mounts never block a backup
    REPORTED = "reported"
    #: it is said once; what needs it fails without a word each (--pre-snapshot-cmd)
    GATES = "gates"
    #: it runs whatever failed before it; its failure is said, blocks nothing
    #: (--post-snapshot-cmd: after the snapshots, whether they worked or not, as v3)
    ALWAYS = "always"


class Tolerated(enum.Enum):
    """A failure that means it was done already."""

    #: what a destroy destroys is gone
    GONE = "gone"
    #: the hold is there already
    HELD = "held"
    #: the hold is gone already
    RELEASED = "released"


@attrs.frozen
class Step:
    """One thing the executor runs, with everything it needs to know about it: what it
    runs, what it needs first, what it says, and what its failure means."""

    #: what it is, for people and tests (the executor never branches on it)
    kind: str
    #: one command, or a pipeline (a send: zfs send | ... | zfs recv)
    commands: tuple[Command, ...]
    #: the plan actions it carries out (indexes into Plan.actions)
    actions: tuple[int, ...] = ()
    #: the datasets whose failure it counts as
    units: tuple[str, ...] = ()
    #: steps (indexes) that must have worked first
    needs: tuple[int, ...] = ()
    #: the plan actions its actions depend on: when one of them did not happen (whichever
    #: step carried it), this step is skipped
    after: tuple[int, ...] = ()
    writes: bool = True
    #: consecutive steps with the same group (> 0) may run side by side
    group: int = 0
    failure: Failure = Failure.FAILS
    #: failures that mean it was done already (they count as done, and are not said)
    tolerates: tuple[Tolerated, ...] = ()
    #: a failed dataset of its own skips it (not a pool's snapshot: it still covers the
    #: pool's other datasets, as v3 takes the snapshots before it sends anything)
    blocked_by_units: bool = True
    #: when it fails: these instead, one after the other (each with its own actions)
    fallback: tuple[Step, ...] = ()
    #: --ignore-transfer-errors: a failed send is fine when this finds the snapshot
    arrived: Optional[Command] = None
    #: a send: how it is repeated when its link broke (None: it is not)
    resume: Optional[Resume] = None
    #: "[Source]" or "[Target]": the side of what it does (a send's is the target's,
    #: though its first command runs on the source)
    label: str = ""
    #: what its messages name (a dataset, a pool, "pre-snapshot-cmd")
    subject: str = ""
    #: a transfer's name, for its progress and retries (DATASET@SNAP)
    title: str = ""
    #: the v3 log's lines, said when it starts (planner.describe)
    lines: tuple[Line, ...] = ()
    #: what its failure says, with "{why}" for the error
    complaint: str = ""
    #: what it prints is said (the mount check's verdict)
    echo: bool = False
    #: it only finds out which helper programs are missing (its output names them): the
    #: run stops before any transfer when one is
    probe: bool = False
    #: part of taking the snapshots (the v3 log's first section)
    snapshotting: bool = False

    @property
    def side(self) -> Side:
        return self.commands[0].side

    @property
    def soft(self) -> bool:
        return self.failure is Failure.REPORTED

    @property
    def pipeline(self) -> bool:
        """A transfer: zfs send | ... | zfs recv."""
        return len(self.commands) > 1


@attrs.frozen
class Facts:
    """What observation read that shapes commands: per side, each pool's features, and
    every snapshot each dataset has or may have once the plan ran (for `-r` holds)."""

    features: Mapping[Side, Mapping[str, frozenset[str]]] = attrs.field(factory=dict)
    present: Mapping[Side, Present] = attrs.field(factory=dict)


@attrs.frozen
class Options:
    """Run options that shape commands (recorded with a compiled plan)."""

    #: holds and releases of one batch are split over up to this many commands
    parallel: int = 4
    #: `zfs send -P` (the size estimate, for --progress)
    progress: bool = False


@attrs.frozen
class Compiled:
    steps: tuple[Step, ...] = ()
    options: Options = attrs.Factory(Options)


# --- one action -> commands ------------------------------------------------------------


def destroy_batches(action: Destroy) -> list[tuple[Command, list[str]]]:
    """`zfs destroy ds@a,b,c`: many snapshots of one dataset in one command (with the
    snapshots each command destroys), split below the argument limit."""
    fixed = len(action.dataset) + 1
    return [
        (commands.destroy_snapshots(action.side, action.dataset, chunk), chunk)
        for chunk in chunked(action.snapshots, budget=ARG_BYTES - fixed)
    ]


def _features(facts: Facts, side: Side, dataset: str) -> frozenset[str]:
    return facts.features.get(side, {}).get(dataset.split("/", 1)[0], frozenset())


def send_argv(
    action: Send, recipe: TransferRecipe, facts: Facts, progress: bool
) -> tuple[str, ...]:
    """`zfs send` as 3.3 sends: -L and -e where both pools have the feature (-e not
    for raw sends or --encrypt), -c with --zfs-compressed, -w for raw, -p unless the
    source is sent decrypted, -I for a stream of several snapshots, -t to resume."""
    both = _features(facts, SOURCE, action.source_dataset) & _features(
        facts, TARGET, action.target_dataset
    )
    argv = ["zfs", "send"]
    if progress:
        argv.append("-P")  # the size estimate on stderr; never -v (a second per send)
    if "large_blocks" in both:
        argv.append("-L")
    if "embedded_data" in both and not action.raw and not recipe.encrypt:
        argv.append("-e")
    if recipe.zfs_compressed:
        argv.append("-c")
    if action.raw:
        argv.append("-w")
    if action.resume_token:
        return (*argv, "-t", action.resume_token)
    if not action.decrypted:
        argv.append("-p")
    if action.base and action.from_origin:
        # (a clone's first send: from its origin snapshot, another dataset's)
        argv += ["-i", action.base]
    elif action.base and action.from_bookmark:
        # (-I from a bookmark is refused by zfs: "multiple snapshots cannot be sent from
        # a bookmark")
        argv += ["-i", f"{action.source_dataset}#{action.base}"]
    elif action.base:
        argv += ["-I" if _several(action) else "-i", f"@{action.base}"]
    return (*argv, f"{action.source_dataset}@{action.snapshot}")


def estimate_argv(send: Sequence[str]) -> tuple[str, ...]:
    """The same `zfs send`, as a dry run that prints its size (`-n -P`)."""
    rest = [a for a in send[2:] if a != "-P"]
    return ("zfs", "send", "-n", "-P", *rest)


def receive(action: Send, recipe: TransferRecipe, facts: Facts) -> Command:
    resumable = "extensible_dataset" in _features(facts, TARGET, action.target_dataset)
    argv = ["zfs", "recv", "-u", *(["-s"] if resumable else [])]
    filters = list(recipe.filter_properties)
    sets = list(recipe.set_properties)
    if recipe.encrypt and not action.raw:
        filters += ["keylocation", "pbkdf2iters", "keyformat", "encryption"]
    if action.volume:
        filters = [p for p in filters if p not in NOT_FOR_VOLUMES]
        sets = [p for p in sets if p.split("=", 1)[0] not in NOT_FOR_VOLUMES]
    # (the source's boot wiring stays the received value: never the backup server's)
    set_keys = {p.split("=", 1)[0] for p in sets}
    filters += [p for p in BOOT_MOUNT_PROPERTIES if p not in filters and p not in set_keys]
    for prop in filters:
        argv += ["-x", prop]
    for prop in sets:
        argv += ["-o", prop]
    if action.force:
        argv.append("-F")
    return commands.receive((*argv, action.target_dataset), action.target_dataset, sets)


def token(dataset: str) -> Command:
    """Reads a target's receive_resume_token ("-": none)."""
    argv = ("zfs", "get", "-H", "-p", "-o", "value", "receive_resume_token", dataset)
    return commands.read(TARGET, argv, dataset)


def _several(action: Send) -> bool:
    """A stream of several snapshots (`zfs send -I`)."""
    plain = action.resume_token or action.from_origin or action.from_bookmark
    return bool(action.base and action.intermediates and not plain)


def send(action: Send, recipe: TransferRecipe, facts: Facts, progress: bool) -> Command:
    argv = send_argv(action, recipe, facts, progress)
    return commands.send(argv, action.source_dataset, several=_several(action))


def resume_of(action: Send, recipe: TransferRecipe, facts: Facts, progress: bool) -> Resume:
    """How `action`'s step resumes after a broken link."""
    with_token = send_argv(attrs.evolve(action, resume_token="TOKEN"), recipe, facts, progress)
    stream = (*action.intermediates, action.snapshot)
    rest = tuple(
        (snap, send(attrs.evolve(action, base=snap, intermediates=stream[i + 1 : -1],
                                 from_bookmark=False, from_origin=False),
                    recipe, facts, progress))
        for i, snap in enumerate(stream[:-1])
    )  # fmt: skip
    return Resume(
        token(action.target_dataset), with_token[:-2], rest, action.snapshot, action.source_dataset
    )


def resumed(step: Step, token: str) -> tuple[Command, ...]:
    """`step`'s commands, resuming from `token` (`zfs send ... -t TOKEN | ... | zfs recv`)."""
    assert step.resume is not None and step.resume.send is not None
    again = commands.send((*step.resume.send, "-t", token), step.resume.dataset, several=False)
    return (again, *step.commands[1:])


def continued(step: Step, snapshot: str) -> Optional[tuple[Command, ...]]:
    """`step`'s commands for the rest of its -I stream once the target has `snapshot`
    (None: `snapshot` is the stream's last; nothing is left)."""
    assert step.resume is not None
    rest = dict(step.resume.rest).get(snapshot)
    return None if rest is None else (rest, *step.commands[1:])


def _mbuffer(options: TransferOptions, rate: Optional[str] = None) -> tuple[str, ...]:
    argv = ("mbuffer", "-q", f"-s{options.chunk_size or '128k'}", f"-m{options.buffer or '16M'}")
    return (*argv, f"-R{rate}") if rate else argv


def source_side(options: TransferOptions) -> list[tuple[str, ...]]:
    """Commands after `zfs send`, on the source."""
    stages = list(options.send_pipes)
    if options.compress:
        stages.append(COMPRESSORS[options.compress].compress)
    if options.buffered:
        stages.append(_mbuffer(options, options.rate))
    return stages


def target_side(options: TransferOptions, remote: bool) -> list[tuple[str, ...]]:
    """Commands before `zfs recv`, on the target."""
    stages = []
    if options.compress:
        stages.append(COMPRESSORS[options.compress].decompress)
    stages.extend(options.recv_pipes)
    # a second buffer only helps when something sits between the two ends (as 3.3: with
    # --buffer or --buffer-chunk-size, not for --rate alone)
    between = remote or options.send_pipes or options.recv_pipes or options.compress
    if (options.buffer or options.chunk_size) and between:
        stages.append(_mbuffer(options))
    return stages


def helpers(options: TransferOptions, remote: bool) -> dict[Side, list[str]]:
    """Programs each side needs besides zfs (side -> names)."""
    return {
        SOURCE: sorted({argv[0] for argv in source_side(options)}),
        TARGET: sorted({argv[0] for argv in target_side(options, remote)}),
    }


def send_pipeline(
    action: Send, recipe: TransferRecipe, facts: Facts, progress: bool
) -> tuple[Command, ...]:
    return (
        send(action, recipe, facts, progress),
        *(commands.pipe(SOURCE, argv) for argv in source_side(recipe.pipes)),
        *(commands.pipe(TARGET, argv) for argv in target_side(recipe.pipes, recipe.remote)),
        receive(action, recipe, facts),
    )


def restore_pipeline(
    action: Restore, recipe: TransferRecipe, facts: Facts, progress: bool
) -> tuple[Command, ...]:
    """A send back: `zfs send -b` on the target host (the values the copy received: its
    own overrides, --set-properties, --clear-mountpoint, stay behind), with the backup's
    pipes the other way round, into `zfs recv -u` on the source host (mounted afterwards
    by the mount check, never over something in use); `-F` onto the common snapshot.
    Raw: `zfs send -w -p`, and the receive leaves out (-x) what the target set on the
    copy, or puts back the value received under it (-o): `zfs recv` of a raw `zfs send
    -b` stream of an encryption root aborts (OpenZFS 2.3: it looks for the keylocation
    the stream of received values does not carry, openzfs #17011)."""
    both = _features(facts, TARGET, action.copy) & _features(facts, SOURCE, action.dataset)
    argv = ["zfs", "send", *(["-P"] if progress else [])]
    argv += ["-L"] if "large_blocks" in both else []
    # (no -e: zfs refuses an embedded-data stream into a dataset it encrypts, as under
    # an encrypted parent, which the restore can't know in advance)
    argv += ["-c"] if recipe.zfs_compressed else []
    # (-b: the received values; zfs refuses it for an encrypted dataset sent decrypted)
    argv += ["-w", "-p"] if action.raw else [] if action.decrypted else ["-b"]
    argv += ["-i", f"@{action.base}"] if action.base else []
    send_ = commands.send((*argv, f"{action.copy}@{action.snapshot}"), action.copy,
                          several=False, side=TARGET)  # fmt: skip
    recv = ["zfs", "recv", "-u", *(a for p in action.leave_out for a in ("-x", p))]
    recv += [a for p in action.put_back for a in ("-o", p)]
    recv += ["-F"] if action.base else []
    return (
        send_,
        *(commands.pipe(TARGET, argv) for argv in source_side(recipe.pipes)),
        *(commands.pipe(SOURCE, argv) for argv in target_side(recipe.pipes, recipe.remote)),
        commands.receive(
            (*recv, action.dataset),
            action.dataset,
            (*action.leave_out, *action.put_back),
            side=SOURCE,
        ),
    )


def _single(action: Action) -> Command:
    """The one command of an action that is not batched."""
    if isinstance(action, CreateParent):
        return commands.create_parent(action.dataset)
    if isinstance(action, AbortResume):
        return commands.abort_resume(action.dataset)
    if isinstance(action, Rollback):
        return commands.rollback(action.dataset, action.snapshot, side=action.side,
                                 destroy_newer=action.destroy_newer)  # fmt: skip
    if isinstance(action, SetProperty):
        return commands.set_property(
            action.side, action.dataset, f"{action.property}={action.value}"
        )
    if isinstance(action, DestroyDataset):
        return commands.destroy_dataset(action.side, action.dataset)
    if isinstance(action, Mount):
        argv = ("sh", "-c", MOUNT_SCRIPT, "sh", action.dataset)
        return commands.script(action.side, argv, (action.dataset,))
    if isinstance(action, (Hold, Release)):
        name = f"{action.dataset}@{action.snapshot}"
        return commands.hold(action.side, action.tag, (name,), release=isinstance(action, Release))
    if isinstance(action, Bookmark):
        of = f"#{action.copy_of}" if action.copy_of is not None else f"@{action.snapshot}"
        return commands.bookmark(action.dataset, of, action.bookmark)
    if isinstance(action, DestroyBookmark):
        return commands.destroy_bookmark(action.side, action.dataset, action.bookmark)
    if isinstance(action, (CreateSnapshots, Send, Destroy, Restore)):  # pragma: no cover
        raise TypeError(f"not a single-command action: {action!r}")
    return assert_never(action)


def _failure(action: Action) -> Failure:
    """What a failed single command of `action` means: a mount, a release and a bookmark's
    destroy are reported and fail nothing (a restore's release runs whatever failed); the
    rest fail their datasets."""
    if isinstance(action, Release) and action.always:
        return Failure.ALWAYS
    if isinstance(action, (Mount, Release, DestroyBookmark, SetProperty)):
        return Failure.REPORTED
    if isinstance(action, (CreateParent, AbortResume, Rollback, DestroyDataset, Hold, Bookmark)):
        return Failure.FAILS
    if isinstance(action, (CreateSnapshots, Send, Destroy, Restore)):  # pragma: no cover
        raise TypeError(f"not a single-command action: {action!r}")
    return assert_never(action)


# --- the plan -> steps ----------------------------------------------------------------


class _Steps:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.steps: list[Step] = []
        #: action index -> the steps that carry it out
        self.of_action: dict[int, list[int]] = {}
        self.groups = 0

    def needed(self, step: Step) -> Step:
        """`step` with the steps its actions' dependencies became (and its own needs)."""
        after = {d for a in step.actions for d in self.plan.depends[a]}
        needs = {s for d in after for s in self.of_action.get(d, ())}
        fallback = tuple(self.needed(alt) for alt in step.fallback)
        return attrs.evolve(step, needs=tuple(sorted(needs | set(step.needs))),
                            after=tuple(sorted(after)), fallback=fallback)  # fmt: skip

    def add(self, step: Step) -> int:
        index = len(self.steps)
        self.steps.append(self.needed(step))
        for a in step.actions:
            self.of_action.setdefault(a, []).append(index)
        return index

    def group(self) -> int:
        self.groups += 1
        return self.groups

    def units(self, actions: Sequence[int]) -> tuple[str, ...]:
        found: dict[str, None] = {}
        for i in actions:
            action = self.plan.actions[i]
            for unit in action.datasets if isinstance(action, CreateSnapshots) else (action.unit,):
                found[unit] = None
        return tuple(found)

    def doing(self, indexes: Sequence[int], command: Sequence[Command], *,
              failure: Failure = Failure.FAILS, about: Sequence[str] = (),
              **more: Any) -> Step:  # fmt: skip
        """The step that carries out the actions `indexes` with `command` (one command, or
        a pipeline): what it says and what its failure means, from its actions."""
        actions = [self.plan.actions[i] for i in indexes]
        first = actions[0]
        soft = failure is Failure.REPORTED
        return Step(
            first.kind,
            tuple(command),
            tuple(indexes),
            self.units(indexes),
            failure=failure,
            tolerates=_tolerated(first, soft),
            label=first.side.label,
            subject=describe.subject(first),
            lines=tuple(line for a in actions for line in describe.log_lines(a, about)),
            complaint=describe.complaint(first, about, soft=soft),
            **more,
        )


def _tolerated(action: Action, soft: bool) -> tuple[Tolerated, ...]:
    """The failures of an action's command that mean it was done already."""
    if isinstance(action, Hold):
        return (Tolerated.HELD,)
    if isinstance(action, Release):
        return (Tolerated.RELEASED,)
    if soft and isinstance(action, (Destroy, DestroyBookmark)):
        return (Tolerated.GONE,)
    return ()


def _user_step(kind: str, argv: Sequence[str], failure: Failure, needs: Sequence[int]) -> Step:
    """A --pre-snapshot-cmd or --post-snapshot-cmd."""
    return Step(kind, (commands.user(SOURCE, argv),), needs=tuple(needs), failure=failure,
                label=SOURCE.label, subject=kind,
                lines=(Line(Level.VERBOSE, f"{SOURCE.label} Running {kind}"),),
                complaint=f"{SOURCE.label} {kind} failed: {describe.WHY}",
                snapshotting=True)  # fmt: skip


def compile_plan(
    plan: Plan,
    recipe: TransferRecipe,
    snapshotting: Snapshotting,
    facts: Facts,
    options: Options = Options(),
) -> Compiled:
    """The plan's commands: each send made by `recipe`, the snapshots by `snapshotting`
    (the job's slices for this stage: `Job.transfer_recipe`, `Job.snapshotting`)."""
    out = _Steps(plan)
    actions = plan.actions
    if any(isinstance(a, Send) for a in actions):
        _helpers(out, recipe)
    snaps = [i for i, a in enumerate(actions) if isinstance(a, CreateSnapshots)]
    pre: list[int] = []
    index = 0
    while index < len(actions):
        action = actions[index]
        if snaps and index == snaps[0]:
            for argv in snapshotting.pre_cmds:  # each after the one before worked
                pre.append(out.add(_user_step(PRE_SNAPSHOT, argv, Failure.GATES, pre[-1:])))
        if isinstance(action, (Hold, Release)):
            batch = _same_kind_run(plan, index)
            _holds(out, facts, options, batch)
        elif isinstance(action, (Send, Destroy, Bookmark, DestroyBookmark)):
            batch = _same_type_run(plan, index)
            group = out.group()
            for i in batch:
                _one(out, recipe, facts, options, i, group)
        else:
            batch = [index]
            if isinstance(action, CreateSnapshots):
                command = commands.snapshot(
                    action.datasets, action.snapshot, snapshotting.properties
                )
                out.add(out.doing([index], [command], needs=tuple(pre), blocked_by_units=False,
                                  snapshotting=True))  # fmt: skip
            else:
                _one(out, recipe, facts, options, index, 0)
        if snaps and index <= snaps[-1] <= batch[-1]:
            # after the last snapshot, whether it worked or not (as v3)
            for argv in snapshotting.post_cmds:
                out.add(_user_step(POST_SNAPSHOT, argv, Failure.ALWAYS, ()))
        index = batch[-1] + 1
    return Compiled(tuple(out.steps), options)


def _helpers(out: _Steps, recipe: TransferRecipe) -> None:
    for side, needed in helpers(recipe.pipes, recipe.remote).items():
        if needed:
            argv = (*PROBE_PREFIX, "sh", *needed)
            out.add(Step(CHECK_HELPERS, (commands.script(side, argv),), writes=False, probe=True,
                         label=side.label, subject=CHECK_HELPERS))  # fmt: skip


def _one(
    out: _Steps, recipe: TransferRecipe, facts: Facts, options: Options, index: int, group: int
) -> None:
    action = out.plan.actions[index]
    if isinstance(action, Send):
        arrived = None
        name = f"{action.target_dataset}@{action.snapshot}"
        if recipe.ignore_transfer_errors:
            argv = ("zfs", "list", "-H", "-o", "name", name)
            arrived = commands.read(TARGET, argv, action.target_dataset)
        pipeline = send_pipeline(action, recipe, facts, options.progress)
        resume = resume_of(action, recipe, facts, options.progress)
        out.add(out.doing([index], pipeline, group=group, arrived=arrived, resume=resume,
                          title=f"{TARGET.label} {name}"))  # fmt: skip
    elif isinstance(action, Restore):
        name = f"{action.dataset}@{action.snapshot}"
        out.add(out.doing([index], restore_pipeline(action, recipe, facts, options.progress),
                          group=group, title=f"{SOURCE.label} {name}"))  # fmt: skip
    elif isinstance(action, Destroy):
        failure = Failure.FAILS if action.required else Failure.REPORTED
        for command, snaps in destroy_batches(action):
            names = tuple(f"{action.dataset}@{s}" for s in snaps)
            fallback = tuple(
                out.doing([index], [commands.destroy_snapshots(action.side, action.dataset, [s])],
                          failure=Failure.REPORTED, about=(n,))
                for n, s in zip(names, snaps) if failure is Failure.REPORTED and len(snaps) > 1
            )  # fmt: skip
            out.add(out.doing([index], [command], group=group, failure=failure,
                              fallback=fallback, about=names))  # fmt: skip
    else:
        failure = _failure(action)
        about = (
            (f"{action.dataset}#{action.bookmark}",) if isinstance(action, DestroyBookmark) else ()
        )
        out.add(out.doing([index], [_single(action)], group=group, failure=failure, about=about,
                          echo=isinstance(action, Mount)))  # fmt: skip


def _holds(out: _Steps, facts: Facts, options: Options, batch: list[int]) -> None:
    """Holds (releases) of one side and tag: `zfs hold|release -r TAG` for the subtrees
    where that is exact (planner.cover), `zfs hold|release TAG ...` for the rest, split
    over up to `parallel` commands side by side when there are many (zfs holds each in
    its own transaction group: side by side they share them). What a failed command was
    about is retried one snapshot at a time, so only the dataset that fails counts."""
    plan = out.plan
    first = plan.actions[batch[0]]
    assert isinstance(first, (Hold, Release))
    names: dict[str, int] = {}
    for i in batch:
        action = plan.actions[i]
        assert isinstance(action, (Hold, Release))
        names[f"{action.dataset}@{action.snapshot}"] = i
    present = facts.present.get(first.side)
    grouped = cover(names, present) if present is not None else Cover({}, tuple(names))
    budget = ARG_BYTES - len(first.tag) - 3
    release = isinstance(first, Release)
    batches: list[tuple[Command, list[str]]] = [
        (commands.hold(first.side, first.tag, chunk, release=release, recursive=True),
         [n for root in chunk for n in grouped.covered[root]])
        for chunk in chunked(grouped.recursive, budget=budget)
    ]  # fmt: skip
    batches += [
        (commands.hold(first.side, first.tag, part, release=release), part)
        for chunk in chunked(grouped.single, budget=budget)
        for part in _split(chunk, options.parallel, at_least=HOLDS_PER_COMMAND)
    ]
    group = out.group()
    failure = _failure(first)
    # (a restore's release runs whatever failed, also after its own dataset failed, and
    # its failure counts nothing: one command, no fallback that would)
    units = failure is not Failure.ALWAYS
    for command, about in batches:
        indexes = tuple(names[n] for n in about)
        # (one snapshot: the command is its own, run once is enough)
        fallback = tuple(
            out.doing([i], [_single(plan.actions[i])], failure=failure)
            for i in indexes
            if units and len(indexes) > 1
        )
        out.add(out.doing(indexes, [command], group=group, failure=failure, fallback=fallback,
                          blocked_by_units=units))  # fmt: skip


def _split(items: list[str], parts: int, at_least: int) -> list[list[str]]:
    """`items` in up to `parts` slices of at least `at_least` items (the last may be short)."""
    count = max(1, min(parts, len(items) // at_least))
    size = -(-len(items) // count)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _same_kind_run(plan: Plan, index: int) -> list[int]:
    """Indexes of the holds (or releases) from `index` on with the same side and tag."""
    first = plan.actions[index]
    assert isinstance(first, (Hold, Release))
    run = [index]
    for i in range(index + 1, len(plan.actions)):
        action = plan.actions[i]
        if type(action) is not type(first) or action.side != first.side:
            break
        assert isinstance(action, (Hold, Release))
        if action.tag != first.tag or any(d in run for d in plan.depends[i]):
            break
        if (
            isinstance(first, Release)
            and isinstance(action, Release)
            and action.always != first.always
        ):
            break
        run.append(i)
    return run


def _same_type_run(plan: Plan, index: int) -> list[int]:
    """Indexes of the consecutive actions of the same type (sends, destroys) from `index` on."""
    kind = type(plan.actions[index])
    end = index
    while end < len(plan.actions) and type(plan.actions[end]) is kind:
        end += 1
    return list(range(index, end))
