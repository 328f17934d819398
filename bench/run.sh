#!/usr/bin/env bash
# Side-by-side benchmark: Halley, the raw baseline and Nchan, same scenarios, same run (see BENCHMARKS.md).
# Installs nginx + Nchan if missing, builds the release binaries once, then runs
# `halley-load compare`; extra arguments go to it, e.g.
#   bench/run.sh --repeats 3 --out bench/results.md
#   bench/run.sh --targets halley,nchan --scenarios fanout-10k --repeats 1
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    apt-get install -y nginx libnginx-mod-nchan || { apt-get update && apt-get install -y nginx libnginx-mod-nchan; }
fi
cargo build --release -p halley-server -p halley-load
ulimit -n "$(ulimit -Hn)"
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec target/release/halley-load compare --server-bin target/release/halley "$@"
