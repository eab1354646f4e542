#!/usr/bin/env bash
# Installs what gear's tests need and this machine lacks: redis-server (the
# global channel tests), a JDK (the .jar example) and etcd (the failover
# benchmark's baseline, whose harness has a test), chromium (the dashboard test). Debian/Ubuntu, as root or
# with sudo.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)   # network-namespace partition tests
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # the dashboard's browser test (chromedp)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "deps: installing ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi
