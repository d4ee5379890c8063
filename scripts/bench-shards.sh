#!/usr/bin/env bash
# Shard benchmark: a factory split across N cooperating processes, as CI jobs run it. Builds
# release, generates a factory (default 2,000 labs in 20 subscriptions, 10 images, every lab
# taking every image), captures every image once with a build job, then for each shard count
# (default 1, 2, 4, 8) serves a copy of that state with `imagefactory local serve` (Azure's ARM
# write bucket per subscription, 200 refilled at 10 a second) and runs N processes of
# `imagefactory run --backend azure --shard I/N` at once. Prints the distribute makespan for each
# N and the speed-up against one process.
#   scripts/bench-shards.sh [--labs N] [--subscriptions N] [--templates N] [--shards 1,2,4,8]
#                           [--max-jobs N] [--latency instant|fast|realistic] [--throttle CAP/REFILL]
# Target: every shard succeeds, every lab gets every image, and each speed-up within 15% of linear.
# Last line: one JSON object (makespanSeconds, speedup and efficiency per shard count).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

build_release imagefactory imagefactory-bench

echo
echo "== imagefactory-bench shards $*"
.build-release/release/imagefactory-bench shards --binary .build-release/release/imagefactory "$@"
