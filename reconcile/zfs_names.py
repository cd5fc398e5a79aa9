"""ZFS's own rules for the names the tool makes from option values, checked before
anything runs (a name zfs refuses would fail after the snapshot was taken).

The rules are OpenZFS's (module/zcommon/zfs_namecheck.c, zfs_prop.c, zprop_common.c):
- a snapshot name and a dataset name component: letters, digits, '-', '_', '.', ':' and
  space (`valid_char`); a full name is at most 255 bytes (ZFS_MAX_DATASET_NAME_LEN 256
  with its NUL);
- a user property name: lowercase letters, digits, '-', '_', '.', ':' (`zprop_valid_char`)
  with at least one ':' (`zfs_prop_user`), at most 255 bytes (ZAP_MAXNAMELEN 256);
- a native property name (zfs recv -o/-x of canmount, refreservation, ...): a lowercase
  word of letters, digits and '_';
- a hold tag: any text of at most 255 bytes (zfs hold checks only its length: the
  real-ZFS security test holds a tag with `$`, quotes, `;` and spaces); the tool also
  refuses a tab or newline (it reads tags back from `zfs holds -H`, one per line, tab
  separated) and a leading '-' (zfs would take it for an option).

Each check returns what is wrong (to follow "Invalid <option> <value>: ") or None.
Standard library only, as reconcile.formats.
"""

from __future__ import annotations

import re
from typing import Optional

#: ZFS_MAX_DATASET_NAME_LEN (256) without its NUL: a full dataset or snapshot name
MAX_NAME = 255
#: ZAP_MAXNAMELEN (256) without its NUL: a property name
MAX_PROPERTY_NAME = 255
#: the shortest "pool@" a snapshot name follows: "p@"
SHORTEST_DATASET = 2

_COMPONENT = re.compile(r"[A-Za-z0-9_.: -]+", re.ASCII)
_USER_PROPERTY = re.compile(r"[a-z0-9_.:-]*:[a-z0-9_.:-]*", re.ASCII)
_NATIVE_PROPERTY = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)

COMPONENT_CHARS = "letters, digits, '-', '_', '.', ':' and space"
USER_PROPERTY_CHARS = "lowercase letters, digits, '-', '_', '.' and ':', with a ':'"


def hold_tag_problem(tag: str) -> Optional[str]:
    if not tag:
        return "a hold tag can't be empty"
    if any(c in tag for c in "\t\n\r\0"):
        return "a hold tag can't hold a tab, a line break or NUL (zfs holds -H lists them)"
    if tag.startswith("-"):
        return "a hold tag can't start with '-' (zfs would take it for an option)"
    if len(tag.encode(errors="surrogateescape")) > MAX_NAME:
        return f"a hold tag has at most {MAX_NAME} bytes"
    return None


def component_problem(text: str, max_length: int = MAX_NAME) -> Optional[str]:
    """A snapshot name (after '@'), or any other name made of ZFS name characters."""
    if not _COMPONENT.fullmatch(text):
        return f"a ZFS name may hold only {COMPONENT_CHARS}"
    if len(text) > max_length:
        return f"at most {max_length} characters (ZFS names are at most {MAX_NAME})"
    return None


def user_property_problem(name: str) -> Optional[str]:
    if not _USER_PROPERTY.fullmatch(name):
        return f"a ZFS user property name holds only {USER_PROPERTY_CHARS}"
    if len(name) > MAX_PROPERTY_NAME:
        return f"a property name has at most {MAX_PROPERTY_NAME} characters"
    return None


def property_problem(name: str) -> Optional[str]:
    """A property given to zfs recv -o/-x or zfs snapshot -o: native or user."""
    if _NATIVE_PROPERTY.fullmatch(name) and len(name) <= MAX_PROPERTY_NAME:
        return None
    if ":" not in name and _NATIVE_PROPERTY.fullmatch(name.lower()):
        return "a native property name is lowercase"
    problem = user_property_problem(name)
    if problem is not None and ":" not in name:
        return (
            "a property is a native one (a lowercase word such as canmount) or a user "
            f"property ({USER_PROPERTY_CHARS})"
        )
    return problem


#: a backup name holds what a snapshot name may hold, but space: it is a word in logs
_BACKUP_NAME = re.compile(r"[A-Za-z0-9_.:-]+", re.ASCII)


def backup_name_problem(name: str) -> Optional[str]:
    """What is wrong with a backup name (None: nothing), for the tool and the guard
    alike: it becomes part of property names, snapshot names and hold tags."""
    if not _BACKUP_NAME.fullmatch(name):
        return "use letters, digits, '-', '_', '.' and ':' (it becomes part of ZFS names)"
    if len(name) > MAX_PROPERTY_NAME:
        return f"at most {MAX_PROPERTY_NAME} characters (it becomes part of ZFS names)"
    return None


def under(name: str, path: str) -> bool:
    """`name` is `path` or below it (by components: backup/x2 is not under backup/x)."""
    return name == path or name.startswith(path + "/")
