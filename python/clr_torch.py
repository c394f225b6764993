"""A clr task in plain PyTorch: no compiled code, no clr needed.

`clr tasks export --store S TASK --format peft --out FOLDER` writes a PEFT-style folder
(adapter_config.json, adapter_model.safetensors; docs/PYTHON.md). This file applies such
a folder, or clr's own adapter file (a store's tasks/*.safetensors), to a torchvision
ResNet holding the backbone the task was trained on, and preprocesses images as clr
does, so that PyTorch gives `clr predict`'s probabilities:

    import torch, clr_torch
    model = clr_torch.load_backbone("resnet18-pretrain-64px.safetensors")   # or your torchvision model
    info = clr_torch.apply_adapter(model, "digits-peft")
    x = clr_torch.preprocess(image_uint8_hwc, info)                        # [3, S, S] float
    probs = torch.softmax(model(x[None]), 1)                                # classes: info["classes"]

Needs torch and torchvision (any version with torchvision.models.resnet*); reads
safetensors with the `safetensors` package when installed, else by itself.
"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

PREFIX = "base_model.model."
_DTYPES = {"F16": torch.float16, "F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    """The tensors of a safetensors file (a dict of CPU tensors) and its metadata."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if begin == end:
            out[name] = torch.empty(info["shape"], dtype=_DTYPES[info["dtype"]])
            continue
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


class ResidualAdapter(nn.Module):
    """The residual variant: the frozen conv's output plus a 1x1 conv of its input."""

    def __init__(self, conv, weight):
        super().__init__()
        self.conv = conv
        self.residual = nn.Parameter(weight, requires_grad=False)

    def forward(self, x):
        return self.conv(x) + F.conv2d(x, self.residual, stride=self.conv.stride)


