#!/usr/bin/env bash
# Azure backend benchmarks, against `local serve` in the benchmark's own process (loopback only),
# with every request counted by the server:
#   nochange  a no-change nightly run over 50 and 100 labs x 20 images: ARM and Blob requests grow
#             with labs, not labs x images, and none writes; beside it the original's count (model).
#   throttle  400 distribution jobs (20 labs x 20 images, one subscription) at maxConcurrentJobs 20
#             against ARM's write bucket (200, refilled at 10 a second) and one ten times smaller
#             (20): accepted writes as a share of what the bucket allows (goal >= 90%), the 429s
#             received, and zero failed jobs.
#   scripts/bench-azure.sh [nochange|throttle ...]   (default: both)
# Extra options reach one benchmark through NOCHANGE_ARGS or THROTTLE_ARGS. Each benchmark's last
# line is one JSON object; this script's last line joins them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(nochange throttle)

build_release imagefactory-bench
bench=.build-release/release/imagefactory-bench

status=0
json=()
for name in "${benches[@]}"; do
  case "$name" in
    nochange) read -r -a extra <<<"${NOCHANGE_ARGS:---labs 50,100 --templates 20}" ;;
    throttle) read -r -a extra <<<"${THROTTLE_ARGS:-}" ;;
    *) echo "unknown benchmark $name (nochange, throttle)" >&2; exit 64 ;;
  esac
  echo
  echo "== imagefactory-bench azure-$name ${extra[*]:-}"
  out="$(mktemp)"
  "$bench" "azure-$name" ${extra[@]+"${extra[@]}"} | tee "$out" || status=1
  json+=("\"$name\":$(tail -1 "$out")")
  rm -f "$out"
done
echo
echo "{$(IFS=,; echo "${json[*]}")}"
exit $status
