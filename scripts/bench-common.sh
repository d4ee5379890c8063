# Shared by the bench-*.sh scripts (sourced, not run).

# GNU time measures each benchmark's peak memory: install it when missing.
ensure_gnu_time() {
  [ -x /usr/bin/time ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq time
}

# Release builds go to their own scratch path, so they never disturb the debug build.
build_release() {
  echo "== swift build -c release (scratch path .build-release)"
  local product
  for product in "$@"; do
    swift build -c release --scratch-path .build-release --product "$product"
  done
}
