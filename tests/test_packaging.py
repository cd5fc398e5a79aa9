"""What `pip install .` installs: every package of the source tree (the test suite runs
from an editable install, which serves any folder of the tree, so a package left out of
pyproject.toml would pass every other test and fail on a user's machine at import)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _listed() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[tool.setuptools]", 1)[1].split("\n[", 1)[0]
    found = re.search(r"^packages\s*=\s*(\[.*?\])", section, re.MULTILINE | re.DOTALL)
    assert found, "[tool.setuptools] packages"
    return set(ast.literal_eval(found.group(1)))


def test_every_package_of_the_tree_is_installed() -> None:
    tops = {"reconcile", "planner", "executors"}
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in tops
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert tops <= packages
    assert _listed() == packages