def _clr_layer(weight, kernel):
    c = weight.shape[0]
    layer = nn.Conv2d(c, c, kernel, padding=kernel // 2, groups=c, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _module(model, path):
    m = model
    for part in path.split("."):
        m = getattr(m, part)
    return m


def _set_module(model, path, new):
    parent, _, name = path.rpartition(".")
    setattr(_module(model, parent) if parent else model, name, new)


def resnet(arch="resnet18", small_stem=False):
    """torchvision's ResNet `arch`, randomly initialised; with clr's small-image stem
    (a 3x3 stride-1 conv1, no max-pool) when `small_stem`."""
    model = getattr(torchvision.models, arch)()
    if small_stem:
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def load_backbone(path, arch=None, small_stem=None):
    """A torchvision ResNet from a clr backbone file (safetensors with torchvision names;
    arch and small_stem from its metadata unless given)."""
    state, meta = read_safetensors(path)
    arch = arch or meta.get("arch", "resnet18")
    small = small_stem if small_stem is not None else meta.get("small_stem") == "true"
    model = resnet(arch, small)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
    if bad:
        raise ValueError(f"{path} does not fit torchvision's {arch}: {bad[:6]}")
    return model.eval()


def read_adapter(path):
    """A clr task as (tensors, info): `path` is a PEFT-style folder (clr tasks export
    --format peft) or clr's own adapter file (a store's tasks/*.safetensors, or clr tasks
    export). The tensors come back under the model's names: <conv>.clr.weight,
    <conv>.residual.weight, <bn>.<field>, fc.weight, fc.bias. info: classes, preprocess
    (resize, crop, mean, std), kernel_size, variant, backbone (arch, small_stem,
    fingerprint)."""
    if os.path.isdir(path):
        with open(os.path.join(path, "adapter_config.json")) as f:
            config = json.load(f)
        if config.get("peft_type") != "CLR":
            raise ValueError(f"{path}: not a CLR adapter (peft_type {config.get('peft_type')!r})")
        raw, _ = read_safetensors(os.path.join(path, "adapter_model.safetensors"))
        tensors = {}
        for key, t in raw.items():
            if not key.startswith(PREFIX):
                raise ValueError(f"{path}: tensor {key!r} does not start with {PREFIX!r}")
            tensors[key[len(PREFIX):]] = t
        c = config["clr"]
        info = {"classes": c["classes"], "preprocess": c["preprocess"], "kernel_size": int(config["kernel_size"]),
                "variant": config["variant"], "task": c["task"],
                "backbone": dict(c["backbone"], fingerprint=config["backbone_fingerprint"]), "config": config}
        return tensors, info
    raw, meta = read_safetensors(path)
    if meta.get("format") != "clr.adapter":
        raise ValueError(f"{path}: not a clr adapter file (format {meta.get('format')!r})")
    tensors = {}
    for key, t in raw.items():
        if key.startswith("clr."):
            tensors[key[4:-len(".weight")] + ".clr.weight"] = t
        elif key.startswith("residual."):
            tensors[key[9:-len(".weight")] + ".residual.weight"] = t
        elif key.startswith("bn."):
            tensors[key[3:]] = t
        elif key.startswith("head."):
            tensors["fc." + key[5:]] = t
        # mapper.*: the task-mapper statistics, not part of the network
    kernel = int(meta.get("kernel_size", "3"))
    info = {"classes": json.loads(meta["classes"]), "kernel_size": kernel, "variant": meta["variant"],
            "task": meta["task"],
            "preprocess": {"resize": int(meta["resize"]), "crop": int(meta.get("crop", "0")),
                           "mean": json.loads(meta["mean"]), "std": json.loads(meta["std"])},
            "backbone": {"arch": meta["backbone_arch"], "small_stem": meta.get("backbone_small_stem") == "true",
                         "fingerprint": meta["backbone_fingerprint"]}}
    return tensors, info


def apply_adapter(model, path):
    """Puts a clr task (a PEFT-style folder or a clr adapter file, read_adapter) into
    `model`, a torchvision ResNet with the task's backbone: a CLR layer after every
    target conv (or a residual 1x1 beside it), the task's BatchNorms and head. Returns
    read_adapter's info; the model is left in eval mode."""
    tensors, info = read_adapter(path)
    kernel = info["kernel_size"]
    saved = {}
    for k, t in tensors.items():
        if k.endswith(".clr.weight"):
            conv = k[: -len(".clr.weight")]
            _set_module(model, conv, nn.Sequential(_module(model, conv), _clr_layer(t.float(), kernel)))
        elif k.endswith(".residual.weight"):
            conv = k[: -len(".residual.weight")]
            _set_module(model, conv, ResidualAdapter(_module(model, conv), t.float()))
        else:
            saved[k] = t
    # The head, then the task's BatchNorm parameters and statistics.
    w, b = saved.pop("fc.weight"), saved.pop("fc.bias")
    model.fc = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(b)
    for k, t in saved.items():
        module, _, name = k.rpartition(".")
        target = getattr(_module(model, module), name)
        with torch.no_grad():
            target.copy_(t.to(target.dtype))
    model.eval()
    return info


def normalize(images, info):
    """uint8 images [N, 3, S, S] (already the task's size) -> the network's input, with
    the task's mean and std."""
    p = info["preprocess"] if "preprocess" in info else info
    mean = torch.tensor(p["mean"], dtype=torch.float32).view(1, 3, 1, 1) * 255
    std = torch.tensor(p["std"], dtype=torch.float32).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


def preprocess(image, info):
    """A decoded image, uint8 [H, W, 3], as the task takes it: squashed to resize x resize
    (bilinear, antialiased, rounded to uint8), centre-cropped when the task used crops,
    and normalised with the task's mean and std: float [3, S, S]."""
    p = info["preprocess"] if "preprocess" in info else info
    size, crop = int(p["resize"]), int(p["crop"])
    chw = image.permute(2, 0, 1)
    if chw.shape[1] != size or chw.shape[2] != size:
        r = F.interpolate(chw[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        chw = r[0].round().clamp(0, 255).to(torch.uint8)
    if 0 < crop < size:
        o = (size - crop) // 2
        chw = chw[:, o:o + crop, o:o + crop]
    return normalize(chw[None], p)[0]
