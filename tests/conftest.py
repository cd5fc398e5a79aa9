"""Test configuration: the real-ZFS guest plugin (see tests/zfsvm/plugin.py), and the
`slow` marker: long real-ZFS scenarios that only `tests/run --slow` runs (CI's selection
still covers every feature once on real ZFS; see docs/testing.md)."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.zfsvm.plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (more real-ZFS scenarios; about 40 minutes more)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if not slow:
        return
    config.hook.pytest_deselected(items=slow)
    items[:] = [item for item in items if not item.get_closest_marker("slow")]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"{len(slow)} slow tests deselected (tests/run --slow runs them)")


@pytest.fixture(autouse=True)
def _own_listing_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test has its own listing cache folder (never the user's ~/.cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
