"""yolojax: YOLOv1 and YOLOv2 for PASCAL VOC in JAX/Flax, faithful to darknet.

Light to import: submodules and the notebook API load on first use, so ``import yolojax`` pulls in neither
JAX nor TensorFlow.

    import yolojax
    det = yolojax.load("runs/quickstart")                  # or yolojax.load("x.cfg", "x.weights")
    found = det.predict("image.jpg")                       # {"boxes", "boxes_px", "scores", "classes", ...}
    yolojax.save_image(yolojax.draw("image.jpg", found), "boxes.jpg")
"""
from __future__ import annotations

import importlib
from typing import Any

from yolojax.config.classes import VOC_CLASSES  # pure Python: keeps `import yolojax` light

__version__ = "0.1.0"

# Names of yolojax.inference.api re-exported here (loaded lazily).
_API_NAMES = ("Detector", "LoadError", "detections_to_json", "draw", "load", "load_checkpoint", "load_darknet",
              "load_image", "save_image")
# The layers, bottom to top (docs/architecture.md): each imports only from the ones before it.
_SUBMODULES = ("config", "ops", "models", "data", "evaluation", "darknet", "training", "inference", "cli")

__all__ = list(_API_NAMES) + list(_SUBMODULES) + ["VOC_CLASSES"]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        return getattr(importlib.import_module("yolojax.inference.api"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"yolojax.{name}")
    raise AttributeError(f"module 'yolojax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
