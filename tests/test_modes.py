"""Modes as values (executors.modes): each declared once, read-only unless it says it
writes, and every error of a mode exits with that mode's code."""

from __future__ import annotations

import pytest

from executors import cli
from executors.console import Console
from executors.modes import About, Mode, mode_of
from executors.options import build_parser, run_options
from executors.runner import ReadOnlyRunner, Runner
from tests import fakecli

#: a minimal command line of each mode (after its word)
ARGS = {
    Mode.CLASSIC: ["bak", "dst"],
    Mode.PLAN: ["bak", "dst"],
    Mode.APPLY: ["bak", "dst"],
    Mode.STATUS: ["bak", "dst"],
    Mode.SHOW_FILE: ["x.plan"],
    Mode.APPLY_FILE: ["x.plan"],
    Mode.RESTORE: ["bak", "dst", "pool/data"],
    Mode.PLAN_RESTORE: ["bak", "dst", "pool/data"],
    Mode.VERIFY: ["bak", "dst"],
}


@pytest.mark.parametrize(
    ("argv", "mode", "rest"),
    [
        (["bak", "dst"], Mode.CLASSIC, ["bak", "dst"]),
        ([], Mode.CLASSIC, []),
        (["plan", "bak"], Mode.PLAN, ["bak"]),
        (["status", "bak", "dst"], Mode.STATUS, ["bak", "dst"]),
        (["apply", "bak", "dst"], Mode.APPLY, ["bak", "dst"]),
        (["apply", "b.plan"], Mode.APPLY_FILE, ["b.plan"]),
        (["apply", "./b", "--auto-approve"], Mode.APPLY_FILE, ["./b", "--auto-approve"]),
        (["apply"], Mode.APPLY, []),
        (["show", "b.plan"], Mode.SHOW_FILE, ["b.plan"]),
        (["show"], Mode.SHOW_FILE, []),
        # (a backup named like a word is a classic run only when the word comes later)
        (["bak", "plan"], Mode.CLASSIC, ["bak", "plan"]),
        # (two words: the longest match)
        (["restore", "bak", "dst", "p"], Mode.RESTORE, ["bak", "dst", "p"]),
        (["plan", "restore", "bak"], Mode.PLAN_RESTORE, ["bak"]),
        (["plan", "bak", "restore"], Mode.PLAN, ["bak", "restore"]),
    ],
)
def test_the_first_word_selects_the_mode(argv: list[str], mode: Mode, rest: list[str]) -> None:
    assert mode_of(argv) == (mode, rest)


def test_a_mode_is_read_only_unless_its_declaration_says_it_writes() -> None:
    assert About("new", "new").writes is False  # (the default of every new mode)
    for mode in Mode:
        options = run_options(mode, build_parser(mode).parse_args(ARGS[mode]))
        assert options.read_only is (not mode.writes), mode
    assert {m for m in Mode if m.writes} == {
        Mode.CLASSIC, Mode.APPLY, Mode.APPLY_FILE, Mode.RESTORE
    }  # fmt: skip
    classic_test = run_options(Mode.CLASSIC, build_parser().parse_args(["bak", "--test"]))
    assert classic_test.read_only
    for flag in ("--test", "--list"):  # (restore --test and --list only read)
        args = build_parser(Mode.RESTORE).parse_args([*ARGS[Mode.RESTORE], flag])
        assert run_options(Mode.RESTORE, args).read_only, flag


def test_a_read_only_mode_gets_a_runner_that_refuses_writes() -> None:
    """What the real runner factory gives each mode: a plan or status run whose code
    tried a write would have it refused, not run."""
    for mode in Mode:
        options = run_options(mode, build_parser(mode).parse_args(ARGS[mode]))
        runner: Runner = cli.make_runner(options, Console(), "/nonexistent")
        assert isinstance(runner, ReadOnlyRunner) is (not mode.writes), mode


@pytest.mark.parametrize(
    ("word", "code"),
    [([], 255), (["plan"], 1), (["apply"], 1), (["status"], 3), (["show"], 1)],
)
def test_a_usage_error_exits_with_the_modes_code(
    word: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    argv = [*word, "x.plan" if word == ["show"] else "bak", "--no-such-option"]
    assert cli.main(argv, fakecli.deps(runner)) == code
    assert "--no-such-option" in capsys.readouterr().err
    assert fakecli.writes(runner) == []


@pytest.mark.parametrize(
    ("word", "code"), [([], 255), (["plan"], 1), (["apply"], 1), (["status"], 3)]
)
def test_ctrl_c_exits_with_the_modes_error_code(
    word: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """(status said 1, WARNING to Nagios, for an interrupted check: it is UNKNOWN, 3)"""
    _zfs, runner = fakecli.world()

    def interrupted() -> float:
        raise KeyboardInterrupt

    deps = fakecli.deps(runner)
    deps = cli.Deps(clock=interrupted, console=deps.console, runner=deps.runner)
    assert cli.main([*word, "bak", "dst"], deps) == code
    assert "Aborted" in capsys.readouterr().err
    assert fakecli.writes(runner) == []


def test_every_mode_has_options_of_its_own_or_a_file() -> None:
    """The parser of each mode: the file modes take FILE, the others BACKUP-NAME."""
    for mode in Mode:
        dests = {a.dest for a in build_parser(mode)._actions}
        assert ("plan_file" in dests) is mode.about.takes_file, mode
        assert ("backup_name" in dests) is (not mode.about.takes_file), mode
        assert build_parser(mode).prog == mode.prog


def test_each_mode_names_its_module_and_each_module_is_a_modes() -> None:
    """The registry (executors.modes) and the subcommand modules agree: every mode's
    declaration names a Subcommand, and every module of executors.subcommands is some
    mode's (a module left out of the registry would be dead code no parser reaches)."""
    import pkgutil

    from executors import subcommands

    named = {m.about.command.partition(":")[0] for m in Mode}
    modules = {m.name for m in pkgutil.iter_modules(subcommands.__path__)}
    assert named == modules
    for mode in Mode:
        assert isinstance(mode.command, subcommands.Subcommand), mode
    with pytest.raises(TypeError, match="is not a Subcommand"):
        subcommands.load("verify_cmd:request")


@pytest.mark.parametrize("option", ["--on-failure=true", "--on-success=true", "--prometheus-file=/tmp/x", "--warn=1h"])  # fmt: skip
@pytest.mark.parametrize("word", [["restore"], ["plan", "restore"]])
def test_a_restore_refuses_the_options_that_report_backups(
    word: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A restore took --on-failure, --on-success, --prometheus-file, --warn and --crit
    and then ignored them: a hook the user set never ran. Now they are refused."""
    _zfs, runner = fakecli.world()
    assert cli.main([*word, "bak", "dst", "pool/data", option], fakecli.deps(runner)) == 1
    assert option.partition("=")[0] in capsys.readouterr().err
    assert fakecli.writes(runner) == []
