"""Fast YOLO (9 conv layers, fast-yolo-v1-paper.cfg) with the YOLOv1 paper recipe."""

from yolojax.config.base import base_config, use_yolov1


def get_config():
    c = use_yolov1(base_config(), "fast_yolo")
    c.lock()
    return c
