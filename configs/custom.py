"""Train on your own dataset: a small YOLOv2-family model (Tiny YOLOv2, width option) on VOC XML, YOLO txt or
COCO JSON files (yolojax.data.formats; docs/data_formats.md).

  # a dataset to try it on: the synthetic shapes written as an ultralytics YOLO dataset (5 classes)
  python -c "from yolojax.data import synthetic as s; s.write_dataset('data/shapes_yolo', 'yolo', \
      s.default_synthetic_config(), num_train=2000, num_eval=300)"
  python experiments/compute_anchors.py --config configs/custom.py        # paste the line into ANCHORS
  python experiments/train.py --config configs/custom.py --workdir runs/custom
  # your data: --config.data.format=voc --config.data.root=/data/mine --config.model.num_classes=3 ...

Measured on the shared 2-core dev machine with the synthetic YOLO dataset above (2,000 train / 300 val images,
160 px): 2,500 steps in 9.2 minutes, held-out mAP@0.5 0.841 (VOC07 11-point) / 0.871 (area); COCO-style
AP@[.5:.95] 0.428, AP50 0.860, AP75 0.368 (yolojax.evaluation.coco over yolojax.inference.api.evaluate's detections,
whose VOC07 there is 0.844). With 8 epochs (1,000 steps, 6.5 minutes): 0.659 VOC07, COCO AP 0.247.

Edit the constants below (or override on the command line, e.g. ``--config.data.root=...``):
  * FORMAT / ROOT / TRAIN_SPLIT / EVAL_SPLIT: see docs/data_formats.md for the layouts each format reads.
  * NUM_CLASSES must equal the dataset's number of classes (training stops with a one-line message if not).
  * CLASS_NAMES / NAMES_FILE: () / "" = the dataset's own list or names discovered from the annotations.
  * ANCHORS: (w, h) in grid cells of 32 px at IMAGE_SIZE_PX (compute them with compute_anchors.py for this
    input size; anchors made for another size are wrong by the ratio of the sizes).
  * INIT_DARKNET_WEIGHTS: optional darknet weights for the backbone (e.g. yolov2-tiny-voc.weights).
"""

from yolojax.config.base import base_config

FORMAT = "yolo"                       # "voc" | "yolo" | "coco"
ROOT = "data/shapes_yolo/data.yaml"   # folder, ultralytics data.yaml or darknet .data
TRAIN_SPLIT, EVAL_SPLIT = "train", "val"
CLASS_NAMES = ()                      # e.g. ("cat", "dog"); () = from the dataset
NAMES_FILE = ""                       # or a darknet .names file
NUM_CLASSES = 5
IMAGE_SIZE_PX = 160                   # training and evaluation input (a multiple of 32)
WIDTH = 0.5                           # channel multiplier of Tiny YOLOv2
# Anchors (w, h) in cells of 32 px at IMAGE_SIZE_PX (5x5 grid at 160 px): compute_anchors.py of the shapes
# (sides 0.15-0.45 of the image, aspect up to 2); recompute for your data.
ANCHORS = ((0.99, 0.844), (0.947, 1.382), (1.627, 1.186), (1.526, 2.215), (2.342, 1.675))
INIT_DARKNET_WEIGHTS = ""
# 2,000 images / 16 = 125 steps an epoch: 2,500 steps, lr / 10 at 70% and 90% of them. Overriding
# --config.num_epochs on the command line keeps these boundaries: give --config.schedule.boundaries_epochs too.
NUM_EPOCHS = 20.0
BATCH_SIZE = 16


def get_config():
    c = base_config()
    c.batch_size = BATCH_SIZE
    c.num_epochs = NUM_EPOCHS
    c.log_every_steps = 100

    c.model.name = "tiny_yolov2"
    c.model.width = WIDTH
    c.model.num_classes = NUM_CLASSES
    # Unit: (w, h) in grid cells of 32 px at the training input size (data.image_size).
    c.model.anchors = ANCHORS
    c.init.darknet_weights = INIT_DARKNET_WEIGHTS

    c.data.source = "files"
    c.data.format = FORMAT
    c.data.root = ROOT
    c.data.class_names = CLASS_NAMES
    c.data.names_file = NAMES_FILE
    c.data.train_split = TRAIN_SPLIT
    c.data.eval_split = EVAL_SPLIT
    c.data.image_size = IMAGE_SIZE_PX
    c.data.eval_image_size = IMAGE_SIZE_PX
    c.data.multiscale_sizes = ()
    c.data.drop_difficult = True

    # Adam from scratch (as configs/quickstart.py); darknet's SGD recipe needs far more steps.
    c.optim.name = "adam"
    c.optim.base_lr = 2e-3
    c.optim.weight_decay = 0.0
    c.schedule.burn_in_steps = 100
    c.schedule.boundaries_epochs = (0.7 * NUM_EPOCHS, 0.9 * NUM_EPOCHS)
    c.loss.prior_warmup_images = 3200
    c.eval.every_steps = 1000
    c.eval.batch_size = 32
    c.lock()
    return c
