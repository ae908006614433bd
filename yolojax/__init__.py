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

__version__ = "0.1.0"

# Names of yolojax.api re-exported here (loaded lazily).
_API_NAMES = ("Detector", "LoadError", "detections_to_json", "draw", "load", "load_checkpoint", "load_darknet",
              "load_image", "save_image")
_SUBMODULES = ("anchors", "api", "boxes", "checkpoints", "classes", "darknet", "data", "drawing", "eval_loop",
               "evaluation", "export", "families", "initialization", "losses", "models", "postprocess", "schedules",
               "targets", "train", "video")

__all__ = list(_API_NAMES) + list(_SUBMODULES) + ["VOC_CLASSES"]


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        return getattr(importlib.import_module("yolojax.api"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"yolojax.{name}")
    if name == "VOC_CLASSES":
        from yolojax.classes import VOC_CLASSES
        return VOC_CLASSES
    raise AttributeError(f"module 'yolojax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
