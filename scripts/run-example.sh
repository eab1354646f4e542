#!/usr/bin/env bash
# `make run`: starts a local gear cluster (one master and two workers in one
# process, embedded defaults, data in data/run) and runs the example apps on it:
# conf/examples/hello.tar.gz (two pinned Go servers) and conf/examples/hello.jar.
# It shows them running, then keeps the cluster up until Ctrl-C
# (or for GEAR_RUN_SECONDS seconds when that is set).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GEAR_HOME="$root"
gear="$root/.build/gear"
port="${GEAR_RUN_PORT:-3000}"
master="127.0.0.1:$port"
data="$root/data/run"
rm -rf "$data"
mkdir -p "$data"
"$gear" local -workernum 2 -port "$port" -datadir "$data" >"$data/local.log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "local cluster stopped; its log is $data/local.log"
}
trap cleanup EXIT
g() { "$gear" -master "$master" "$@"; }
for _ in $(seq 100); do
  g masters -json 2>/dev/null | grep -q '"state": "leader"' && break
  if ! kill -0 "$pid" 2>/dev/null; then cat "$data/local.log"; exit 1; fi
  sleep 0.2
done
echo "== masters"; g masters
for _ in $(seq 50); do [ "$(g workers -json | grep -c '"alive": true')" -ge 2 ] && break; sleep 0.2; done
echo "== workers"; g workers
echo "== submitting conf/examples/hello.tar.gz"
tar_id=$(g app submit "$root/conf/examples/hello.tar.gz" -quiet)
jar_id=""
if [ -f "$root/conf/examples/hello.jar" ]; then
  echo "== submitting conf/examples/hello.jar"
  jar_id=$(g app submit "$root/conf/examples/hello.jar" -quiet -- from-make-run)
fi
for _ in $(seq 150); do
  states=$(g app list)
  if ! grep -qv -e RUNNING -e '^ID' <<<"$states"; then break; fi
  sleep 0.2
done
echo "== applications"; g app list
echo "== app $tar_id"; g app info "$tar_id"
[ -n "$jar_id" ] && { echo "== app $jar_id"; g app info "$jar_id"; }
sleep 1
echo "== logs of executor $tar_id.web.0"; g logs "$tar_id.web.0" -lines 5
if [ -n "${GEAR_RUN_SECONDS:-}" ]; then
  sleep "$GEAR_RUN_SECONDS"
else
  echo "== the cluster keeps running (dashboard: http://$master/); Ctrl-C stops it"
  wait "$pid"
fi
