"""python/clr_torch.py (plain PyTorch) on a task exported with `clr tasks export --format
peft`: the same probabilities as `clr predict`, and the folder imported back unchanged."""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/: clr_torch
import clr_torch  # noqa: E402
from conftest import BACKBONE, cli  # noqa: E402  (the learned store is conftest's session fixture)


def test_peft_folder_gives_clr_predicts_probabilities(learned, tmp_path):
    store = os.path.join(learned["out"], "adapters")
    folder = str(tmp_path / "task1-peft")
    cli("tasks", "export", "--store", store, "task1", "--format", "peft", "--out", folder)
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = json.load(f)
    assert config["peft_type"] == "CLR"
    assert "layer1.0.conv1" in config["target_modules"] and "fc" in config["modules_to_save"]
    assert config["backbone_fingerprint"].startswith("sha256:")
    tensors, meta = clr_torch.read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    assert meta == {"format": "pt"}
    assert "base_model.model.layer1.0.conv1.clr.weight" in tensors and "base_model.model.fc.weight" in tensors

    model = clr_torch.load_backbone(BACKBONE)
    info = clr_torch.apply_adapter(model, folder)
    files = [os.path.join(learned["root"], "task1", "test", f"c{k}", f"{i}.png") for k in range(3) for i in range(2)]
    classes = len(info["classes"])
    lines = [json.loads(l) for l in cli("predict", "--store", store, "--task", "task1", "--top-k", str(classes),
                                        *files).splitlines()]
    from PIL import Image
    import numpy as np
    x = torch.stack([clr_torch.preprocess(torch.from_numpy(np.array(Image.open(f).convert("RGB"))), info) for f in files])
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    worst = 0.0
    for p, line in zip(probs, lines):
        for c in line["top"]:
            worst = max(worst, abs(float(p[c["index"]]) - c["prob"]))
    assert worst <= 1e-4, worst

    # Imported back: the same task, tensor for tensor.
    store2 = str(tmp_path / "store2")
    cli("tasks", "import", "--store", store2, folder)
    original = json.loads(cli("tasks", "show", "--store", store, "task1"))
    back = json.loads(cli("tasks", "show", "--store", store2, "task1"))
    for key in ("tensors_sha256", "class_names", "preprocess", "variant", "kernel_size", "backbone", "metrics",
                "training", "created", "task_mapper"):
        assert back.get(key) == original.get(key), key
