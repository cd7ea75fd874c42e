#!/bin/bash
# Installs the Debian/Ubuntu packages rvs needs to build, test and run its demo. Idempotent and quiet:
# apt runs only when something is missing, and then `apt-get update` runs once.
#   clang-19, libbpf-dev  compile the XDP programs in bpf/ (libbpf-dev brings bpf_helpers.h)
#   gcc, pkg-config       link the Rust binaries
#   iproute2, ethtool     build the test and demo networks (ip netns, veth, bridge; tx checksum off)
#   python3               the tests' real servers run a small HTTP server
set -euo pipefail

packages=(clang-19 libbpf-dev linux-libc-dev gcc pkg-config iproute2 ethtool python3)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
