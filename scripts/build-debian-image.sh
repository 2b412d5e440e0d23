#!/usr/bin/env bash
# Builds a real Debian 12 (bookworm, amd64) image for PlasmaVMC, with
# cloud-init, to show that a stock distribution boots from a PlasmaVMC image
# and applies user data from the NoCloud seed (issue 17). The test guest of
# scripts/build-test-guest.sh only imitates cloud-init; this is the real one.
# Too slow for CI: run it by hand.
#
#   sudo scripts/build-debian-image.sh OUT_DIR
#
# writes
#   OUT_DIR/root.raw     ext4 filesystem labelled `root`, no partition table
#                        (the VM's /dev/vda), sparse, $SIZE bytes (default 2G)
#   OUT_DIR/vmlinuz      Debian's kernel, booted directly by QEMU
#   OUT_DIR/initrd.img   its initramfs (virtio_pci, virtio_blk, virtio_net, ext4)
#   OUT_DIR/kernel-version
# and prints, last, the `photon ctl image import` command for them.
#
# The system: debootstrap's minbase plus the kernel, initramfs-tools, systemd,
# udev, dbus (for systemd-logind, which powers off on the ACPI power button
# that `photon ctl vm stop` presses), ifupdown with isc-dhcp-client (cloud-init
# renders its network config, fallback DHCP or the seed's network-config, to
# /etc/network/interfaces.d), cloud-init (datasources NoCloud then None), openssh-server and sudo. No
# password is set: log in with --ssh-key (user `debian`, cloud-init's default
# user on Debian) or set one in user data (`chpasswd`). The serial console is
# ttyS0 (`console=ttyS0` on the kernel command line starts a getty there).
# Each VM gets its own machine-id and SSH host keys on first boot.
#
# Needs: root (debootstrap, chroot, mounts of /proc, /sys and /dev inside the
# tree), network access to the Debian mirror (~130 MB of packages), ~1 GB free
# in $TMPDIR (default /var/tmp) and in OUT_DIR (root.raw is sparse: ~0.8 GB
# used), and on the host debootstrap (installed with apt-get when missing) and
# e2fsprogs >= 1.43 (`mke2fs -d`, no loop device). Takes 5-15 minutes (5 on
# 2 busy cores), mostly unpacking and configuring ~200 packages.
#
# Settings (environment, with defaults):
#   MIRROR=http://deb.debian.org/debian   where debootstrap and the image's apt fetch
#   SUITE=bookworm
#   SIZE=2G                               the filesystem's size (mke2fs syntax)
#   EXTRA_PACKAGES="openssh-server sudo"  comma- or space-separated; "" for none
#   HOSTNAME_DEFAULT=debian               the hostname until cloud-init sets one
#   DEBOOTSTRAP_CACHE=                    a directory keeping the downloaded .debs
#                                         for the next run (debootstrap --cache-dir)
set -euo pipefail

