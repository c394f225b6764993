"""A clr adapter in plain PyTorch, through python/clr_torch.py (torchvision's ResNet +
depthwise convs + BatchNorm + head; no compiled code).

tests/parity/interop_test.cpp runs this file with python3-torch and compares its
probabilities with clr's; docs/SERVING.md points to it.

    python3 adapter_in_pytorch.py BACKBONE ADAPTER --images RAW --count N --size S
ADAPTER is a store's task file (or a PEFT-style folder). RAW holds N preprocessed uint8
images [N, 3, S, S] (what clr's engine feeds the network); prints one JSON list of class
probabilities per image.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import clr_torch  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("backbone")
    p.add_argument("adapter")
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    _, info = clr_torch.read_adapter(a.adapter)
    model = clr_torch.load_backbone(a.backbone, info["backbone"]["arch"], info["backbone"]["small_stem"])
    clr_torch.apply_adapter(model, a.adapter)
    with open(a.images, "rb") as f:
        raw = bytearray(f.read())
    images = torch.frombuffer(raw, dtype=torch.uint8).reshape(a.count, 3, a.size, a.size)
    with torch.no_grad():
        probs = torch.softmax(model(clr_torch.normalize(images, info)), dim=1)
    for row in probs.tolist():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
