"""The Python module against the program: the same run, predictions and task inference
as `clr run` and `clr predict` give, errors as clr's exception kinds. Run by ctest
(Python.Module) with PYTHONPATH=BUILD/python and CLR_BIN=BUILD/clr."""
import json
import os

import pytest
import torch

import clr

from conftest import BACKBONE, SIZE, cli, config  # noqa: E402  (python/tests/conftest.py)


def test_version_and_threads():
    assert clr.__version__.count(".") == 2
    assert clr.libtorch_version == torch.__version__.split("+")[0].split("a")[0]  # one LibTorch
    assert clr.set_threads(1) == 1


def test_run_equals_the_programs_run(learned):
    r = learned["results"]
    assert r["complete"] and len(r["tasks"]) == 2
    out2 = str(learned["base"] / "run-cli")
    cli("run", learned["root"], "--out", out2, "--backbone", BACKBONE, "--size", str(SIZE),
        "--epochs", "2", "--batch", "8", "--seed", "0", "--tensorboard", out2 + "-board")
    with open(os.path.join(out2, "results.json")) as f:
        theirs = json.load(f)
    board = os.path.join(out2 + "-board", os.listdir(out2 + "-board")[0])
    averages = [v.simple_value for e in tensorboard_events(board)[1:] for v in e.summary.value
                if v.tag == "average_accuracy"]
    assert averages[-1] == pytest.approx(theirs["average_accuracy"])
    assert r["accuracy_matrix"] == theirs["accuracy_matrix"]  # CPU runs are deterministic
    assert r["task_inference"] == theirs["task_inference"]
    # The callback saw each task's results as they were written.
    seen = learned["seen"]
    learned_rows = [sum(1 for i, row in enumerate(s["accuracy_matrix"]) if i < len(row) and row[i] is not None)
                    for s in seen]
    assert learned_rows == [1, 2]
    assert seen[-1]["accuracy_matrix"] == r["accuracy_matrix"]
    with open(os.path.join(learned["out"], "results.json")) as f:
        assert json.load(f)["accuracy_matrix"] == r["accuracy_matrix"]


def test_load_backbone_is_the_stores_backbone(learned):
    info, state = clr.load_backbone(BACKBONE)
    assert info["arch"] == "resnet18" and info["small_stem"] is True
    engine = clr.Engine(os.path.join(learned["out"], "adapters"))
    assert info["fingerprint"] == engine.backbone["fingerprint"]
    assert "fc.weight" not in state and state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["layer4.1.bn2.running_var"].dtype == torch.float32


def test_load_config_is_the_finalized_config(learned):
    c = clr.load_config(config(learned["root"], learned["out"]))
    assert c["backbone"]["arch"] == "resnet18" and c["backbone"]["small_stem"] is True
    assert c["data"]["size"] == SIZE and c["train"]["epochs"] == 2


def test_engine_predicts_as_clr_predict(learned):
    store = os.path.join(learned["out"], "adapters")
    engine = clr.Engine(store)
    assert [t["name"] for t in engine.tasks()] == ["task0", "task1"]
    assert engine.backbone["arch"] == "resnet18"
    files = [os.path.join(learned["root"], "task1", "test", f"c{k}", "0.png") for k in range(3)]
    lines = [json.loads(line) for line in cli("predict", "--store", store, "--task", "task1", "--top-k", "3", *files).splitlines()]
    image = clr.read_image(files[0])
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.shape[2] == 3
    batch = torch.stack([engine.preprocess("task1", clr.read_image(f)) for f in files])
    assert batch.shape == (3, 3, SIZE, SIZE)
    ours = engine.predict(batch, "task1", top_k=3)
    for line, top in zip(lines, ours):
        assert [c["class"] for c in top] == [c["class"] for c in line["top"]]
        for a, b in zip(top, line["top"]):
            assert abs(a["prob"] - b["prob"]) < 1e-6
    # A batch mixing tasks gives each image its own task's answer.
    mixed = engine.logits(batch, ["task0", "task1", "task0"])
    alone0 = engine.logits(batch, "task0")
    alone1 = engine.logits(batch, "task1")
    for i, z in enumerate(mixed):
        ref = (alone0 if i % 2 == 0 else alone1)[i]
        assert torch.allclose(z, ref, atol=1e-5)
    probs = torch.softmax(alone1[0], 0)
    assert abs(float(probs.max()) - ours[0][0]["prob"]) < 1e-6


