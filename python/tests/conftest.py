"""Shared by python/tests: the images, the config, the program, and one learned run (a
session fixture: every test module reads the same run instead of learning its own)."""
import os
import random
import subprocess

import pytest
from PIL import Image, ImageDraw

import clr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLR_BIN = os.environ.get("CLR_BIN", os.path.join(ROOT, "build", "clr"))
BACKBONE = os.path.join(ROOT, "models", "resnet18-pretrain-64px.safetensors")
SIZE = 16


def draw_folder(root, tasks=2, classes=3, train=10, test=4, seed=0):
    """An ImageFolder sequence ROOT/task<t>/{train,test}/c<k>/<i>.png of coloured shapes."""
    rng = random.Random(seed)
    for t in range(tasks):
        for split, n in (("train", train), ("test", test)):
            for k in range(classes):
                d = os.path.join(root, f"task{t}", split, f"c{k}")
                os.makedirs(d, exist_ok=True)
                for i in range(n):
                    im = Image.new("RGB", (24, 24), tuple(rng.randint(0, 80) for _ in range(3)))
                    draw = ImageDraw.Draw(im)
                    x, y, r = rng.randint(4, 12), rng.randint(4, 12), rng.randint(4, 8)
                    colour = [(220, 40, 40), (40, 220, 40), (40, 40, 220)][(k + t) % 3]
                    if k == 0:
                        draw.ellipse([x, y, x + r, y + r], fill=colour)
                    elif k == 1:
                        draw.rectangle([x, y, x + r, y + r], fill=colour)
                    else:
                        draw.line([x, y, x + r, y + r], fill=colour, width=3)
                    im.save(os.path.join(d, f"{i}.png"))


def config(root, out):
    return {
        "run": {"out": out, "seed": 0, "task_inference": ["gaussian"]},
        "backbone": {"weights": BACKBONE},
        "data": {"root": root, "size": SIZE},
        "train": {"epochs": 2, "batch": 8},
    }


def cli(*args):
    return subprocess.run([CLR_BIN, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def learned(tmp_path_factory):
    base = tmp_path_factory.mktemp("clr-python")
    root, out = str(base / "data"), str(base / "run")
    draw_folder(root)
    seen = []
    results = clr.run(config(root, out), on_task=lambda r: seen.append(r), tensorboard=str(base / "board"))
    return {"base": base, "root": root, "out": out, "results": results, "seen": seen, "board": str(base / "board")}
