#!/usr/bin/env bash
# Runs every clr_fuzz target for RUNS executions each (or SECONDS each, whichever comes
# first) from the committed seed corpus and prints, per target: executions, seconds,
# corpus size reached and crashes. Exit 1 when any target crashed; the crashing inputs
# are in WORK/artifacts/ (replay one: CLR_FUZZ_TARGET=t clr_fuzz FILE).
#   bash fuzz/run_all.sh [BUILD_DIR] [RUNS] [SECONDS] [WORK]
# BUILD_DIR is a tree configured with -DCLR_FUZZ=ON -DCLR_SANITIZE=ON and clang (fuzz/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
RUNS=${2:-1000000}
SECONDS_EACH=${3:-600}
WORK=${4:-$(mktemp -d)}
FUZZ="$BUILD/fuzz/clr_fuzz"
[ -x "$FUZZ" ] || { echo "no $FUZZ: configure with clang, -DCLR_FUZZ=ON -DCLR_SANITIZE=ON and build clr_fuzz" >&2; exit 2; }
mkdir -p "$WORK/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$PWD/fuzz/ubsan.supp}
echo "clr_fuzz: $(git rev-parse --short HEAD 2>/dev/null), $(nproc) cores, $RUNS runs or ${SECONDS_EACH} s per target"
printf '%-22s %12s %7s %8s %8s\n' target executions seconds corpus crashes
failed=0
for dir in fuzz/corpus/*/; do
  t=$(basename "$dir")
  mkdir -p "$WORK/corpus/$t"
  start=$(date +%s%N)
  CLR_FUZZ_TARGET=$t "$FUZZ" -runs="$RUNS" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=4096 \
    -timeout=30 -artifact_prefix="$WORK/artifacts/$t-" -print_final_stats=1 "$WORK/corpus/$t" "$dir" \
    > "$WORK/$t.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$WORK/$t.log" | grep -o '[0-9]*$' || echo 0)
  crashes=$(ls "$WORK/artifacts/" 2>/dev/null | grep -c "^$t-")
  [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="rc=$rc"
  printf '%-22s %12s %5d.%01d %8s %8s\n' "$t" "${execs:-0}" $((ms / 1000)) $((ms % 1000 / 100)) \
    "$(ls "$WORK/corpus/$t" | wc -l)" "$crashes"
  [ "$rc" -ne 0 ] && failed=1 && tail -30 "$WORK/$t.log" >&2
done
exit $failed
