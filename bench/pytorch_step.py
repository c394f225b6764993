#!/usr/bin/env python3
"""The peer of clr_bench_throughput's "train" mode (and, with --forward, of clr_bench_serve's
single-task engine), written the way a PyTorch user would:
the same CLR-reprogrammed ResNet (a depthwise k x k conv, identity at start, after every
conv with kernel > 1; BatchNorm trained per task; a new linear head; the backbone's convs
frozen), Adam, and the authors' norm penalty through autograd. Prints one JSON line per
batch size with the median images/s and the 10th..90th percentiles, as the C++ bench
does, so that bench/side_by_side.sh can put the two in one table.

Runs with Debian's python3-torch 1.13 (CPU) and with torch 2.x (CUDA); nothing here is
the authors' code.
"""
import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def clr_layer(channels, kernel):
    layer = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, 0, kernel // 2, kernel // 2] = 1.0  # identity at start
    return layer


def reprogram(module, kernel):
    """Puts a CLR layer after every conv with kernel > 1 (between the conv and its BatchNorm)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.kernel_size[0] > 1:
            setattr(module, name, nn.Sequential(child, clr_layer(child.out_channels, kernel)))
        else:
            reprogram(child, kernel)


def make_net(arch, small_stem, classes, kernel):
    net = getattr(torchvision.models, arch)(weights=None)
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    for p in net.parameters():
        p.requires_grad_(False)
    net.fc = nn.Linear(net.fc.in_features, classes)
    reprogram(net, kernel)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(True)
            m.bias.requires_grad_(True)
    # The CLR layers were made after the freeze: they, BatchNorm's affine and the head train.
    trainable = [p for p in net.parameters() if p.requires_grad]
    return net, trainable


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", default="32", help="comma-separated batch sizes")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--small-stem", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: leave torch's default)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--penalty", type=float, default=1e-5)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on the forward pass")
    ap.add_argument("--forward", action="store_true",
                    help="time the eval-mode forward under inference_mode (serving one task) instead of the step")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    net, params = make_net(a.arch, a.small_stem, a.classes, a.kernel)
    net.to(dev)
    if a.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(params, lr=1e-3)
    net.train()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for batch in [int(b) for b in a.batch.split(",")]:
        x = torch.randn(batch, 3, a.size, a.size, device=dev)
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, a.classes, (batch,), device=dev)

        def forward():
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                net(x)

        def train_step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
                loss = nn.functional.cross_entropy(net(x), y)
            if a.penalty > 0:
                loss = loss + a.penalty * torch.stack([p.norm() for p in params]).sum()
            loss.backward()
            opt.step()

        step = forward if a.forward else train_step
        net.train(not a.forward)
        for _ in range(a.warmup):
            step()
        sync()
        rates = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            step()
            sync()
            rates.append(batch / (time.perf_counter() - t0))
        rates.sort()
        q = statistics.quantiles(rates, n=10)
        print(json.dumps({
            "bench": "pytorch_step.py",
            "arch": a.arch, "small_stem": a.small_stem, "size": a.size, "batch": batch, "device": str(dev),
            "channels_last": a.channels_last, "precision": "bf16" if a.bf16 else "fp32",
            "warmup": a.warmup, "steps": a.steps, "penalty": a.penalty,
            ("forward_images_per_s" if a.forward else "train_step_images_per_s"):
                {"median": statistics.median(rates), "p10": q[0], "p90": q[-1]},
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.node(),
            "cpu": platform.processor() or platform.machine(),
        }), flush=True)


if __name__ == "__main__":
    main()
