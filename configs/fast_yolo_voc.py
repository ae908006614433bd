"""Fast YOLO (9 conv layers, fast-yolo-v1-paper.cfg) with the YOLOv1 paper recipe."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs.base import base_config, use_yolov1  # noqa: E402


def get_config():
    c = use_yolov1(base_config(), "fast_yolo")
    c.lock()
    return c
