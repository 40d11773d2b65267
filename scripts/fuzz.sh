#!/usr/bin/env bash
# Fuzzes Topiary's parsers of outside input with libFuzzer (not part of CI; see README "Fuzzing").
#   scripts/fuzz.sh [TARGET ...]        # default: every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh gguf
# Targets: gguf safetensors config tokenizer hdf5 recipe tasks. Corpora grow under .build-fuzz/corpus/TARGET
# (git-ignored, kept between runs); seeds are regenerated under .build-fuzz/seeds/TARGET from files Topiary writes,
# the shipped recipes and the task files; committed regression inputs (Tests/TopiaryReliabilityTests/Fixtures/fuzz/
# TARGET) are read too. A crash, hang (-timeout) or leak stops the target and leaves the input in
# .build-fuzz/artifacts/TARGET/: add it to the fixtures folder so that `make test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-60}
DATA=${TOPIARY_DATA:-$ROOT/../shared/data}
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf safetensors config tokenizer hdf5 recipe tasks)
export OPENBLAS_NUM_THREADS=1 SWIFT_BACKTRACE=enable=no LSAN_OPTIONS=suppressions=$ROOT/Fuzz/lsan.supp
# libhdf5 sizes metadata-cache entries from the file: a corrupt HDF5 asks malloc for 17 GB or 11 TB (H5C_protect),
# which an ordinary process survives (the allocation is refused or never touched, and HDF5 reports an error —
# FuzzRegressionTests replays both inputs) but ASan and libFuzzer's malloc limit treat as fatal. So allocations over
# 1 GiB return NULL, as a system short of memory would; Swift code traps on a NULL allocation, so this hides nothing
# of Topiary's own.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:max_allocation_size_mb=1024}

(cd Fuzz && nice -n 19 swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library 2>&1 \
    | grep -v "Cannot export local symbol" | grep -E "error|Compiling topiary|Build complete" || true)
BIN=$ROOT/Fuzz/.build/debug/topiary-fuzz
[ -x "$BIN" ] || { echo "fuzz.sh: build failed" >&2; exit 1; }

rm -rf .build-fuzz/seeds
nice -n 19 "$BIN" --make-seeds .build-fuzz/seeds "$ROOT" "$DATA"

status=0
for t in "${TARGETS[@]}"; do
    corpus=.build-fuzz/corpus/$t artifacts=.build-fuzz/artifacts/$t/ regress=Tests/TopiaryReliabilityTests/Fixtures/fuzz/$t
    mkdir -p "$corpus" "$artifacts" "$regress"
    echo "== $t: ${SECONDS_EACH}s"
    log=.build-fuzz/$t.log
    if TOPIARY_FUZZ_TARGET=$t nice -n 19 "$BIN" "$corpus" ".build-fuzz/seeds/$t" "$regress" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=131072 \
        -print_final_stats=1 -artifact_prefix="$artifacts" > "$log" 2>&1; then
        echo "   ok: $(grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$log" | tr '\n' ' ')corpus $(ls "$corpus" | wc -l) files"
    else
        status=1
        echo "   FAILED (see $log): $(ls "$artifacts")"
        grep -E "ERROR|SUMMARY|Fatal error" "$log" | head -5
    fi
done
exit $status
