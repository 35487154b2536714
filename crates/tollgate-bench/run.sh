#!/usr/bin/env bash
# The end-to-end load harness in one command: builds the gateway, the floor
# proxy and the harness (release), raises the open-files limit (1,024 held
# streams need about 2,300 descriptors in the gateway), and runs it.
#
#   crates/tollgate-bench/run.sh            # the full run, about 6 minutes
#   crates/tollgate-bench/run.sh --quick    # about 1.5 minutes
#   crates/tollgate-bench/run.sh --help     # every option
set -euo pipefail
cd "$(dirname "$0")/../.."

hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
    ulimit -n 65536
else
    ulimit -n "$hard"
fi

cargo build --release -p tollgate-gateway --bin tollgate -p tollgate-bench --bins
exec "${CARGO_TARGET_DIR:-target}/release/loadtest" --no-build "$@"
