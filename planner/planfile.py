"""Saved plans: versioned JSON written and read with cattrs.

A plan file holds the job (every option that shapes the run), the plan (actions in
order, their dependencies, problems, notes), the assumptions it rests on, `now` and the
fixed name of the new snapshot, the machine it was made on, and an HMAC-SHA256 of its
content under a key only its maker can read (the key is passed in: executors.plankey).
Reading refuses, with a one-line message, anything that is not exactly such a file:
not JSON (truncated), another format or version, an edited file (signature), a file that
does not fit the schema. The format is documented in docs/plan-format.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import typing
from typing import Any, Optional

import attrs
import cattrs

from planner.actions import KINDS, Action
from planner.compile import Compiled
from planner.drift import Assumptions
from planner.plan import Plan
from reconcile.errors import ReconcileError
from reconcile.job import Job
from reconcile.restore import RestoreRequest

FORMAT = "zfs-reconcile-plan"
#: 2: the compiled commands, signed with a key (HMAC-SHA256); 1 had neither; 3: bookmarks;
#: 4: bookmark copies, --destroy-orphan-bookmarks, clones (Send.from_origin); 5: typed
#: commands (verb, datasets, delegation) and steps that describe themselves (their log
#: lines and failure policy); 6: Restore, SetProperty; 7: restore plans (`restore`);
#: 8: the job in parts (naming, remote, selection, snapshotting, thinning, transfer)
VERSION = 8
SIGNATURE = "hmac_sha256"


class PlanFileError(ReconcileError):
    exit_code = 1


@attrs.frozen
class SavedPlan:
    job: Job
    plan: Plan
    #: the exact commands (planner.compile), as apply FILE runs them
    compiled: Compiled
    assumptions: Assumptions
    now: float
    made_on: str
    tool_version: str
    #: a restore's plan (`plan restore --out`): what it restores; None: a backup's plan
    restore: Optional[RestoreRequest] = None


_PRIMITIVES: dict[type, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (float, int), bool: (bool,),
}  # fmt: skip
_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _strict_kind(kind: Any) -> Optional[tuple[type, bool]]:
    """(primitive, optional) for str, int, float, bool and their Optional (by exact
    type: a str hook would also catch the str enums, such as Side); None otherwise."""
    if kind in _PRIMITIVES:
        return kind, False
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and len(args) == 2 and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        if inner in _PRIMITIVES:
            return inner, True
    return None


def _structure_strict(value: Any, kind: Any) -> Any:
    """A JSON value of exactly the expected type (cattrs would make a string of a list,
    an int of "5" or of true: a plan file holds what the tool wrote, nothing else)."""
    found = _strict_kind(kind)
    assert found is not None
    primitive, optional = found
    if value is None and optional:
        return None
    if type(value) not in _PRIMITIVES[primitive]:
        raise TypeError(f"expected {_NAMES[primitive]}, not {type(value).__name__}")
    return primitive(value)


def _is_tuple(kind: Any) -> bool:
    return kind is tuple or typing.get_origin(kind) is tuple


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook_func(lambda t: _strict_kind(t) is not None, _structure_strict)

    def structure_action(data: Any, _: Any) -> Action:
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise ValueError(f"unknown action {data!r:.80}")
        result: Action = conv.structure(data, KINDS[data["kind"]])
        return result

    def structure_tuple(value: Any, kind: Any) -> Any:
        # (cattrs makes a tuple of any iterable: of a string's letters, of a dict's keys)
        if not isinstance(value, list):
            raise TypeError(f"expected a list, not {type(value).__name__}")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis and _strict_kind(args[0]) is not None:
            # (cattrs' own would read a list in a tuple[str, ...] as its repr, "[]")
            return tuple(_structure_strict(item, args[0]) for item in value)
        return conv._structure_tuple(value, kind)  # (cattrs' own, element by element)

    conv.register_structure_hook_func(_is_tuple, structure_tuple)
    conv.register_structure_hook(Action, structure_action)
    conv.register_unstructure_hook(Action, lambda a: conv.unstructure(a, type(a)))
    return conv


CONVERTER = _converter()


def _digest(body: dict[str, Any], key: bytes) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # (a lone surrogate from a "\\ud800" escape: signed as it is, never a crash)
    return hmac.new(key, canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _signed(digest: object, expected: str) -> bool:
    if not isinstance(digest, str) or not digest.isascii():
        return False
    return hmac.compare_digest(digest.encode(), expected.encode())


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
    return text if len(text) <= 40 else text[:37] + "..."


#: JSON's words for what cattrs expected
_EXPECTED = {
    "tuple": "a list", "list": "a list", "dict": "an object", "Mapping": "an object",
    "str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
    "Union": "one of the kinds it may hold", "NoneType": "null", "Literal": "one of its values",
}  # fmt: skip


def schema_error(exc: BaseException) -> str:
    """The first place where a plan file does not fit the schema, and what was expected
    there: "compiled.steps[3].commands: expected a list"."""
    if not isinstance(exc, cattrs.BaseValidationError):
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    first = cattrs.transform_error(exc, path="$")[0]
    what, _, where = first.rpartition(" @ ")
    where = where.removeprefix("$").removeprefix(".") or "(the top level)"
    prefix = "invalid value for type, expected "
    leaf = _first_leaf(exc)
    if isinstance(leaf, TypeError) and str(leaf).startswith("expected "):
        what = str(leaf)
    elif isinstance(leaf, AttributeError):  # (cattrs read a non-object as a record)
        what = "expected an object"
    elif what.startswith(prefix):
        name = what[len(prefix) :]
        what = f"expected {_EXPECTED.get(name, name)}"
    elif what == "required field missing":
        what = "missing"
    return f"{where}: {what[:120]}"


def _first_leaf(exc: BaseException) -> BaseException:
    inner = getattr(exc, "exceptions", None)  # (an exception group: cattrs' own)
    while inner:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


def dumps(saved: SavedPlan, key: bytes) -> str:
    body: dict[str, Any] = {"format": FORMAT, "version": VERSION, **CONVERTER.unstructure(saved)}
    signed = {**body, SIGNATURE: _digest(body, key)}
    return json.dumps(signed, indent=1, ensure_ascii=False) + "\n"


def loads(text: str, source: str = "plan file", key: Optional[bytes] = None) -> SavedPlan:
    """Read a plan file; with `key`, refuse it unless its signature matches (without,
    the signature is not checked: for reading, never for applying). Anything else than
    such a file is one PlanFileError line, never another exception."""
    try:
        return _loads(text, source, key)
    except RecursionError:
        raise PlanFileError(f"{source} is not a plan file: it is nested too deeply") from None


def _loads(text: str, source: str, key: Optional[bytes]) -> SavedPlan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"{source} is not a readable plan (invalid JSON at line {exc.lineno}: "
            f"{exc.msg}); was it truncated?"
        ) from None
    except ValueError:  # a number of more than 4300 digits (int-string conversion limit)
        raise PlanFileError(f"{source} is not a plan file: it holds a number too long") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanFileError(f"{source} is not a zfs-reconcile plan file")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise PlanFileError(
            f"{source} has plan format version {_short(version)}; "
            f"this zfs-autobackup reads version {VERSION} (make the plan again)"
        )
    digest = data.pop(SIGNATURE, None)
    if key is not None and not _signed(digest, _digest(data, key)):
        raise PlanFileError(
            f"{source} was changed after it was saved, or made by another user or machine "
            "(its signature does not match)"
        )
    data.pop("format")
    data.pop("version")
    try:
        saved: SavedPlan = CONVERTER.structure(data, SavedPlan)
    except (
        cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError,
        OverflowError,
    ) as exc:  # fmt: skip
        raise PlanFileError(f"{source} does not fit the plan format: {schema_error(exc)}") from None
    for pattern in saved.job.transfer.exclude_snapshot_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PlanFileError(
                f"{source}: job.transfer.exclude_snapshot_patterns holds {pattern!r:.80}, "
                f"not a regular expression ({exc})"
            ) from None
    return saved
