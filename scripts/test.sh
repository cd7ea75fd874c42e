#!/bin/bash
# Runs every check CI runs: build, format, lints, and all tests (the end-to-end and differential tests
# need root: network namespaces, XDP, /sys/fs/bpf). Installs its own system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: the tests need root; re-running with sudo" >&2
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi

./scripts/install-deps.sh
cargo build --workspace --all-targets
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
