#!/usr/bin/env bash
# Validate benchmark: builds release, times `validate` in-process (imagefactory-bench) and the real
# CLI end to end on a generated repository (10,000 templates, 200 folders, 2,000 labs by default).
#   scripts/bench-validate.sh [--templates N] [--folders N] [--labs N] [--dir PATH] [--iterations N]
# Targets: under 1 s and under 200 MB peak RSS for `imagefactory validate --json` in a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh

# Pull --dir out of the arguments (or pick the default) so the CLI runs on the same repository.
args=("$@")
dir=""
templates=10000 folders=200 labs=2000
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --dir) dir="${args[$((i + 1))]}" ;;
    --dir=*) dir="${args[$i]#--dir=}" ;;
    --templates) templates="${args[$((i + 1))]}" ;;
    --folders) folders="${args[$((i + 1))]}" ;;
    --labs) labs="${args[$((i + 1))]}" ;;
  esac
done
[ -n "$dir" ] || dir="/tmp/imagefactory-bench/validate-t${templates}-f${folders}-l${labs}"

ensure_gnu_time

build_release imagefactory imagefactory-bench

echo
echo "== in-process: imagefactory-bench validate-config $*"
.build-release/release/imagefactory-bench validate-config "$@" --dir "$dir"

echo
echo "== CLI: imagefactory validate --repo $dir --json"
runs="${CLI_RUNS:-3}"
for ((r = 1; r <= runs; r++)); do
  log="$(mktemp)"
  status=0
  /usr/bin/time -v -o "$log" .build-release/release/imagefactory validate --repo "$dir" --json >/dev/null || status=$?
  elapsed="$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")"
  rss_kb="$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$log")"
  user="$(sed -n 's/^\s*User time (seconds): //p' "$log")"
  sys="$(sed -n 's/^\s*System time (seconds): //p' "$log")"
  printf 'run %d: elapsed %s  user %ss  sys %ss  max RSS %s kB (%.1f MB)  exit %d\n' \
    "$r" "$elapsed" "$user" "$sys" "$rss_kb" "$(echo "$rss_kb / 1024" | bc -l)" "$status"
  rm -f "$log"
done
