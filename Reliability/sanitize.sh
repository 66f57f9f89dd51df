#!/usr/bin/env bash
# `make sanitize`: the XCTest suite under a sanitizer, in its own SwiftPM scratch path (the release build in .build
# is left alone). The element tests load the plugin of the same sanitized build (OCDEDIT_PLUGIN_DIR, honoured by
# Tests/ElementTests/PipelineHarness.swift) into the sanitized test process; GST_REGISTRY_FORK=no registers it in
# that process, since the unsanitized gst-plugin-scanner cannot load a sanitized library.
#   Reliability/sanitize.sh address|thread [XCTest filter]     e.g. Reliability/sanitize.sh thread ElementTests
# Env: SWIFT, SANITIZE_CONFIG (release, as `make test`), ASAN_OPTIONS / TSAN_OPTIONS (defaults below).
# Fails if the tests fail or the sanitizer reports anything; the log is .build-asan/sanitize.log (or -tsan).
set -uo pipefail
cd "$(dirname "$0")/.."
kind=${1:?address or thread}
extra=()
filter=${2:-}
SWIFT=${SWIFT:-swift}
config=${SANITIZE_CONFIG:-release}
case $kind in
    address) scratch=.build-asan; report='ERROR: AddressSanitizer|ERROR: LeakSanitizer' ;;
    thread) scratch=.build-tsan; report='WARNING: ThreadSanitizer'
        # The test executable links the TSan runtime statically and exports only the symbols of its .syms list;
        # the plugin's Swift code also calls these three: pull them in and export them (else the plugin fails to
        # load: undefined symbol __tsan_external_write).
        extra=()
        for sym in __tsan_external_write __tsan_ignore_thread_begin __tsan_ignore_thread_end; do
            extra+=(-Xlinker "--undefined=$sym" -Xlinker "--export-dynamic-symbol=$sym")
        done ;;
    *) echo "sanitize: unknown sanitizer '$kind' (address or thread)"; exit 2 ;;
esac
# -enable-testing: the release test build needs @testable imports (swift test adds it itself; swift build not).
flags=(-c "$config" -j 1 --scratch-path "$scratch" -Xswiftc "-sanitize=$kind" -Xcc "-fsanitize=$kind"
       -Xswiftc -enable-testing "${extra[@]}")
nice -n 10 "$SWIFT" build "${flags[@]}" --build-tests 2>&1 | grep -v 'prohibited flag' || exit 1
plugin_dir=$(cd "$scratch/$config" && pwd)
[ -f "$plugin_dir/libgstocdedit.so" ] || { echo "sanitize: no $plugin_dir/libgstocdedit.so"; exit 1; }
export OCDEDIT_PLUGIN_DIR=$plugin_dir GST_REGISTRY_FORK=no
# A Swift trap should print the sanitizer's report, not wait on the Swift backtracer.
export SWIFT_BACKTRACE=enable=no
# Leak checking is off by default: GStreamer's registry and type system and the Swift runtime's metadata caches
# live for the process and read as leaks. ASAN_OPTIONS=detect_leaks=1 turns it on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:print_summary=1}
supp=$PWD/Reliability/tsan.supp
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:suppressions=$supp}
log=$scratch/sanitize.log
echo "sanitize ($kind): swift test --skip-build ${filter:+--filter $filter} (plugin $plugin_dir)"
nice -n 10 "$SWIFT" test "${flags[@]}" --skip-build --disable-swift-testing ${filter:+--filter "$filter"} \
    >"$log" 2>&1
rc=$?
grep -E 'Executed [0-9]+ test|error:|failed' "$log" | grep -v 'prohibited flag' | tail -15
reports=$(grep -cE "$report" "$log")
# Element tests skip without the plugin: here that means it did not load (GST_DEBUG=GST_PLUGIN_LOADING:3 says why).
if grep -q 'Test skipped.*plugin libgstocdedit.so not built' "$log"; then
    echo "sanitize ($kind): FAILED: element tests skipped, the sanitized plugin did not load"
    rc=1
fi
echo "sanitize ($kind): test exit $rc, sanitizer reports: $reports (log $log)"
if [ "$reports" -ne 0 ]; then
    grep -E -A12 "$report" "$log" | head -60
fi
[ $rc -eq 0 ] && [ "$reports" -eq 0 ]
