"""clr: continual learning by Channel-wise Lightweight Reprogramming (CLR, ICCV 2023) on a
frozen pretrained CNN, in C++ on LibTorch. This module is its Python face (docs/PYTHON.md):

    import clr
    results = clr.run("configs/default.toml", on_task=lambda r: print(r["average_accuracy"]))
    engine = clr.Engine("runs/clr/adapters")
    image = engine.preprocess("digits", clr.read_image("seven.png"))
    engine.predict(image, "digits")          # [[{'class': '7', 'index': 7, 'prob': 0.98}, ...]]

Import torch first or not: the module loads the same LibTorch as Debian's python3-torch,
and its tensors are torch.Tensor objects.
"""
import torch  # noqa: F401  (LibTorch's Python types, before the extension that uses them)

from ._clr import (  # noqa: F401
    ConfigError,
    Engine,
    Error,
    FormatError,
    IncompatibleError,
    InternalError,
    NotFoundError,
    StoppedError,
    __version__,
    decode_image,
    libtorch_version,
    load_backbone,
    load_config,
    read_image,
    run,
    set_threads,
)
