"""A clr adapter in plain PyTorch: torchvision's ResNet + depthwise convs + BatchNorm + head.

docs/SERVING.md shows these functions; tests/integration/interop_test.cpp runs this file
with python3-torch and compares its probabilities with clr's.

    python3 adapter_in_pytorch.py BACKBONE ADAPTER --images RAW --count N --size S
RAW holds N preprocessed uint8 images [N, 3, S, S] (what clr's engine feeds the
network); prints one JSON list of class probabilities per image.
"""
import argparse
import json
import struct

import torch
import torchvision

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    """(tensors, metadata) of a safetensors file, with nothing but torch."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else torch.empty(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


class Residual(torch.nn.Module):
    """The residual variant: a frozen conv plus a parallel 1x1 conv of its input."""

    def __init__(self, conv, weight):
        super().__init__()
        self.conv, self.adapter = conv, torch.nn.Conv2d(weight.shape[1], weight.shape[0], 1, conv.stride, bias=False)
        self.adapter.weight.data.copy_(weight)

    def forward(self, x):
        return self.conv(x) + self.adapter(x)


def clr_model(backbone_path, adapter_path):
    """torchvision ResNet with the backbone's weights and the adapter's task installed."""
    backbone, bmeta = load_safetensors(backbone_path)
    tensors, meta = load_safetensors(adapter_path)
    arch, variant = meta["backbone_arch"], meta["variant"]
    model = getattr(torchvision.models, arch)(num_classes=1000)
    if meta.get("backbone_small_stem", bmeta.get("small_stem")) == "true":  # 3x3 stride-1 stem, no max-pool
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in backbone.items() if not k.startswith("fc.")}, strict=False)
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Conv2d):
            continue
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        child = name.rsplit(".", 1)[-1]
        if "clr." + name + ".weight" in tensors:  # CLR: a depthwise k x k conv after the conv
            w = tensors["clr." + name + ".weight"].float()
            dw = torch.nn.Conv2d(w.shape[0], w.shape[0], w.shape[-1], padding=w.shape[-1] // 2,
                                 groups=w.shape[0], bias=False)
            dw.weight.data.copy_(w)
            setattr(parent, child, torch.nn.Sequential(module, dw))
        elif "residual." + name + ".weight" in tensors:
            setattr(parent, child, Residual(module, tensors["residual." + name + ".weight"].float()))
    for key, value in tensors.items():  # the task's BatchNorm: bn.<norm>.<field>
        if key.startswith("bn."):
            norm, field = key[3:].rsplit(".", 1)
            getattr(model.get_submodule(norm), field).data.copy_(value)
    head = tensors["head.weight"]
    model.fc = torch.nn.Linear(head.shape[1], head.shape[0])
    model.fc.load_state_dict({"weight": head.float(), "bias": tensors["head.bias"].float()})
    return model.eval(), meta


def normalize(images_u8, meta):
    """uint8 [N, 3, S, S] -> the network's input, with the adapter's mean and std."""
    mean = torch.tensor(json.loads(meta["mean"])).view(1, 3, 1, 1) * 255
    std = torch.tensor(json.loads(meta["std"])).view(1, 3, 1, 1) * 255
    return (images_u8.float() - mean) / std


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
    model, meta = clr_model(a.backbone, a.adapter)
    with open(a.images, "rb") as f:
        raw = bytearray(f.read())
    images = torch.frombuffer(raw, dtype=torch.uint8).reshape(a.count, 3, a.size, a.size)
    with torch.no_grad():
        probs = torch.softmax(model(normalize(images, meta)), dim=1)
    for row in probs.tolist():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
