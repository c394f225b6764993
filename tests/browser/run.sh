#!/usr/bin/env bash
# ctest's Report.RendersInHeadlessChromium: a small run and a small comparison, their
# `clr report` pages opened in headless Chromium by check_report.py (every figure
# rendered, nothing cut off, no console errors, no network, laptop width).
#   run.sh CLR_BINARY WORK_DIR
set -euo pipefail
CLR=$1
WORK=$2
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
rm -rf "$WORK"
mkdir -p "$WORK"
/usr/bin/python3 "$ROOT/bench/make_folder.py" --out "$WORK/data" --tasks 3 --classes 3 --per-class 12 --size 24 --val > /dev/null
common=(--backbone "$ROOT/models/resnet18-pretrain-64px.safetensors" --size 16 --epochs 1 --batch 8)
"$CLR" run "$WORK/data" "${common[@]}" --task-inference gaussian,energy --out "$WORK/run" > "$WORK/run.log" 2>&1
"$CLR" compare "$WORK/data" "${common[@]}" --methods clr,linear,sgd --out "$WORK/compare" > "$WORK/compare.log" 2>&1
"$CLR" report "$WORK/run" > /dev/null
"$CLR" report "$WORK/compare" > /dev/null
status=0
/usr/bin/python3 "$HERE/check_report.py" "$WORK/run/report.html" --min-figures 3 || status=1
/usr/bin/python3 "$HERE/check_report.py" "$WORK/compare/report.html" --min-figures 4 \
  --heatmap "final test accuracy per method and task" || status=1
exit $status
