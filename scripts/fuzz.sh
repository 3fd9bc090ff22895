#!/usr/bin/env bash
# Runs every go test -fuzz target of the repository (functions Fuzz* in *_fuzz_test.go) for
# FUZZTIME each (default 3s): make test runs it short, make fuzz long (FUZZTIME=60s).
# A failing input is written by Go under the package's testdata/fuzz/FuzzX/: commit it with the
# fix, and it is replayed by every plain `go test` from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
GO=${GO:-go}
# Fuzzing workers: one per core, at most 2 (a shared CI machine).
PAR=${FUZZ_PARALLEL:-2}
fail=0
n=0
start=$(date +%s)
for f in $(git ls-files '*_fuzz_test.go'; git ls-files --others --exclude-standard '*_fuzz_test.go'); do
	pkg=./$(dirname "$f")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		n=$((n + 1))
		fuzz() { $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$PAR" "$pkg" 2>&1; }
		out=$(fuzz) && rc=0 || rc=$?
		# Go's coordinator can end a short run with a bare "context deadline exceeded" when the
		# time is up while a worker is still busy (a loaded machine): no input found, none
		# written. That alone is run once more; a real finding names its failing input.
		if [ $rc != 0 ] && ! grep -q 'Failing input written' <<<"$out" && grep -q 'context deadline exceeded' <<<"$out"; then
			echo "again $pkg $target (context deadline exceeded, no failing input)"
			out=$(fuzz) && rc=0 || rc=$?
		fi
		if [ $rc != 0 ]; then
			echo "FAIL $pkg $target"
			echo "$out" | tail -30
			fail=1
		else
			echo "ok   $pkg $target ($(echo "$out" | grep -oE 'execs: [0-9]+' | tail -1))"
		fi
	done
done
echo "fuzz: $n targets, ${FUZZTIME} each, $(( $(date +%s) - start )) s"
exit $fail
