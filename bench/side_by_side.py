#!/usr/bin/env python3
"""clr's training step against PyTorch's on the same network, machine and threads.

Alternates ROUNDS runs of `clr_bench_throughput` (its "train" mode: the trainer's step)
and of bench/pytorch_step.py (torch.optim.Adam, the penalty through autograd), so that
both see the same load on a shared machine, and prints each side's images/s (median of
the rounds' medians, with their spread) and the ratio clr / PyTorch. Nothing is
asserted: the figures are for docs/BENCHMARKS.md, with this command.

  bench/side_by_side.py --clr-bench build/clr_bench_throughput --python /usr/bin/python3 \\
      --size 64 --small-stem --batch 32 --threads 2 --rounds 3
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys


def json_lines(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clr-bench", default="build/clr_bench_throughput")
    ap.add_argument("--python", default="/usr/bin/python3", help="the interpreter with the PyTorch to compare with")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--small-stem", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="both sides under bf16 autocast")
    ap.add_argument("--channels-last", action="store_true", help="both sides in channels-last")
    a = ap.parse_args()
    common = ["--arch", a.arch, "--size", str(a.size), "--batch", str(a.batch), "--device", a.device,
              "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)]
    if a.small_stem:
        common.append("--small-stem")
    if a.channels_last:
        common.append("--channels-last")
    here = os.path.dirname(os.path.abspath(__file__))
    clr_cmd = [a.clr_bench] + common + (["--precision", "bf16"] if a.bf16 else [])
    torch_cmd = [a.python, os.path.join(here, "pytorch_step.py")] + common + (["--bf16"] if a.bf16 else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    clr_rates, torch_rates, env_line = [], [], {}
    for r in range(a.rounds):
        for name, cmd, sink in (("clr", clr_cmd, clr_rates), ("pytorch", torch_cmd, torch_rates)):
            lines = json_lines(cmd, env)
            if not lines:
                sys.exit(f"side_by_side.py: {name} printed no result: {' '.join(cmd)}")
            j = lines[-1]
            sink.append(j["train_step_images_per_s"]["median"])
            if name == "clr":
                env_line = j
            else:
                torch_version = j.get("torch", "?")
            print(f"round {r + 1}: {name:8s} {sink[-1]:10.1f} img/s", file=sys.stderr, flush=True)
    clr_med, torch_med = statistics.median(clr_rates), statistics.median(torch_rates)
    print(f"{'':10s} {'img/s (median of rounds)':>26s} {'min..max':>20s}")
    for name, rates in (("clr", clr_rates), ("pytorch", torch_rates)):
        print(f"{name:10s} {statistics.median(rates):26.1f} {min(rates):9.1f}..{max(rates):.1f}")
    print(f"ratio clr / pytorch: {clr_med / torch_med:.2f}x "
          f"({a.arch}, {a.size} px, batch {a.batch}, {a.device}, {a.threads} threads, "
          f"{'bf16' if a.bf16 else 'fp32'}{', channels-last' if a.channels_last else ''}, {a.rounds} rounds)")
    print(json.dumps({
        "bench": "side_by_side.py", "arch": a.arch, "size": a.size, "batch": a.batch, "small_stem": a.small_stem,
        "device": a.device, "threads": a.threads, "rounds": a.rounds, "steps": a.steps,
        "precision": "bf16" if a.bf16 else "fp32", "channels_last": a.channels_last,
        "clr_images_per_s": clr_rates, "pytorch_images_per_s": torch_rates,
        "ratio_clr_over_pytorch": clr_med / torch_med, "pytorch": torch_version,
        "clr_build": {k: env_line.get(k) for k in ("machine", "libtorch", "compiler", "build") if k in env_line},
        "machine": platform.node(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
