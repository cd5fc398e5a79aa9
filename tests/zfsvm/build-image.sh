#!/usr/bin/env bash
# Build the real-OpenZFS test guest: Debian 12 + OpenZFS 2.3 (bookworm-backports).
#
# Usage: build-image.sh OUTDIR
#
# Writes into OUTDIR: root.img (ext4, label zfsroot, sparse), vmlinuz, initrd.img,
# id_ed25519 (+.pub, the key the host logs in with) and a file "ok" written last.
# Needs root, debootstrap, mke2fs and network access to deb.debian.org.
# The caller (tests/zfsvm/image.py) caches OUTDIR keyed by a hash of this file, so any
# change here rebuilds the image. Takes about 4-6 minutes on 2 cores.
set -euo pipefail

out=${1:?usage: build-image.sh OUTDIR}
mirror=${ZFSVM_MIRROR:-http://deb.debian.org/debian}
security_mirror=${ZFSVM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
root="$work/rootfs"

cleanup() {
    for m in dev/pts dev proc sys; do
        if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m" || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '[zfsvm build %s] %s\n' "$(date +%T)" "$*" >&2; }

step "debootstrap bookworm (minbase)"
debootstrap --variant=minbase \
    --include=systemd-sysv,udev,kmod,iproute2,openssh-server,openssh-client,python3,ca-certificates,procps \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 50 "$work/debootstrap.log" >&2
    exit 1
}

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main contrib
deb $mirror bookworm-updates main contrib
deb $security_mirror bookworm-security main contrib
deb $mirror bookworm-backports main contrib
EOF
cat >"$root/etc/apt/apt.conf.d/90zfsvm" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Use-Pty "false";
EOF
# No daemon may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

in_root() { chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

step "apt update + dist-upgrade"
in_root apt-get -q update >"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
in_root apt-get -q -y dist-upgrade >>"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }

step "kernel and test helpers"
# Helpers the tool can use in pipelines (compression, buffering), faketime to move
# the clock in scenario tests, pip/venv for test-only tools (zfs-autobackup 3.3 for
# the migration tests and benchmarks is copied in from the host; the guest has no network).
in_root apt-get -q -y install linux-image-amd64 linux-headers-amd64 \
    mbuffer pv zstd lz4 pigz xz-utils lzop gzip faketime python3-venv python3-pip \
    e2fsprogs coreutils util-linux >>"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }

kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -n 1)")
step "OpenZFS from bookworm-backports (dkms build for $kver)"
in_root apt-get -q -y install -t bookworm-backports zfs-dkms zfsutils-linux >>"$work/apt.log" 2>&1 || {
    tail -n 50 "$work/apt.log" >&2
    exit 1
}
if [ ! -e "$root/lib/modules/$kver/updates/dkms/zfs.ko" ] && [ ! -e "$root/lib/modules/$kver/updates/dkms/zfs.ko.xz" ]; then
    step "dkms did not build for $kver by itself; building explicitly"
    in_root dkms autoinstall -k "$kver" >>"$work/apt.log" 2>&1 || { tail -n 50 "$work/apt.log" >&2; exit 1; }
fi
ls "$root/lib/modules/$kver/updates/dkms/" | grep -q '^zfs\.ko' || { echo "zfs.ko missing for $kver" >&2; exit 1; }

step "guest configuration"
# The initramfs cannot detect the needed modules inside a chroot: list them.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 >>"$root/etc/initramfs-tools/modules"
echo 'options zfs zfs_arc_max=268435456' >"$root/etc/modprobe.d/zfs.conf"
echo zfs >"$root/etc/modules-load.d/zfs.conf"

echo zfsguest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 zfsguest\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
printf 'LABEL=zfsroot / ext4 rw,noatime 0 1\n' >"$root/etc/fstab"

mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
in_root systemctl enable systemd-networkd >/dev/null 2>&1
# Nothing in the guest should wait for a network that does not exist.
in_root systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true

cat >"$root/etc/ssh/sshd_config.d/zfsvm.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
MaxSessions 200
MaxStartups 200:30:400
EOF

ssh-keygen -q -t ed25519 -N '' -C zfsvm-host -f "$work/id_ed25519"
mkdir -p "$root/root/.ssh"
chmod 700 "$root/root/.ssh"
ssh-keygen -q -t ed25519 -N '' -C zfsvm-guest -f "$root/root/.ssh/id_ed25519"
cat "$work/id_ed25519.pub" "$root/root/.ssh/id_ed25519.pub" >"$root/root/.ssh/authorized_keys"
chmod 600 "$root/root/.ssh/authorized_keys"
# Guests are throw-away and identical: their host keys prove nothing.
cat >"$root/root/.ssh/config" <<'EOF'
Host *
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
EOF

in_root update-initramfs -u -k all >>"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
in_root apt-get clean
rm -f "$root/usr/sbin/policy-rc.d"

cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
zfs_version=$(in_root dpkg-query -W -f '${Version}' zfsutils-linux)

for m in dev/pts dev proc sys; do umount -l "$root/$m"; done

step "ext4 root image"
mke2fs -q -t ext4 -L zfsroot -d "$root" "$work/root.img" 6G

mv "$work/root.img" "$work/vmlinuz" "$work/initrd.img" "$work/id_ed25519" "$work/id_ed25519.pub" "$out/"
printf 'kernel=%s\nzfsutils=%s\n' "$kver" "$zfs_version" >"$out/ok"
step "done: $out (kernel $kver, zfsutils-linux $zfs_version)"
