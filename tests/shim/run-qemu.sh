#!/usr/bin/env bash
# tests/shim/run-qemu.sh - build presto.ko and test it in Debian's own kernel
# booted under QEMU (TCG).  Never loads anything into the host's kernel.
#
#   bash tests/shim/run-qemu.sh
#
# Needs root on Debian 12 (installs missing packages with apt-get) and
# reaches only Debian's archive.  Environment:
#   PRESTO_CACHE          download/extract cache (default /var/cache/replicator-qemu)
#   PRESTO_CAPTURE_OUT    if set, the raw bytes of the "main" scenario read
#                         from /dev/presto are written to this file, and the
#                         guest's decoding of them to $PRESTO_CAPTURE_OUT.events
#   PRESTO_LOG_OUT        if set, the full serial console log is copied here
#   PRESTO_QEMU_TIMEOUT   seconds allowed for the guest (default 300)
#   PRESTO_TOTAL_TIMEOUT  seconds allowed for everything (default 1800)
#   PRESTO_KEEP=1         keep the work directory
#   PRESTO_BENCH=1        run the benchmark (tests/shim/presto_bench.c) in the
#                         guest instead of the checks; prints PRESTO-BENCH lines
#   PRESTO_KERNEL=trixie  test on Debian 13's kernel instead of the host's
#                         Debian 12 one: its headers need Debian 13's compiler
#                         and glibc, so a Debian 13 chroot made with debootstrap
#                         (cached in $PRESTO_CACHE/trixie) builds the module
# Exit status: 0 all guest checks passed; 1 otherwise (or on timeout).
set -euo pipefail

if [[ -z "${PRESTO_UNDER_TIMEOUT:-}" ]]; then
	export PRESTO_UNDER_TIMEOUT=1
	exec timeout -k 10 "${PRESTO_TOTAL_TIMEOUT:-1800}" bash "$0" "$@"
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${PRESTO_CACHE:-/var/cache/replicator-qemu}
qemu_timeout=${PRESTO_QEMU_TIMEOUT:-300}
export DEBIAN_FRONTEND=noninteractive
t_start=$(date +%s)

