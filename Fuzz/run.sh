#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer harnesses (Fuzz/<name>/, -sanitize=fuzzer,address, SwiftPM scratch path
# .build-fuzz) and runs each for FUZZ_SECONDS from its seed corpus Fuzz/corpus/<name>/. New inputs go to
# .fuzz-work/<name>/ (not committed); a crashing input is saved as Fuzz/crashes/<name>/crash-… and fails the run.
# Usage: Fuzz/run.sh [harness…]   env: FUZZ_SECONDS (600), FUZZ_RSS_MB (2048), FUZZ_FLAGS (extra libFuzzer flags)
set -uo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
SECONDS_PER=${FUZZ_SECONDS:-600}
RSS_MB=${FUZZ_RSS_MB:-2048}
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(FuzzSafetensors FuzzConfig FuzzTokenizer)
BIN=.build-fuzz/release
# Ordinary builds never see the harnesses (Package.swift adds them only with OCDEDIT_FUZZ=1). The toolset passes
# -sanitize=fuzzer,address to every swiftc call, links with lld (gold fails on libFuzzer's main beside SwiftPM's).
for h in "${HARNESSES[@]}"; do
    OCDEDIT_FUZZ=1 nice -n 10 $SWIFT build -c release -j 1 --scratch-path .build-fuzz \
        --toolset Fuzz/toolset.json --product "$h" 2>&1 | grep -v 'prohibited flag' || exit 1
done
# A Swift trap must reach libFuzzer (which saves the input), not the Swift runtime's backtracer (slow under ASan).
export SWIFT_BACKTRACE=enable=no
failed=0
summary=()
for h in "${HARNESSES[@]}"; do
    mkdir -p ".fuzz-work/$h" "Fuzz/crashes/$h"
    dict=(); [ -f "Fuzz/$h.dict" ] && dict=(-dict="Fuzz/$h.dict")
    log=".fuzz-work/$h.log"
    echo "== $h: ${SECONDS_PER} s"
    # detect_leaks=0: the Swift runtime's and Foundation's caches live for the process and read as leaks.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} nice -n 10 "$BIN/$h" -max_total_time="$SECONDS_PER" \
        -rss_limit_mb="$RSS_MB" -timeout=25 -print_final_stats=1 -artifact_prefix="Fuzz/crashes/$h/" \
        "${dict[@]}" ${FUZZ_FLAGS:-} ".fuzz-work/$h" "Fuzz/corpus/$h" >"$log" 2>&1
    rc=$?
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
    crashes=$(grep -cE '^artifact_prefix=|Test unit written to' "$log")
    line="$h: ${execs:-?} executions (${rate:-?}/s) in ${SECONDS_PER} s, exit $rc, crash inputs written: $crashes"
    summary+=("$line")
    if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -E 'ERROR|Fatal error|SUMMARY|Test unit written' "$log" | head -20
    fi
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
ls Fuzz/crashes/*/ 2>/dev/null | grep -qE '^(crash|leak|timeout|oom|slow-unit)-' && failed=1
[ $failed -eq 0 ] || { echo "fuzz: FAILED (inputs under Fuzz/crashes/, logs under .fuzz-work/)"; exit 1; }
echo "fuzz: no crash"
