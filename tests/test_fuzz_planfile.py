"""Plan-file fuzz (#32): a real plan file, made by the tool on the fake zfs, mangled every
way a file can be (truncated, a wrong type at a random JSON path, deep nesting, huge
numbers, invalid UTF-8 and NUL bytes, a non-ASCII signature), then given to `apply` and
`show`. Whatever the bytes: no traceback, and a refusal is exactly one "! " line with a
non-zero exit code and no command that writes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from executors.cli import main
from executors.console import Console
from executors.options import RunOptions
from planner import planfile
from tests import fakecli

KEY = b"0123456789abcdef" * 4
FOLDER = Path(tempfile.mkdtemp(prefix="zfs-reconcile-fuzz-"))
KEY_FILE = FOLDER / "plan.key"
PLAN = FOLDER / "fuzzed.plan"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    KEY_FILE.write_bytes(KEY)
    monkeypatch.setenv("ZFS_AUTOBACKUP_PLAN_KEY", str(KEY_FILE))


@cache
def base() -> str:
    """A plan file the tool made (with the key above)."""
    os.environ["ZFS_AUTOBACKUP_PLAN_KEY"] = str(KEY_FILE)  # (the fixture sets the same)
    out = FOLDER / "made.plan"
    _zfs, runner = fakecli.world()
    assert main(["plan", "bak", "dst", f"--out={out}"], fakecli.deps(runner)) == 0
    return out.read_text(encoding="utf-8")


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


@cache
def paths() -> list[tuple[Any, ...]]:
    return [p for p in _paths(json.loads(base())) if p]


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def _signed(data: dict[str, Any]) -> str:
    data.pop(planfile.SIGNATURE, None)
    data[planfile.SIGNATURE] = planfile._digest(data, KEY)
    return json.dumps(data)


def _check(content: bytes, *, may_pass: bool) -> None:
    """Apply and show `content`; `may_pass`: a correctly signed plan of the right shape
    may apply (what it does is what it says)."""
    PLAN.write_bytes(content)
    for command in ("apply", "show"):
        _zfs, runner = fakecli.world()
        out = io.StringIO()

        def console(options: RunOptions, out: io.StringIO = out) -> Console:
            return Console(out=out, err=out, color=False)

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([command, str(PLAN)], fakecli.deps(runner, console))
        text = err.getvalue() + out.getvalue()
        assert "Traceback" not in text
        if code == 0 and (may_pass or command == "show"):
            continue
        errors = [line for line in text.splitlines() if line.startswith("! ")]
        assert code != 0 and len(errors) == 1, (command, code, text)
        assert fakecli.writes(runner) == [], (command, runner.history)


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=20), st.just([]), st.just({}), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.just([[]]), st.just([""]), st.just([["zfs"]]), st.just(-1), st.just(1e308),
)  # fmt: skip
FAST = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FAST
@given(st.data())
def test_truncated(data: st.DataObject) -> None:
    text = base().rstrip().encode()  # (without its last newline it is the same plan)
    _check(text[: data.draw(st.integers(0, len(text) - 1))], may_pass=False)


@FAST
@given(st.data(), JSON_VALUES, st.booleans())
def test_a_wrong_value_at_a_random_path(data: st.DataObject, value: Any, sign: bool) -> None:
    """Unsigned: apply refuses it by its signature; signed again (as if the key leaked):
    the schema and the fresh plan refuse it, or it is a plan of the right shape."""
    plan = json.loads(base())
    path = data.draw(st.sampled_from(paths()))
    assume(json.dumps(_get(plan, path)) != json.dumps(value))
    _set(plan, path, value)
    _check((_signed(plan) if sign else json.dumps(plan)).encode(), may_pass=sign)


@pytest.mark.parametrize("value", [[[]], [{}], [1], ["["]])
def test_a_list_of_patterns_holds_only_patterns(value: Any) -> None:
    """(found by the fuzz above in CI) a list inside `exclude_snapshot_patterns`, signed
    again, was read as its repr ("[]", a regex that does not compile): a traceback. A
    string that is not a regex is the same."""
    plan = json.loads(base())
    plan["job"]["transfer"]["exclude_snapshot_patterns"] = value
    _check(_signed(plan).encode(), may_pass=True)


@FAST
@given(st.data(), st.integers(4000, 6000), st.sampled_from(["int", "float", "neg"]))
def test_a_huge_number_at_a_random_path(data: st.DataObject, digits: int, kind: str) -> None:
    plan = json.loads(base())
    path = data.draw(st.sampled_from(paths()))
    _set(plan, path, "HUGE")
    number = {"int": "9" * digits, "float": "1e" + "9" * 3, "neg": "-" + "7" * digits}[kind]
    _check(_signed(plan).replace('"HUGE"', number).encode(), may_pass=False)


@FAST
@given(st.data(), st.sampled_from([b"\xff", b"\xc3\x28", b"\x00", b"\xed\xa0\x80", b"\x80"]))
def test_bad_bytes(data: st.DataObject, bad: bytes) -> None:
    text = base().encode()
    at = data.draw(st.integers(0, len(text)))
    _check(text[:at] + bad + text[at:], may_pass=False)


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
@pytest.mark.parametrize("where", ["top", "job"])
def test_deep_nesting(depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    if where == "top":
        _check(nested.encode(), may_pass=False)
        return
    plan = json.loads(base())
    plan["job"] = "NESTED"
    _check(_signed(plan).replace('"NESTED"', nested).encode(), may_pass=False)


@pytest.mark.parametrize("signature", ["é" * 64, "\u0663" * 64, "\ud800", 7, None, ["x"], "0" * 64])
def test_a_bad_signature(signature: Any) -> None:
    plan = json.loads(base())
    plan[planfile.SIGNATURE] = signature
    _check(json.dumps(plan).encode(), may_pass=False)


V = planfile.VERSION


@pytest.mark.parametrize("version", ["9" * 5000, f"{V}.0", "true", f'"{V}"', f"-{V}", "1e999"])
def test_a_bad_version(version: str) -> None:
    text = base().replace(f'"version": {V}', f'"version": {version}', 1)
    assert text != base()
    _check(text.encode(), may_pass=False)


def test_a_schema_error_names_the_field() -> None:
    plan = json.loads(base())
    plan["compiled"]["steps"][1]["commands"] = 5
    PLAN.write_text(_signed(plan))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["apply", str(PLAN)], fakecli.deps(fakecli.world()[1])) == 1
    assert err.getvalue() == (
        f"! plan file '{PLAN}' does not fit the plan format: "
        "compiled.steps[1].commands: expected a list, not int\n"
    )


@pytest.mark.parametrize("kind", ["dir", "fifo", "devnull", "loop"])
def test_special_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    else:
        path = Path(os.devnull)
    for command in ("apply", "show"):
        _zfs, runner = fakecli.world()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([command, str(path)], fakecli.deps(runner)) == 1
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"! Can't read plan file '{path}'")
        assert runner.history == []
