#!/bin/sh
# Runs every fuzz target in the tree for a short while (default 10s each).
set -eu
T=${1:-10s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "== $pkg $f"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$T" "$pkg"
	done
done
