"""Drawing boxes on images for the API, ``detect.py``, the demo and ``show_batch.py``.

The one box drawer lives in ``yolojax.evaluation.plots`` (below training, which draws the eval images it logs to
TensorBoard); this module is its name on the inference side. Boxes are normalized xyxy of the image they are drawn
on; images are uint8 ``[H, W, 3]`` RGB. PIL only (no JAX), so drawing never starts a device.
"""
from __future__ import annotations

from yolojax.evaluation.plots import (  # noqa: F401  (re-exported: the one implementation)
    PALETTE,
    colour,
    draw_boxes,
    draw_detections,
    tile,
    to_uint8,
)
