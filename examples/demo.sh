#!/usr/bin/env bash
# A walk-through on this machine: a writer and a replica in a temporary
# directory, an edit, a sync, the status and log of the replica.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
r() { echo "\$ replicator $*"; "$here/replicator" "$@"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/alpha/docs"
echo "hello" >"$dir/alpha/docs/readme.txt"
r init "$dir/alpha" --host alpha
r clone "$dir/alpha" "$dir/beta" --host beta
echo "an edit on the writer" >>"$dir/alpha/docs/readme.txt"
mv "$dir/alpha/docs" "$dir/alpha/documents"
r sync -C "$dir/beta" "$dir/alpha" -v
r status -C "$dir/beta"
r log -C "$dir/beta"
diff -r --exclude=.replicator "$dir/alpha" "$dir/beta" && echo "alpha and beta are identical"
