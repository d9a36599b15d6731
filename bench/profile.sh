#!/usr/bin/env bash
# Profiles pikl on one benchmark file with perf: bench/profile.sh CASE OP [SECONDS]
#
#   bash bench/profile.sh records.p5 loads        # CASE is a file stem of target/bench-data/
#   bash bench/profile.sh micro_dict.p2 dumps 5
#
# Prints `perf stat` (task clock, page faults), the top functions by self time, and the top by
# inclusive time (DWARF call graphs, from the release profile's `debug = 1`). Without perf it
# falls back to valgrind's callgrind on a shorter run. Output also goes to
# target/bench-data/profile-CASE-OP.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

CASE=${1:?usage: profile.sh CASE OP [SECONDS]}
OP=${2:?usage: profile.sh CASE OP [SECONDS]}
SECS=${3:-3}
DATA=target/bench-data
FILE=$DATA/$CASE.pkl
[ -f "$FILE" ] || { echo "no $FILE: run python3 bench/gen_data.py $DATA" >&2; exit 1; }
export CARGO_TARGET_DIR="$PWD/target/bench-build"
# With BENCH_REF set, profile the snapshot bench/run.sh extracted to target/bench-src/.
SRC=$PWD
[ -n "${BENCH_REF:-}" ] && SRC=$PWD/target/bench-src
(cd "$SRC" && cargo build --release -p pikl --example bench_once) >&2
BIN=$CARGO_TARGET_DIR/release/examples/bench_once
OUT=$DATA/profile-$CASE-$OP.txt
PERF=/tmp/pikl-perf-$$.data
trap 'rm -f "$PERF"' EXIT

{
    echo "# pikl $OP $CASE.pkl ($(stat -c %s "$FILE") bytes)"
    if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
        echo "## perf stat"
        perf stat -e task-clock,page-faults,context-switches "$BIN" pikl "$OP" "$FILE" --repeat 1 --min-time "$SECS" 2>&1
        echo "## self time (perf record, cpu-clock sampling)"
        perf record -q -F 1999 -o "$PERF" "$BIN" pikl "$OP" "$FILE" --repeat 1 --min-time "$SECS" >/dev/null 2>&1
        perf report -i "$PERF" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | sed 's/  *- *- *$//' | head -30
        echo "## inclusive time (perf record --call-graph dwarf)"
        perf record -q -F 499 --call-graph dwarf,16384 -o "$PERF" "$BIN" pikl "$OP" "$FILE" --repeat 1 \
            --min-time "$SECS" >/dev/null 2>&1
        # Runtime and harness frames (main, lang_start, closures of bench_once) are left out.
        perf report -i "$PERF" --children --sort symbol --percent-limit 3 --stdio -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' \
            | grep -Ev 'lang_start|catch_unwind|_start|[^:]main|bench_once|call_once|backtrace|core::ops::function' \
            | sed 's/  *- *- *$//' | head -30
        echo "## hottest source lines (self time)"
        perf report -i "$PERF" --no-children --sort srcline --percent-limit 1.5 --stdio -g none 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -20
    else
        echo "## callgrind (perf unavailable)"
        CG=/tmp/pikl-cg-$$.out
        valgrind --tool=callgrind --callgrind-out-file="$CG" "$BIN" pikl "$OP" "$FILE" --repeat 1 --min-time 0 \
            >/dev/null 2>&1
        callgrind_annotate "$CG" 2>/dev/null | head -40
        rm -f "$CG"
    fi
} | tee "$OUT"
