#!/usr/bin/env bash
# Critical-path benchmark: builds release and runs the whole factory twice on the local cloud with
# scaled-down times (one template building 10x longer than the nine others, 50 labs taking every
# image, maxConcurrentJobs 20): once with stage barriers (the old executor) and once with
# overlapping stages. Prints the time until the first lab has its first image and the makespan
# of both, and the overlapping run against its critical-path lower bound.
#   scripts/bench-critical-path.sh [--labs N] [--templates N] [--fast S] [--slow-factor F] [--max-jobs N]
# Target: makespan within 10% of the critical path (ratio <= 1.10). Last line: one JSON object
# (firstImageSeconds and makespanSeconds before/after, criticalPathRatio; fanout is null until
# copies fan out as a tree).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

build_release imagefactory-bench

echo
echo "== imagefactory-bench critical-path $*"
.build-release/release/imagefactory-bench critical-path "$@"
