#!/usr/bin/env bash
# End-to-end `clr run` throughput on the default sequence (or CONFIG): prints, per task
# and in total, the decode/resize rate (done once, before the first epoch, into the
# uint8 cache) apart from the training rate of the epochs that read the cache, plus
# the wall time. Usage: bench/e2e_run.sh [CONFIG] [extra clr run flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-configs/default.toml}"
shift || true
OUT="$(mktemp -d /tmp/clr-e2e.XXXXXX)"
BIN="${CLR_BIN:-./build/clr}"
start=$(date +%s.%N)
"$BIN" run "$CONFIG" --out "$OUT" "$@" > "$OUT/stdout.txt" 2> "$OUT/stderr.txt"
end=$(date +%s.%N)
python3 - "$OUT/results.json" "$start" "$end" <<'PY'
import json, statistics, sys, platform
r = json.load(open(sys.argv[1])); wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"{'task':18s} {'images':>7s} {'decode img/s':>13s} {'train img/s':>12s} {'epochs':>6s}")
dec, trn = [], []
for t, s in zip(r["tasks"], r["train_seconds"]):
    n = t["train_images"] + t["val_images"] + t["test_images"]
    d = n / t["decode_seconds"] if t["decode_seconds"] > 0 else float("inf")
    dec.append(d); trn.append(t["train_images_per_second"])
    print(f"{t['name'][:18]:18s} {n:7d} {d:13.0f} {t['train_images_per_second']:12.1f} {t['epochs']:6d}")
print(f"median over tasks: decode {statistics.median(dec):.0f} img/s (min {min(dec):.0f}, max {max(dec):.0f}); "
      f"train {statistics.median(trn):.1f} img/s (min {min(trn):.1f}, max {max(trn):.1f})")
print(f"wall {wall:.1f} s, average accuracy {100*r['average_accuracy']:.2f}%, device {r['device']}, "
      f"backbone {r['backbone']['arch']}, machine {platform.processor() or platform.machine()}")
PY
echo "results: $OUT/results.json"
