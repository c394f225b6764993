#!/usr/bin/env python3
"""Prints the tables of bench/authors/run.sh from its JSON lines (side_by_side.jsonl):
train step, serving and the end-to-end sequence, each with the ratios the issue asks for.

  python3 bench/authors/summary.py OUT/side_by_side.jsonl
"""
import json
import sys


def model_name(r):
    name = {"resnet18": "ResNet-18", "resnet50": "ResNet-50"}.get(r["arch"], r["arch"])
    return f"{name}{' small stem' if r.get('small_stem') else ''} {r['size']} px"


def fmt(v):
    return f"{v:,.0f}" if v is not None else "-"


def ratio(a, b):
    return f"**{a / b:.2f}x**" if a and b else "-"


def main():
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    device = next((l.get("device") for l in lines if l.get("code") == "authors"), None)
    env = next((l for l in lines if l.get("bench") == "clr_bench_throughput"), {})
    print(f"GPU: {env.get('gpu') or device}; clr: LibTorch {env.get('libtorch')}, g++ {env.get('compiler')}, "
          f"{env.get('build')}; PyTorch: torch "
          f"{next((l.get('torch') for l in lines if l.get('bench') == 'pytorch_step.py'), '?')}\n")

    steps = {}
    for r in lines:
        if r.get("bench") == "clr_bench_throughput":
            side = "clr " + r["precision"] + (" channels-last" if r["channels_last"] else "")
        elif r.get("code") == "authors" and "train_step_images_per_s" in r:
            side = "authors"
        elif r.get("bench") == "pytorch_step.py" and "train_step_images_per_s" in r:
            side = "pytorch tuned" if r["precision"] == "bf16" and r["channels_last"] else "pytorch " + r["precision"]
        else:
            continue
        steps.setdefault((model_name(r), r["batch"]), {})[side] = r["train_step_images_per_s"]["median"]
    if steps:
        print("Train step, images/s (median):\n")
        print("| model | batch | clr fp32 | clr fp32 channels-last | clr bf16 + channels-last | authors' code fp32 "
              "| PyTorch bf16 + channels-last | clr / PyTorch tuned | clr / authors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for (model, batch), s in steps.items():
            best = s.get("clr bf16 channels-last")
            print(f"| {model} | {batch} | {fmt(s.get('clr fp32'))} | {fmt(s.get('clr fp32 channels-last'))} | "
                  f"{fmt(best)} | {fmt(s.get('authors'))} | {fmt(s.get('pytorch tuned'))} | "
                  f"{ratio(best, s.get('pytorch tuned'))} | {ratio(best, s.get('authors'))} |")
        print()

    serve = {}
    for r in lines:
        if r.get("bench") == "clr_bench_serve":
            one = next((f["median"] for f in r["figures"] if f.get("distinct_tasks") == 1), None)
            mixes = [f for f in r["figures"] if (f.get("distinct_tasks") or 0) > 1 and f["figure"].startswith("engine")]
            mix = max(mixes, key=lambda f: f["distinct_tasks"]) if mixes else None
            s = serve.setdefault(model_name(r), {})
            s.update(one=one, mix=mix["median"] if mix else None, mix_tasks=mix["distinct_tasks"] if mix else 0,
                     precision=r["precision"], batch=r["batch"])
        elif r.get("bench") == "pytorch_step.py" and "forward_images_per_s" in r:
            serve.setdefault(model_name(r), {})["pytorch"] = r["forward_images_per_s"]["median"]
    if serve:
        print("Serving, images/s (median; batch of 64):\n")
        print("| model | clr one task | clr batch mixing tasks | mix / one task | PyTorch bf16 + channels-last, one task "
              "| clr one task / PyTorch |")
        print("|---|---|---|---|---|---|")
        for model, s in serve.items():
            mix_share = f"{s['mix'] / s['one']:.0%}" if s.get("mix") and s.get("one") else "-"
            print(f"| {model} | {fmt(s.get('one'))} ({s.get('precision')}) | {fmt(s.get('mix'))} ({s.get('mix_tasks')} tasks) "
                  f"| {mix_share} | {fmt(s.get('pytorch'))} | {ratio(s.get('one'), s.get('pytorch'))} |")
        print()

    seq = [r for r in lines if r.get("bench") == "sequence"]
    if seq:
        base = {r["side"]: r["process_seconds"] for r in seq}
        print("End to end, 9 tasks at 64 px from the shipped backbone (process wall time):\n")
        print("| side | seconds | epochs run | average accuracy | vs authors' loop on files | vs authors' loop on decoded tensors |")
        print("|---|---|---|---|---|---|")
        for r in seq:
            acc = f"{100 * r['average_accuracy']:.2f}%" if "average_accuracy" in r else f"(exit {r['rc']})"
            print(f"| {r['side']} | {r['process_seconds']:.1f} | {r.get('epochs_run', '-')} | {acc} | "
                  f"{ratio(base.get('authors-files'), r['process_seconds'])} | "
                  f"{ratio(base.get('authors-decoded'), r['process_seconds'])} |")


if __name__ == "__main__":
    main()
