#!/usr/bin/env python3
"""Reference outputs for clr's parity tests, made with the real torchvision.

Writes into OUT:
  <arch>.pth                 torch.save(model.state_dict()) of a torchvision model with
                             random weights and calibrated BatchNorm statistics
  <arch>.safetensors         the same tensors, written by this script's own writer
  <arch>_ref.safetensors     inputs and eval-mode logits (input_224, logits_224, input_64, logits_64)
  <arch>_<variant>_task.safetensors  a random, non-identity task state in clr's key layout
  <arch>_<variant>_ref.safetensors   input and logits of the PyTorch construction of that
                             reprogrammed network (depthwise convs inserted after the convs)
  resnet18_small.* (small-image stem: 3x3 stride-1 conv1, no max-pool) at 32 px

The reprogrammed construction follows PAPER.md: conv (frozen) -> CLR (depthwise kxk,
stride 1, same padding) -> BatchNorm, after every conv with kernel > 1 (clr) or every
conv (clr-full); the residual variant adds a parallel 1x1 conv with the conv's stride
and keeps BatchNorm frozen.
"""
import argparse
import json
import os
import struct

import torch
import torch.nn as nn
import torchvision

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
          torch.int32: "I32", torch.uint8: "U8", torch.float64: "F64", torch.int8: "I8",
          torch.int16: "I16", torch.bool: "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format: u64 little-endian header length, JSON header, raw bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        # numpy has no bfloat16: go through an int16 view for the raw bytes.
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def calibrate_bn(model, size, batches=4):
    """Random affine BN parameters, then running statistics measured on random data,
    so eval-mode activations stay O(1) through a random-weight network."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, 3, size, size))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    model.eval()


def make_backbone(arch, small_stem=False):
    model = getattr(torchvision.models, arch)()
    if small_stem:
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    return model


class ConvThenClr(nn.Module):
    def __init__(self, conv, kernel):
        super().__init__()
        self.conv = conv
        c = conv.out_channels
        self.clr = nn.Conv2d(c, c, kernel, 1, kernel // 2, groups=c, bias=False)

    def forward(self, x):
        return self.clr(self.conv(x))


class ConvPlusResidual(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.res = nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride=conv.stride, bias=False)

    def forward(self, x):
        return self.conv(x) + self.res(x)


def reprogram(model, variant, kernel=3):
    """Wraps convs in place; returns {torchvision conv name: wrapper}."""
    wrapped = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Conv2d):
                continue
            full = f"{name}.{child_name}" if name else child_name
            if variant == "clr" and child.kernel_size == (1, 1):
                continue
            wrapper = ConvPlusResidual(child) if variant == "residual" else ConvThenClr(child, kernel)
            setattr(module, child_name, wrapper)
            wrapped[full] = wrapper
    return wrapped


def reference_backbone(arch, out, small_stem=False):
    tag = arch + ("_small" if small_stem else "")
    model = make_backbone(arch, small_stem)
    sizes = [32] if small_stem else [224, 64]
    calibrate_bn(model, sizes[-1])
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, f"{tag}.pth"))
    write_safetensors(os.path.join(out, f"{tag}.safetensors"), dict(sd), {"arch": arch, "made_by": "torch_reference.py"})
    ref = {}
    with torch.no_grad():
        for s in sizes:
            x = torch.randn(2, 3, s, s)
            ref[f"input_{s}"] = x
            ref[f"logits_{s}"] = model(x)
            ref[f"features_{s}"] = torch.flatten(model.avgpool(nn.Sequential(*list(model.children())[:-2])(x)), 1)
    write_safetensors(os.path.join(out, f"{tag}_ref.safetensors"), ref)
    return model


def reference_reprogrammed(arch, variant, out, size, num_classes=7):
    backbone = make_backbone(arch)
    backbone.load_state_dict(torch.load(os.path.join(out, f"{arch}.pth")))
    model = backbone
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    wrapped = reprogram(model, variant)
    task = {}
    with torch.no_grad():
        for conv_name, w in wrapped.items():
            if variant == "residual":
                w.res.weight.normal_(0, 0.01)
                task[f"residual.{conv_name}.weight"] = w.res.weight.clone()
            else:
                k = w.clr.weight
                k.normal_(0, 0.05)
                k[:, :, k.shape[2] // 2, k.shape[3] // 2] += 1.0
                task[f"clr.{conv_name}.weight"] = k.clone()
        if variant != "residual":
            for name, m in model.named_modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.mul_(torch.empty_like(m.weight).uniform_(0.8, 1.2))
                    m.bias.add_(torch.empty_like(m.bias).uniform_(-0.1, 0.1))
                    m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.05, 0.05))
                    m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.9, 1.1))
                    m.num_batches_tracked.fill_(17)
                    for field in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                        task[f"bn.{name}.{field}"] = getattr(m, field).clone()
        task["head.weight"] = model.fc.weight.clone()
        task["head.bias"] = model.fc.bias.clone()
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, size, size)
        logits = model(x)
    write_safetensors(os.path.join(out, f"{arch}_{variant}_task.safetensors"), task)
    write_safetensors(os.path.join(out, f"{arch}_{variant}_ref.safetensors"), {"input": x, "logits": logits})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads (the C++ side's count: GEMM blocking, hence rounding, depends on it)")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads if a.threads > 0 else max(1, os.cpu_count() or 1))
    for arch in ("resnet18", "resnet50"):
        reference_backbone(arch, a.out)
    reference_backbone("resnet18", a.out, small_stem=True)
    for variant in ("clr", "clr-full", "residual"):
        reference_reprogrammed("resnet18", variant, a.out, 64)
    reference_reprogrammed("resnet50", "clr", a.out, 96)
    # A checkpoint that nests the state dict, as training scripts write them.
    sd = torch.load(os.path.join(a.out, "resnet18.pth"))
    torch.save({"epoch": 3, "state_dict": sd}, os.path.join(a.out, "resnet18_nested.pth"))
    # A plain dict (no OrderedDict metadata) and fp16 / bf16 tensors.
    mixed = {"half": torch.randn(3, 4).half(), "bf16": torch.randn(5).bfloat16(), "long": torch.arange(6),
             "strided": torch.randn(4, 6).t(), "shared_a": torch.arange(10.0)[2:7]}
    torch.save(mixed, os.path.join(a.out, "mixed.pth"))
    write_safetensors(os.path.join(a.out, "mixed_ref.safetensors"),
                      {k: v.contiguous() for k, v in mixed.items()})
    print("reference files written to", a.out)


if __name__ == "__main__":
    main()
