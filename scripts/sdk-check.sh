#!/usr/bin/env bash
# Proof of fidelity: runs Microsoft's Python SDKs (tests/sdk/scenario.py) against
# `imagefactory local serve --tls` on a free loopback port with a fresh state directory.
# Creates the virtual environment (.venv-sdk, git-ignored) with the pinned SDK versions, builds,
# starts the server, runs the scenario, stops the server. Last line: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SDK_VENV:-.venv-sdk}"
# Versions verified against the local cloud; newer SDKs may send new api-versions or shapes.
PACKAGES=(
  azure-identity==1.27.0
  azure-mgmt-devtestlabs==9.0.1
  azure-mgmt-compute==39.0.0
  azure-mgmt-resource==26.0.0
  azure-mgmt-resource-deployments==2.0.0
  azure-storage-blob==12.31.1
)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# Install only when a pinned version is missing, so a warm venv costs nothing.
FROZEN="$("$VENV/bin/python" -m pip freeze 2>/dev/null || true)"
for package in "${PACKAGES[@]}"; do
  if ! grep -qix "$package" <<<"$FROZEN"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
    break
  fi
done

# SWIFT_BUILD_FLAGS: e.g. "--scratch-path .build-serve" to build elsewhere than .build.
read -r -a BUILD_FLAGS <<<"${SWIFT_BUILD_FLAGS:-}"
swift build "${BUILD_FLAGS[@]}" --product imagefactory
BIN="$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)/imagefactory"

STATE="$(mktemp -d)"
OUT="$STATE/serve.out"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$STATE"
}
trap cleanup EXIT

# Fast latencies keep the run short; a small write bucket (10, refilled at 5 a second) lets the
# scenario meet ARM throttling on purpose; page size 2 makes every list page.
IMAGEFACTORY_LOCAL_LATENCY=fast IMAGEFACTORY_LOCAL_THROTTLE=10/5 IMAGEFACTORY_LOCAL_FAULTS= \
  "$BIN" local serve --state-dir "$STATE/cloud" --port 0 --tls --page-size 2 >"$OUT" 2>"$STATE/serve.err" &
SERVER=$!

BASE=""
for _ in $(seq 1 100); do
  BASE="$(sed -n 's/^Listening on \(https:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$OUT")"
  [ -n "$BASE" ] && break
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "local serve exited early:"; cat "$OUT" "$STATE/serve.err"
    echo "0 passed, 1 failed"; exit 1
  fi
  sleep 0.1
done
if [ -z "$BASE" ]; then
  echo "local serve did not start listening within 10 s"; cat "$OUT" "$STATE/serve.err"
  echo "0 passed, 1 failed"; exit 1
fi
CERT="$(sed -n 's/^  TLS certificate: //p' "$OUT")"
echo "local serve at $BASE (certificate $CERT)"

set +e
"$VENV/bin/python" tests/sdk/scenario.py "$BASE" "$CERT" | tee "$STATE/scenario.out"
STATUS=${PIPESTATUS[0]}
set -e
SUMMARY="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$STATE/scenario.out" | tail -1)"

# The README's examples, as written, against a second server holding the sample configuration's labs.
"$BIN" local init --state-dir "$STATE/sample" >/dev/null
IMAGEFACTORY_LOCAL_LATENCY=instant IMAGEFACTORY_LOCAL_FAULTS= \
  "$BIN" local serve --state-dir "$STATE/sample" --port 0 --tls >"$STATE/sample.out" 2>"$STATE/sample.err" &
SAMPLE_SERVER=$!
SAMPLE_BASE=""
for _ in $(seq 1 100); do
  SAMPLE_BASE="$(sed -n 's/^Listening on \(https:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$STATE/sample.out")"
  [ -n "$SAMPLE_BASE" ] && break
  sleep 0.1
done
SAMPLE_CERT="$(sed -n 's/^  TLS certificate: //p' "$STATE/sample.out")"
set +e
IMAGEFACTORY_BIN="$BIN" PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" tests/sdk/readme_examples.py README.md "$SAMPLE_BASE" "$SAMPLE_CERT" | tee "$STATE/readme.out"
README_STATUS=${PIPESTATUS[0]}
set -e
kill "$SAMPLE_SERVER" 2>/dev/null || true; wait "$SAMPLE_SERVER" 2>/dev/null || true
README_SUMMARY="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$STATE/readme.out" | tail -1)"
if [ -n "$SUMMARY" ] && [ -n "$README_SUMMARY" ]; then
  read -r P1 _ F1 _ <<<"${SUMMARY//,/}"
  read -r P2 _ F2 _ <<<"${README_SUMMARY//,/}"
  SUMMARY="$((P1 + P2)) passed, $((F1 + F2)) failed"
fi
[ "$README_STATUS" -ne 0 ] && STATUS=1
if [ $STATUS -ne 0 ]; then
  echo "--- local serve's request log (last 40 lines) ---"
  tail -40 "$STATE/serve.err"
  [ -n "$SUMMARY" ] || SUMMARY="0 passed, 1 failed"
  [ "$SUMMARY" != "${SUMMARY%, 0 failed}" ] && SUMMARY="${SUMMARY%, 0 failed}, 1 failed"
fi
# The summary goes last, for CI's reader.
echo "$SUMMARY"
exit $STATUS
