#!/usr/bin/env bash
# Builds the tiny Linux guest that the QEMU (TCG) tests boot: Debian's stock
# bookworm amd64 kernel (vmlinuz, stored uncompressed for a fast PVH boot, see
# below) plus a busybox-static initramfs (initrd.gz, cpio newc) that stays the
# root filesystem. Tests need a real guest that boots in a few seconds without
# KVM, reads a cloud-init NoCloud seed and runs its user-data.
#
# The guest's /init loads the virtio/vfat/ACPI-button modules, prints
# PHOTON-GUEST-BOOTED, mounts the disk labelled `cidata` at /cidata, sets the
# hostname from meta-data, brings lo/eth0 up (with network-config's static
# address), runs user-data when it starts
# with `#!` (printing PHOTON-GUEST-USERDATA rc=N), prints PHOTON-GUEST-READY,
# then keeps a shell on the serial console. The ACPI power button (QMP
# system_powerdown) powers it off through busybox acpid.
#
# Output: ${PHOTON_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/photon/test-guest}/
# holding vmlinuz, initrd.gz and stamp (= GUEST_VERSION); the directory is the
# last line printed. A matching stamp makes this a no-op, so call it freely.
# Clean the cache with `rm -rf DIR DIR.lock`; bump GUEST_VERSION whenever the
# guest's content changes. Boot it with e.g.
#   qemu-system-x86_64 -accel tcg -M q35 -m 256 -nographic -no-reboot \
#     -kernel DIR/vmlinuz -initrd DIR/initrd.gz -append 'console=ttyS0 quiet'
set -euo pipefail

GUEST_VERSION=2
out=${PHOTON_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/photon/test-guest}
# Loaded in this order by modprobe (dependencies come from modules.dep);
# any that this kernel builds in are skipped.
modules="virtio_pci virtio_blk virtio_net vfat nls_cp437 nls_ascii nls_utf8 isofs button evdev"

fresh() { [ "$(cat "$out/stamp" 2>/dev/null)" = "$GUEST_VERSION" ]; }
if fresh; then echo "$out"; exit 0; fi

# Concurrent callers: one builds, the others wait and find it fresh.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if fresh; then echo "$out"; exit 0; fi

work=$(mktemp -d)
stage=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf "$work" "$stage"' EXIT

# The newest bookworm kernel that linux-image-amd64 points at.
kernel_pkg() {
  { apt-cache depends linux-image-amd64 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
  [ "$(id -u)" = 0 ] || { echo "apt-cache knows no linux-image-amd64: run 'apt-get update' as root" >&2; exit 1; }
  apt-get update -q >&2
  pkg=$(kernel_pkg)
fi
echo "building test guest $GUEST_VERSION with $pkg" >&2
(cd "$work" && apt-get download -q "$pkg" busybox-static >&2)
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
dpkg -x "$work"/busybox-static_*.deb "$work/busybox"
kver=$(basename "$work"/kernel/lib/modules/*)
bb="$work/busybox/bin/busybox"

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,cidata,etc/acpi/PWRF,var/log,var/run}
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done

# Busybox depmod writes the package's modules.dep (the package ships none;
# each line lists a module's full dependency closure). Copy each wanted
# module with its dependencies, then index the copy for the guest's modprobe.
# This kernel's modules are plain .ko files (CONFIG_MODULE_COMPRESS_NONE).
kmods="$work/kernel/lib/modules/$kver"
"$bb" depmod -b "$work/kernel" "$kver"
for m in $modules; do
  line=$(grep -E "(^|/)$m\.ko:" "$kmods/modules.dep") || continue  # built in
  for rel in ${line/:/}; do
    mkdir -p "$(dirname "$root/lib/modules/$kver/$rel")"
    cp "$kmods/$rel" "$root/lib/modules/$kver/$rel"
  done
  echo "$m" >>"$root/etc/modules"
done
"$bb" depmod -b "$root" "$kver"

cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
poweroff -f
EOF

cat >"$root/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
modprobe -a $(cat /etc/modules)
echo PHOTON-GUEST-BOOTED
acpid

meta() { sed -n "s/^$1:[[:space:]]*//p" /cidata/meta-data | tr -d "\"'\r" | head -n1; }
seed=$(findfs LABEL=cidata 2>/dev/null)
if [ -n "$seed" ] && mount -r "$seed" /cidata && [ -f /cidata/meta-data ]; then
  host=$(meta local-hostname)
  [ -z "$host" ] || hostname "$host"
  echo "PHOTON-GUEST-SEED instance-id=$(meta instance-id) hostname=$host"
fi

ip link set lo up
[ ! -e /sys/class/net/eth0 ] || ip link set eth0 up
# A static address from network-config (v2: the first `- "A.B.C.D/N"` and
# the first `via:`), as cloud-init would apply it.
if [ -f /cidata/network-config ]; then
  addr=$(sed -n 's|^ *- "\([0-9.]*/[0-9]*\)"$|\1|p' /cidata/network-config | head -n1)
  via=$(sed -n 's|^ *via: "\([0-9.]*\)"$|\1|p' /cidata/network-config | head -n1)
  [ -z "$addr" ] || ip addr add "$addr" dev eth0
  [ -z "$via" ] || ip route add default via "$via"
  echo "PHOTON-GUEST-NET address=$addr via=$via"
fi

if [ "$(head -c2 /cidata/user-data 2>/dev/null)" = '#!' ]; then
  sh /cidata/user-data
  echo "PHOTON-GUEST-USERDATA rc=$?"
fi

echo PHOTON-GUEST-READY
while :; do setsid cttyhack sh; done
EOF
chmod 755 "$root/init" "$root/etc/acpi/PWRF/00000080"

# vmlinuz is the kernel for -kernel: not Debian's bzImage but the ELF vmlinux
# inside it, which QEMU boots directly through its PVH entry note. Under TCG
# the bzImage spends ~6 s xz-decompressing itself on every boot; this way the
# guest reaches READY in ~4 s. The bzImage setup header gives the payload's
# place: (setup_sects + 1) * 512 + payload_offset, payload_length bytes.
bz="$work/kernel/boot/vmlinuz-$kver"
header() { od -An -tu"$2" -j "$1" -N "$2" "$bz" | tr -d ' '; }
dd if="$bz" of="$work/payload.xz" iflag=skip_bytes,count_bytes status=none \
  skip=$(( ($(header 0x1f1 1) + 1) * 512 + $(header 0x248 4) )) count="$(header 0x24c 4)"
xz -dc --single-stream "$work/payload.xz" >"$stage/vmlinuz"
(cd "$root" && find . | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 >"$stage/initrd.gz"
echo "$GUEST_VERSION" >"$stage/stamp"
chmod 755 "$stage"
rm -rf "$out"
mv -T "$stage" "$out"
echo "$out"
