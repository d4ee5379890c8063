#!/usr/bin/env bash
# Copy benchmark: builds release and makes 1,000 server-side copies of a 1 GiB sparse VHD between two
# labs' storage accounts on the embedded local cloud (instant latency, throttling off) in a temporary
# state directory. Prints wall time, copies/s, per-copy latency and the disk space the copies take.
#   scripts/bench-copy.sh [--copies N] [--size-gib N] [--concurrency N] [--dir PATH] [--keep]
# Target: the sparse copies cost well under 1% of their virtual size (1,000 x 1 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

build_release imagefactory-bench

echo
echo "== imagefactory-bench copy $*"
.build-release/release/imagefactory-bench copy "$@"
