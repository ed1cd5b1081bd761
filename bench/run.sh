#!/usr/bin/env bash
# The bench of issue 10, every part in one run (bench/main.ts): start-up; replicator vs rsync
# directory to directory, then over ssh on 127.0.0.1; sync with lento on both sides; time and
# memory on large trees. See bench/README.md.  Smoke run (CI):  bash bench/run.sh --quick
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

exec "$deno" run -A "$here/main.ts" "$@"
