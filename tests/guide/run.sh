#!/usr/bin/env bash
# ctest's Guide.EveryCommandRuns: runs the ```bash blocks of docs/GUIDE.md, in order, as
# one script in an empty directory (set -eu: any failing command fails the test), with
# CLR_SRC the source tree (its build/ holding the clr being tested) and a free port.
#   run.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
SRC=$1
BUILD=$2
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
awk '/^```bash$/ {on = 1; next} /^```$/ {on = 0} on' "$SRC/docs/GUIDE.md" > "$WORK/guide.sh"
[ -s "$WORK/guide.sh" ] || { echo "no bash blocks in docs/GUIDE.md" >&2; exit 1; }
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The guide's clr is the one of BUILD (its PATH line puts $CLR_SRC/build first): a
# BUILD elsewhere is linked there for the run.
if [ "$(cd "$BUILD" && pwd)" != "$(cd "$SRC/build" 2>/dev/null && pwd)" ]; then
  mkdir -p "$WORK/src"
  for f in "$SRC"/*; do ln -s "$f" "$WORK/src/$(basename "$f")"; done
  rm -f "$WORK/src/build"
  ln -s "$(cd "$BUILD" && pwd)" "$WORK/src/build"
  SRC="$WORK/src"
fi
cd "$WORK"
# Debian's python3 (with torch) first, as on a fresh machine.
PATH="/usr/bin:$PATH" CLR_SRC="$SRC" PORT="$PORT" bash -eu guide.sh
echo "docs/GUIDE.md: every command ran ($(grep -c . guide.sh) lines)"
