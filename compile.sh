#!/usr/bin/env bash
# Builds the single binary dist/replicator with `deno compile`.
# deno compile needs Deno's runtime base binary (denort); where it cannot be
# downloaded, point DENORT_BIN at a denort of the same version as the pinned deno.
set -uo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/deno ] || npm ci --silent || { echo "compile.sh: 'npm ci' failed; cannot get the pinned deno" >&2; exit 1; }
version=$(node_modules/.bin/deno --version | awk 'NR==1 {print $2}')
if [ -n "${DENORT_BIN:-}" ] && [ ! -x "$DENORT_BIN" ]; then
  echo "compile.sh: DENORT_BIN=$DENORT_BIN is not an executable file; point it at a denort $version binary." >&2
  exit 1
fi
mkdir -p dist
log=$(mktemp)
# --v8-flags: V8_FLAGS in src/memory.ts (a full collection between a pull's windows).
if node_modules/.bin/deno compile --quiet --allow-all --no-prompt --v8-flags=--expose-gc \
  --output dist/replicator mod.ts >"$log" 2>&1; then
  rm -f "$log"
  echo "built dist/replicator (deno $version)"
  exit 0
fi
if grep -qiE 'denort|download|dns|connect|network|fetch' "$log"; then
  echo "compile.sh: no Deno runtime base (denort $version) could be found or downloaded; set DENORT_BIN to a denort $version binary and run again." >&2
else
  echo "compile.sh: deno compile failed:" >&2
  cat "$log" >&2
fi
rm -f "$log"
exit 1
