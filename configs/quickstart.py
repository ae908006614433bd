"""Quickstart: a small YOLOv2 on the synthetic shapes dataset that trains to a useful detector on a 2-core CPU
in minutes (`make demo`). Evaluated on the synthetic held-out split ("eval": its own seed stream, never
trained on).

  python experiments/train.py --config configs/quickstart.py --workdir runs/quickstart
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs.base import base_config  # noqa: E402
from yolojax.data import pipeline  # noqa: E402

IMAGE_SIZE_PX = 128  # grid 4x4


def get_config():
    c = base_config()
    c.seed = 0
    c.batch_size = 32
    c.num_epochs = 12.0
    c.log_every_steps = 25

    c.model.name = "yolov2"
    c.model.width = 0.125
    c.model.num_classes = 5
    # k-means anchors of the synthetic train boxes (experiments/compute_anchors.py), in grid units of the 4x4 grid
    # at 128 px; darknet applies anchors as-is on the grid the model outputs.
    c.model.anchors = ((0.75, 0.75), (1.0, 1.4), (1.4, 1.0), (1.5, 1.5), (2.0, 2.0))

    c.data.source = "synthetic"
    c.data.train_split = "train"
    c.data.eval_split = "eval"
    c.data.synthetic.num_classes = 5
    c.data.synthetic.image_width = IMAGE_SIZE_PX
    c.data.synthetic.image_height = IMAGE_SIZE_PX
    c.data.synthetic.num_train = 2000
    c.data.synthetic.num_eval = 500
    c.data.image_size = IMAGE_SIZE_PX
    c.data.eval_image_size = IMAGE_SIZE_PX
    c.data.multiscale_sizes = ()
    c.data.augment = pipeline.augment_preset("v2")
    c.data.augment.jitter = 0.1

    c.optim.base_lr = 1e-3
    c.schedule.burn_in_steps = 100
    c.schedule.boundaries_epochs = (8.0, 11.0)
    c.loss.prior_warmup_images = 3200

    c.eval.every_steps = 0  # evaluate once at the end
    c.eval.batch_size = 64  # divisible by 1, 2, 4, 8 devices
    c.eval.score_threshold = 0.005
    c.checkpoint.every_steps = 200
    c.lock()
    return c
