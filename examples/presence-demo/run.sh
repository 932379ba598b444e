#!/usr/bin/env bash
# One command for the presence demo: builds ferrocable, installs the page's npm
# packages on first use, bundles the page and starts both servers.
#   examples/presence-demo/run.sh       (or: npm --prefix examples/presence-demo start)
# Environment: PAGE_PORT (3000), CABLE_PORT (8080), CARGO_PROFILE (dev; or release).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

profile="${CARGO_PROFILE:-dev}"
cargo build --quiet --manifest-path "$root/Cargo.toml" --profile "$profile" --bin ferrocable
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
[ "$profile" = dev ] && subdir=debug || subdir="$profile"
export FERROCABLE_BIN="$target_dir/$subdir/ferrocable"

if [ ! -d "$here/node_modules/esbuild" ]; then
  npm --prefix "$here" ci --no-audit --no-fund
fi
exec node "$here/dev.mjs"
