#!/usr/bin/env bash
# Installs what running ImageFactory needs on Debian/Ubuntu beyond the Swift toolchain: libgit2 (to
# read the configuration from git) with pkg-config (to find it), and git itself.
# `--test` also installs what the tests and the SDK check use: qemu-utils (qemu-img checks the VHDs
# the local cloud writes) and Python's venv (scripts/sdk-check.sh runs Microsoft's Python SDKs).
set -euo pipefail
need=()
dpkg -s libgit2-dev >/dev/null 2>&1 || need+=(libgit2-dev)
command -v git >/dev/null 2>&1 || need+=(git)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${1:-}" = "--test" ]; then
  command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  # Debian splits venv and ensurepip out of python3; probing ensurepip says whether a venv can get pip.
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
