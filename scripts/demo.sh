#!/bin/bash
# Runs the demo: installs system packages, builds, then `cargo xtask demo` (namespaces, rvsd, one
# service per forwarding method (DR, NAT, TUN) over two real servers each, 300 HTTP requests to each,
# `rvsadm -Ln` and the spread, cleanup). Needs root.
# Extra arguments go to the demo (--release, --requests N).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: the demo needs root; re-running with sudo" >&2
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi

./scripts/install-deps.sh
release=()
for a in "$@"; do
	if [ "$a" = "--release" ]; then
		release=(--release)
	fi
done
cargo build "${release[@]}" --bins
cargo xtask demo "$@"
