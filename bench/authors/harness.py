#!/usr/bin/env python3
"""Times the authors' PyTorch CLR (gyhandy/Channel-wise-Lightweight-Reprogramming) on the
same machine, network and data as `clr`, for bench/authors/run.sh and docs/BENCHMARKS.md.

Their code is NOT part of this repository: it is read from bench/authors/code/ (git-ignored;
bench/authors/README.md says how to fill it). From it this harness uses, unchanged:
`network.utils.add_ghostnet` / `train_BN` / `add_parameters` (their reprogramming of a
torchvision ResNet, the "Ghost_reduced_v1" model of their main.py: a depthwise 3x3 after
every conv with kernel > 1), and `utils.train` / `utils.eval` (their training and
evaluation loops, with the L2 norm penalty). What their main.py hard-codes and cannot run
here is replaced, and only that: the pretrained download (`resnet18(pretrained=True)`)
becomes a torchvision ResNet loaded from a safetensors backbone (or random weights), and
their SKILL dataset class becomes torchvision's ImageFolder with their transform
(Resize, ToTensor, ImageNet Normalize) yielding their (image, label, index) triples.

  step      their `train()` on fixed batches: images/s per call of `steps` batches
  sequence  their main.py loop (Adam 1e-3 over reg_params, StepLR(20, 0.1), best state on
            the validation split, stop after more than 21 epochs without gain) over an
            ImageFolder sequence ROOT/<task>/{train,val,test}/<class>/<img>, from files
            as their DataLoader reads them, or from tensors decoded once (--decoded)

Prints one JSON line per measurement. Runs with torch 1.13 (CPU) and 2.x (CUDA).
"""
import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import clr_torch  # noqa: E402  (this project's plain-PyTorch ResNet and backbone reader)
CODE_COMMIT = "unknown"


def their_code(path):
    """Imports the authors' modules from PATH (their repository's root)."""
    if not os.path.isfile(os.path.join(path, "network", "utils.py")):
        sys.exit(f"harness.py: no authors' code in {path} (expected network/utils.py there); "
                 "bench/authors/README.md says how to fetch it")
    sys.path.insert(0, path)
    global CODE_COMMIT
    try:
        import subprocess
        CODE_COMMIT = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip() or "unknown"
    except OSError:
        CODE_COMMIT = "unknown"
    import network.utils as netutils  # noqa: E402  (their code)
    import utils as loops  # noqa: E402  (their code: train, eval)
    return netutils, loops


def their_model(netutils, arch, small_stem, weights, classes):
    """Their Res_Ghost(num_class, model_type="reduced_v1"), on this backbone instead of the download."""
    model = clr_torch.load_backbone(weights, arch, small_stem) if weights else clr_torch.resnet(arch, small_stem)
    for p in model.parameters():
        p.requires_grad = False
    model.eval()
    model = netutils.train_BN(model)
    model.fc = nn.Linear(model.fc.in_features, classes)
    reg_params = list(model.fc.parameters())
    reg_params = netutils.add_parameters(reg_params, model, nn.BatchNorm2d)
    model = netutils.add_ghostnet(model, "reduced_v1")
    import network.ReGhos_Block as blocks  # their code
    reg_params = netutils.add_parameters(reg_params, model, blocks.ReGhos_Block)
    model.reg_params, model.noreg_params = reg_params, []
    return model


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def describe(dev):
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "machine": platform.node(),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu"),
            "threads": torch.get_num_threads(), "authors_commit": CODE_COMMIT}


def step(a, netutils, loops):
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = their_model(netutils, a.arch, a.small_stem, a.backbone, a.classes).to(dev)
    opt = torch.optim.Adam(model.reg_params + model.noreg_params, lr=1e-3)
    for batch in [int(b) for b in a.batch.split(",")]:
        x = torch.randn(batch, 3, a.size, a.size, device=dev)
        y = torch.randint(0, a.classes, (batch,), device=dev)
        idx = torch.arange(batch)
        loader = [(x, y, idx)] * a.steps
        model.train()
        loops.train(dev, [(x, y, idx)] * a.warmup, model, opt, reg="l2", lamda=a.penalty)
        sync(dev)
        rates = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            loops.train(dev, loader, model, opt, reg="l2", lamda=a.penalty)  # their loop, unchanged
            sync(dev)
            rates.append(batch * a.steps / (time.perf_counter() - t0))
        q = statistics.quantiles(rates, n=10) if len(rates) > 1 else [rates[0]] * 9
        print(json.dumps({"bench": "authors/harness.py step", "code": "authors", "arch": a.arch,
                          "small_stem": a.small_stem, "size": a.size, "batch": batch, "precision": "fp32",
                          "steps_per_round": a.steps, "rounds": a.rounds, "penalty": a.penalty,
                          "train_step_images_per_s": {"median": statistics.median(rates), "p10": q[0], "p90": q[-1]},
                          **describe(dev)}), flush=True)


