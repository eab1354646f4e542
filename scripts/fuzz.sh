#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for a bounded number of inputs each
# (FUZZ_COUNT, default 20000). Crashers land in the package's testdata/fuzz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count="${FUZZ_COUNT:-20000}"
targets=(
  "./pkg/hocon FuzzParse"
  "./pkg/config FuzzLoad"
  "./pkg/bundle FuzzParseManifest"
  "./pkg/bundle FuzzUnpackTar"
  "./pkg/bundle FuzzUnpackZip"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "== fuzz $2 in $1 ($count inputs)"
  go test -run=NONE -fuzz="^$2\$" -fuzztime="${count}x" -parallel 1 "$1"
done