log() { printf 'run-qemu: %s\n' "$*" >&2; }
fail() { log "ERROR: $*"; echo "PRESTO-TEST: 0 passed, 1 failed"; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (apt-get install)"

# ---- packages --------------------------------------------------------------
pkgs=(linux-headers-amd64 qemu-system-x86 busybox-static e2fsprogs kmod cpio
      gcc make libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
apt_updated=
apt_update() {
	[[ -n $apt_updated ]] && return 0
	log "apt-get update"
	apt-get update -qq </dev/null >&2
	apt_updated=1
}
if ((${#missing[@]})); then
	apt_update
	log "installing ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2
fi

# ---- Debian 13 chroot (PRESTO_KERNEL=trixie) -------------------------------
chroot_dir=
in_build() { "$@"; }
if [[ ${PRESTO_KERNEL:-} == trixie ]]; then
	chroot_dir=$cache/trixie/root
	if [[ ! -f $chroot_dir/.complete ]]; then
		command -v debootstrap >/dev/null || { apt_update; apt-get install -y -qq debootstrap </dev/null >&2; }
		# The mirror apt uses here (a deb822 URIs: line, or a one-line deb entry).
		mirror=$(grep -h -o -E '^(URIs: *|deb +)https?://[^ ]+' /etc/apt/sources.list \
			/etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -E 's/^(URIs: *|deb +)//' | sed -n 1p) || true
		[[ -n $mirror ]] || fail "cannot find Debian's mirror in /etc/apt"
		rm -rf "$chroot_dir"
		mkdir -p "$chroot_dir"
		log "debootstrap trixie (once; cached in $chroot_dir)"
		debootstrap --variant=minbase trixie "$chroot_dir" "$mirror" >&2
	fi
	if ! mountpoint -q "$chroot_dir/proc"; then
		mount -t proc proc "$chroot_dir/proc"
		trap 'umount "$chroot_dir/proc" 2>/dev/null || true' EXIT
	fi
	if [[ ! -f $chroot_dir/.complete ]]; then
		chroot "$chroot_dir" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends linux-headers-amd64 make gcc' >&2
		touch "$chroot_dir/.complete"
	fi
	in_build() { chroot "$chroot_dir" "$@"; }
fi

# Kernel version from the headers meta package: never hard-coded.
kver() {
	in_build dpkg-query -W -f='${Depends}' linux-headers-amd64 |
		sed -n 's/.*linux-headers-\([0-9][^ ,]*-amd64\).*/\1/p'
}
KVER=$(kver)
[[ -n $KVER ]] || fail "cannot find the kernel version of linux-headers-amd64"

# ---- kernel image, extracted (not installed) -------------------------------
kroot=$cache/$KVER/root
if [[ ! -f $kroot/boot/vmlinuz-$KVER || ! -f $kroot/.complete ]]; then
	mkdir -p "$cache/$KVER"
	rm -rf "$kroot" "$cache/$KVER"/*.deb
	dl() {
		if [[ -n $chroot_dir ]]; then
			chroot "$chroot_dir" bash -c "mkdir -p /tmp/dl && cd /tmp/dl && rm -f ./*.deb &&
				apt-get download -q -o APT::Sandbox::User=root linux-image-$KVER" </dev/null >&2 &&
				mv "$chroot_dir"/tmp/dl/*.deb "$cache/$KVER/"
		else
			(cd "$cache/$KVER" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$KVER" </dev/null >&2)
		fi
	}
	if ! dl; then
		# The archive moved on: bring the headers up to date, retry.
		apt_update
		apt-get install -y -qq linux-headers-amd64 </dev/null >&2
		KVER=$(kver)
		kroot=$cache/$KVER/root
		mkdir -p "$cache/$KVER"
		dl || fail "cannot download linux-image-$KVER"
	fi
	chmod -R a+rX "$cache" 2>/dev/null || true
	dpkg-deb -x "$cache/$KVER"/linux-image-"$KVER"_*.deb "$kroot"
	# Debian 13 ships modules in /usr/lib/modules (merged /usr).
	[[ -d $kroot/lib/modules || ! -d $kroot/usr/lib/modules ]] || ln -s usr/lib "$kroot/lib"
	depmod -b "$kroot" "$KVER"
	rm -f "$cache/$KVER"/*.deb
	touch "$kroot/.complete"
fi
kdir=/usr/src/linux-headers-$KVER
[[ -d $chroot_dir$kdir ]] || fail "headers $chroot_dir$kdir missing"
log "kernel $KVER"

# ---- work dir --------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/presto-qemu.XXXXXX")
cleanup() {
	[[ -n "${PRESTO_KEEP:-}" ]] && log "kept $work" || rm -rf "$work"
	[[ -z $chroot_dir ]] || umount "$chroot_dir/proc" 2>/dev/null || true
}
trap cleanup EXIT

# ---- build the module and the test program ---------------------------------
mkdir -p "$work/shim"
cp "$top/shim/presto.c" "$top/shim/presto_abi.h" "$top/shim/Kbuild" "$work/shim/"
log "building presto.ko"
if [[ -n $chroot_dir ]]; then
	rm -rf "$chroot_dir/build" && mkdir -p "$chroot_dir/build"
	cp -r "$work/shim" "$chroot_dir/build/"
	chroot "$chroot_dir" make -s -C "$kdir" M=/build/shim modules >"$work/build.log" 2>&1 ||
		{ cat "$work/build.log" >&2; fail "module build failed"; }
	cp "$chroot_dir/build/shim/presto.ko" "$work/shim/"
else
	make -s -C "$kdir" M="$work/shim" modules >"$work/build.log" 2>&1 ||
		{ cat "$work/build.log" >&2; fail "module build failed"; }
fi
if grep -q 'warning:' "$work/build.log"; then
	cat "$work/build.log" >&2
	fail "module build has warnings"
fi
vm=$(modinfo -F vermagic "$work/shim/presto.ko")
[[ $vm == "$KVER "* ]] || fail "vermagic '$vm' does not match $KVER"
program=presto_test
[[ -n ${PRESTO_BENCH:-} ]] && program=presto_bench
gcc -static -O2 -Wall -I "$top/shim" -o "$work/$program" \
	"$here/$program.c" || fail "$program build failed"

# ---- initramfs -------------------------------------------------------------
ird=$work/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,mnt,tmp,lib/modules}
cp /bin/busybox "$ird/bin/busybox"
cp "$work/shim/presto.ko" "$work/$program" "$ird/"
ln -s "$program" "$ird/program"
: >"$ird/modules.list"
declare -A seen=()
while read -r kind path _; do
	[[ $kind == insmod ]] || continue
	b=$(basename "$path")
	[[ -n ${seen[$b]:-} ]] && continue
	seen[$b]=1
	case $b in # busybox insmod takes plain modules
	*.ko.xz) b=${b%.xz}; xz -dc "$path" >"$ird/lib/modules/$b" ;;
	*.ko.zst) b=${b%.zst}; zstd -qdc "$path" >"$ird/lib/modules/$b" ;;
	*) cp "$path" "$ird/lib/modules/$b" ;;
	esac
	echo "$b" >>"$ird/modules.list"
done < <(modprobe -d "$kroot" -S "$KVER" --show-depends -a ext4 virtio_pci virtio_blk)
cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do
	# crc32c-intel needs SSE4.2 and may be refused: crc32c_generic stands in
	insmod /lib/modules/$m 2>/dev/null || echo "PRESTO-INFO insmod $m refused"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if mount -t ext4 /dev/vda /mnt; then
	/program /presto.ko /mnt
	echo "PRESTO-EXIT $?"
else
	echo "PRESTO-CHECK FAIL boot-mount /dev/vda"
fi
sync
poweroff -f
EOF
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# ---- disk and boot ----------------------------------------------------------
truncate -s 64M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"

# The checks want two vCPUs (races).  The benchmark wants repeatable times:
# one vCPU and a guest clock that counts instructions (-icount), so host load
# does not leak into the figures; they read as instruction-count ratios.
machine=(-smp 2)
[[ -n ${PRESTO_BENCH:-} ]] && machine=(-smp 1 -icount shift=0,sleep=off)

boot() {
	log "booting (timeout ${qemu_timeout}s)"
	t_boot=$(date +%s)
	set +e
	timeout -k 5 "$qemu_timeout" qemu-system-x86_64 -accel tcg -m 512 \
		"${machine[@]}" -nographic -no-reboot -net none \
		-kernel "$kroot/boot/vmlinuz-$KVER" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 loglevel=1 panic=-1 rdinit=/init" \
		-drive file="$work/disk.img",if=virtio,format=raw \
		</dev/null >"$work/console.log" 2>&1
	qrc=$?
	set -e
	tr -d '\r' <"$work/console.log" >"$work/console.txt"
	log "guest finished in $(($(date +%s) - t_boot))s (qemu exit $qrc)"
}

# A panic whose oops lists no presto among the loaded modules happened before
# presto.ko was loaded: the emulated machine's own fault (seen once under TCG
# with the host busy: an oops in the idle loop's timer interrupt), not ours.
panicked_without_presto() {
	grep -q 'Kernel panic' "$work/console.txt" &&
		grep -q 'Modules linked in:' "$work/console.txt" &&
		! grep 'Modules linked in:' "$work/console.txt" | grep -q presto
}

boot
if panicked_without_presto; then
	log "the guest kernel panicked before presto.ko was loaded; last console lines:"
	tail -25 "$work/console.txt" >&2
	log "booting once more"
	mkfs.ext4 -q -F "$work/disk.img"
	boot
fi
[[ -n "${PRESTO_LOG_OUT:-}" ]] && cp "$work/console.txt" "$PRESTO_LOG_OUT"

grep -E '^PRESTO-(CHECK|INFO|BAD|DMESG|EXIT|BENCH)' "$work/console.txt" || true
if [[ -n ${PRESTO_BENCH:-} ]]; then
	grep -q '^PRESTO-BENCH events-per-second' "$work/console.txt" || fail "the benchmark did not finish"
	log "kernel $KVER, total $(($(date +%s) - t_start))s"
	exit 0
fi

if [[ -n "${PRESTO_CAPTURE_OUT:-}" ]]; then
	sed -n '/^PRESTO-CAPTURE-BEGIN name=main /,/^PRESTO-CAPTURE-END name=main/p' \
		"$work/console.txt" |
		perl -ne 'print pack("H*", $1) if /^PRESTO-HEX [0-9a-f]+ ([0-9a-f]+)$/' \
			>"$PRESTO_CAPTURE_OUT"
	want=$(sed -n 's/^PRESTO-CAPTURE-BEGIN name=main bytes=\([0-9]*\).*/\1/p' \
		"$work/console.txt")
	got=$(stat -c %s "$PRESTO_CAPTURE_OUT")
	[[ -n $want && $want == "$got" ]] ||
		fail "capture incomplete: $got bytes, expected ${want:-?}"
	# the same records as decoded by the guest, one line each
	sed -n 's/^PRESTO-EVENT main //p' "$work/console.txt" \
		>"$PRESTO_CAPTURE_OUT.events"
	log "capture: $got bytes -> $PRESTO_CAPTURE_OUT (+ .events)"
fi

summary=$(grep -E '^PRESTO-TEST: [0-9]+ passed, [0-9]+ failed$' "$work/console.txt" | tail -1 || true)
if [[ -z $summary ]]; then
	[[ $qrc -eq 124 ]] && log "guest timed out after ${qemu_timeout}s"
	log "no summary line; last console lines:"
	tail -40 "$work/console.txt" >&2
	echo "PRESTO-TEST: 0 passed, 1 failed"
	exit 1
fi
log "total $(($(date +%s) - t_start))s"
echo "$summary"
[[ $summary == *" 0 failed" ]]
