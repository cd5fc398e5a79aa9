"""The remote guard's reading of a command line, pure: words and stages in the language
the runner writes (`" | ".join(shlex.join(argv) ...)`), zfs names, options, and the
refusal (how a refusal is printed and read back: reconcile.guard_protocol).

Standard library only (executors.guard runs where the project's dependencies are not
installed); executors.guard.rules decides what the words may say.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from reconcile.errors import ReconcileError
from reconcile.guard_protocol import EXIT_REFUSED

Argv = tuple[str, ...]


class Refused(ReconcileError):
    """A command line the guard does not run; the message is the reason. `read_only`:
    refused only because the guard is --read-only."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, read_only: bool = False) -> None:
        super().__init__(message)
        self.read_only = read_only


# --- the language: words, quotes, stages -------------------------------------------

#: what shlex.quote leaves unquoted
_SAFE = frozenset(string.ascii_letters + string.digits + "_@%+=:,./-")
_SHELL = frozenset(";&$`><()*?~#\\!{}[]|^\"'\t")


def tokenize(line: str) -> tuple[Argv, ...]:
    """The stages of a command line written as `" | ".join(shlex.join(argv) ...)`."""
    if not line.strip(" "):
        raise Refused("an interactive login or an empty command (no SSH_ORIGINAL_COMMAND)")
    for char, what in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL")):
        if char in line:
            raise Refused(f"{what} in the command")
    stages: list[Argv] = []
    words: list[str] = []
    i = 0
    while i < len(line):
        if line[i] == " ":
            i += 1
        elif line[i] == "|" and line[i + 1 : i + 2] in ("", " "):
            if not words:
                raise Refused("an empty stage in the pipeline")
            stages.append(tuple(words))
            words = []
            i += 1
        else:
            word, i = _word(line, i)
            words.append(word)
    if not words:
        raise Refused("an empty stage in the pipeline")
    stages.append(tuple(words))
    return tuple(stages)


def _word(line: str, i: int) -> tuple[str, int]:
    """One word from `i`: unquoted safe characters, '...' and shlex.quote's "'"."""
    parts: list[str] = []
    while i < len(line) and line[i] != " ":
        char = line[i]
        if char in _SAFE:
            parts.append(char)
            i += 1
        elif char in "'\"":
            end = line.find(char, i + 1)
            if end < 0:
                raise Refused(f"an unbalanced quote {char!r}")
            inside = line[i + 1 : end]
            if char == '"' and (not inside or inside.strip("'")):
                raise Refused(f'a double-quoted string {line[i : end + 1]!r} (only "\'" is sent)')
            parts.append(inside)
            i = end + 1
        elif char in _SHELL:
            raise Refused(f"shell syntax {char!r}")
        else:
            raise Refused(f"the character {char!r} outside quotes")
    return "".join(parts), i


# --- names ---------------------------------------------------------------------------

#: what zfs allows in a name component (zfs_namecheck.c valid_char)
_NAME = frozenset(string.ascii_letters + string.digits + "_-.: ")
PROGRAM = frozenset(string.ascii_letters + string.digits + "_-.+")
#: a resume token: "1-" and hex words
TOKEN = frozenset(string.ascii_letters + string.digits + "-")


def is_component(text: str) -> bool:
    """A name component as zfs allows it, and never '.' or '..' (zfs refuses them
    today; the guard does not lean on its parser for that)."""
    return (
        bool(text) and not text.startswith("-") and text not in (".", "..") and set(text) <= _NAME
    )


def is_dataset(name: str) -> bool:
    return not name.startswith("-") and all(is_component(c) for c in name.split("/"))


def dataset_name(command: str, name: str) -> str:
    if not is_dataset(name):
        raise Refused(f"{command}: {name!r} is not a dataset name")
    return name


def _split(command: str, name: str, sep: str, what: str) -> tuple[str, str]:
    """DS@SNAP or DS#BOOKMARK -> (DS, SNAP)."""
    dataset, found, short = name.partition(sep)
    if not found or not is_dataset(dataset) or not is_component(short):
        raise Refused(f"{command}: {name!r} is not a {what} name (DATASET{sep}NAME)")
    return dataset, short


def snapshot(command: str, name: str) -> tuple[str, str]:
    return _split(command, name, "@", "snapshot")


def bookmark(command: str, name: str) -> tuple[str, str]:
    return _split(command, name, "#", "bookmark")


# --- options ---------------------------------------------------------------------------


def scan(
    command: str,
    args: Sequence[str],
    flags: str = "",
    valued: str = "",
    repeat: str = "",
) -> tuple[dict[str, list[str]], list[str]]:
    """(options -> values, operands), every option its own word (`-H`, `-o VALUE`).

    Any word starting with '-' is an option, wherever it stands (zfs' getopt permutes on
    Linux), and must be one of `flags` or `valued` (letters); only `repeat` ones twice.
    """
    options: dict[str, list[str]] = {}
    names: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-"):
            names.append(word)
            continue
        letter = word[1:] if len(word) == 2 else ""
        if word == "--":
            raise Refused(f"{command}: '--' is not allowed")
        if not letter or letter not in flags + valued:
            raise Refused(f"{command}: option {word!r} is not allowed")
        value = ""
        if letter in valued:
            if i >= len(args) or args[i].startswith("-") or not args[i]:
                found = repr(args[i]) if i < len(args) else "nothing"
                raise Refused(f"{command}: {word} needs a value, not {found}")
            value = args[i]
            i += 1
        if letter in options and letter not in repeat:
            raise Refused(f"{command}: {word} is given twice")
        options.setdefault(letter, []).append(value)
    return options, names


def no_options(command: str, args: Sequence[str]) -> list[str]:
    for word in args:
        if word.startswith("-"):
            raise Refused(f"{command}: no option is allowed ({word!r})")
    return list(args)


def at_least(command: str, names: Sequence[str], count: int, what: str) -> None:
    if len(names) < count:
        raise Refused(f"{command}: {what} is missing")
