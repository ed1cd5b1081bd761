#!/usr/bin/env bash
# Presto figures (issue 8): handler cost armed vs not armed, and events per
# second a reader takes at the default ring size, in Debian 12's 6.1 and
# Debian 13's 6.12 kernels booted under QEMU (TCG: absolute times are slow,
# read the ratio).  Needs root; never loads anything into this machine's kernel.
#
#   bash bench/presto.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for kernel in "" trixie; do
	echo "== ${kernel:-bookworm} kernel"
	PRESTO_BENCH=1 PRESTO_KERNEL=$kernel bash "$here/../tests/shim/run-qemu.sh" 2>&1 |
		grep -E '^(PRESTO-BENCH|run-qemu: kernel)'
done
