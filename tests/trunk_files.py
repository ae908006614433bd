"""Pretrained-trunk files of reduced-width models for the end-to-end tests: what darknet's `partial` command
writes (the trunk convolutions only, random values, the project's writer) for a width-``width`` trunk, with the
cfg it was written for (passed as init.darknet_cfg; the shipped cfgs have the published channel counts)."""
from __future__ import annotations

import os

from yolojax import darknet as dk
from yolojax.darknet.cfg import infer_layers
from yolojax.darknet.mapping import darknet19_sections, yolov1_sections
from yolojax.models import Darknet19, YOLOv1

# trunk -> the number of convolutions its 448-px classifier file holds (extraction.conv.weights: 20,
# darknet19_448.conv.23: 18).
TRUNK_CONVS = {"yolov1": 20, "darknet19": 18}


def write_trunk_file(directory: str, trunk: str, weights_name: str, width: float = 0.125, seed: int = 3
                     ) -> tuple[str, str, int, int]:
    """Writes ``<directory>/<weights_name>`` and ``<directory>/<trunk>_w<width>.cfg``.

    Returns (weights path, cfg path, layers, floats): how many layers and floats an initialization must copy.
    """
    if trunk == "yolov1":  # extraction.cfg's layout: YOLOv1's convolutions without the [crop]
        v1 = yolov1_sections(YOLOv1(width=width, grid_size=1, batch_norm=True))
        sections = tuple(s for s in v1 if s.type != "crop")
    else:
        sections = darknet19_sections(Darknet19(width=width))
    convs = [i for i in infer_layers(sections) if i.section.type == "convolutional"][:TRUNK_CONVS[trunk]]
    cut = convs[-1].index + 2  # [net] + the layers up to the last trunk conv
    cfg = os.path.join(directory, f"{trunk}_w{width:g}.cfg")
    weights = os.path.join(directory, weights_name)
    with open(cfg, "w") as f:
        f.write(dk.format_cfg(sections))
    dk.write_weights(weights, sections[:cut], dk.random_blobs(sections[:cut], seed=seed))
    return weights, cfg, len(convs), sum(i.num_weights for i in convs)
