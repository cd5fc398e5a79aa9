"""Where things may happen, checked on the code (like the import-layer contracts):

- commands are built in the compile stage (planner/compile.py) and the observation
  modules (reconcile/observe.py, reconcile/listing.py) only: nowhere else is there a list or tuple that starts
  with "zfs", "zpool" or "sh" (the runner adds the ssh transport, and only that);
- zfs' output and error text is read in reconcile/zfs_text.py only: nowhere else is
  `... in <something's stderr/stdout>` or `... in str(exc)`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    p for pkg in ("reconcile", "planner", "executors") for p in (REPO / pkg).rglob("*.py")
)
COMMAND_BUILDERS = {
    "planner/compile.py",
    # the typed commands (one constructor per verb) that compile assembles
    "planner/commands.py",
    # verify's temporary commands, next to the rule that lets only them through
    "planner/verify.py",
    "reconcile/observe.py",
    "reconcile/listing.py",
    # the remote guard: compile's counterpart on the remote host (stdlib only: no compile import)
    "executors/guard/program.py",
    "executors/guard/rules.py",
}
PROGRAMS = {"zfs", "zpool", "sh"}


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def _argv_literals(tree: ast.AST) -> list[int]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value in PROGRAMS:
                found.append(node.lineno)
    return found


def _text_matching(tree: ast.AST) -> list[int]:
    def is_output(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr in ("stderr", "stdout", "stderrs"):
            return True
        return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "str"

    found = []
    for node in ast.walk(tree):
        membership = isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.In, ast.NotIn)) for op in node.ops
        )
        if membership and any(is_output(c) for c in node.comparators):  # type: ignore[attr-defined]
            found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_commands_are_built_only_by_the_compile_stage_and_observation(path: Path) -> None:
    if _name(path) in COMMAND_BUILDERS:
        return
    lines = _argv_literals(ast.parse(path.read_text()))
    assert not lines, (
        f"{_name(path)} builds a command at line(s) {lines}: planner/commands.py and compile.py do"
    )


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_zfs_text_is_read_only_by_the_parsing_module(path: Path) -> None:
    if _name(path) == "reconcile/zfs_text.py":
        return
    lines = _text_matching(ast.parse(path.read_text()))
    assert not lines, (
        f"{_name(path)} matches command output at line(s) {lines}: reconcile/zfs_text.py does"
    )


def test_the_checks_find_what_they_look_for() -> None:
    """(So that the two tests above cannot pass by seeing nothing.)"""
    tree = ast.parse(
        'argv = ["zfs", "list"]\nif "busy" in result.stderr: pass\nok = "x" in str(exc)\n'
    )
    assert _argv_literals(tree) == [1]
    assert _text_matching(tree) == [2, 3]
    compile_module = ast.parse((REPO / "planner" / "compile.py").read_text())
    assert len(_argv_literals(compile_module)) > 5
