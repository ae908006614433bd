"""Draws one augmented training batch with its boxes and class names: the first check on new data or augmentation.

Usage:
  python experiments/show_batch.py --config configs/CONFIG.py --out batch.png [--step 0] [--num 16]
  python experiments/show_batch.py --out batch.png   # default data config with the synthetic dataset
Config overrides work as usual: --config.data.augment.jitter=0.
"""
from __future__ import annotations

import math
import sys

import cv2
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from yolojax.data import pipeline, sources

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file with a .data section (default: synthetic).")
_OUT = flags.DEFINE_string("out", "batch.png", "Output PNG.")
_STEP = flags.DEFINE_integer("step", 0, "Training step whose batch is drawn.")
_NUM = flags.DEFINE_integer("num", 16, "Images to draw (at most the batch size).")
_SEED = flags.DEFINE_integer("seed", None, "Data seed (default: config.seed or 0).")


def draw_batch(batch: dict, names: tuple[str, ...], num: int) -> np.ndarray:
    """Batch (CONTRACT format) -> uint8 [rows*S, cols*S, 3] RGB grid with boxes and class names."""
    images = (batch["image"][:num] * 255).round().astype(np.uint8)
    n, s = len(images), images.shape[1]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * s, cols * images.shape[2], 3), np.uint8)
    for i, img in enumerate(images):
        img = np.ascontiguousarray(img)
        for box, cls in zip(batch["boxes"][i][batch["mask"][i]], batch["classes"][i][batch["mask"][i]]):
            x0, y0, x1, y1 = (box * ([img.shape[1], img.shape[0]] * 2)).round().astype(int)
            colour = tuple(int(c) for c in np.random.default_rng(int(cls)).integers(64, 256, 3))
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, 1)
            cv2.putText(img, names[cls] if cls < len(names) else str(cls), (x0 + 2, max(y0 + 10, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
        r, c = divmod(i, cols)
        grid[r * s:(r + 1) * s, c * img.shape[1]:(c + 1) * img.shape[1]] = img
    return grid


def main(argv) -> int:
    del argv
    config = _CONFIG.value
    if config is None:
        data_cfg = pipeline.default_data_config()
        data_cfg.update(source="synthetic", train_split="train", eval_split="eval", image_size=160)
        batch_size, seed = _NUM.value, 0
    else:
        data_cfg = config.data
        batch_size = int(config.batch_size)
        seed = int(config.get("seed", 0))
    seed = seed if _SEED.value is None else _SEED.value
    it = pipeline.make_train_iterator(data_cfg, seed=seed, global_batch_size=batch_size, start_step=_STEP.value,
                                      process_index=0, process_count=1)
    batch = next(it)
    grid = draw_batch(batch, sources.class_names(data_cfg), min(_NUM.value, len(batch["image"])))
    cv2.imwrite(_OUT.value, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {_OUT.value}: {min(_NUM.value, len(batch['image']))} images at {batch['image'].shape[1]} px, "
          f"{int(batch['mask'].sum())} boxes")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
