#!/usr/bin/env bash
# Load test of `clr serve` from a second process on loopback (docs/SERVING.md):
# a store of TASKS random CLR tasks (clr_bench_serve --keep), the server on it, and
# wrk (Debian: wrk) posting an image to the tasks in turn, first all good requests,
# then with every BAD_EVERY-th request a bad one (no image, unknown task, empty body).
# SLOW=n (default 0) keeps n more connections open during both runs, each sending a
# request one byte every 0.5 s (a slow client); what they got is printed at the end.
#
#   bash bench/serve_load.sh [TASKS=64] [SECONDS=20] [CONNECTIONS=32] [BAD_EVERY=4]
# Environment: BUILD (default build), PORT (18080), SIZE (32), SERVE_FLAGS (extra
# flags for clr serve, e.g. "--max-batch 16").
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-64}
SECONDS_=${2:-20}
CONNECTIONS=${3:-32}
BAD_EVERY=${4:-4}
BUILD=${BUILD:-build}
PORT=${PORT:-18080}
SIZE=${SIZE:-32}
command -v wrk > /dev/null || { echo "serve_load.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
DIR=$(mktemp -d /tmp/clr-serve-load.XXXXXX)
cleanup() {
  [ -n "${SLOWPID:-}" ] && kill "$SLOWPID" 2> /dev/null
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2> /dev/null && wait "$SERVER" 2> /dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

"$BUILD/clr_bench_serve" --small-stem --size "$SIZE" --tasks "$TASKS" --steps 1 --warmup 0 --keep --dir "$DIR/bench" \
  > "$DIR/bench.txt" 2> "$DIR/bench.log"
"$BUILD/clr" serve --store "$DIR/bench/store" --port "$PORT" ${SERVE_FLAGS:-} > "$DIR/serve.out" 2> "$DIR/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do
  (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break
  sleep 0.1
done
/usr/bin/python3 -c "
from PIL import Image; import random; random.seed(0)
Image.frombytes('RGB', (48, 48), bytes(random.randrange(256) for _ in range(48 * 48 * 3))).save('$DIR/image.png')"
SLOW=${SLOW:-0}
if [ "$SLOW" -gt 0 ]; then
  /usr/bin/python3 - "$PORT" "$SLOW" > "$DIR/slow.txt" 2>&1 <<'PY' &
import socket, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
stats = {"cut": 0, "answered": 0, "started": 0}
lock = threading.Lock()
def client():
    while True:
        with socket.create_connection(("127.0.0.1", port)) as s:
            with lock: stats["started"] += 1
            try:
                for b in request:
                    s.sendall(bytes([b])); time.sleep(0.5)
                data = s.recv(4096)
                with lock: stats["answered" if data else "cut"] += 1
            except OSError:
                with lock: stats["cut"] += 1
for _ in range(n): threading.Thread(target=client, daemon=True).start()
while True:
    time.sleep(1)
    with lock: print("slow clients: %d connections opened, %d answered, %d cut off by the server" % (stats["started"], stats["answered"], stats["cut"]), flush=True)
PY
  SLOWPID=$!
fi
head -1 "$DIR/serve.out"
echo "machine: $(nproc) threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== good requests: $TASKS tasks in turn, $CONNECTIONS connections, ${SECONDS_} s"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_}s" --latency -s bench/serve_load.lua "http://127.0.0.1:$PORT" -- \
  "$DIR/image.png" task "$TASKS" 0 | grep -E "^requests|^socket|^status"
echo "== every ${BAD_EVERY}th request bad"
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_}s" --latency -s bench/serve_load.lua "http://127.0.0.1:$PORT" -- \
  "$DIR/image.png" task "$TASKS" "$BAD_EVERY" | grep -E "^requests|^socket|^status"
exec 3<> "/dev/tcp/127.0.0.1/$PORT"
printf 'GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
echo "server stats: $(tail -1 <&3)"
[ "$SLOW" -gt 0 ] && tail -1 "$DIR/slow.txt"
