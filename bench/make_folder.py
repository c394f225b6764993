#!/usr/bin/env python3
"""Writes an ImageFolder sequence of JPEG/PNG files for end-to-end benchmarks of
`clr run` on files (decoding included): TASKS tasks, CLASSES classes each, PER_CLASS
training and PER_CLASS // 4 test (and with --val, validation) images per class, SIZE px, drawn with PIL from a seed.

    python3 bench/make_folder.py --out /tmp/bench-folder --tasks 3 --classes 4 --per-class 300 --size 96
"""
import argparse
import os
import random

from PIL import Image, ImageDraw


def picture(rng, cls, size):
    im = Image.new("RGB", (size, size), tuple(rng.randint(0, 90) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):  # clutter
        x, y = rng.randint(0, size - 4), rng.randint(0, size - 4)
        d.rectangle([x, y, x + rng.randint(2, size // 6), y + rng.randint(2, size // 6)],
                    fill=tuple(rng.randint(0, 255) for _ in range(3)))
    r = rng.randint(size // 6, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    fill = tuple(rng.randint(120, 255) for _ in range(3))
    kind = cls % 4
    if kind == 0:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == 1:
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == 2:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        d.line([cx - r, cy - r, cx + r, cy + r], fill=fill, width=max(2, r // 3))
        d.line([cx - r, cy + r, cx + r, cy - r], fill=fill, width=max(2, r // 3))
    return im


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", action="store_true", help="also a val split of PER_CLASS // 4 images per class")
    a = p.parse_args()
    rng = random.Random(a.seed)
    for t in range(a.tasks):
        splits = [("train", a.per_class), ("test", max(1, a.per_class // 4))]
        if a.val:
            splits.insert(1, ("val", max(1, a.per_class // 4)))
        for split, n in splits:
            for c in range(a.classes):
                d = os.path.join(a.out, f"task{t}", split, f"class{c}")
                os.makedirs(d, exist_ok=True)
                for i in range(n):
                    im = picture(rng, c + t, a.size)
                    if i % 2:
                        im.save(os.path.join(d, f"{i}.png"))
                    else:
                        im.save(os.path.join(d, f"{i}.jpg"), quality=90)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
