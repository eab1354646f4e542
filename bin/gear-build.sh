# Sourced by bin/master, bin/worker, bin/local and bin/gear: sets GEAR_HOME
# and builds the gear binary into $GEAR_HOME/.build/gear when it is missing
# (or when GEAR_REBUILD=1). Needs Go (https://go.dev/dl/) for that first build.
GEAR_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GEAR_HOME
GEAR_BIN="$GEAR_HOME/.build/gear"
if [ ! -x "$GEAR_BIN" ] || [ "${GEAR_REBUILD:-0}" = 1 ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "gear: the gear binary is not built and Go is not installed; install Go 1.26+ or copy a built binary to $GEAR_BIN" >&2
    exit 1
  fi
  echo "gear: building $GEAR_BIN ..." >&2
  (cd "$GEAR_HOME" && go build -o "$GEAR_BIN" .) || { echo "gear: build failed" >&2; exit 1; }
fi
