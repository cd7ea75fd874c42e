#!/bin/bash
# Runs every check CI runs: build, format, lints, and all tests (the end-to-end and differential tests
# need root: network namespaces, XDP, /sys/fs/bpf). Installs its own system packages first.
# Every check runs even when an earlier one fails, so one run reports everything; the exit status is
# non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: the tests need root; re-running with sudo" >&2
	exec sudo -E env "PATH=$PATH" "$0" "$@"
fi

./scripts/install-deps.sh

failed=()
step() {
	echo "==> $*"
	if ! "$@"; then
		failed+=("$*")
	fi
}

# Nothing else can run without a build.
echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo test --workspace

if [ ${#failed[@]} -ne 0 ]; then
	echo "test.sh: FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "test.sh: all checks passed"
