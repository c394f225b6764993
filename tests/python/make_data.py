#!/usr/bin/env python3
"""Test data for clr's data-layer tests, written with PIL, gzip, sqlite3 and struct.

OUT/images/      one image per format (JPEG, PNG, grayscale PNG, RGBA PNG, palette GIF,
                 BMP, lossless WebP) plus a corrupt JPEG; decoded.safetensors holds PIL's
                 decode of each as uint8 [H, W, 3] RGB; resized.safetensors PIL's
                 bilinear resize of rgb.png to 16x16.
OUT/seq/         a multi-task ImageFolder (3 tasks, no val split, order.txt reverses them)
OUT/dirty/       one task with a corrupt JPEG and a grayscale PNG in train
OUT/bad/         a sequence with several problems at once
OUT/lists/       "path label" list files over OUT/seq images
OUT/idx/         gzipped IDX files (12 images 8x8, labels 0..2)
OUT/cifar/       CIFAR-10 (data_batch_1.bin, test_batch.bin) and CIFAR-100 (train.bin)
OUT/skill/       a SKILL catalog: rolling_releases/database_2.sqlite, original_images/, tasks.csv
"""
import argparse
import gzip
import os
import random
import sqlite3
import struct
import sys

from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import write_safetensors  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def picture(rng, w=40, h=30):
    im = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = rng.randint(0, w - 8), rng.randint(0, h - 8)
        d.rectangle([x, y, x + rng.randint(3, 12), y + rng.randint(3, 12)],
                    fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return im


def class_image(rng, cls, size=24):
    """Class c: a bright square in quadrant c on a dark noisy background."""
    im = Image.new("RGB", (size, size), (rng.randint(0, 60),) * 3)
    d = ImageDraw.Draw(im)
    qx, qy = (cls % 2) * size // 2, (cls // 2 % 2) * size // 2
    d.rectangle([qx + 2, qy + 2, qx + size // 2 - 3, qy + size // 2 - 3], fill=(230, 200, 40 + 60 * cls))
    return im


def make_images(out, rng):
    d = os.path.join(out, "images")
    os.makedirs(d)
    base = picture(rng)
    files = {
        "rgb.png": base,
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "palette.gif": base.convert("P", palette=Image.ADAPTIVE, colors=16),
        "rgb.bmp": base,
        "rgb.webp": base,
        "rgb.jpg": base,
    }
    decoded = {}
    for name, im in files.items():
        path = os.path.join(d, name)
        if name.endswith(".webp"):
            im.save(path, lossless=True)
        elif name.endswith(".jpg"):
            im.save(path, quality=95)
        else:
            im.save(path)
        rgb = Image.open(path).convert("RGB")
        decoded[name] = torch.from_numpy(np.array(rgb, dtype=np.uint8))
    with open(os.path.join(d, "rgb.jpg"), "rb") as f:
        data = f.read()
    with open(os.path.join(d, "corrupt.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])  # a real JPEG header, then nothing
    with open(os.path.join(d, "notes.png"), "wb") as f:
        f.write(b"this is text, not a picture")
    write_safetensors(os.path.join(d, "decoded.safetensors"), decoded)
    resized = base.resize((16, 16), Image.BILINEAR)
    write_safetensors(os.path.join(d, "resized.safetensors"),
                      {"rgb16": torch.from_numpy(np.array(resized, dtype=np.uint8))})


def write_task(root, name, classes, per_class, rng, splits=("train", "test")):
    for split in splits:
        n = per_class if split == "train" else max(2, per_class // 2)
        for c in range(classes):
            d = os.path.join(root, name, split, f"class{c}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                ext = ".png" if i % 2 else ".jpg"
                class_image(rng, c).save(os.path.join(d, f"{i}{ext}"))


def make_sequences(out, rng):
    seq = os.path.join(out, "seq")
    write_task(seq, "alpha", 2, 12, rng)
    write_task(seq, "beta", 3, 10, rng)
    write_task(seq, "gamma", 4, 8, rng)
    with open(os.path.join(seq, "order.txt"), "w") as f:
        f.write("# reversed\ngamma\nbeta\nalpha\n")
    dirty = os.path.join(out, "dirty")
    write_task(dirty, "t", 2, 6, rng)
    with open(os.path.join(out, "images", "corrupt.jpg"), "rb") as f:
        bad = f.read()
    with open(os.path.join(dirty, "t", "train", "class0", "broken.jpg"), "wb") as f:
        f.write(bad)
    picture(rng).convert("L").save(os.path.join(dirty, "t", "train", "class1", "gray.png"))
    # Several problems: a task with one class, a file that is no image, an empty class.
    badroot = os.path.join(out, "bad")
    write_task(badroot, "one_class", 1, 4, rng)
    write_task(badroot, "broken", 2, 4, rng)
    with open(os.path.join(badroot, "broken", "train", "class0", "fake.png"), "wb") as f:
        f.write(b"not an image at all")
    os.makedirs(os.path.join(badroot, "broken", "train", "class2"))  # a class without images


def make_lists(out):
    d = os.path.join(out, "lists")
    os.makedirs(d)
    for split in ("train", "test"):
        lines = []
        for c in range(2):
            cd = os.path.join(out, "seq", "alpha", split, f"class{c}")
            for name in sorted(os.listdir(cd)):
                lines.append(f"../seq/alpha/{split}/class{c}/{name} {c}")
        with open(os.path.join(d, f"{split}.txt"), "w") as f:
            f.write("# path label\n" + "\n".join(lines) + "\n")


def make_idx(out, rng):
    d = os.path.join(out, "idx")
    os.makedirs(d)
    n, h, w = 12, 8, 8
    pixels = bytes(rng.randint(0, 255) for _ in range(n * h * w))
    labels = bytes(i % 3 for i in range(n))
    with gzip.open(os.path.join(d, "images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + pixels)
    with gzip.open(os.path.join(d, "labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels)
    with open(os.path.join(d, "truncated-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + pixels[:100])
    write_safetensors(os.path.join(d, "expected.safetensors"),
                      {"images": torch.tensor(list(pixels), dtype=torch.uint8).reshape(n, h, w, 1),
                       "labels": torch.tensor(list(labels), dtype=torch.int64)})


def make_cifar(out, rng):
    d = os.path.join(out, "cifar")
    os.makedirs(d)
    imgs, labels = [], []
    with open(os.path.join(d, "data_batch_1.bin"), "wb") as f:
        for i in range(5):
            px = bytes(rng.randint(0, 255) for _ in range(3072))
            f.write(bytes([i % 10]) + px)
            imgs.append(torch.tensor(list(px), dtype=torch.uint8).reshape(3, 32, 32).permute(1, 2, 0))
            labels.append(i % 10)
    with open(os.path.join(d, "test_batch.bin"), "wb") as f:
        for i in range(3):
            f.write(bytes([i]) + bytes(rng.randint(0, 255) for _ in range(3072)))
    with open(os.path.join(d, "train.bin"), "wb") as f:  # CIFAR-100: coarse, fine, pixels
        for i in range(4):
            f.write(bytes([i % 20, 50 + i]) + bytes(3072))
    write_safetensors(os.path.join(d, "expected.safetensors"),
                      {"images": torch.stack(imgs), "labels": torch.tensor(labels, dtype=torch.int64)})


def make_skill(out, rng):
    root = os.path.join(out, "skill")
    os.makedirs(os.path.join(root, "rolling_releases"))
    db = sqlite3.connect(os.path.join(root, "rolling_releases", "database_2.sqlite"))
    db.execute("CREATE TABLE datasets(dataset_id INTEGER, dataset_name TEXT, url TEXT)")
    db.execute('CREATE TABLE files(hash TEXT, path TEXT, filename TEXT, class_id INTEGER, dataset_id INTEGER, '
               'problem INTEGER, "set" INTEGER)')
    k = 0
    for dsid, name, classes in [(0, "birds", 3), (1, "cars", 2), (2, "unused", 2)]:
        db.execute("INSERT INTO datasets VALUES (?, ?, '')", (dsid, name))
        for s, n in [(0, 6), (1, 2), (2, 3)]:
            for c in range(classes):
                for i in range(n):
                    rel = f"/c{10 + c}/"
                    fname = f"s{s}_{i}.png"
                    d = os.path.join(root, "original_images", name + rel)
                    os.makedirs(d, exist_ok=True)
                    class_image(rng, c).save(os.path.join(d, fname))
                    problem = 1 if (s == 0 and i == 5 and c == 0) else 0
                    db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (f"h{k:05d}", rel, fname, 10 + c, dsid, problem, s))
                    k += 1
    db.commit()
    db.close()
    with open(os.path.join(root, "tasks.csv"), "w") as f:
        f.write("oldid,newid,name,class_num,train_num,test_num\n1,1,cars,2,12,6\n0,2,birds,3,18,9\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(0)
    make_images(a.out, rng)
    make_sequences(a.out, rng)
    make_lists(a.out)
    make_idx(a.out, rng)
    make_cifar(a.out, rng)
    make_skill(a.out, rng)
    print("test data written to", a.out)


if __name__ == "__main__":
    main()