if [ $# -ne 1 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
out=$1
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
SIZE=${SIZE:-2G}
EXTRA_PACKAGES=${EXTRA_PACKAGES-openssh-server sudo}
HOSTNAME_DEFAULT=${HOSTNAME_DEFAULT:-debian}

[ "$(id -u)" = 0 ] || { echo "$0: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "$0: builds amd64 images on an amd64 host only" >&2; exit 1; }

log() { echo "build-debian-image: $*" >&2; }

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  apt-get install -y -q debootstrap >&2 || { apt-get update -q >&2 && apt-get install -y -q debootstrap >&2; }
fi
mke2fs -V 2>&1 | awk '/^mke2fs/ { split($2, v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 43)) }' ||
  { echo "$0: mke2fs -d needs e2fsprogs >= 1.43" >&2; exit 1; }

# debootstrap does not resolve virtual packages: python3-cryptography (through
# cloud-init's python3-oauthlib) needs python3-cffi-backend named.
packages="linux-image-amd64,initramfs-tools,systemd-sysv,udev,cloud-init,python3-cffi-backend,dbus,ifupdown,isc-dhcp-client,e2fsprogs,kmod,iproute2,ca-certificates,locales"
extra=$(echo "$EXTRA_PACKAGES" | sed -E 's/[ ,]+/,/g; s/^,//; s/,$//')
[ -z "$extra" ] || packages="$packages,$extra"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/debian-image.XXXXXX")
root="$work/root"

# Unmounts everything under the tree (ours, or debootstrap's own binds if it
# failed half-way), deepest first, before removing it; --one-file-system keeps
# rm out of anything still mounted there.
unmount_tree() {
  local m
  for m in $(findmnt -rn -o TARGET | { grep -F "$root/" || true; } | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
cleanup() {
  unmount_tree
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
log "debootstrap $SUITE ($MIRROR) into $root"
log "packages: $packages"
cache=()
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then
  mkdir -p "$DEBOOTSTRAP_CACHE"
  cache=(--cache-dir="$(cd "$DEBOOTSTRAP_CACHE" && pwd)")
fi
if ! debootstrap --arch=amd64 --variant=minbase "${cache[@]}" --include="$packages" \
     "$SUITE" "$root" "$MIRROR" >&2; then
  cp "$root/debootstrap/debootstrap.log" "$out/debootstrap.log" 2>/dev/null &&
    log "debootstrap failed: its log is $out/debootstrap.log"
  exit 1
fi
log "debootstrap done in $(( $(date +%s) - start )) s"

# --- configuration -------------------------------------------------------------
echo "$HOSTNAME_DEFAULT" >"$root/etc/hostname"
cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOSTNAME_DEFAULT
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# The boot disk is the VM's first virtio disk, a filesystem without partitions.
cat >"$root/etc/fstab" <<'EOF'
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/vda	/	ext4	defaults,errors=remount-ro	0	1
EOF
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
# C.UTF-8 is built in: cloud-init's locale module then has nothing to
# generate (its Debian default, en_US.UTF-8, would cost a locale-gen on first
# boot).
echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
cat >"$root/etc/cloud/cloud.cfg.d/90-photon.cfg" <<'EOF'
# PlasmaVMC attaches a NoCloud seed (a FAT disk labelled cidata) when the VM
# has user data or SSH keys; without one, cloud-init falls back to None.
datasource_list: [ NoCloud, None ]
locale: C.UTF-8
EOF
# The initramfs must find the root disk: virtio over PCI, ext4.
cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_net
ext4
EOF
# No swap, so nothing to resume from: do not wait for one.
echo 'RESUME=none' >"$root/etc/initramfs-tools/conf.d/resume"
# fsck.ext4 in the initramfs: its hook would probe /dev/vda, which the build
# host does not have, and leave fsck out (the root would then go unchecked).
echo 'FSTYPE=ext4' >"$root/etc/initramfs-tools/conf.d/fstype"

# Rebuild the initramfs with the modules and fstab above.
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
log "update-initramfs"
chroot "$root" update-initramfs -u -k all >&2
kver=$(cd "$root/lib/modules" && printf '%s\n' * | sort -V | tail -n1)
initramfs_list=$(chroot "$root" lsinitramfs "/boot/initrd.img-$kver")
for m in virtio_pci virtio_blk virtio_net ext4; do
  if ! grep -q "/$m\.ko" <<<"$initramfs_list" &&
     ! grep -qw "$m" "$root/lib/modules/$kver/modules.builtin"; then
    echo "$0: $m is neither in the initramfs nor built into $kver" >&2
    exit 1
  fi
done

# What every VM must make its own on first boot, and what the image need not carry.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
rm -f "$root"/etc/ssh/ssh_host_*        # cloud-init generates them per instance
: >"$root/etc/machine-id"                # systemd generates it on first boot
rm -f "$root/var/lib/dbus/machine-id"
: >"$root/etc/resolv.conf"              # the host's, copied by debootstrap; dhclient writes it
rm -rf "$root"/var/lib/cloud/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/*
unmount_tree
# mke2fs -d would copy whatever is still mounted (the host's /dev, /proc).
left=$(findmnt -rn -o TARGET | { grep -F "$root/" || true; })
[ -z "$left" ] || { echo "$0: still mounted, not imaging: $left" >&2; exit 1; }

# --- outputs -------------------------------------------------------------------
log "mke2fs $SIZE from the tree"
rm -f "$out/root.raw"
mke2fs -q -t ext4 -L root -d "$root" "$out/root.raw" "$SIZE" >&2
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
echo "$kver" >"$out/kernel-version"
log "done in $(( $(date +%s) - start )) s: Debian $SUITE, kernel $kver"

cat <<EOF
# Import it (photon dev running, after photon ctl login):
photon ctl image import debian --from $out/root.raw \\
  --kernel $out/vmlinuz --initrd $out/initrd.img \\
  --cmdline 'root=/dev/vda rw console=ttyS0'
EOF
