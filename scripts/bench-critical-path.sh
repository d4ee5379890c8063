#!/usr/bin/env bash
# Critical-path benchmark: builds release and runs the whole factory twice on the local cloud with
# scaled-down times (one template building 10x longer than the nine others, 50 labs taking every
# image, maxConcurrentJobs 20): once with stage barriers (the old executor) and once with
# overlapping stages. Prints the time until the first lab has its first image and the makespan
# of both, and the overlapping run against its critical-path lower bound.
# Then the fan-out: one image to 1, 8, 64 and 256 labs in one region, every copy of a source sharing
# its read bandwidth (scaled so one copy alone takes 0.1 s): the distribute stage as a star (every
# copy from the factory) and as a tree, against the bound ceil(log2(N+1)) x one copy.
#   scripts/bench-critical-path.sh [--labs N] [--templates N] [--fast S] [--slow-factor F] [--max-jobs N]
#                                  [--fanout 1,8,64,256] [--copy-seconds S]
# Target: makespan within 10% of the critical path (ratio <= 1.10). Last line: one JSON object
# (firstImageSeconds and makespanSeconds before/after, criticalPathRatio, and fanout with star,
# tree and bound in seconds for each N).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

build_release imagefactory-bench

echo
echo "== imagefactory-bench critical-path $*"
.build-release/release/imagefactory-bench critical-path "$@"
