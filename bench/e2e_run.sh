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
# Epoch 1 pays for decoding the train split into the cache; later epochs read the cache.
print(f"{'task':18s} {'images':>7s} {'decode img/s':>13s} {'epoch1 img/s':>13s} {'later img/s':>12s} {'epochs':>6s}")
dec, first, later = [], [], []
for t in r["tasks"]:
    n = t["train_images"] + t["val_images"] + t["test_images"]
    d = n / t["decode_seconds"] if t["decode_seconds"] > 0 else float("inf")
    e = t["epoch_seconds"]
    f = t["train_images"] / (t["train_decode_seconds"] + e[0])
    l = t["train_images"] * (len(e) - 1) / sum(e[1:]) if len(e) > 1 else float("nan")
    dec.append(d); first.append(f); later.append(l)
    print(f"{t['name'][:18]:18s} {n:7d} {d:13.0f} {f:13.1f} {l:12.1f} {len(e):6d}")
med = lambda v: f"{statistics.median(v):.1f} (min {min(v):.1f}, max {max(v):.1f})"
print(f"median over tasks: decode {med(dec)} img/s; first epoch incl. decode {med(first)} img/s; "
      f"later epochs (cached) {med(later)} img/s")
print(f"wall {wall:.1f} s, average accuracy {100*r['average_accuracy']:.2f}%, device {r['device']}, "
      f"backbone {r['backbone']['arch']}, machine {platform.processor() or platform.machine()}")
PY
echo "results: $OUT/results.json"
