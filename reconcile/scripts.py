"""The two shell scripts the tool runs (as `sh -c SCRIPT sh ARGS...`, arguments never
spliced into the script), and what makes a target host mount a received dataset (at
boot, or now). Standard library only: the remote guard (executors.guard) allows exactly
these scripts, and judges receives by the same mount rules as the planner.
"""

from __future__ import annotations

from collections.abc import Sequence

#: `sh -c PROBE_SCRIPT sh PROG...` prints the programs that are not installed
PROBE_SCRIPT = 'for p in "$@"; do command -v "$p" >/dev/null 2>&1 || echo "$p"; done'

#: `sh -c MOUNT_SCRIPT sh DATASET` mounts DATASET where zfs-autobackup 3.3's automount
#: would (a filesystem, canmount=on, a mountpoint that is not legacy/none, its key
#: available, not mounted yet), but never onto a directory that something else is mounted
#: on already (OpenZFS 2.2+ would overlay it: a backup of / or of the source's own
#: mountpoint would hide the live files; `mountpoint -q`, where util-linux has it). It
#: never reads the directory (on a filesystem of the backup that would change its atime,
#: and so the backup), says why it did not mount, and never fails. On Linux only root
#: mounts (a user with delegated permissions cannot): there it does not try. (`zfs get
#: all`, as 3.3: a zfs without encryption has no keystatus to ask for.)
MOUNT_SCRIPT = (
    'zfs get -H -o property,value all "$1" |'
    " { tab=$(printf '\\t'); while IFS=$tab read -r p v; do case $p in"
    " type) t=$v;; canmount) c=$v;; mountpoint) m=$v;; encryption) e=$v;;"
    " keystatus) k=$v;; mounted) d=$v;; esac; done;"
    ' [ "$t" = filesystem ] && [ "$d" = no ] && [ "$c" = on ] || exit 0;'
    " case $m in legacy|none) exit 0;; esac;"
    ' if [ "$(id -u)" != 0 ] && [ "$(uname -s)" = Linux ]; then'
    ' echo "not mounted: only root mounts on Linux (received unmounted)"; exit 0; fi;'
    ' [ "${e:-off}" = off ] || [ "$k" != unavailable ] || exit 0;'
    ' if command -v mountpoint >/dev/null 2>&1 && mountpoint -q "$m"; then'
    ' echo "not mounted: something else is mounted on $m"; exit 0; fi;'
    ' zfs mount "$1" || echo "not mounted: zfs mount failed"; }'
)

#: systemd's properties that make zfs-mount-generator mount a dataset at boot, even one
#: with canmount=noauto (etc/systemd/system-generators/zfs-mount-generator.c): every
#: receive filters them (`zfs recv -x`; the source's value is kept as the received one),
#: so a backup server never mounts a backup at boot because its source was
BOOT_MOUNT_PROPERTIES = ("org.openzfs.systemd:wanted-by", "org.openzfs.systemd:required-by")
#: the namespace of systemd's mount properties: a receive never sets one (`-o`), the
#: tool refuses one in --set-properties, and the guard refuses a receive that sets one
SYSTEMD_PROPERTIES = "org.openzfs.systemd:"


#: the `zfs recv -o` settings that leave what is received unmounted by its host
UNMOUNTABLE = frozenset({"canmount=noauto", "canmount=off"})


def received_unmountable(set_options: Sequence[str]) -> bool:
    """A receive with these `-o` settings is never mounted by the target host (the tool
    then plans no mount; the guard lets it through without --allow-mount)."""
    return bool(UNMOUNTABLE & set(set_options))
