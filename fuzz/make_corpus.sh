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
rm -rf "$C" && mkdir -p "$C"/{safetensors,safetensors-metadata,pth,weights,idx,cifar,image,toml,adapter,manifest,results,list}
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
du -sh "$C"; find "$C" -type f | wc -l
