#!/usr/bin/env bash
# Pipeline benchmarks: builds release and runs three benchmarks of the engine, each printing its
# figures and a verdict (non-zero exit when its target is missed):
#   plan        FactoryPlanner.plan with 2,000 labs, 500 templates, 20,000 custom images:
#               under 1 s and under 300 MB peak RSS.
#   distribute  400 distribution jobs (20 labs x 20 templates) at maxConcurrentJobs 20 on the local
#               cloud, each job's copy taking 0.5 s: wall time within 5% of ceil(400/20) x 0.5 s, and
#               never more than 20 jobs overlapping in operations.jsonl.
#   nochange    the whole factory run twice for 10, 50 and 200 labs (5 templates each): the second
#               run writes nothing and reads a few resources per lab, not per lab x image.
#   scripts/bench-pipeline.sh [plan|distribute|nochange ...]   (default: all three)
# Extra options reach one benchmark through PLAN_ARGS, DISTRIBUTE_ARGS or NOCHANGE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(plan distribute nochange)

ensure_gnu_time

build_release imagefactory-bench
bench=.build-release/release/imagefactory-bench

failed=()
for name in "${benches[@]}"; do
  case "$name" in
    plan) read -r -a extra <<<"${PLAN_ARGS:-}" ;;
    distribute) read -r -a extra <<<"${DISTRIBUTE_ARGS:-}" ;;
    nochange) read -r -a extra <<<"${NOCHANGE_ARGS:-}" ;;
    *) echo "unknown benchmark $name (plan, distribute, nochange)" >&2; exit 64 ;;
  esac
  echo
  echo "== imagefactory-bench $name ${extra[*]:-}"
  log="$(mktemp)"
  status=0
  /usr/bin/time -v -o "$log" "$bench" "$name" ${extra[@]+"${extra[@]}"} || status=$?
  elapsed="$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")"
  rss_kb="$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$log")"
  user="$(sed -n 's/^\s*User time (seconds): //p' "$log")"
  sys="$(sed -n 's/^\s*System time (seconds): //p' "$log")"
  printf 'process: elapsed %s  user %ss  sys %ss  max RSS %s kB (%s MB)  exit %d\n' \
    "$elapsed" "$user" "$sys" "$rss_kb" "$((rss_kb / 1024))" "$status"
  rm -f "$log"
  [ "$status" -eq 0 ] || failed+=("$name")
done

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "== targets missed: ${failed[*]}"
  exit 1
fi
echo "== all targets met: ${benches[*]}"
