#!/usr/bin/env bash
# Makes fuzz/corpus/<target>/: a few small valid inputs per clr_fuzz target, from which
# libFuzzer mutates (fuzz/README.md). Run once HERE, after a build and the tests (it
# reads their generated data); the corpus is committed, so nobody needs to run it again.
#   bash fuzz/make_corpus.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DATA=$(ls -d "$BUILD"/test-scratch/make_data-*/ | head -1)
C=fuzz/corpus
# The seeds are made again; the inputs of past findings (regress-*) stay.
[ -d "$C" ] && find "$C" -type f ! -name 'regress-*' -delete
mkdir -p "$C"/{safetensors,safetensors-metadata,pth,weights,idx,cifar,image,toml,adapter,peft,manifest,results,list,skill,http}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$DATA"/images/{rgb.jpg,rgb.png,gray.png,rgba.png,palette.gif,rgb.bmp,rgb.webp} "$C/image/"
head -c 6146 "$DATA/cifar/data_batch_1.bin" > "$C/cifar/two-records.bin"
/usr/bin/python3 - "$C" "$DATA" <<'PY'
import gzip, json, struct, sys, torch
c, data = sys.argv[1], sys.argv[2]
def safetensors(tensors, meta):
    header, blobs, off = {"__metadata__": meta}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs += raw
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blobs
st = safetensors({"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "b": ("I64", [1], struct.pack("<q", 7)),
                  "c": ("U8", [0], b"")}, {"arch": "resnet18"})
for t in ("safetensors", "safetensors-metadata", "weights"):
    open(f"{c}/{t}/small.safetensors", "wb").write(st)
sd = {"conv.weight": torch.arange(8.0).reshape(2, 1, 2, 2), "bn.num_batches_tracked": torch.tensor(3)}
torch.save(sd, f"{c}/pth/state_dict.pth")
torch.save({"state_dict": sd}, f"{c}/pth/nested.pth")
torch.save(sd, f"{c}/weights/state_dict.pth")
imgs = gzip.open(f"{data}/idx/images-idx3-ubyte.gz").read()
rows, cols = struct.unpack(">II", imgs[8:16])
open(f"{c}/idx/images", "wb").write(struct.pack(">IIII", 0x803, 2, rows, cols) + imgs[16:16 + 2 * rows * cols])
labels = gzip.open(f"{data}/idx/labels-idx1-ubyte.gz").read()
open(f"{c}/idx/labels", "wb").write(struct.pack(">II", 0x801, 3) + labels[8:11])
PY
cp configs/default.toml "$C/toml/default.toml"
printf '[run]\nseed = 3\n[train]\nepochs = 2\nlr = 0.01\n[[data.tasks]]\nname = "s"\nkind = "shapes"\nclasses = 3\n' \
  > "$C/toml/shapes.toml"
printf 'a.png 0\n# comment\n\nsub/b.jpg 1\n/abs/c.png 2\n' > "$C/list/list.txt"
# A real run's results, store manifest and one adapter file (the linear variant: a head only, 8 KB).
"$BUILD/clr" --threads 2 run "$DATA/seq" --method linear --backbone resnet18 --small-stem --size 8 --epochs 1 \
  --out "$tmp/run" > /dev/null 2>&1
cp "$tmp/run/results.json" "$C/results/results.json"
cp "$tmp/run/adapters/manifest.json" "$C/manifest/manifest.json"
"$BUILD/clr" tasks export --store "$tmp/run/adapters" alpha --out "$C/adapter/alpha.safetensors" > /dev/null
# The same task as a PEFT-style folder, in the peft target's one-input form: the config,
# a NUL byte, the safetensors file.
"$BUILD/clr" tasks export --store "$tmp/run/adapters" alpha --format peft --out "$tmp/alpha-peft" > /dev/null
{ cat "$tmp/alpha-peft/adapter_config.json"; printf '\0'; cat "$tmp/alpha-peft/adapter_model.safetensors"; } \
  > "$C/peft/alpha"
# The SKILL catalog of the tests' data, and requests a client sends `clr serve` (task "t",
# 8 px: the http target's own store).
cp "$DATA/skill/rolling_releases/database_2.sqlite" "$C/skill/"
/usr/bin/python3 - "$C/http" <<'PY'
import io, sys
from PIL import Image
c = sys.argv[1] + "/"
buf = io.BytesIO()
Image.new("RGB", (8, 8), (200, 30, 60)).save(buf, "PNG")
png = buf.getvalue()
def w(name, b):
    open(c + name, "wb").write(b)
w("get-healthz", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
w("predict-png", b"POST /v1/tasks/t/predict?top_k=2 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
  b"Content-Length: %d\r\n\r\n" % len(png) + png)
body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png"
        b"\r\n\r\n" + png + b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n")
w("predict-multipart", b"POST /v1/tasks/t/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
  b"boundary=XyZ\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
w("pipelined", b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/tasks/t HTTP/1.1\r\nHost: x\r\n\r\n"
  b"HEAD /v1/stats HTTP/1.1\r\nHost: x\r\n\r\nPOST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
  b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
w("identify-png", b"POST /v1/predict?top_k=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
  b"Content-Length: %d\r\n\r\n" % len(png) + png)
w("chunked", b"POST /v1/tasks/t/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
w("reload", b"POST /v1/admin/reload HTTP/1.0\r\nAuthorization: Bearer x\r\n\r\n")
PY
du -sh "$C"; find "$C" -type f | wc -l
