#!/usr/bin/env bash
# Benchmark replicator against `rsync -a`: local directory to directory, then over ssh on
# 127.0.0.1 (BENCH_SSH=0 skips that).
# See bench/README.md. Quick smoke run:  BENCH_FILES=2000 BENCH_BIG=2 bench/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

need_apt=()
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bench: installing ${need_apt[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y "${need_apt[@]}" >/dev/null || {
    $sudo apt-get update >/dev/null && $sudo apt-get install -y "${need_apt[@]}" >/dev/null
  }
fi

deno="${DENO:-$repo/node_modules/.bin/deno}"
if [ ! -x "$deno" ]; then
  echo "bench: $deno missing; running npm ci in $repo" >&2
  (cd "$repo" && npm ci >/dev/null)
fi
export DENO="$deno"

exec "$deno" run -A "$here/bench.ts" "$@"