def test_identify_answers_as_clr_predict_without_a_task(learned):
    store = os.path.join(learned["out"], "adapters")
    engine = clr.Engine(store)
    files = [os.path.join(learned["root"], f"task{t}", "test", "c1", "2.png") for t in range(2)]
    lines = [json.loads(line) for line in cli("predict", "--store", store, *files).splitlines()]
    answers = engine.identify([clr.read_image(f) for f in files])
    for line, a in zip(lines, answers):
        assert a["task"] == line["task"]
        assert abs(a["confidence"] - line["confidence"]) < 1e-5
        assert [c["class"] for c in a["top"]] == [c["class"] for c in line["top"]]


def test_errors_are_clrs_kinds(learned, tmp_path):
    with pytest.raises(clr.NotFoundError):
        clr.Engine(str(tmp_path / "no-store"))
    with pytest.raises(clr.ConfigError, match="epochs"):
        bad = config(learned["root"], str(tmp_path / "bad"))
        bad["train"]["epochs"] = -1
        clr.run(bad)
    engine = clr.Engine(os.path.join(learned["out"], "adapters"))
    with pytest.raises(clr.NotFoundError):
        engine.predict(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8), "no-such-task")
    with pytest.raises(clr.ConfigError, match="uint8"):
        engine.predict(torch.zeros(1, 3, SIZE, SIZE), "task0")
    with pytest.raises(clr.FormatError):
        clr.decode_image(b"not an image")
    assert issubclass(clr.ConfigError, clr.Error)


def test_an_exception_in_the_callback_stops_the_run_and_it_resumes(learned, tmp_path):
    out = str(tmp_path / "stopped")

    def stop_after_first(results):
        raise KeyError("enough")

    with pytest.raises(KeyError):
        clr.run(config(learned["root"], out), on_task=stop_after_first)
    with open(os.path.join(out, "results.json")) as f:
        assert not json.load(f)["complete"]
    seen = []
    resumed = clr.run(config(learned["root"], out), on_task=seen.append)
    assert len(seen) == 1  # only the task left
    assert resumed["accuracy_matrix"] == learned["results"]["accuracy_matrix"]


def tensorboard_events(path):
    """The events of a TensorBoard file, read with Google's protobuf and crc32c packages
    (Debian's python3-protobuf, python3-crc32c): tensorflow.Event declared here."""
    import struct

    import crc32c
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="clr_test_event.proto", package="clrtest", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    value = fdp.message_type.add(name="Value")
    value.field.add(name="tag", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL)
    summary = fdp.message_type.add(name="Summary")
    summary.field.add(name="value", number=1, type=T.TYPE_MESSAGE, type_name=".clrtest.Value", label=T.LABEL_REPEATED)
    event = fdp.message_type.add(name="Event")
    event.field.add(name="wall_time", number=1, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    event.field.add(name="summary", number=5, type=T.TYPE_MESSAGE, type_name=".clrtest.Summary", label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("clrtest.Event")
    Event = (message_factory.GetMessageClass(desc) if hasattr(message_factory, "GetMessageClass")
             else message_factory.MessageFactory(pool).GetPrototype(desc))

    def masked(crc):
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    data = open(path, "rb").read()
    at, events = 0, []
    while at < len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        (crc_n,) = struct.unpack_from("<I", data, at + 8)
        assert masked(crc32c.crc32c(data[at:at + 8])) == crc_n
        body = data[at + 12:at + 12 + n]
        (crc_d,) = struct.unpack_from("<I", data, at + 12 + n)
        assert masked(crc32c.crc32c(body)) == crc_d
        e = Event()
        e.ParseFromString(body)
        events.append(e)
        at += 12 + n + 4
    return events


def test_tensorboard_files_hold_the_runs_curves(learned):
    files = os.listdir(learned["board"])
    assert len(files) == 1 and files[0].startswith("events.out.tfevents.")
    events = tensorboard_events(os.path.join(learned["board"], files[0]))
    assert events[0].file_version == "brain.Event:2"
    scalars = {}
    for e in events[1:]:
        for v in e.summary.value:
            scalars.setdefault(v.tag, {})[e.step] = v.simple_value
    r = learned["results"]
    for t in ("task0", "task1"):
        assert sorted(scalars[f"loss/{t}"]) == [1, 2]
        assert scalars[f"lr/{t}"] == {1: pytest.approx(1e-3), 2: pytest.approx(1e-3)}
        assert max(scalars[f"val_accuracy/{t}"].values()) == pytest.approx(r["tasks"][int(t[-1])]["best_val_accuracy"])
    assert scalars["test_accuracy/task0"] == {1: pytest.approx(r["accuracy_matrix"][0][0]),
                                               2: pytest.approx(r["accuracy_matrix"][1][0])}
    assert scalars["average_accuracy"][2] == pytest.approx(r["average_accuracy"])
    assert 1 in scalars["task_id_accuracy/gaussian"] and 2 in scalars["agnostic_accuracy/gaussian"]