class Triples(torch.utils.data.Dataset):
    """Their datasets yield (image, label, index)."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        x, y = self.inner[i]
        return x, y, i


def decoded(ds):
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.utils.data.TensorDataset(torch.stack(xs), torch.tensor(ys))


def sequence(a, netutils, loops):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    dev = torch.device(a.device)
    tf = transforms.Compose([transforms.Resize((a.size, a.size)), transforms.ToTensor(),
                             transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    tasks = sorted(d for d in os.listdir(a.data) if os.path.isdir(os.path.join(a.data, d)))
    wall0 = time.perf_counter()
    accs = []
    for ti, task in enumerate(tasks):
        t0 = time.perf_counter()
        torch.manual_seed(a.seed + ti)
        splits = {s: ImageFolder(os.path.join(a.data, task, s), transform=tf) for s in ("train", "val", "test")}
        if a.decoded:
            splits = {s: decoded(d) for s, d in splits.items()}
        train_loader = torch.utils.data.DataLoader(Triples(splits["train"]), batch_size=a.batch, shuffle=True)
        val_loader = torch.utils.data.DataLoader(Triples(splits["val"]), batch_size=max(1, a.batch // 2), shuffle=True)
        test_loader = torch.utils.data.DataLoader(Triples(splits["test"]), batch_size=max(1, a.batch // 2))
        classes = len(splits["train"].classes) if hasattr(splits["train"], "classes") else int(splits["train"].tensors[1].max()) + 1
        model = their_model(netutils, a.arch, a.small_stem, a.backbone, classes).to(dev)
        opt = torch.optim.Adam(model.reg_params + model.noreg_params, lr=a.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, a.step_size, 0.1)
        # main.py starts from best_eval = 0 and so keeps no state when every epoch scores 0;
        # -1 keeps the first epoch's instead.
        best, best_state, best_epoch, epochs = -1.0, None, 1, 0
        for epoch in range(1, a.epochs + 1):  # their main.py's loop
            epochs = epoch
            model.train()
            loops.train(dev, train_loader, model, opt, scheduler=sched, reg="l2", lamda=a.penalty)
            model.eval()
            acc = float(loops.eval(model, val_loader, dev))
            if acc > best:
                best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch
            elif epoch - best_epoch > a.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            test = float(loops.eval(model, test_loader, dev))
        accs.append(test)
        sync(dev)
        print(json.dumps({"bench": "authors/harness.py sequence", "task": task, "epochs": epochs, "best_epoch": best_epoch,
                          "val_accuracy": best, "test_accuracy": test, "seconds": time.perf_counter() - t0,
                          "train_images": len(splits["train"])}), flush=True)
    print(json.dumps({"bench": "authors/harness.py sequence", "code": "authors", "data": a.data, "tasks": len(tasks),
                      "decoded": a.decoded, "size": a.size, "epochs": a.epochs, "batch": a.batch,
                      "average_accuracy": statistics.mean(accs), "wall_seconds": time.perf_counter() - wall0,
                      **describe(dev)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["step", "sequence"])
    ap.add_argument("--code", default=os.path.join(HERE, "code"), help="the authors' repository (default bench/authors/code)")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--small-stem", action="store_true")
    ap.add_argument("--backbone", default="", help="safetensors backbone with torchvision names (default: random weights)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", default="32", help="step: comma-separated batch sizes; sequence: one")
    ap.add_argument("--classes", type=int, default=10, help="step: classes of the head")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--penalty", type=float, default=1e-5, help="their lamda (main.py: 1e-5)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="step: batches per timed call of their train()")
    ap.add_argument("--rounds", type=int, default=5, help="step: timed calls")
    ap.add_argument("--data", help="sequence: ImageFolder sequence root")
    ap.add_argument("--decoded", action="store_true", help="sequence: decode every split once into tensors")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--step-size", type=int, default=20, help="StepLR period (main.py: epochs // 3 = 20)")
    ap.add_argument("--patience", type=int, default=21)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    netutils, loops = their_code(a.code)
    if a.mode == "step":
        step(a, netutils, loops)
    else:
        if not a.data:
            sys.exit("harness.py sequence: --data ROOT is required")
        a.batch = int(a.batch)
        sequence(a, netutils, loops)


if __name__ == "__main__":
    main()
